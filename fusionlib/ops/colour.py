"""Colour conversions, BT.601 full range (the convention of every paper in the suite).

Y  = 0.299 R + 0.587 G + 0.114 B
Cb = 0.564 (B - Y) + 0.5,  Cr = 0.713 (R - Y) + 0.5      (kornia, SIBA's test.py)
"""

from __future__ import annotations

import torch
from kornia.color import rgb_to_ycbcr as _k_rgb_to_ycbcr
from kornia.color import ycbcr_to_rgb as _k_ycbcr_to_rgb

__all__ = ["rgb_to_gray", "rgb_to_ycbcr", "ycbcr_to_rgb", "BT601"]

BT601 = (0.299, 0.587, 0.114)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] ``(*, 3, H, W)`` -> YCbCr ``(*, 3, H, W)``, BT.601 full range (kornia).

    Examples:
        >>> rgb_to_ycbcr(torch.ones(1, 3, 2, 2))[0, :, 0, 0]
        tensor([1.0000, 0.5000, 0.5000])
    """
    return _k_rgb_to_ycbcr(rgb)


def ycbcr_to_rgb(ycbcr: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """YCbCr ``(*, 3, H, W)`` -> RGB ``(*, 3, H, W)``, BT.601 full range; clamped to [0, 1] by default."""
    rgb = _k_ycbcr_to_rgb(ycbcr)
    return rgb.clamp(0.0, 1.0) if clamp else rgb


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """Luminance Y = 0.299 R + 0.587 G + 0.114 B: ``(*, 3, H, W)`` -> ``(*, 1, H, W)``.

    Examples:
        >>> rgb_to_gray(torch.ones(2, 3, 4, 4)).shape
        torch.Size([2, 1, 4, 4])
    """
    if rgb.shape[-3] != 3:
        raise ValueError(f"expected 3 channels in dim -3, got shape {tuple(rgb.shape)}")
    r, g, b = rgb.unbind(-3)
    return (BT601[0] * r + BT601[1] * g + BT601[2] * b).unsqueeze(-3)
