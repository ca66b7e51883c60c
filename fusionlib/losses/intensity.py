"""Max-intensity loss: pull the fused image towards the brighter source, pixel by pixel.

Used as L_int by SIBA (``loss/loss.py``: L1(F, max(VI_Y, IR)), weight 0.1), LKC-FUNet
(``losses/DMFNet_loss.py``, weight 1) and DMNet's stage II (paper only).
"""

from __future__ import annotations

import torch
from torch import nn

from fusionlib.losses._common import check_images, check_reduction, reduce

__all__ = ["intensity_max_loss", "IntensityMaxLoss"]


def intensity_max_loss(
    fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    r"""L1 distance between the fused image and the element-wise maximum of the sources.

    .. math::

        L_{int} = \frac{1}{HW} \lVert F - \max(I_{ir}, I_{vi}) \rVert_1

    Args:
        fused, ir, vi: images of shape :math:`(B, C, H, W)` in [0, 1] (``vi`` is the Y channel).
        reduction: ``'mean'`` (``F.l1_loss``, what the papers use) | ``'sum'`` | ``'none'``
            (the per-pixel ``|F - max|`` map, :math:`(B, C, H, W)`).

    Examples:
        >>> ir = torch.tensor([[[[0.2, 0.8]]]])
        >>> vi = torch.tensor([[[[0.5, 0.1]]]])
        >>> intensity_max_loss(torch.full((1, 1, 1, 2), 0.5), ir, vi)   # (|0.5-0.5| + |0.5-0.8|) / 2
        tensor(0.1500)
    """
    check_images("intensity_max_loss", fused=fused, ir=ir, vi=vi)
    check_reduction("intensity_max_loss", reduction)
    return reduce((fused - torch.maximum(ir, vi)).abs(), reduction)


class IntensityMaxLoss(nn.Module):
    """Module form of :func:`intensity_max_loss`; ``forward(fused, ir, vi)``."""

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction("IntensityMaxLoss", reduction)
        self.reduction = reduction

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return intensity_max_loss(fused, ir, vi, reduction=self.reduction)
