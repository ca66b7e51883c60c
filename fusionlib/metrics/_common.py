"""Shared plumbing for the fusion metrics: input checks, the 0-255 scale, windows and filters.

Every metric in this package works on grey images ``(B, 1, H, W)`` whose values are on the
0-255 scale, in float64 (the toolboxes compute in double precision; the one place where a
toolbox computes in float32, scikit-image's SSIM in the CDDFuse evaluator, emulates it
explicitly). :func:`to_levels` is the single place where user input is checked and scaled.

Filters are written as sums of shifted slices (separable, "valid" region), which is exact
in the toolboxes' sense (correlation, no FFT) and runs on any device.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "MetricWarning",
    "as_bchw",
    "to_levels",
    "check_same_shape",
    "warn_undefined",
    "corr_valid_rows",
    "corr_valid_cols",
    "sep_corr_valid",
    "sep_corr_valid_of",
    "box_mean_valid",
    "matlab_gaussian",
    "pearson",
]

DTYPE = torch.float64


class MetricWarning(RuntimeWarning):
    """A metric is undefined for some images (returned as NaN, or as the toolbox's substitute).

    ``metric`` names it and ``why`` says why (empty when raised by hand), so a caller that collects the
    warnings can summarise them without parsing the message.
    """

    def __init__(self, message: str, metric: str = "", why: str = "") -> None:
        super().__init__(message)
        self.metric, self.why = metric, why


def as_bchw(x: torch.Tensor, name: str) -> torch.Tensor:
    """Return ``x`` as ``(B, 1, H, W)``; ``(H, W)`` is accepted for one image.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: any other shape (colour images must be converted to grey first).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 2:
        x = x[None, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(
            f"{name}: expected a grey image batch of shape (B, 1, H, W) (or one (H, W) image), "
            f"got shape {tuple(x.shape)}; convert colour images to grey (BT.601 Y) first"
        )
    if x.shape[-1] < 2 or x.shape[-2] < 2 or x.shape[0] < 1:
        raise ValueError(f"{name}: image of shape {tuple(x.shape)} is too small")
    return x


def to_levels(
    x: torch.Tensor, name: str, *, data_range: float | None = None, quantize: bool = True
) -> torch.Tensor:
    """Check an image batch and put it on the toolboxes' 0-255 scale, float64.

    Scaling rule (stated once, used by every preset):

    * ``uint8`` input is taken as grey levels 0..255 as it is (``data_range`` is ignored);
    * other integer input must already hold levels 0..255;
    * floating input is taken to lie in ``[0, data_range]`` (default ``1.0``) and is multiplied
      by ``255 / data_range``; with ``quantize=True`` it is then rounded half up to integer
      levels, ``floor(255 x + 0.5)``: what MATLAB's ``im2uint8`` and an 8-bit PNG save do, so
      the metric sees what the toolbox would read back from disk.

    Raises:
        ValueError: non-finite values, or values outside ``[0, data_range]`` (by more than
            ``1e-6 * data_range``), or integer values outside 0..255.
    """
    x = as_bchw(x, name)
    if x.dtype == torch.bool:
        raise ValueError(f"{name}: boolean images are not supported; give grey levels")
    if x.dtype == torch.uint8:
        return x.to(DTYPE)
    if not x.is_floating_point():
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{name}: integer images must hold levels 0..255, got range [{lo}, {hi}]")
        return x.to(DTYPE)
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name}: {n_bad} non-finite value(s) (NaN or inf)")
    dr = 1.0 if data_range is None else float(data_range)
    if not dr > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    lo, hi = float(x.min()), float(x.max())
    tol = 1e-6 * dr
    if lo < -tol or hi > dr + tol:
        raise ValueError(
            f"{name}: values must lie in [0, {dr:g}] (data_range={dr:g}), got range [{lo:.6g}, {hi:.6g}]; "
            "clamp the output, or pass data_range=255 for images on the 0-255 scale"
        )
    y = x.to(DTYPE) * (255.0 / dr)
    if quantize:
        y = torch.floor(y + 0.5).clamp_(0.0, 255.0)
    else:
        y = y.clamp_(0.0, 255.0)
    return y


def check_same_shape(**images: torch.Tensor) -> None:
    """All images must share one shape ``(B, 1, H, W)``; the message names them."""
    shapes = {k: tuple(v.shape) for k, v in images.items()}
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise ValueError(f"shape mismatch: {desc}; fused and source images must have the same shape")
    devices = {v.device for v in images.values()}
    if len(devices) > 1:
        raise ValueError(f"images are on different devices: {sorted(str(d) for d in devices)}")


def warn_undefined(metric: str, bad: torch.Tensor, what: str) -> None:
    """Warn (``MetricWarning``) when ``bad`` (bool ``(B,)``) flags images where ``metric`` is undefined."""
    n = int(bad.sum())
    if n:
        msg = f"{metric}: undefined for {n} of {bad.numel()} image(s): {what}"
        warnings.warn(MetricWarning(msg, metric, what), stacklevel=3)


# --------------------------------------------------------------------------------------- filters
def corr_valid_rows(x: torch.Tensor, taps: Sequence[float], stride: int = 1) -> torch.Tensor:
    """1-D correlation along dim -2, "valid" region, optional stride: ``(*, H, W) -> (*, H', W)``.

    ``out[r] = sum_t taps[t] * x[stride * r + t]``. Written as slices so it is exact,
    device-agnostic and fast for the short kernels used here.
    """
    n = len(taps)
    h = x.shape[-2] - n + 1
    if h < 1:
        raise ValueError(f"image of height {x.shape[-2]} is smaller than the {n}-tap window")
    h_out = (h - 1) // stride + 1
    span = stride * (h_out - 1) + 1
    out = x[..., 0:span:stride, :] * taps[0]
    for t in range(1, n):
        if taps[t] != 0.0:
            out.add_(x[..., t : t + span : stride, :], alpha=float(taps[t]))
    return out


def corr_valid_cols(x: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """1-D correlation along dim -1, "valid" region: ``(*, H, W) -> (*, H, W - n + 1)``."""
    n = len(taps)
    w = x.shape[-1] - n + 1
    out = x[..., 0:w] * taps[0]
    for t in range(1, n):
        if taps[t] != 0.0:
            out.add_(x[..., t : t + w], alpha=float(taps[t]))
    return out


_BLOCK_ELEMS = 1 << 19  # ~4 MB of float64 per block: keeps the tap loop in cache


def sep_corr_valid(
    x: torch.Tensor, taps_v: Sequence[float], taps_h: Sequence[float] | None = None, stride: int = 1
) -> torch.Tensor:
    """Separable 2-D correlation, "valid" region (MATLAB ``filter2(w, x, 'valid')`` for a separable,
    symmetric ``w``). ``(*, H, W) -> (*, H - n + 1, W - n + 1)`` (then sub-sampled by ``stride``).

    The image is processed in blocks of rows so that the per-tap passes stay in cache.
    """
    taps_h = taps_v if taps_h is None else taps_h
    if stride != 1:
        y = corr_valid_rows(x, taps_v, stride)
        y = corr_valid_rows(y.transpose(-1, -2), taps_h, stride)
        return y.transpose(-1, -2)
    nv, nh = len(taps_v), len(taps_h)
    h_out, w_out = x.shape[-2] - nv + 1, x.shape[-1] - nh + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"image {tuple(x.shape[-2:])} is smaller than the {nv}x{nh} window")
    lead = x.shape[:-2]
    per_row = max(1, x[..., 0, :].numel())
    bs = max(8, _BLOCK_ELEMS // per_row)
    if bs >= h_out:
        return corr_valid_cols(corr_valid_rows(x, taps_v), taps_h)
    out = torch.empty(*lead, h_out, w_out, dtype=x.dtype, device=x.device)
    for r0 in range(0, h_out, bs):
        r1 = min(h_out, r0 + bs)
        out[..., r0:r1, :] = corr_valid_cols(corr_valid_rows(x[..., r0 : r1 + nv - 1, :], taps_v), taps_h)
    return out


def sep_corr_valid_of(
    make: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    taps_v: Sequence[float],
    taps_h: Sequence[float] | None = None,
) -> torch.Tensor:
    """:func:`sep_corr_valid` of ``make(x)`` without building ``make(x)`` for the whole image.

    ``make`` must act row by row (e.g. stacking ``x`` with pointwise products of its channels:
    ``(*, C, h, W) -> (*, C', h, W)``); it is called on blocks of rows of ``x``, so the stacked maps
    exist only block by block, in cache. The result equals ``sep_corr_valid(make(x), ...)`` bit for bit.
    """
    taps_h = taps_v if taps_h is None else taps_h
    nv, nh = len(taps_v), len(taps_h)
    h_out, w_out = x.shape[-2] - nv + 1, x.shape[-1] - nh + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"image {tuple(x.shape[-2:])} is smaller than the {nv}x{nh} window")
    first = make(x[..., : min(x.shape[-2], nv + 7), :])
    per_row = max(1, first[..., 0, :].numel())
    bs = max(8, _BLOCK_ELEMS // per_row)
    out = torch.empty(*first.shape[:-2], h_out, w_out, dtype=first.dtype, device=first.device)
    for r0 in range(0, h_out, bs):
        r1 = min(h_out, r0 + bs)
        blk = make(x[..., r0 : r1 + nv - 1, :])
        out[..., r0:r1, :] = corr_valid_cols(corr_valid_rows(blk, taps_v), taps_h)
    return out


def box_mean_valid(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over ``size x size`` windows, "valid" region: ``(*, H, W) -> (*, H - size + 1, W - size + 1)``.

    Window sums by shifted slices (:func:`sep_corr_valid` with unit taps), then ``/ size**2``. On
    data whose values and sums are exactly representable (integer levels, and their 2 x 2 means
    and products in MEF-SSIM's coarser scales) every partial sum is exact, so the result is the
    correctly rounded ``sum / size**2`` whatever the summation order (scikit-image's uniform
    filter, the MEF-SSIM box window). Faster than cumulative sums along H, which stride badly.
    """
    return sep_corr_valid(x, [1.0] * size).div_(float(size * size))


def matlab_gaussian(n: int, sigma: float) -> list[float]:
    """1-D factor of MATLAB ``fspecial('gaussian', n, sigma)`` (normalised to sum 1).

    The 2-D window is the outer product of this vector with itself (fspecial's ``eps * max``
    cut-off never bites for the sizes used here, which is checked).
    """
    r = (n - 1) / 2.0
    xs = [math.exp(-((i - r) ** 2) / (2.0 * sigma * sigma)) for i in range(n)]
    if min(xs) ** 2 < 2.220446049250313e-16 * max(xs) ** 2:
        raise ValueError("fspecial cut-off would zero part of this window; not separable")
    s = sum(xs)
    return [v / s for v in xs]


# --------------------------------------------------------------------------------------- stats
def pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation over (H, W) per image: ``(B, 1, H, W) x2 -> (B,)``; NaN when a variance is 0
    (MATLAB ``corr2`` convention)."""
    xc = x - x.mean(dim=(-2, -1), keepdim=True)
    yc = y - y.mean(dim=(-2, -1), keepdim=True)
    num = (xc * yc).sum(dim=(-3, -2, -1))
    den = torch.sqrt((xc * xc).sum(dim=(-3, -2, -1)) * (yc * yc).sum(dim=(-3, -2, -1)))
    return torch.where(den > 0, num / den, float("nan"))
