"""Max-gradient (Sobel) loss: the fused gradient should match the stronger source gradient.

Used as L_sobel by SIBA (weight 1) and L_grad by LKC-FUNet (weight 1), and in DMNet's stage II
(paper only). Both released codes use S = |Gx| + |Gy| with a 3x3 Sobel and zero padding.
"""

from __future__ import annotations

import torch
from torch import nn

from fusionlib.losses._common import check_images, check_reduction, reduce
from fusionlib.ops.filters import sobel_l1

__all__ = ["gradient_max_loss", "GradientMaxLoss"]


def gradient_max_loss(
    fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    r"""L1 distance between the fused gradient and the element-wise maximum of the source gradients.

    .. math::

        L_{grad} = \frac{1}{HW} \big\lVert S(F) - \max(S(I_{ir}), S(I_{vi})) \big\rVert_1,
        \qquad S = |G_x| + |G_y|

    ``S`` is :func:`fusionlib.ops.filters.sobel_l1` (3x3 Sobel, zero padding), applied per channel.

    Args:
        fused, ir, vi: images of shape :math:`(B, C, H, W)` in [0, 1].
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (per-pixel map, :math:`(B, C, H, W)`).

    Examples:
        >>> ir = torch.zeros(1, 1, 3, 3); ir[..., 1, 1] = 1.0    # impulse: S(ir) = 2 on the 8 neighbours
        >>> vi = torch.zeros(1, 1, 3, 3)
        >>> gradient_max_loss(vi, ir, vi)                         # 8 * 2 / 9
        tensor(1.7778)
    """
    check_images("gradient_max_loss", fused=fused, ir=ir, vi=vi)
    check_reduction("gradient_max_loss", reduction)
    target = torch.maximum(sobel_l1(ir), sobel_l1(vi))
    return reduce((sobel_l1(fused) - target).abs(), reduction)


class GradientMaxLoss(nn.Module):
    """Module form of :func:`gradient_max_loss`; ``forward(fused, ir, vi)``."""

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction("GradientMaxLoss", reduction)
        self.reduction = reduction

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return gradient_max_loss(fused, ir, vi, reduction=self.reduction)
