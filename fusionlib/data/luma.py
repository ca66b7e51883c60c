"""Fuse on luminance, restore colour from the visible image: split into Y and CbCr, merge back.

BT.601 full range (kornia; the convention of SIBA's ``test.py`` and of the suite):
``Y = 0.299 R + 0.587 G + 0.114 B``, ``Cb = 0.564 (B - Y) + 0.5``, ``Cr = 0.713 (R - Y) + 0.5``.
The usual pipeline: ``y, cbcr = split_luma(vi_rgb)``; ``fused_y = model(ir, y)``;
``rgb = merge_luma(fused_y.clamp(0, 1), cbcr)``.
"""

from __future__ import annotations

import torch

from fusionlib.ops.colour import rgb_to_ycbcr, ycbcr_to_rgb

__all__ = ["split_luma", "merge_luma", "NEUTRAL_CHROMA"]

NEUTRAL_CHROMA = 0.5  # Cb = Cr = 0.5 is "no colour" in full-range YCbCr on [0, 1]


def split_luma(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(*, 3, H, W)`` RGB in [0, 1] -> ``(Y (*, 1, H, W), CbCr (*, 2, H, W))``.

    A gray input ``(*, 1, H, W)`` gives itself as Y and neutral chroma (0.5).

    Examples:
        >>> y, cbcr = split_luma(torch.ones(3, 4, 5))
        >>> y.shape, cbcr.shape, float(cbcr.mean())
        (torch.Size([1, 4, 5]), torch.Size([2, 4, 5]), 0.5)
    """
    if rgb.ndim < 3 or rgb.shape[-3] not in (1, 3):
        raise ValueError(f"split_luma expects (*, 3, H, W) or (*, 1, H, W), got {tuple(rgb.shape)}")
    if rgb.shape[-3] == 1:
        shape = (*rgb.shape[:-3], 2, *rgb.shape[-2:])
        return rgb, torch.full(shape, NEUTRAL_CHROMA, dtype=rgb.dtype, device=rgb.device)
    ycbcr = rgb_to_ycbcr(rgb)
    return ycbcr[..., :1, :, :], ycbcr[..., 1:, :, :]


def merge_luma(y: torch.Tensor, cbcr: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """``Y (*, 1, H, W)`` + ``CbCr (*, 2, H, W)`` -> RGB ``(*, 3, H, W)``, clamped to [0, 1] by default.

    Inverse of :func:`split_luma` up to float error (and the clamp).

    Examples:
        >>> rgb = torch.rand(2, 3, 4, 4)
        >>> torch.allclose(merge_luma(*split_luma(rgb)), rgb, atol=1e-5)
        True
    """
    if y.ndim < 3 or y.shape[-3] != 1:
        raise ValueError(f"merge_luma: y must be (*, 1, H, W), got {tuple(y.shape)}")
    if cbcr.ndim != y.ndim or cbcr.shape[-3] != 2 or cbcr.shape[-2:] != y.shape[-2:]:
        raise ValueError(
            f"merge_luma: cbcr must be (*, 2, H, W) matching y {tuple(y.shape)}, got {tuple(cbcr.shape)}"
        )
    return ycbcr_to_rgb(torch.cat([y, cbcr.to(y.dtype)], dim=-3), clamp=clamp)
