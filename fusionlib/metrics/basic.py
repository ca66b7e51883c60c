"""Statistical fusion metrics: EN, SD, SF, AG, MSE, PSNR, CC, SCD.

All functions take images on the 0-255 scale (see :func:`fusionlib.metrics._common.to_levels`),
``(B, 1, H, W)``, and return one value per image, ``(B,)`` float64. Where the toolboxes disagree,
a ``convention`` argument names the toolbox:

* ``"tang"``: Linfeng-Tang/Evaluation-for-Image-Fusion (MATLAB; ``*_evaluation.m``,
  ``analysis_SCD.m``);
* ``"cddfuse"``: MMIF-CDDFuse ``utils/Evaluator.py`` (NumPy), which LKC-FUNet copies.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from fusionlib.metrics._common import pearson, warn_undefined

__all__ = ["entropy", "std", "spatial_frequency", "average_gradient", "mse", "psnr", "cc", "scd"]

Convention = Literal["tang", "cddfuse"]


def _levels_long(x: torch.Tensor) -> torch.Tensor:
    # np.uint8(np.round(img)): round half to even, as numpy (inputs are integers in the presets).
    return torch.round(x).clamp_(0, 255).long()


def entropy(x: torch.Tensor, *, base: float = 2.0) -> torch.Tensor:
    """EN: Shannon entropy of the 256-bin grey-level histogram, ``-sum p log p``; bits by default.

    Both toolboxes agree: Tang ``entropy(uint8)`` (MATLAB ``imhist``), CDDFuse
    ``np.bincount(uint8(round(F)))`` with ``log2``. ``(B, 1, H, W) -> (B,)``.

    Examples:
        >>> float(entropy(torch.full((1, 1, 4, 4), 7.0))[0])
        0.0
        >>> float(entropy(torch.tensor([[0.0, 255.0]]).view(1, 1, 1, 2).expand(1, 1, 2, 2)))
        1.0
    """
    b = x.shape[0]
    lv = _levels_long(x).reshape(b, -1)
    n = lv.shape[1]
    idx = lv + 256 * torch.arange(b, device=x.device)[:, None]
    hist = torch.bincount(idx.flatten(), minlength=256 * b).view(b, 256).to(torch.float64)
    p = hist / n
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), 0.0)
    return -plogp.sum(1) / math.log(base) + 0.0  # + 0.0: no -0.0 for a constant image


def std(x: torch.Tensor) -> torch.Tensor:
    """SD: population standard deviation of the grey levels (Tang ``SD_evaluation``, CDDFuse ``np.std``)."""
    return x.flatten(1).std(dim=1, unbiased=False)


def spatial_frequency(x: torch.Tensor) -> torch.Tensor:
    """SF = sqrt(RF^2 + CF^2), RF^2 = mean of squared vertical neighbour differences, CF^2 horizontal.

    Tang ``SF_evaluation`` and CDDFuse ``SF`` compute the same number (VIFB's differs).
    """
    dv = x[..., 1:, :] - x[..., :-1, :]
    dh = x[..., :, 1:] - x[..., :, :-1]
    return torch.sqrt(dv.square().flatten(1).mean(1) + dh.square().flatten(1).mean(1))


def _gradient_xy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB ``gradient``: central differences inside, one-sided at the borders.

    With 'replicate' padding the border difference x[1] - x[0] comes out of the same slice; only
    the interior is halved.
    """
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = p[..., 1:-1, 2:] - p[..., 1:-1, :-2]
    gy = p[..., 2:, 1:-1] - p[..., :-2, 1:-1]
    gx[..., :, 1:-1] *= 0.5
    gy[..., 1:-1, :] *= 0.5
    return gx, gy


def average_gradient(x: torch.Tensor, *, convention: Convention = "tang") -> torch.Tensor:
    """AG: average of sqrt((Gx^2 + Gy^2) / 2) with MATLAB-``gradient`` differences.

    * ``"tang"`` (``AG_evaluation.m``): the sum is divided by ``(H - 1)(W - 1)``;
    * ``"cddfuse"``: the mean over all ``H W`` pixels (about 0.4 % smaller on 640x480).
    """
    gx, gy = _gradient_xy(x)
    s = torch.sqrt((gx.square() + gy.square()) / 2).flatten(1)
    h, w = x.shape[-2:]
    if convention == "tang":
        return s.sum(1) / ((h - 1) * (w - 1))
    if convention == "cddfuse":
        return s.mean(1)
    raise ValueError(f"unknown AG convention {convention!r}; use 'tang' or 'cddfuse'")


def mse(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, unit_range: bool = False) -> torch.Tensor:
    """MSE = (mean((F - A)^2) + mean((F - B)^2)) / 2.

    ``unit_range=True`` divides the data by 255 first (Tang: MSE on [0, 1] data);
    ``False`` keeps the 0-255 scale (CDDFuse).
    """
    m = 0.5 * ((fused - a).square().flatten(1).mean(1) + (fused - b).square().flatten(1).mean(1))
    return m / 255.0**2 if unit_range else m


def psnr(
    fused: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    convention: Literal["tang", "cddfuse", "peak255"] = "peak255",
) -> torch.Tensor:
    """PSNR against the two sources, with the source-averaged MSE.

    * ``"peak255"``: the usual ``10 log10(255^2 / MSE_255)``;
    * ``"tang"`` (``PSNR_evaluation.m``): ``20 log10(255 / sqrt(MSE_[0,1]))``, i.e. the usual value
      plus ``20 log10(255)`` = 48.13 dB;
    * ``"cddfuse"``: ``10 log10(max(F)^2 / MSE_255)``, the fused image's own maximum as the peak.

    A fused image equal to both sources gives ``+inf`` (MSE 0), an all-black one under ``"cddfuse"`` gives
    ``-inf`` (peak 0); either comes with a ``RuntimeWarning`` saying which images and why.
    """
    m255 = mse(fused, a, b)
    if convention == "peak255":
        out = 10 * torch.log10(255.0**2 / m255)
    elif convention == "tang":
        out = 20 * torch.log10(255.0 / torch.sqrt(m255 / 255.0**2))
    elif convention == "cddfuse":
        peak = fused.flatten(1).amax(1)
        out = 10 * torch.log10(peak.square() / m255)
    else:
        raise ValueError(f"unknown PSNR convention {convention!r}; use 'peak255', 'tang' or 'cddfuse'")
    same = m255 == 0
    warn_undefined("PSNR", same, "the fused image equals both sources (MSE 0): +inf, and a mean including it is inf")
    warn_undefined("PSNR", ~same & ~torch.isfinite(out),
                   "the fused image is all black (peak 0 under the cddfuse convention): -inf")
    return out


def cc(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CC = (r(A, F) + r(B, F)) / 2, Pearson correlations (a mean in both toolboxes).

    NaN, with a :class:`MetricWarning`, when F or a source is constant.
    """
    r = 0.5 * (pearson(a, fused) + pearson(b, fused))
    warn_undefined("CC", torch.isnan(r), "a constant image has no correlation")
    return r


def scd(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SCD (Aslantas & Bendes 2015): r(F - B, A) + r(F - A, B), a sum (0..2).

    Same in Tang (``analysis_SCD.m``, ``corr2``) and CDDFuse. NaN, with a warning, when a
    correlation is undefined (constant source, or F - source constant).
    """
    r = pearson(fused - b, a) + pearson(fused - a, b)
    warn_undefined("SCD", torch.isnan(r), "a source, or F minus a source, is constant")
    return r
