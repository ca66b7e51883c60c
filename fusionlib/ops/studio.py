r"""The colour restoration of RPFNet's released ``test.py`` (``YCbCr2RGB(VIS, F)``): studio-swing BT.601.

The suite restores colour in **full range** (``fusionlib.data.merge_luma``: the visible image's full-range
Cb/Cr with the fused Y, the inverse of the split that produced the network's input). The released code
instead takes Cb/Cr from the visible RGB with the 8-bit **studio-swing** BT.601 formulas and rebuilds RGB
with the studio-swing inverse, while the fused Y it gets is full range (the network was fed
``0.299 R + 0.587 G + 0.114 B``):

.. math::

    C_b = -0.148 R - 0.291 G + 0.439 B + 128,\qquad C_r = 0.439 R - 0.368 G - 0.071 B + 128

    R = 1.164 (Y' - 16) + 1.596 (C_r - 128),\quad G = 1.164 (Y' - 16) - 0.392 (C_b - 128) - 0.813 (C_r - 128),
    \quad B = 1.164 (Y' - 16) + 2.017 (C_b - 128)

with R, G, B in 0..255 and ``Y' = 255 F``. Treating a full-range Y as studio range stretches the luminance
by 255/219 ≈ 1.164 and shifts it by −16·1.164 ≈ −18.6 grey levels (black below Y = 16, white above
Y ≈ 235), so the released colour images are more contrasted and clipped at both ends. These coefficients
reproduce the authors' saved colour image of MSRS 00004N (``golden/rpfnet/full``) to within one grey
level (rounding) on every pixel.
"""

from __future__ import annotations

import torch

__all__ = ["studio_chroma", "studio_ycbcr_to_rgb", "released_colour"]


def _check(name: str, x: torch.Tensor, channels: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 3 or x.shape[-3] != channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be (*, {channels}, H, W), got {shape}")


def studio_chroma(rgb: torch.Tensor) -> torch.Tensor:
    """Studio-swing BT.601 Cb, Cr on the 0..255 scale from RGB in [0, 1]: ``(*, 3, H, W) -> (*, 2, H, W)``.

    Examples:
        >>> studio_chroma(torch.ones(3, 2, 2))[:, 0, 0].round()     # white has neutral chroma, 128
        tensor([128., 128.])
    """
    _check("studio_chroma: rgb", rgb, 3)
    r, g, b = (255.0 * rgb).unbind(-3)
    cb = -0.148 * r - 0.291 * g + 0.439 * b + 128.0
    cr = 0.439 * r - 0.368 * g - 0.071 * b + 128.0
    return torch.stack((cb, cr), dim=-3)


def studio_ycbcr_to_rgb(y255: torch.Tensor, cbcr255: torch.Tensor) -> torch.Tensor:
    """Studio-swing inverse on the 0..255 scale: ``Y (*, 1, H, W)``, ``CbCr (*, 2, H, W)`` -> RGB 0..255, unclipped.

    Examples:
        >>> y = torch.tensor([16.0, 235.0]).view(2, 1, 1, 1)
        >>> studio_ycbcr_to_rgb(y, torch.full((2, 2, 1, 1), 128.0)).flatten(1).round()
        tensor([[  0.,   0.,   0.],
                [255., 255., 255.]])
    """
    _check("studio_ycbcr_to_rgb: y255", y255, 1)
    _check("studio_ycbcr_to_rgb: cbcr255", cbcr255, 2)
    yy = 1.164 * (y255 - 16.0)
    cb, cr = (cbcr255 - 128.0).split(1, dim=-3)
    return torch.cat((yy + 1.596 * cr, yy - 0.392 * cb - 0.813 * cr, yy + 2.017 * cb), dim=-3)


def released_colour(fused_y: torch.Tensor, vi_rgb: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
    """RPFNet ``test.py``'s colour image: studio-swing chroma of ``vi_rgb`` with the full-range fused Y.

    Args:
        fused_y: the network output ``(*, 1, H, W)`` in [0, 1] (full-range luma).
        vi_rgb: the visible image ``(*, 3, H, W)`` in [0, 1].
        quantize: round and saturate to 8-bit levels, as ``cv2.imwrite`` does (default); else only clip.

    Returns:
        RGB ``(*, 3, H, W)`` in [0, 1].

    Examples:
        >>> grey = torch.full((1, 3, 2, 2), 0.5)
        >>> float(released_colour(torch.full((1, 1, 2, 2), 0.5), grey)[0, 0, 0, 0] * 255)   # 1.164 (127.5 - 16)
        130.0
    """
    _check("released_colour: fused_y", fused_y, 1)
    _check("released_colour: vi_rgb", vi_rgb, 3)
    if fused_y.shape[-2:] != vi_rgb.shape[-2:]:
        raise ValueError(f"released_colour: fused_y {tuple(fused_y.shape)} and vi_rgb {tuple(vi_rgb.shape)} "
                         "differ in size")
    rgb = studio_ycbcr_to_rgb(255.0 * fused_y, studio_chroma(vi_rgb.to(fused_y.dtype)))
    if quantize:
        rgb = rgb.round()
    return rgb.clamp(0.0, 255.0) / 255.0
