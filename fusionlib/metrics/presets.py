"""Named metric conventions ("presets") and the one-call :func:`evaluate`.

A preset fixes every choice that makes published tables disagree: how the sources are combined
(sum or mean), the log base, grey-level rounding, data ranges, windows and the PSNR definition.
Each preset reproduces one public toolbox, checked number for number in
``tests/test_metrics_reference.py``:

``"tang"``
    Linfeng-Tang/Evaluation-for-Image-Fusion (MATLAB; used by SIBA, SeAFusion and many IVIF
    papers), reference values produced with GNU Octave. EN/MI in bits, MI summed (with the
    toolbox's 254/255 joint-histogram merge), SSIM = **mean** of MATLAB ``ssim`` over the sources,
    VIF = **sum**, MS_SSIM = the MEF-SSIM variant, PSNR = ``20 log10(255 / sqrt(MSE_[0,1]))``
    (48.13 dB above the usual value), MSE on [0, 1], AG divided by (H-1)(W-1). ``Nabf`` is the
    toolbox's call ``analysis_nabf(A, B, F)``; ``Nabf_argfix`` is ``analysis_nabf(F, A, B)``.
``"cddfuse"``
    MMIF-CDDFuse ``utils/Evaluator.py`` with its pinned scikit-image 0.19.2. MI in **nats**,
    summed; VIF (CDDFuse's ``VIFF``: the same VIFp) summed, a NaN source counted as 1.0; SSIM
    **summed** with scikit-image defaults and data range 2 in float32 (what 0.19.2 did without a
    ``data_range``); PSNR with the fused image's own maximum as peak; MSE on 0-255; CC averaged.
``"lkc"``
    LKC-FUNet's ``evaluator.py``: the CDDFuse evaluator with ``ssim(..., data_range=255)``.

Extras (not in the toolbox, computed only when asked for, e.g. ``metrics="all"``, which also
includes Tang's slow ``FMI_dct`` and ``FMI_w``, each a second or more per 256x256 pair): Wang's
multi-scale SSIM (``MS_SSIM_wang``, combined over the sources like the preset's SSIM) and the
RPFNet-style PSD measures (``PSD_fid_A``, ``PSD_fid_B``, ``PSD_entropy``; our definitions, see
:mod:`fusionlib.metrics.psd`).

Inputs: fused F and sources A (infrared / MRI), B (visible / CT / PET / SPECT), ``(B, 1, H, W)``
tensors on any device. ``uint8`` tensors are grey levels; float tensors are taken to lie in
``[0, data_range]`` (default 1) and are scaled to 0-255 and rounded half up to integer levels,
as both toolboxes read 8-bit images from disk (``quantize=False`` keeps the fractional levels).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from fusionlib.metrics import basic, information, psd, qabf, ssim, vif
from fusionlib.metrics._common import check_same_shape, to_levels

__all__ = ["Metric", "Preset", "Ctx", "PRESETS", "evaluate", "list_metrics", "higher_is_better", "get_preset"]


class Ctx:
    """One evaluation call: the images on the 0-255 scale, and a memo so that metrics sharing an
    intermediate (Gaussian moment maps, Sobel gradients) compute it once."""

    def __init__(self, f: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
        self.f, self.a, self.b = f, a, b
        self._memo: dict[str, Any] = {}

    @property
    def sources(self) -> torch.Tensor:
        return self.memo("sources", lambda: torch.cat([self.a, self.b], dim=1))

    def memo(self, key: str, thunk: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = thunk()
        return self._memo[key]


Fn = Callable[[Ctx], torch.Tensor]


@dataclass(frozen=True)
class Metric:
    """One metric under one convention: ``fn(ctx) -> (B,)`` on the 0-255 scale."""

    name: str
    fn: Fn
    higher_is_better: bool
    doc: str
    default: bool = True  # computed when evaluate(metrics=None)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    metrics: dict[str, Metric]
    aliases: dict[str, str] = field(default_factory=dict)
    quantize: bool = True

    def resolve(self, name: str) -> str:
        key = self.aliases.get(name, name)
        if key not in self.metrics:
            raise ValueError(
                f"metric {name!r} is not defined in preset {self.name!r}; "
                f"available: {', '.join(self.metrics)}"
            )
        return key


def _m(name: str, fn: Fn, doc: str, *, higher: bool = True, default: bool = True) -> tuple[str, Metric]:
    return name, Metric(name, fn, higher, doc, default)


def _reduce(per_source: torch.Tensor, how: str) -> torch.Tensor:
    """``(B, 2)`` per-source values -> ``(B,)``: ``"sum"`` or ``"mean"`` over the sources."""
    s = per_source.sum(1)
    return s if how == "sum" else 0.5 * s


# ---- shared intermediates (computed once per evaluate call)
def _g11(c: Ctx) -> torch.Tensor:
    return c.memo("g11_rep", lambda: ssim.gauss11_replicate_maps(c.sources, c.f))


def _nabf_grads(c: Ctx):
    return c.memo("nabf_grads", lambda: tuple(qabf.nabf_gradients(x) for x in (c.f, c.a, c.b)))


def _tang_ssim(c: Ctx) -> torch.Tensor:
    return _reduce(ssim.ssim_matlab_per_source(c.f, c.sources, maps=_g11(c)), "mean")


def _tang_ms_ssim(c: Ctx) -> torch.Tensor:
    g = _g11(c)[..., 5:-5, 5:-5]
    return ssim.ms_ssim_mef(c.sources, c.f, scale1_gauss=g)


def _nabf_q(c: Ctx, x: str, y: str) -> torch.Tensor:
    """Petrovic's Q between images ``x`` and ``y`` (names among "fab"); symmetric, so memoised once per pair."""
    key = "nabf_q_" + "".join(sorted(x + y))

    def thunk() -> torch.Tensor:
        g = dict(zip("fab", _nabf_grads(c)))
        return qabf.petrovic_q(*g[x], *g[y])

    return c.memo(key, thunk)


def _nabf_toolbox(c: Ctx) -> torch.Tensor:
    gf, ga, gb = _nabf_grads(c)
    q = (_nabf_q(c, "b", "a"), _nabf_q(c, "f", "a"))
    return qabf.nabf(c.a, c.b, c.f, grads=(ga, gb, gf), q=q)  # analysis_nabf(A, B, F)


def _nabf_fixed(c: Ctx) -> torch.Tensor:
    gf, ga, gb = _nabf_grads(c)
    q = (_nabf_q(c, "a", "f"), _nabf_q(c, "b", "f"))
    return qabf.nabf(c.f, c.a, c.b, grads=(gf, ga, gb), q=q)


def _skimage_ssim(data_range: float) -> Fn:
    return lambda c: _reduce(ssim.ssim_skimage_per_source(c.f, c.sources, data_range=data_range), "sum")


def _wang(how: str) -> Fn:
    return lambda c: _reduce(
        torch.stack([ssim.ms_ssim_wang(c.f, s, data_range=255.0) for s in (c.a, c.b)], 1), how
    )


_EXTRA_PSD = [
    _m("PSD_fid_A", lambda c: psd.psd_fidelity(c.f, c.a),
       "R^2 of A's log radial PSD by F's (ours, RPFNet Fig. 6 style)", default=False),
    _m("PSD_fid_B", lambda c: psd.psd_fidelity(c.f, c.b),
       "R^2 of B's log radial PSD by F's (ours)", default=False),
    _m("PSD_entropy", lambda c: psd.spectral_entropy(c.f),
       "normalised spectral entropy of F, 0..1 (ours)", default=False),
]

_TANG = Preset(
    "tang",
    "Linfeng-Tang/Evaluation-for-Image-Fusion (MATLAB), as run in GNU Octave for the reference values",
    dict(
        [
            _m("EN", lambda c: basic.entropy(c.f), "entropy of F, bits"),
            _m("SF", lambda c: basic.spatial_frequency(c.f), "spatial frequency of F"),
            _m("SD", lambda c: basic.std(c.f), "population standard deviation of F"),
            _m("PSNR", lambda c: basic.psnr(c.f, c.a, c.b, convention="tang"),
               "20 log10(255 / sqrt(MSE on [0,1])): +48.13 dB vs the usual PSNR"),
            _m("MSE", lambda c: basic.mse(c.f, c.a, c.b, unit_range=True),
               "MSE on [0,1] data, mean over sources", higher=False),
            _m("MI", lambda c: information.mutual_information(c.f, c.a, c.b, base=2.0, merge_top_levels=True),
               "MI(F;A) + MI(F;B), bits, levels 254/255 merged in the joint histogram"),
            _m("VIF", lambda c: vif.vif(c.f, c.a, c.b), "VIFp(A,F) + VIFp(B,F), a sum"),
            _m("AG", lambda c: basic.average_gradient(c.f, convention="tang"),
               "average gradient, / (H-1)(W-1)"),
            _m("CC", lambda c: basic.cc(c.f, c.a, c.b), "mean correlation of F with the sources"),
            _m("SCD", lambda c: basic.scd(c.f, c.a, c.b), "sum of the correlations of differences"),
            _m("Qabf", lambda c: qabf.qabf(c.f, c.a, c.b), "Xydeas-Petrovic edge preservation"),
            _m("Nabf", _nabf_toolbox,
               "artefacts, the toolbox's call analysis_nabf(A, B, F) (arguments out of order)", higher=False),
            _m("SSIM", _tang_ssim,
               "0.5 (SSIM(F,A) + SSIM(F,B)), MATLAB ssim defaults (Gaussian 11, sigma 1.5, replicate)"),
            _m("MS_SSIM", _tang_ms_ssim,
               "analysis_ms_ssim: 3-scale MEF-SSIM of F against both sources (not Wang's MS-SSIM)"),
            _m("FMI_pixel", lambda c: information.fmi(c.f, c.a, c.b, feature="edge"),
               "feature MI over 3x3 windows of Sobel edge maps (Octave edge())"),
            _m("Nabf_argfix", _nabf_fixed,
               "artefacts, analysis_nabf(F, A, B) as its signature declares", higher=False),
            _m("FMI_dct", lambda c: information.fmi(c.f, c.a, c.b, feature="dct"),
               "feature MI over 3x3 windows of the 2-D DCT (slow: ~1 s per 256x256 pair)", default=False),
            _m("FMI_w", lambda c: information.fmi(c.f, c.a, c.b, feature="wavelet"),
               "feature MI over 3x3 windows of the one-level 102-tap dmey DWT (MATLAB dwt2, 'sym'); "
               "matches the Octave reference to 1e-7 (slow: ~2x FMI_dct)", default=False),
            _m("MS_SSIM_wang", _wang("mean"),
               "Wang's 5-scale MS-SSIM (L = 255), mean over sources (extra, not in the toolbox)",
               default=False),
            *_EXTRA_PSD,
        ]
    ),
)


def _cddfuse_common(ssim_range: float, ssim_doc: str) -> list[tuple[str, Metric]]:
    return [
        _m("EN", lambda c: basic.entropy(c.f), "entropy of F, bits"),
        _m("SD", lambda c: basic.std(c.f), "population standard deviation of F"),
        _m("SF", lambda c: basic.spatial_frequency(c.f), "spatial frequency of F"),
        _m("AG", lambda c: basic.average_gradient(c.f, convention="cddfuse"),
           "average gradient, mean over H W"),
        _m("MI", lambda c: information.mutual_information(c.f, c.a, c.b, base=math.e),
           "MI(F;A) + MI(F;B), nats (sklearn mutual_info_score)"),
        _m("MSE", lambda c: basic.mse(c.f, c.a, c.b), "MSE on 0-255, mean over sources", higher=False),
        _m("CC", lambda c: basic.cc(c.f, c.a, c.b), "mean correlation of F with the sources"),
        _m("PSNR", lambda c: basic.psnr(c.f, c.a, c.b, convention="cddfuse"),
           "10 log10(max(F)^2 / MSE_255): the fused image's maximum as peak"),
        _m("SCD", lambda c: basic.scd(c.f, c.a, c.b), "sum of the correlations of differences"),
        _m("VIF", lambda c: vif.vif(c.f, c.a, c.b, nan_as_one=True),
           "CDDFuse 'VIFF' = VIFp(A,F) + VIFp(B,F), a sum; NaN per source -> 1.0"),
        _m("Qabf", lambda c: qabf.qabf(c.f, c.a, c.b), "Xydeas-Petrovic edge preservation"),
        _m("SSIM", _skimage_ssim(ssim_range), ssim_doc),
    ]


_CDDFUSE = Preset(
    "cddfuse",
    "MMIF-CDDFuse utils/Evaluator.py with its pinned scikit-image 0.19.2",
    dict(
        _cddfuse_common(2.0, "SSIM(F,A) + SSIM(F,B), a sum (0..2): skimage defaults, data range 2, float32")
        + [
            _m("SSIM_dr255", _skimage_ssim(255.0), "as SSIM but data_range=255 (LKC-FUNet's call)",
               default=False),
            _m("MS_SSIM_wang", _wang("sum"), "Wang's 5-scale MS-SSIM (L = 255), summed over sources (extra)",
               default=False),
            *_EXTRA_PSD,
        ]
    ),
    aliases={"VIFF": "VIF", "SSIM_dr2": "SSIM"},
)

_LKC = Preset(
    "lkc",
    "LKC-FUNet evaluator.py: the CDDFuse evaluator with SSIM data_range=255",
    dict(
        _cddfuse_common(
            255.0, "SSIM(F,A) + SSIM(F,B), a sum (0..2): skimage defaults, data_range=255, float32"
        )
        + [
            _m("SSIM_dr2", _skimage_ssim(2.0), "as SSIM but data range 2 (CDDFuse's effective call)",
               default=False),
            _m("MS_SSIM_wang", _wang("sum"), "Wang's 5-scale MS-SSIM (L = 255), summed over sources (extra)",
               default=False),
            *_EXTRA_PSD,
        ]
    ),
    aliases={"VIFF": "VIF", "SSIM_dr255": "SSIM"},
)

PRESETS: dict[str, Preset] = {p.name: p for p in (_TANG, _CDDFUSE, _LKC)}


def get_preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    return PRESETS[preset]


def list_metrics(preset: str | Preset = "tang", *, extras: bool = True) -> list[str]:
    """Metric names of a preset, in table order; ``extras=False`` gives the toolbox's own set.

    Examples:
        >>> list_metrics("cddfuse", extras=False)[:4]
        ['EN', 'SD', 'SF', 'AG']
    """
    p = get_preset(preset)
    return [k for k, m in p.metrics.items() if extras or m.default]


def higher_is_better(metric: str, preset: str | Preset = "tang") -> bool:
    """``False`` for Nabf, Nabf_argfix and MSE; ``True`` for every other metric.

    Examples:
        >>> higher_is_better("Nabf"), higher_is_better("SSIM", "cddfuse")
        (False, True)
    """
    p = get_preset(preset)
    return p.metrics[p.resolve(metric)].higher_is_better


def _select(p: Preset, metrics: str | Iterable[str] | None) -> list[str]:
    if metrics is None:
        return list_metrics(p, extras=False)
    if isinstance(metrics, str):
        if metrics == "all":
            return list_metrics(p)
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    names = list(metrics)
    if not names:
        raise ValueError("metrics: empty selection")
    return names


@torch.no_grad()
def evaluate(
    fused: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    preset: str | Preset = "tang",
    metrics: str | Iterable[str] | None = None,
    *,
    data_range: float | None = None,
    quantize: bool | None = None,
    errors: str = "raise",
) -> dict[str, torch.Tensor]:
    """Compute fusion metrics under a named convention: ``{name: Tensor (B,)}`` (float64, input device).

    Args:
        fused, a, b: ``(B, 1, H, W)`` (or ``(H, W)``) grey images: F, source A (infrared / MRI),
            source B (visible / CT ...). ``uint8`` = levels 0..255; float = values in
            ``[0, data_range]``.
        preset: ``"tang"``, ``"cddfuse"``, ``"lkc"`` (see the module docstring) or a :class:`Preset`.
        metrics: ``None`` (the toolbox's own set), ``"all"`` (with our extras), a list of names or
            a comma-separated string. Aliases such as CDDFuse's ``VIFF`` are accepted; the
            result is keyed by the names you asked for.
        data_range: maximum of the float input scale (default 1.0); ignored for ``uint8``.
        quantize: round to integer levels after scaling (default: the preset's, True).
        errors: ``"raise"``, or ``"nan"``: a metric that cannot be computed on these images (MS-SSIM on
            an image under 176 px) is NaN, with a ``RuntimeWarning`` naming it and why; the others are
            still computed. Bad inputs (shapes, ranges, names) raise either way.

    Raises:
        ValueError: shape mismatch, non-finite values, values outside the range, unknown metric.

    Examples:
        >>> f = torch.rand(2, 1, 64, 64); a = torch.rand(2, 1, 64, 64); b = torch.rand(2, 1, 64, 64)
        >>> out = evaluate(f, a, b, "cddfuse", ["EN", "VIFF"])
        >>> sorted(out), out["EN"].shape
        (['EN', 'VIFF'], torch.Size([2]))
    """
    p = get_preset(preset)
    q = p.quantize if quantize is None else quantize
    names = _select(p, metrics)
    keys = [p.resolve(n) for n in names]
    f = to_levels(fused, "fused", data_range=data_range, quantize=q)
    a_ = to_levels(a, "a", data_range=data_range, quantize=q)
    b_ = to_levels(b, "b", data_range=data_range, quantize=q)
    check_same_shape(fused=f, a=a_, b=b_)
    if errors not in ("raise", "nan"):
        raise ValueError(f"evaluate: errors must be 'raise' or 'nan', got {errors!r}")
    ctx = Ctx(f, a_, b_)
    out: dict[str, torch.Tensor] = {}
    for name, key in zip(names, keys):
        try:
            out[name] = p.metrics[key].fn(ctx)
        except ValueError as e:
            if errors == "raise":
                raise
            warnings.warn(f"{name} cannot be computed on these images, reported as NaN: {e}", RuntimeWarning,
                          stacklevel=2)
            out[name] = torch.full((f.shape[0],), float("nan"), dtype=torch.float64, device=f.device)
    return out
