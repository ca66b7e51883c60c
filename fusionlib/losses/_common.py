"""Input checks and reductions shared by the loss terms (private)."""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "sum", "none")


def check_images(where: str, **images: torch.Tensor) -> torch.Tensor:
    """Check that every keyword is a floating ``(B, C, H, W)`` tensor of one shape; return the first.

    ``where`` names the calling function so the error says who complained.
    """
    first_name, first = None, None
    for name, x in images.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{where}: `{name}` must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"{where}: `{name}` must have shape (B, C, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{where}: `{name}` must be a floating tensor in [0, 1], got dtype {x.dtype}")
        if first is None:
            first_name, first = name, x
        elif x.shape != first.shape:
            raise ValueError(
                f"{where}: `{name}` has shape {tuple(x.shape)}, "
                f"expected {tuple(first.shape)} like `{first_name}`"
            )
    assert first is not None
    return first


def check_reduction(where: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{where}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``'mean'`` (over every element), ``'sum'`` or ``'none'``."""
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    return x
