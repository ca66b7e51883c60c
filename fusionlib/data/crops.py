"""Evaluation and display crops: the centre, or the window where the infrared targets are."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["crop_box", "centre_box", "target_box"]

Box = tuple[int, int, int, int]  # (top, left, height, width)


def _hw(x: torch.Tensor, hw: Sequence[int]) -> tuple[int, int]:
    h, w = x.shape[-2:]
    return min(int(hw[0]), h), min(int(hw[1]), w)


def centre_box(x: torch.Tensor, hw: Sequence[int]) -> Box:
    """``(top, left, h, w)`` of the centred ``hw`` window of ``x`` (``(..., H, W)``), clipped to the image."""
    th, tw = _hw(x, hw)
    h, w = x.shape[-2:]
    return (h - th) // 2, (w - tw) // 2, th, tw


def target_box(ir: torch.Tensor, hw: Sequence[int], stride: int = 8) -> Box:
    """``(top, left, h, w)`` of the ``hw`` window holding the most infrared energy above the image's mean.

    Thermal targets (people, cars, a lesion on MRI) are what is brighter than the scene's mean in the first
    image, so the window that sums the most of ``relu(ir - mean(ir))`` contains them; a dark crop of foliage
    scores zero. ``ir``: ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)``; windows on a ``stride`` grid.

    Examples:
        >>> ir = torch.zeros(1, 1, 64, 64); ir[..., 40:48, 8:16] = 1
        >>> top, left, h, w = target_box(ir, (16, 16))
        >>> top <= 40 and top + h >= 48 and left <= 8 and left + w >= 16
        True
    """
    th, tw = _hw(ir, hw)
    x = ir.reshape(1, 1, *ir.shape[-2:]).float()
    excess = (x - x.mean()).clamp(min=0)
    if not bool(excess.any()):
        return centre_box(ir, hw)
    scores = F.avg_pool2d(excess, (th, tw), stride=stride)
    k = int(scores.flatten().argmax())
    top, left = divmod(k, scores.shape[-1])
    return top * stride, left * stride, th, tw


def crop_box(x: torch.Tensor, box: Box | None) -> torch.Tensor:
    """``x[..., top:top+h, left:left+w]`` (``box=None``: ``x``)."""
    if box is None:
        return x
    t, l, h, w = box
    return x[..., t:t + h, l:l + w]

