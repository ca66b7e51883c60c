"""Auto-encoder reconstruction loss (DMNet stage I): MSE plus (1 - SSIM).

DMNet's training code is not public (``notebooks/released_code.md`` §DMNet); the paper trains the encoder/decoder
for 15 epochs in stage I with a reconstruction objective. We implement the usual form
L_rec = ||x_hat - x||_2^2 (mean) + lambda * (1 - SSIM(x_hat, x)) with lambda = 1 and SSIM from
:func:`fusionlib.losses.ssim.ssim` (Gaussian 11x11, zero padding). CDDFuse, whose blocks DMNet reuses,
uses ``5 * kornia SSIMLoss(11) + MSE`` instead: pass ``ssim_weight`` to change lambda, and note
kornia's term is (1 - SSIM) / 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusionlib.losses._common import check_images
from fusionlib.losses.ssim import ssim

__all__ = ["reconstruction_loss", "ReconstructionLoss"]


def reconstruction_loss(
    x_hat: torch.Tensor, x: torch.Tensor, *, ssim_weight: float = 1.0, window_size: int = 11
) -> torch.Tensor:
    r"""Scalar reconstruction loss :math:`\mathrm{MSE}(\hat x, x) + \lambda (1 - \mathrm{SSIM}(\hat x, x))`.

    Args:
        x_hat: reconstruction, :math:`(B, C, H, W)`.
        x: target image, same shape, in [0, 1].
        ssim_weight: lambda (1.0).
        window_size: SSIM Gaussian window (11, sigma 1.5).

    Examples:
        >>> x = torch.rand(1, 1, 16, 16)
        >>> float(reconstruction_loss(x, x))
        0.0
    """
    check_images("reconstruction_loss", x_hat=x_hat, x=x)
    return F.mse_loss(x_hat, x) + ssim_weight * (1.0 - ssim(x_hat, x, window_size=window_size))


class ReconstructionLoss(nn.Module):
    """Module form of :func:`reconstruction_loss`; ``forward(x_hat, x)``."""

    def __init__(self, *, ssim_weight: float = 1.0, window_size: int = 11) -> None:
        super().__init__()
        self.ssim_weight, self.window_size = ssim_weight, window_size

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(x_hat, x, ssim_weight=self.ssim_weight, window_size=self.window_size)
