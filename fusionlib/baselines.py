"""Classical fusion baselines: pixel average and pixel maximum.

Both take ``ir, vi`` of shape ``(B, 1, H, W)`` in [0, 1] and return ``(B, 1, H, W)``.
They have no parameters: the floor every learned method should clear.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["average_fusion", "max_fusion", "AverageFusion", "MaxFusion", "BASELINES"]


def average_fusion(ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    """F = (ir + vi) / 2.

    Examples:
        >>> average_fusion(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).unique()
        tensor([0.5000])
    """
    _check(ir, vi)
    return 0.5 * (ir + vi)


def max_fusion(ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    """F = max(ir, vi): keeps bright thermal targets, loses dark visible texture."""
    _check(ir, vi)
    return torch.maximum(ir, vi)


def _check(ir: torch.Tensor, vi: torch.Tensor) -> None:
    if ir.shape != vi.shape:
        raise ValueError(f"ir and vi must have the same shape, got {tuple(ir.shape)} and {tuple(vi.shape)}")


class AverageFusion(nn.Module):
    """Module form of :func:`average_fusion` (so baselines go through the same pipeline)."""

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return average_fusion(ir, vi)


class MaxFusion(nn.Module):
    """Module form of :func:`max_fusion`."""

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return max_fusion(ir, vi)


BASELINES = {"average": average_fusion, "max": max_fusion}
