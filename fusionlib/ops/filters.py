"""Gradient and Laplacian filters, with the padding each paper's code uses.

All take ``(B, C, H, W)`` and return the same shape (per channel, depthwise).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sobel_xy", "sobel_l1", "laplacian", "SOBEL_X", "SOBEL_Y", "LAPLACIAN_8"]

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.t().contiguous()
# kornia's laplacian(x, 3) kernel: 8-neighbour, normalised by the sum of |k| = 16.
LAPLACIAN_8 = torch.tensor([[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]]) / 16.0


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, padding: str) -> torch.Tensor:
    c = x.shape[1]
    k = kernel.to(dtype=x.dtype, device=x.device).expand(c, 1, 3, 3)
    if padding == "zeros":
        return F.conv2d(x, k, padding=1, groups=c)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode=padding), k, groups=c)


def sobel_xy(x: torch.Tensor, padding: str = "zeros") -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel responses (Gx, Gy) as cross-correlation, ``(B, C, H, W)`` each.

    ``padding`` is ``"zeros"`` (the fusion losses' ``F.conv2d(..., padding=1)``),
    ``"reflect"`` or ``"replicate"``.

    Examples:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)   # ramp: +1 along x, +4 along y
        >>> gx, gy = sobel_xy(x)
        >>> float(gx[0, 0, 1, 1]), float(gy[0, 0, 1, 1])
        (8.0, 32.0)
    """
    return _depthwise(x, SOBEL_X, padding), _depthwise(x, SOBEL_Y, padding)


def sobel_l1(x: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """|Gx| + |Gy|: the gradient magnitude of the fusion losses (SIBA, LKC-FUNet, DMNet)."""
    gx, gy = sobel_xy(x, padding)
    return gx.abs() + gy.abs()


def laplacian(x: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Signed 8-neighbour Laplacian ``[[1,1,1],[1,-8,1],[1,1,1]] / 16`` with reflect padding.

    Equals ``kornia.filters.laplacian(x, 3)`` (what SIBA's L_lap uses).

    Examples:
        >>> laplacian(torch.ones(1, 1, 5, 5)).abs().max().item()
        0.0
    """
    return _depthwise(x, LAPLACIAN_8, padding)
