"""LKC-FUNet's loss: ``L = L_ssim + L_int + L_grad`` (all weights 1), from ``losses/DMFNet_loss.py``.

- ``L_ssim = 1 - (0.5 SSIM(ir, F) + 0.5 SSIM(vi, F))``: SwinFusion's SSIM (11x11 Gaussian, sigma 1.5, zero
  padding, L = 1), averaged over the two sources (:func:`fusionlib.losses.ssim_loss`);
- ``L_int = ||F - max(ir, vi)||_1`` (:func:`fusionlib.losses.intensity_max_loss`);
- ``L_grad = || S(F) - max(S(ir), S(vi)) ||_1``, S = |Sobel_x| + |Sobel_y| (:func:`fusionlib.losses.gradient_max_loss`).

The released ``--weight [1, 1, 0.0005, 0.00056]`` argument is never used; the three terms are summed.
Images ``(B, 1, H, W)`` in [0, 1] (the range we train and test in; see ``fusionlib.models.lkc_funet``).
"""

from __future__ import annotations

import torch
from torch import nn

from fusionlib.losses.gradient import gradient_max_loss
from fusionlib.losses.intensity import intensity_max_loss
from fusionlib.losses.ssim import ssim_loss

__all__ = ["LKCLoss", "lkc_loss"]


def lkc_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, w_ssim: float = 1.0, w_int: float = 1.0,
             w_grad: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``w_ssim L_ssim + w_int L_int + w_grad L_grad``; returns ``(total, {"ssim", "int", "grad"})`` (terms detached).

    Examples:
        >>> x = torch.rand(1, 1, 16, 16)
        >>> total, terms = lkc_loss(x, x, x)
        >>> round(float(total), 6), sorted(terms)
        (0.0, ['grad', 'int', 'ssim'])
    """
    l_ssim = ssim_loss(fused, ir, vi)
    l_int = intensity_max_loss(fused, ir, vi)
    l_grad = gradient_max_loss(fused, ir, vi)
    total = w_ssim * l_ssim + w_int * l_int + w_grad * l_grad
    return total, {"ssim": l_ssim.detach(), "int": l_int.detach(), "grad": l_grad.detach()}


class LKCLoss(nn.Module):
    """Module form of :func:`lkc_loss`: ``LKCLoss()(fused, ir, vi) -> (total, terms)``.

    Examples:
        >>> ir, vi = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
        >>> total, terms = LKCLoss()(torch.maximum(ir, vi), ir, vi)
        >>> float(terms["int"])
        0.0
    """

    def __init__(self, *, w_ssim: float = 1.0, w_int: float = 1.0, w_grad: float = 1.0) -> None:
        super().__init__()
        self.w_ssim, self.w_int, self.w_grad = w_ssim, w_int, w_grad

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return lkc_loss(fused, ir, vi, w_ssim=self.w_ssim, w_int=self.w_int, w_grad=self.w_grad)
