"""Training recipes: one frozen dataclass per (paper, profile), read by the training loop.

Each paper file defines ``<PAPER>_RECIPES = {"paper": Recipe(...), "lab": ..., "smoke": ...}``.
``paper`` is the published schedule (every field annotated with its source in the paper file);
``lab`` fits a class session on one GPU; ``smoke`` is a handful of CPU steps for CI (DESIGN.md, Profiles).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Recipe"]


@dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule and data settings of one training run.

    Either ``epochs`` (passes over the training set) or ``max_steps`` (optimiser steps) bounds the run;
    when both are given the run stops at whichever comes first.

    Args:
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: initial learning rate.
        weight_decay: optimiser weight decay.
        betas: Adam(W) betas.
        scheduler: ``"none"``, ``"step"`` (``lr * gamma ** (epoch // step_size)``, floored at ``min_lr``)
            or ``"cosine"``.
        step_size: epochs per step for ``"step"``.
        gamma: decay factor for ``"step"``.
        min_lr: learning-rate floor.
        clip_grad_norm: max global grad norm (``clip_grad_norm_``), None for no clipping.
        batch_size: images per step.
        crop_size: square training crop side in pixels.
        crop_border: random crops keep at least this many pixels from the image border.
        epochs: epochs, or None.
        max_steps: steps, or None.
        datasets: names of the training sets.
        notes: where the numbers come from.

    Examples:
        >>> r = Recipe(lr=1e-4, epochs=2)
        >>> [r.lr_at(e) for e in (0, 1)]
        [0.0001, 0.0001]
    """

    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: str = "none"
    step_size: int = 1
    gamma: float = 1.0
    min_lr: float = 0.0
    clip_grad_norm: float | None = None
    batch_size: int = 4
    crop_size: int = 128
    crop_border: int = 0
    epochs: int | None = None
    max_steps: int | None = None
    datasets: tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"Recipe.optimizer must be 'adam', 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.scheduler not in ("none", "step", "cosine"):
            raise ValueError(f"Recipe.scheduler must be 'none', 'step' or 'cosine', got {self.scheduler!r}")
        if self.epochs is None and self.max_steps is None:
            raise ValueError("Recipe needs epochs or max_steps")
        for name in ("lr", "batch_size", "crop_size", "step_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Recipe.{name} must be > 0, got {getattr(self, name)!r}")

    def lr_at(self, epoch: int, total_epochs: int | None = None) -> float:
        """The learning rate during ``epoch`` (0-based) under the schedule (``"cosine"`` needs a total)."""
        if self.scheduler == "step":
            return max(self.lr * self.gamma ** (epoch // self.step_size), self.min_lr)
        if self.scheduler == "cosine":
            import math

            total = total_epochs or self.epochs
            if not total:
                raise ValueError("cosine schedule needs total_epochs (or Recipe.epochs)")
            progress = min(epoch, total) / total
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        return self.lr

    def lr_lambda(self, total_epochs: int | None = None):
        """A factor function for ``torch.optim.lr_scheduler.LambdaLR`` (stepped once per epoch)."""
        return lambda epoch: self.lr_at(epoch, total_epochs) / self.lr
