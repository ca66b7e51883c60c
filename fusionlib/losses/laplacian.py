"""Laplacian-selection loss (SIBA's L_lap, taken from CHITNet's ``JointGrad``).

At each pixel the target is the *signed* Laplacian of the source whose |Laplacian| is larger,
and the fused Laplacian is pulled to it with an L1 distance. SIBA weights it by 10 (alpha_3).
The Laplacian is kornia's ``laplacian(x, 3)``: ``[[1,1,1],[1,-8,1],[1,1,1]] / 16``, reflect padding
(:func:`fusionlib.ops.filters.laplacian`).
"""

from __future__ import annotations

import torch
from torch import nn

from fusionlib.losses._common import check_images, check_reduction, reduce
from fusionlib.ops.filters import laplacian

__all__ = ["laplacian_select_target", "laplacian_select_loss", "LaplacianSelectLoss"]


def laplacian_select_target(ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    r"""Signed Laplacian of the source with the larger magnitude, :math:`(B, C, H, W)`.

    .. math::

        T = \begin{cases} \Delta I_{ir} & |\Delta I_{ir}| \ge |\Delta I_{vi}| \\
                          \Delta I_{vi} & \text{otherwise} \end{cases}

    Ties go to ``ir`` (CHITNet compares ``|Δir| - |Δvi| >= 0``). SIBA's released ``loss/loss.py`` passes
    the sources in this order (``JointGrad(fuse, ir, vi)``, read for the SIBA review); ties only occur
    where both magnitudes are equal, e.g. flat regions where both are 0 and the choice does not matter.

    Examples:
        >>> ir = torch.zeros(1, 1, 3, 3); ir[..., 1, 1] = 1.0
        >>> laplacian_select_target(ir, 0.5 * ir)[0, 0]
        tensor([[ 0.2500,  0.1250,  0.2500],
                [ 0.1250, -0.5000,  0.1250],
                [ 0.2500,  0.1250,  0.2500]])
    """
    lap_ir, lap_vi = laplacian(ir), laplacian(vi)
    return torch.where(lap_ir.abs() >= lap_vi.abs(), lap_ir, lap_vi)


def laplacian_select_loss(
    fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    r"""L1 distance between :math:`\Delta F` and :func:`laplacian_select_target` (SIBA Sec. 3 L_lap).

    .. math::

        L_{lap} = \frac{1}{HW} \lVert \Delta F - T(I_{ir}, I_{vi}) \rVert_1

    Args:
        fused, ir, vi: images of shape :math:`(B, C, H, W)` in [0, 1]; ``H, W >= 2`` (reflect padding).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (per-pixel map, :math:`(B, C, H, W)`).

    Examples:
        >>> ir = torch.zeros(1, 1, 3, 3); ir[..., 1, 1] = 1.0
        >>> laplacian_select_loss(ir, ir, 0.5 * ir)
        tensor(0.)
        >>> laplacian_select_loss(torch.zeros_like(ir), ir, 0.5 * ir)   # sum |Δ impulse| / 9 = 2 / 9
        tensor(0.2222)
    """
    check_images("laplacian_select_loss", fused=fused, ir=ir, vi=vi)
    check_reduction("laplacian_select_loss", reduction)
    return reduce((laplacian(fused) - laplacian_select_target(ir, vi)).abs(), reduction)


class LaplacianSelectLoss(nn.Module):
    """Module form of :func:`laplacian_select_loss`; ``forward(fused, ir, vi)``."""

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction("LaplacianSelectLoss", reduction)
        self.reduction = reduction

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return laplacian_select_loss(fused, ir, vi, reduction=self.reduction)
