"""fusionlib.losses: known values, identities, kornia equivalences, reductions, errors, gradchecks."""

from __future__ import annotations

import doctest
import importlib

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fusionlib.losses as L
from fusionlib.ops.filters import laplacian as lap_filter
from fusionlib.ops.filters import sobel_l1, sobel_xy


def _rand(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


def _impulse(h=3, w=3, value=1.0):
    x = torch.zeros(1, 1, h, w)
    x[..., h // 2, w // 2] = value
    return x


# --- doctests ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["intensity", "gradient", "laplacian", "ssim", "correlation", "reconstruction", "_common"]
)
def test_doctests(name):
    # import_module: the package re-exports the function ``ssim``, which shadows the submodule attribute
    module = importlib.import_module(f"fusionlib.losses.{name}")
    res = doctest.testmod(module, extraglobs={"torch": torch}, verbose=False)
    assert res.failed == 0


# --- intensity -----------------------------------------------------------------------------------
def test_intensity_hand_value():
    ir = torch.tensor([[[[0.2, 0.8], [0.0, 1.0]]]])
    vi = torch.tensor([[[[0.5, 0.1], [0.3, 0.4]]]])
    fused = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])
    # max = [[.5, .8], [.3, 1.]]; |F - max| = [[0, .3], [.3, 0]]
    assert L.intensity_max_loss(fused, ir, vi).item() == pytest.approx(0.15)
    assert L.intensity_max_loss(fused, ir, vi, reduction="sum").item() == pytest.approx(0.6)
    m = L.intensity_max_loss(fused, ir, vi, reduction="none")
    torch.testing.assert_close(m, torch.tensor([[[[0.0, 0.3], [0.3, 0.0]]]]))
    assert L.intensity_max_loss(torch.maximum(ir, vi), ir, vi).item() == 0.0


def test_intensity_matches_l1_of_max():
    f, a, b = (_rand(2, 1, 8, 8, seed=s) for s in (1, 2, 3))
    torch.testing.assert_close(L.intensity_max_loss(f, a, b), F.l1_loss(f, torch.max(a, b)))
    assert L.IntensityMaxLoss()(f, a, b) == L.intensity_max_loss(f, a, b)


# --- gradient -----------------------------------------------------------------------------------
def test_gradient_hand_value_impulse():
    ir, zero = _impulse(), torch.zeros(1, 1, 3, 3)
    # |Gx| + |Gy| of an impulse with zero padding: 2 on the 8 neighbours, 0 at the centre
    expected_s = torch.full((3, 3), 2.0)
    expected_s[1, 1] = 0.0
    torch.testing.assert_close(sobel_l1(ir)[0, 0], expected_s)
    assert L.gradient_max_loss(zero, ir, zero).item() == pytest.approx(16 / 9)
    assert L.gradient_max_loss(ir, ir, zero).item() == 0.0
    # the larger source wins: S(2 * impulse) = 2 S(impulse), so F = impulse misses by S(impulse)
    assert L.gradient_max_loss(ir, ir, 2 * ir).item() == pytest.approx(16 / 9)
    assert L.gradient_max_loss(ir, 2 * ir, ir).item() == pytest.approx(16 / 9)


def test_gradient_module_and_none_shape():
    f, a, b = (_rand(2, 1, 6, 7, seed=s) for s in (4, 5, 6))
    m = L.gradient_max_loss(f, a, b, reduction="none")
    assert m.shape == (2, 1, 6, 7)
    torch.testing.assert_close(m.mean(), L.GradientMaxLoss()(f, a, b))


# --- Laplacian -----------------------------------------------------------------------------------
def test_laplacian_filter_equals_kornia():
    x = _rand(2, 1, 9, 11, seed=7)
    torch.testing.assert_close(lap_filter(x), kornia.filters.laplacian(x, 3))


def test_laplacian_impulse_hand_value():
    expected = torch.tensor([[0.25, 0.125, 0.25], [0.125, -0.5, 0.125], [0.25, 0.125, 0.25]])
    torch.testing.assert_close(lap_filter(_impulse())[0, 0], expected)


def test_laplacian_select_is_signed_and_picks_larger():
    imp = _impulse()
    # vi = 1 - impulse has the stronger (negated) Laplacian: target = Δvi = -Δimp
    ir, vi = 0.5 * imp, 1.0 - imp
    torch.testing.assert_close(L.laplacian_select_target(ir, vi), lap_filter(vi))
    assert L.laplacian_select_loss(vi, ir, vi).item() == pytest.approx(0.0)
    # F = ir: |0.5 Δimp + Δimp| = 1.5 |Δimp|, mean |Δimp| = 2 / 9
    assert L.laplacian_select_loss(ir, ir, vi).item() == pytest.approx(1.5 * 2 / 9)
    # an unsigned target |Δ| would not give 0 here
    unsigned = (lap_filter(vi) - torch.maximum(lap_filter(ir).abs(), lap_filter(vi).abs())).abs().mean()
    assert unsigned.item() > 0.1
    # mirrored roles
    assert L.laplacian_select_loss(imp, imp, 0.5 * (1 - imp)).item() == pytest.approx(0.0)


def test_laplacian_select_ties_go_to_ir():
    imp = _impulse()
    ir, vi = imp, 1.0 - imp  # |Δir| == |Δvi| everywhere, opposite signs
    assert torch.equal(lap_filter(ir).abs(), lap_filter(vi).abs())
    torch.testing.assert_close(L.laplacian_select_target(ir, vi), lap_filter(ir))
    assert L.laplacian_select_loss(ir, ir, vi).item() == 0.0
    assert L.laplacian_select_loss(vi, ir, vi).item() == pytest.approx(4 / 9)


def test_laplacian_select_matches_kornia_reference():
    f, a, b = (_rand(2, 1, 8, 8, seed=s) for s in (8, 9, 10))
    la, lb, lf = (kornia.filters.laplacian(t, 3) for t in (a, b, f))
    ref = F.l1_loss(lf, torch.where(la.abs() >= lb.abs(), la, lb))
    torch.testing.assert_close(L.laplacian_select_loss(f, a, b), ref)
    torch.testing.assert_close(L.LaplacianSelectLoss()(f, a, b), ref)


# --- SSIM -----------------------------------------------------------------------------------------
def test_ssim_identity_and_range():
    x, y = _rand(2, 1, 16, 16, seed=11), _rand(2, 1, 16, 16, seed=12)
    assert L.ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    s = L.ssim(x, y).item()
    assert -1.0 < s < 0.5  # independent noise: low similarity
    assert L.ssim(x, y).item() == pytest.approx(L.ssim(y, x).item(), abs=1e-7)


def test_ssim_constant_images_hand_value():
    a, b = 0.3, 0.7
    # float64: in float32 the local covariance carries ~1e-6 round-off, 1e-3 of C2
    x, y = (torch.full((1, 1, 13, 13), v, dtype=torch.float64) for v in (a, b))
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # sigmas are 0: contrast/structure term = C2/C2
    valid = L.ssim(x, y, padding="valid", reduction="none")
    assert valid.shape == (1, 1, 3, 3)
    torch.testing.assert_close(valid, torch.full_like(valid, expected))
    same = L.ssim(x, y, reduction="none")  # zero padding: only pixels >= 5 from the border are unaffected
    assert same.shape == (1, 1, 13, 13)
    assert same[0, 0, 6, 6].item() == pytest.approx(expected, rel=1e-5)
    assert abs(same[0, 0, 0, 0].item() - expected) > 1e-3  # the border sees the zeros


@pytest.mark.parametrize("window", [3, 11])
def test_ssim_reflect_equals_kornia_metric(window):
    x, y = _rand(2, 1, 16, 16, seed=13), _rand(2, 1, 16, 16, seed=14)
    y = 0.5 * x + 0.5 * y
    ours = L.ssim(x, y, window_size=window, padding="reflect", reduction="none")
    ref = kornia.metrics.ssim(x, y, window, eps=0.0)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    ours_v = L.ssim(x, y, window_size=window, padding="valid", reduction="none")
    torch.testing.assert_close(ours_v, kornia.metrics.ssim(x, y, window, eps=0.0, padding="valid"),
                               atol=1e-5, rtol=1e-5)


def test_ssim_window():
    w = L.gaussian_window(11, 1.5, dtype=torch.float64)
    assert w.sum().item() == pytest.approx(1.0)
    g = torch.exp(-torch.arange(-5.0, 6.0, dtype=torch.float64) ** 2 / 4.5)
    torch.testing.assert_close(w[0, 0], torch.outer(g, g) / g.sum() ** 2)
    box = L.gaussian_window(3, gaussian=False)
    torch.testing.assert_close(box, torch.full((1, 1, 3, 3), 1 / 9))
    with pytest.raises(ValueError, match="odd"):
        L.gaussian_window(4)


def test_ssim_loss_definition_and_weights():
    f, a, b = (_rand(1, 1, 16, 16, seed=s) for s in (15, 16, 17))
    s_a, s_b = L.ssim(a, f).item(), L.ssim(b, f).item()
    assert L.ssim_loss(f, a, b).item() == pytest.approx(1 - 0.5 * s_a - 0.5 * s_b, abs=1e-6)
    assert L.ssim_loss(f, a, b, weights=(1.0, 0.0)).item() == pytest.approx(1 - s_a, abs=1e-6)
    assert L.ssim_loss(a, a, a).item() == pytest.approx(0.0, abs=1e-6)
    m = L.ssim_loss(f, a, b, reduction="none")
    assert m.shape == f.shape
    torch.testing.assert_close(m.mean(), L.SSIMLoss()(f, a, b))
    torch.testing.assert_close(L.SSIM()(a, f), L.ssim(a, f))


def test_kornia_ssim_term_is_half_one_minus_ssim():
    f, s = _rand(2, 1, 12, 12, seed=18), _rand(2, 1, 12, 12, seed=19)
    s = 0.6 * f + 0.4 * s
    term = L.kornia_ssim_loss_term(f, s)
    torch.testing.assert_close(term, kornia.losses.ssim_loss(f, s, 3))
    ours = L.ssim(f, s, window_size=3, padding="reflect")
    assert term.item() == pytest.approx((1 - ours.item()) / 2, abs=1e-5)
    assert L.kornia_ssim_loss_term(f, f).item() < 1e-6
    torch.testing.assert_close(L.KorniaSSIMLossTerm()(f, s), term)


# --- correlation ---------------------------------------------------------------------------------
def test_pearson_hand_values():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    ys = torch.stack([2 * x[0] + 1, -x[0], torch.tensor([1.0, 3.0, 2.0, 4.0]).view(1, 2, 2)])
    r = L.pearson_correlation(x.expand(3, -1, -1, -1), ys)
    torch.testing.assert_close(r, torch.tensor([1.0, -1.0, 0.8]))


def test_pearson_matches_numpy_and_constant_is_zero():
    x, y = _rand(3, 1, 8, 8, seed=20, dtype=torch.float64), _rand(3, 1, 8, 8, seed=21, dtype=torch.float64)
    y = y + 0.5 * x
    ref = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(x.numpy(), y.numpy())]
    np.testing.assert_allclose(L.pearson_correlation(x, y).numpy(), ref, rtol=1e-10)
    c = torch.full((1, 1, 4, 4), 0.5, requires_grad=True)
    r = L.pearson_correlation(c, x[:1, :, :4, :4])
    assert r.item() == 0.0
    r.backward()
    assert torch.isfinite(c.grad).all()


def test_correlation_loss_form():
    f, a, b = (_rand(2, 1, 8, 8, seed=s) for s in (22, 23, 24))
    r_a, r_b = L.pearson_correlation(f, a), L.pearson_correlation(f, b)
    torch.testing.assert_close(L.correlation_loss(f, a, b, reduction="none"), 1 - 0.5 * (r_a + r_b))
    torch.testing.assert_close(L.correlation_loss(f, a, b), (1 - 0.5 * (r_a + r_b)).mean())
    torch.testing.assert_close(L.CorrelationLoss(weights=(1, 0))(f, a, b), (1 - r_a).mean())
    assert L.correlation_loss(a, a, 3 * a).item() == pytest.approx(0.0, abs=1e-6)
    assert L.correlation_loss(a, 1 - a, 1 - a).item() == pytest.approx(2.0, abs=1e-6)


# --- reconstruction ----------------------------------------------------------------------------
def test_reconstruction_loss():
    x, x_hat = _rand(2, 1, 16, 16, seed=25), _rand(2, 1, 16, 16, seed=26)
    assert L.reconstruction_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    expected = F.mse_loss(x_hat, x) + (1 - L.ssim(x_hat, x))
    torch.testing.assert_close(L.reconstruction_loss(x_hat, x), expected)
    torch.testing.assert_close(L.ReconstructionLoss(ssim_weight=0.0)(x_hat, x), F.mse_loss(x_hat, x))
    # constant images, MSE part by hand: (0.7 - 0.3)^2 = 0.16
    a, b = torch.full((1, 1, 12, 12), 0.3), torch.full((1, 1, 12, 12), 0.7)
    assert L.reconstruction_loss(a, b, ssim_weight=0.0).item() == pytest.approx(0.16)


# --- API contract: errors and reductions ------------------------------------------------------------
THREE_INPUT = [
    L.intensity_max_loss, L.gradient_max_loss, L.laplacian_select_loss, L.ssim_loss, L.correlation_loss,
]


@pytest.mark.parametrize("fn", THREE_INPUT)
def test_errors_name_the_argument(fn):
    good = torch.rand(1, 1, 12, 12)
    with pytest.raises(ValueError, match="`vi`"):
        fn(good, good, torch.rand(1, 1, 12, 11))
    with pytest.raises(ValueError, match=r"`fused`.*\(B, C, H, W\)"):
        fn(torch.rand(12, 12), good, good)
    with pytest.raises(TypeError, match="`ir`"):
        fn(good, torch.ones(1, 1, 12, 12, dtype=torch.uint8), good)
    with pytest.raises(ValueError, match="reduction"):
        fn(good, good, good, reduction="avg")


@pytest.mark.parametrize("fn", THREE_INPUT)
def test_reductions_consistent(fn):
    f, a, b = (_rand(2, 1, 12, 12, seed=s) for s in (27, 28, 29))
    none = fn(f, a, b, reduction="none")
    torch.testing.assert_close(none.mean(), fn(f, a, b))
    torch.testing.assert_close(none.sum(), fn(f, a, b, reduction="sum"))


def test_ssim_bad_padding_and_sizes():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="padding"):
        L.ssim(x, x, padding="same")
    with pytest.raises(ValueError, match="valid padding"):
        L.ssim(x, x, padding="valid")
    with pytest.raises(ValueError, match="reflect padding"):
        L.ssim(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), padding="reflect")


# --- gradchecks (float64, 1x1x8x8, inputs away from ties and kinks) ------------------------------------
def _gradcheck_inputs(seed: int = 10):
    """Independent uniform fused, ir, vi; seed 10 keeps every max / abs / where >= 7e-3 from its kink."""
    g = torch.Generator().manual_seed(seed)
    fused, ir, vi = (torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
    margins = [(ir - vi).abs(), (fused - torch.maximum(ir, vi)).abs()]
    for t in (fused, ir, vi):
        margins += [d.abs() for d in sobel_xy(t)]
    s_f, s_ir, s_vi = sobel_l1(fused), sobel_l1(ir), sobel_l1(vi)
    margins += [(s_ir - s_vi).abs(), (s_f - torch.maximum(s_ir, s_vi)).abs()]
    l_f, l_ir, l_vi = lap_filter(fused), lap_filter(ir), lap_filter(vi)
    margins += [(l_ir.abs() - l_vi.abs()).abs(), (l_f - L.laplacian_select_target(ir, vi)).abs()]
    assert min(m.min().item() for m in margins) > 1e-3, "gradcheck inputs too close to a kink"
    return [t.requires_grad_(True) for t in (fused, ir, vi)]


@pytest.mark.parametrize(
    "fn",
    [
        L.intensity_max_loss,
        L.gradient_max_loss,
        L.laplacian_select_loss,
        L.ssim_loss,
        L.correlation_loss,
        lambda f, a, b: L.ssim(f, a, padding="reflect"),
        lambda f, a, b: L.ssim(f, b, window_size=5, gaussian=False),
        lambda f, a, b: L.kornia_ssim_loss_term(f, a),
        lambda f, a, b: L.pearson_correlation(f, a),
        lambda f, a, b: L.reconstruction_loss(f, a),
    ],
    ids=["intensity", "gradient", "laplacian", "ssim_loss", "correlation", "ssim_reflect", "ssim_box",
         "kornia_ssim", "pearson", "reconstruction"],
)
def test_gradcheck(fn):
    inputs = _gradcheck_inputs()
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)
