"""Unit tests for fusionlib.metrics: known answers, batching, devices, bad input, undefined cases.

Small synthetic images only; no ../shared needed (the toolbox comparisons are in
test_metrics_reference.py).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from fusionlib.metrics import (
    PRESETS,
    MetricWarning,
    average_gradient,
    cc,
    entropy,
    evaluate,
    fmi,
    higher_is_better,
    list_metrics,
    mef_ssim,
    ms_ssim_wang,
    mutual_information,
    nabf,
    psd_fidelity,
    psnr,
    scd,
    spectral_entropy,
    ssim_matlab,
    ssim_skimage,
    to_levels,
)
from fusionlib.metrics.qabf import qabf
from fusionlib.metrics.vif import vif

H, W = 48, 64  # big enough for every window (MS-SSIM Wang needs >= 176 px: tested separately)


def _img(seed: int, b: int = 1, h: int = H, w: int = W) -> torch.Tensor:
    """Smooth-ish random uint8 image batch (a blurred noise field, so edges and structure exist)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, h + 4, w + 4, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1)
    lo, hi = x.amin((-2, -1), keepdim=True), x.amax((-2, -1), keepdim=True)
    x = (x - lo) / (hi - lo)
    return (x * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def triple():
    a, b = _img(1, 3), _img(2, 3)
    f = ((a.double() + b.double()) / 2).round().to(torch.uint8)
    return f, a, b


def _all_but_slow(preset: str) -> list[str]:
    return [m for m in list_metrics(preset) if m not in ("FMI_dct", "FMI_w", "MS_SSIM_wang")]


# ------------------------------------------------------------------------------- known answers
def test_constant_image_entropy_zero_and_two_levels_one_bit():
    assert float(entropy(torch.full((1, 1, 8, 8), 77.0))[0]) == 0.0
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    x[..., :4] = 200.0
    assert float(entropy(x)[0]) == pytest.approx(1.0)
    assert float(entropy(x, base=math.e)[0]) == pytest.approx(math.log(2))


def test_identical_images(triple):
    f, _, _ = triple
    out_t = evaluate(f, f, f, "tang", ["SSIM", "MSE", "PSNR", "CC", "FMI_pixel", "MS_SSIM", "Nabf_argfix"])
    assert torch.allclose(out_t["SSIM"], torch.ones(3, dtype=torch.float64), atol=1e-12)  # a mean
    assert torch.all(out_t["MSE"] == 0) and torch.all(torch.isinf(out_t["PSNR"]))
    assert torch.allclose(out_t["CC"], torch.ones(3, dtype=torch.float64))
    assert torch.all(out_t["FMI_pixel"] == 1.0)
    assert torch.allclose(out_t["MS_SSIM"], torch.ones(3, dtype=torch.float64), atol=2e-3)
    assert torch.all(out_t["Nabf_argfix"] == 0)  # no fused gradient exceeds both sources
    out_c = evaluate(f, f, f, "cddfuse", ["SSIM", "SSIM_dr255", "MSE", "VIF", "Qabf"])
    assert torch.allclose(out_c["SSIM"], torch.full((3,), 2.0, dtype=torch.float64), atol=1e-6)  # a sum
    assert torch.allclose(out_c["SSIM_dr255"], torch.full((3,), 2.0, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(out_c["VIF"], torch.full((3,), 2.0, dtype=torch.float64), atol=1e-9)
    assert torch.all(out_c["MSE"] == 0)
    # Qabf of F = A = B stays below Tg * Ta: the sigmoids saturate there, and the toolboxes' strength
    # ratio is g_F (not 1) where g_A == g_F, which is small on weak edges
    assert torch.all((out_c["Qabf"] > 0.95) & (out_c["Qabf"] <= 0.9994 * 0.9879))


def test_mi_of_image_with_itself_is_twice_its_entropy(triple):
    f, _, _ = triple
    x = f.double()
    assert torch.allclose(mutual_information(x, x, x), 2 * entropy(x))
    assert torch.allclose(mutual_information(x, x, x, base=math.e), 2 * entropy(x, base=math.e))


def test_psnr_conventions_and_ag_normalisation(triple):
    f, a, b = (t.double() for t in triple)
    std = psnr(f, a, b, convention="peak255")
    assert torch.allclose(psnr(f, a, b, convention="tang") - std, torch.full_like(std, 20 * math.log10(255)))
    peak = f.flatten(1).amax(1)
    assert torch.allclose(psnr(f, a, b, convention="cddfuse") - std, 20 * torch.log10(peak / 255))
    ratio = average_gradient(f, convention="tang") / average_gradient(f, convention="cddfuse")
    assert torch.allclose(ratio, torch.full_like(ratio, H * W / ((H - 1) * (W - 1))))


def test_sum_versus_mean_over_sources(triple):
    f, a, b = triple
    t = evaluate(f, a, b, "tang", ["SSIM"])["SSIM"]
    single = [ssim_matlab(to_levels(f, "f"), to_levels(s, "s")) for s in (a, b)]
    assert torch.allclose(t, 0.5 * (single[0] + single[1]))
    c = evaluate(f, a, b, "cddfuse", ["SSIM"])["SSIM"]
    single = [ssim_skimage(to_levels(f, "f"), to_levels(s, "s"), data_range=2.0) for s in (a, b)]
    assert torch.allclose(c, single[0] + single[1])


def test_ssim_float32_emulation_only_matters_for_tiny_constants(triple):
    f, a, _ = (to_levels(x, "x") for x in triple)
    hi32 = ssim_skimage(f, a, data_range=255.0)
    hi64 = ssim_skimage(f, a, data_range=255.0, float32=False)
    assert torch.allclose(hi32, hi64, rtol=1e-5)


def test_nabf_argument_order_matters(triple):
    f, a, b = (to_levels(x, "x") for x in triple)
    fixed = nabf(f, a, b)
    toolbox = nabf(a, b, f)
    out = evaluate(*triple, "tang", ["Nabf", "Nabf_argfix"])
    assert torch.allclose(out["Nabf"], toolbox) and torch.allclose(out["Nabf_argfix"], fixed)
    assert not torch.allclose(fixed, toolbox)
    assert not higher_is_better("Nabf") and not higher_is_better("Nabf_argfix") and higher_is_better("Qabf")


def test_fmi_identical_is_one_and_dct_feature_runs():
    x = _img(5).double()
    assert float(fmi(x, x, x)[0]) == 1.0
    y = _img(6, h=16, w=16).double()
    v = float(fmi(y, _img(7, h=16, w=16).double(), _img(8, h=16, w=16).double(), feature="dct")[0])
    assert 0.0 < v < 1.0


# Independent listing of the same filter, for a cross-check of the shipped one: JWave's ``Dmey``
# class (2010, 16 significant digits, in Lo_D order, i.e. lo[k] = JWAVE[k] up to the sqrt(2)/sum
# normalisation, which changes nothing at this precision). Index -> value.
DMEY_JWAVE = {
    0: 0.0,
    1: -1.509740857423615e-06,
    29: 2.446195684460230e-05,
    35: 8.595002137623775e-04,
    36: -5.781857952734411e-04,
    48: -1.326966153588617e-01,
    50: 4.440950307665288e-01,
    51: 7.437510049037870e-01,
    52: 4.440950307665288e-01,
    101: -1.509740857423615e-06,
}


def test_dmey102_filter_properties():
    """MATLAB's 102-tap dmey: the shipped taps, the orthfilt normalisation and the QMF pair."""
    from fusionlib.metrics.wavelet import DMEY_W, dmey_filters

    w = torch.tensor(DMEY_W, dtype=torch.float64)
    assert w.numel() == 102 and float(w[-1]) == 0.0  # dmey.mat: last tap 0
    assert torch.equal(w[:101], w[:101].flip(0))  # symmetric about the 51st tap
    assert abs(float(w.sum()) - math.sqrt(2.0)) < 1e-15
    lo, hi = dmey_filters()
    assert lo.shape == hi.shape == (102,) and float(lo[0]) == 0.0  # Lo_D = wrev(Lo_R)
    for k, v in DMEY_JWAVE.items():  # the independent listing, to its precision
        assert abs(float(lo[k]) - v) < 1e-15, (k, float(lo[k]), v)
    assert float(lo.sum()) == pytest.approx(math.sqrt(2.0), abs=1e-15)
    n = 102
    sign = torch.tensor([(-1.0) ** (k + 1) for k in range(n)], dtype=torch.float64)
    assert torch.equal(hi, sign * lo.flip(0))  # hi[k] = (-1)^(k+1) lo[101 - k]
    # orthonormal to the truncation's accuracy: <lo, lo shifted by 2m> = delta(m), <lo, hi shifted> = 0
    for m in range(0, 51):
        ll = float((lo[: n - 2 * m] * lo[2 * m :]).sum())
        assert abs(ll - (1.0 if m == 0 else 0.0)) < 2e-6, (m, ll)
        lh = float((lo[: n - 2 * m] * hi[2 * m :]).sum())
        assert abs(lh) < 1e-15, (m, lh)
    assert abs(float(hi.sum())) < 3e-6  # high-pass: (almost) no DC


def test_dmey102_is_the_truncated_meyer_scaling_filter():
    """The shipped taps, derived from first principles: ``h[n] = (sqrt(2) / pi) int_0^pi
    phi_hat(2 w) cos(n w) dw`` for ``n = -50 .. 50`` (Meyer's scaling function with MATLAB's
    ``meyeraux`` polynomial), rescaled to sum sqrt(2), then a 0 tap. Measured: 6e-11."""
    quad = pytest.importorskip("scipy.integrate").quad
    from fusionlib.metrics.wavelet import DMEY_W

    def nu(x: float) -> float:
        return x**4 * (35 - 84 * x + 70 * x**2 - 20 * x**3)

    def h(n: int) -> float:
        a = math.pi / 3  # phi_hat(2 w) = 1 on [0, pi/3], tapers to 0 on [pi/3, 2 pi/3]
        flat = math.sin(n * a) / n if n else a
        taper = quad(lambda w: math.cos(math.pi / 2 * nu(3 * w / math.pi - 1)) * math.cos(n * w),
                     a, 2 * a, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
        return math.sqrt(2.0) / math.pi * (flat + taper)

    hv = torch.tensor([h(abs(k - 50)) for k in range(101)], dtype=torch.float64)
    assert 0.0 < 1.0 - float(hv.sum()) / math.sqrt(2.0) < 1e-6  # truncation loses 8.1e-7 of the sum
    hv = math.sqrt(2.0) * hv / hv.sum()
    w = torch.tensor(DMEY_W[:101], dtype=torch.float64)
    assert DMEY_W[101] == 0.0
    assert float((hv - w).abs().max()) < 1e-9


def _impulse_response(f: torch.Tensor, p: int, n: int) -> torch.Tensor:
    """MATLAB ``dwt`` ('sym', first = 2) of a unit impulse at ``p`` in a length-``n`` signal, by hand.

    With ``n >= 101`` the 101-sample half-point extension adds one mirror image of the impulse on
    each side, at ``-1 - p`` and ``2n - 1 - p``; the 'valid' convolution's sample ``m`` (0-based)
    is ``sum_t f[m - t]`` over the impulses ``t``, and MATLAB keeps ``m = 1, 3, 5, ...``.
    """
    out = torch.zeros((n + 101) // 2, dtype=torch.float64)
    for j in range(out.numel()):
        for t in (p, -1 - p, 2 * n - 1 - p):
            k = 2 * j + 1 - t
            if 0 <= k < f.numel():
                out[j] += f[k]
    return out


def test_dwt2_impulse_by_hand():
    """Extension, filter orientation, down-sampling phase and sub-band order, checked by hand on an
    impulse next to the top and right edges (so the mirror images count)."""
    from fusionlib.metrics.wavelet import dmey_filters, dwt2

    h, w, r, c = 110, 104, 3, 100
    x = torch.zeros(1, 1, h, w, dtype=torch.float64)
    x[0, 0, r, c] = 1.0
    lo, hi = dmey_filters()
    ca, ch, cv, cd = dwt2(x)
    assert ca.shape == (1, 1, (h + 101) // 2, (w + 101) // 2) == (1, 1, 105, 102)
    rl, rh = _impulse_response(lo, r, h), _impulse_response(hi, r, h)  # along the height
    cl, chh = _impulse_response(lo, c, w), _impulse_response(hi, c, w)  # along the width
    for got, want in ((ca, torch.outer(rl, cl)), (ch, torch.outer(rh, cl)),
                      (cv, torch.outer(rl, chh)), (cd, torch.outer(rh, chh))):
        assert torch.allclose(got[0, 0], want, rtol=0.0, atol=1e-15)
    assert float(ca.abs().max()) > 0.5  # the impulse's own peak: lo[51]^2 = 0.55


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 1, 37, 20), (1, 1, 5, 9)])
def test_dwt2_dmey_matches_pywavelets(shape):
    """MATLAB dwt2(x, 'dmey') in its default 'sym' mode = pywt.dwt2 with the same 102-tap filter
    bank and mode='symmetric' (PyWavelets' own 'dmey' is a different, 62-tap filter); (5, 9) is
    far shorter than the 101-sample extension, which then reflects many times."""
    pywt = pytest.importorskip("pywt")
    from fusionlib.metrics.wavelet import dmey_filters, dwt2

    lo, hi = dmey_filters()
    bank = (lo.numpy(), hi.numpy(), lo.flip(0).numpy(), hi.flip(0).numpy())
    wav = pywt.Wavelet("dmey102", filter_bank=bank)
    assert len(pywt.Wavelet("dmey").dec_lo) == 62  # why PyWavelets' 'dmey' is not used
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, shape, generator=g).double()
    ours = dwt2(x)
    for i in range(shape[0]):
        ca, (ch, cv, cd) = pywt.dwt2(x[i, 0].numpy(), wav, mode="symmetric")
        for o, r in zip(ours, (ca, ch, cv, cd)):
            assert o.shape[-2:] == r.shape == ((shape[2] + 101) // 2, (shape[3] + 101) // 2)
            assert torch.allclose(o[i, 0], torch.from_numpy(r), rtol=0.0, atol=1e-10)


def test_fmi_wavelet_feature_layout_and_values():
    from fusionlib.metrics.information import dwt_feature
    from fusionlib.metrics.wavelet import dwt2

    x = _img(12, h=16, w=20).double()
    feat = dwt_feature(x)
    ca, ch, cv, cd = dwt2(x)
    h, w = ca.shape[-2:]
    assert feat.shape == (1, 1, 2 * h, 2 * w) == (1, 1, 116, 120)
    assert float(feat.min()) == 0.0 and float(feat.max()) == 1.0  # rerange: [0, 1]
    full = torch.cat([torch.cat([ca, ch], -1), torch.cat([cv, cd], -1)], -2)  # [cA cH; cV cD]
    lin = (full - full.min()) / (full.max() - full.min())
    assert torch.allclose(feat, lin, atol=1e-15)
    assert torch.equal(dwt_feature(torch.zeros(1, 1, 8, 8)), torch.ones(1, 1, 108, 108))  # flat -> ones
    y, a, b = (_img(s, b=2, h=12, w=12).double() for s in (13, 14, 15))
    assert torch.equal(fmi(y, y, y, feature="wavelet"), torch.ones(2, dtype=torch.float64))
    v = fmi(y, a, b, feature="wavelet")
    assert v.shape == (2,) and bool(((v > 0) & (v < 1)).all())
    assert torch.allclose(v[1:], fmi(y[1:], a[1:], b[1:], feature="wavelet"), rtol=1e-12, atol=0)
    assert list_metrics("tang").index("FMI_w") > list_metrics("tang").index("FMI_dct")
    assert "FMI_w" not in list_metrics("tang", extras=False)  # slow: asked for by name or "all"


def test_mef_ssim_equal_sources_and_fused_is_one():
    x = _img(9).double()
    q = mef_ssim(torch.cat([x, x], 1), x)
    assert float(q[0]) == pytest.approx(1.0, abs=2e-3)


def test_ms_ssim_wang_identity_and_size_check():
    x = _img(10, h=180, w=180).double()
    assert float(ms_ssim_wang(x, x)[0]) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="too small"):
        ms_ssim_wang(_img(1).double(), _img(2).double())


def test_psd_measures():
    x = _img(11).double()
    assert float(psd_fidelity(x, x)[0]) == pytest.approx(1.0)
    assert float(psd_fidelity(x + 3, x)[0]) == pytest.approx(1.0)  # the mean (DC) is ignored
    assert float(psd_fidelity(2 * x, x, mode="corr")[0]) == pytest.approx(1.0)  # corr ignores gain
    assert float(psd_fidelity(2 * x, x)[0]) < float(psd_fidelity(1.1 * x, x)[0]) < 1.0
    blur = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert float(psd_fidelity(blur, x)[0]) < 0.9  # high frequencies lost
    e = spectral_entropy(x)
    assert 0.0 < float(e[0]) < 1.0


# ------------------------------------------------------------------------- batching and devices
@pytest.mark.parametrize("preset", list(PRESETS))
def test_batch_equals_per_image(triple, preset):
    f, a, b = triple
    names = _all_but_slow(preset)
    batched = evaluate(f, a, b, preset, names)
    for i in range(f.shape[0]):
        single = evaluate(f[i : i + 1], a[i : i + 1], b[i : i + 1], preset, names)
        for n in names:
            assert batched[n].shape == (f.shape[0],)
            assert torch.allclose(batched[n][i : i + 1], single[n], rtol=1e-12, atol=1e-12, equal_nan=True), n


def test_uint8_float_and_2d_inputs_agree(triple):
    f, a, b = (t[:1] for t in triple)
    names = _all_but_slow("cddfuse")
    u = evaluate(f, a, b, "cddfuse", names)
    fl = evaluate(f.float() / 255, a.float() / 255, b.float() / 255, "cddfuse", names)
    r255 = evaluate(f.double(), a.double(), b.double(), "cddfuse", names, data_range=255)
    two_d = evaluate(f[0, 0], a[0, 0], b[0, 0], "cddfuse", names)
    for n in u:
        assert torch.equal(u[n], fl[n]) and torch.equal(u[n], r255[n]) and torch.equal(u[n], two_d[n]), n


def test_quantize_rounds_half_up():
    x = torch.tensor([[0.5, 1.5, 2.5, 254.5]], dtype=torch.float64).view(1, 1, 2, 2)
    assert to_levels(x, "x", data_range=255).flatten().tolist() == [1.0, 2.0, 3.0, 255.0]
    assert to_levels(x, "x", data_range=255, quantize=False).flatten().tolist() == [0.5, 1.5, 2.5, 254.5]


_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _DEVICES)
def test_device_agnostic(triple, device):
    f, a, b = triple
    names = _all_but_slow("tang")
    ref = evaluate(f, a, b, "tang", names)
    out = evaluate(f.to(device), a.to(device), b.to(device), "tang", names)
    for n in names:
        assert out[n].device.type == device
        assert torch.allclose(out[n].cpu(), ref[n], rtol=1e-9, atol=1e-12, equal_nan=True), n


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_cddfuse(triple):
    f, a, b = triple
    ref = evaluate(f, a, b, "cddfuse", "all")
    out = evaluate(f.cuda(), a.cuda(), b.cuda(), "cddfuse", "all")
    for n in ref:
        assert torch.allclose(out[n].cpu(), ref[n], rtol=1e-6, equal_nan=True), n


# ----------------------------------------------------------------------------------- bad input
def test_shape_mismatch_names_the_images():
    msg = r"shape mismatch: fused \(1, 1, 48, 64\), a \(1, 1, 48, 64\), b \(1, 1, 32, 64\)"
    with pytest.raises(ValueError, match=msg):
        evaluate(_img(1), _img(2), _img(3, h=32))


def test_bad_shapes_and_types():
    with pytest.raises(ValueError, match="a: expected a grey image batch"):
        evaluate(_img(1), torch.zeros(1, 3, H, W), _img(2))
    with pytest.raises(ValueError, match="expected a grey image batch"):
        evaluate(torch.zeros(5), torch.zeros(5), torch.zeros(5))
    with pytest.raises(TypeError, match="fused: expected a torch.Tensor"):
        evaluate([[0.0]], _img(1), _img(2))


def test_non_finite_and_out_of_range_values():
    x = torch.rand(1, 1, H, W)
    bad = x.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="b: 1 non-finite value"):
        evaluate(x, x, bad)
    with pytest.raises(ValueError, match=r"fused: values must lie in \[0, 1\]"):
        evaluate(x * 255, x, x)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        evaluate(x - 0.5, x, x)
    with pytest.raises(ValueError, match="integer images must hold levels 0..255"):
        evaluate(torch.full((1, 1, H, W), 300, dtype=torch.int32), _img(1), _img(2))
    with pytest.raises(ValueError, match="data_range must be > 0"):
        evaluate(x, x, x, data_range=0)


def test_unknown_preset_and_metric():
    x = _img(1)
    with pytest.raises(ValueError, match="unknown preset 'matlab'; available: tang, cddfuse, lkc"):
        evaluate(x, x, x, "matlab")
    with pytest.raises(ValueError, match="metric 'VIFF' is not defined in preset 'tang'"):
        evaluate(x, x, x, "tang", ["VIFF"])
    assert list(evaluate(x, x, x, "cddfuse", "EN, VIFF")) == ["EN", "VIFF"]


# ------------------------------------------------------------------- undefined: NaN + warning
def test_constant_source_gives_nan_with_warning():
    const = torch.full((2, 1, H, W), 100, dtype=torch.uint8)
    f, b = _img(3, 2), _img(4, 2)
    f_, c_, b_ = (to_levels(x, "x") for x in (f, const, b))
    with pytest.warns(MetricWarning, match="CC: undefined for 2 of 2"):
        assert torch.isnan(cc(f_, c_, b_)).all()
    with pytest.warns(MetricWarning, match="SCD: undefined") as rec:
        assert torch.isnan(scd(f_, c_, b_)).all()
    (w,) = [w.message for w in rec if issubclass(w.category, MetricWarning)]
    assert (w.metric, w.why) == ("SCD", "a source, or F minus a source, is constant")  # 05 summarises by these
    with pytest.warns(MetricWarning, match="VIF: undefined"):
        assert torch.isnan(vif(f_, c_, b_)).all()  # Tang keeps the NaN
    with pytest.warns(MetricWarning, match="CDDFuse substitutes 1.0"):
        v = vif(f_, c_, b_, nan_as_one=True)
    assert torch.isfinite(v).all() and torch.all(v > 1.0)
    zero = torch.zeros_like(c_)  # (a constant > 0 still has edges at the zero-padded border)
    with pytest.warns(MetricWarning, match="Qabf: undefined"):
        assert torch.isnan(qabf(f_, zero, zero)).all()
    with pytest.warns(MetricWarning, match="PSD fidelity"):
        assert torch.isnan(psd_fidelity(f_, c_)).all()


@pytest.mark.parametrize("preset", list(PRESETS))
def test_all_constant_never_crashes_or_silently_zeroes(preset):
    """Every metric on constant images: a number or NaN, never an exception; CC/SCD are NaN, not 0."""
    c = torch.full((1, 1, H, W), 128, dtype=torch.uint8)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = evaluate(c, c, c, preset, _all_but_slow(preset))
    big = torch.full((1, 1, 176, 176), 128, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out.update(evaluate(big, big, big, preset, ["MS_SSIM_wang"]))
    assert any(issubclass(w.category, MetricWarning) for w in rec)
    assert torch.isnan(out["CC"]).all() and torch.isnan(out["SCD"]).all()
    assert float(out["EN"][0]) == 0.0
    for n, v in out.items():
        assert v.shape == (1,), n
