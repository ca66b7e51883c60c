"""Pearson correlation between images, and a correlation loss (AIDFusion's "corr" term).

AIDFusion (AAAI'26) prints its correlation term as Eq. 3, ``L_corr = 1 / (corr_IR + corr_VI + eps)``;
that form (with its guard) is :func:`fusionlib.diils.corr_loss_paper`. The form here is **ours**, not the
paper's, kept as the switch ``corr_form="linear"`` of DIILS: one minus the weighted mean of the per-sample
Pearson correlations of the fused image with each source (``1 - (r(F, ir) + r(F, vi)) / 2``), bounded and
defined when the correlations sum to zero or less. No code was released and Eq. 2's weights are not given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fusionlib.losses._common import check_images, check_reduction, reduce

__all__ = ["pearson_correlation", "correlation_loss", "CorrelationLoss"]


def pearson_correlation(x: torch.Tensor, y: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    r"""Pearson correlation coefficient per sample, over all of C, H, W: ``(B, C, H, W) -> (B,)``.

    .. math::

        r = \frac{\sum (x - \bar x)(y - \bar y)}
                 {\sqrt{\max\big(\sum (x - \bar x)^2 \sum (y - \bar y)^2,\ \varepsilon^2\big)}}

    The clamp makes a constant image give r = 0 (not NaN) with a finite gradient.

    Examples:
        >>> x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
        >>> y = torch.tensor([1.0, 3.0, 2.0, 4.0]).view(1, 1, 2, 2)
        >>> pearson_correlation(x, y)    # 4 / sqrt(5 * 5)
        tensor([0.8000])
    """
    check_images("pearson_correlation", x=x, y=y)
    dx = x.flatten(1) - x.flatten(1).mean(dim=1, keepdim=True)
    dy = y.flatten(1) - y.flatten(1).mean(dim=1, keepdim=True)
    den = ((dx * dx).sum(1) * (dy * dy).sum(1)).clamp_min(eps**2).sqrt()
    return (dx * dy).sum(1) / den


def correlation_loss(
    fused: torch.Tensor,
    ir: torch.Tensor,
    vi: torch.Tensor,
    *,
    weights: Sequence[float] = (0.5, 0.5),
    eps: float = 1e-8,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""One minus the weighted correlation of the fused image with both sources (range [0, 2]).

    .. math::

        L_{corr} = 1 - \big(w_{ir}\, r(F, I_{ir}) + w_{vi}\, r(F, I_{vi})\big),
        \quad (w_{ir}, w_{vi}) = (0.5, 0.5)

    Our form for AIDFusion's correlation term (the paper gives no code; see the module docstring).

    Args:
        fused, ir, vi: images of shape :math:`(B, C, H, W)`.
        weights: ``(w_ir, w_vi)``.
        reduction: ``'mean'`` over the batch | ``'sum'`` | ``'none'`` (per sample, :math:`(B,)`).

    Examples:
        >>> ir = torch.rand(2, 1, 8, 8)
        >>> correlation_loss(ir, ir, 2 * ir + 1, reduction="none").abs().max() < 1e-6  # float rounding only
        tensor(True)
    """
    check_images("correlation_loss", fused=fused, ir=ir, vi=vi)
    check_reduction("correlation_loss", reduction)
    if len(weights) != 2:
        raise ValueError(f"correlation_loss: weights must be (w_ir, w_vi), got {weights!r}")
    r = weights[0] * pearson_correlation(fused, ir, eps=eps) + weights[1] * pearson_correlation(
        fused, vi, eps=eps
    )
    return reduce(1.0 - r, reduction)


class CorrelationLoss(nn.Module):
    """Module form of :func:`correlation_loss`; ``forward(fused, ir, vi)``."""

    def __init__(
        self, *, weights: Sequence[float] = (0.5, 0.5), eps: float = 1e-8, reduction: str = "mean"
    ) -> None:
        super().__init__()
        check_reduction("CorrelationLoss", reduction)
        self.weights, self.eps, self.reduction = tuple(weights), eps, reduction

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return correlation_loss(fused, ir, vi, weights=self.weights, eps=self.eps, reduction=self.reduction)
