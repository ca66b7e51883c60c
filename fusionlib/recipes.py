"""Training recipes: one frozen dataclass per (paper, profile), read by the training loop.

Each paper file defines ``<PAPER>_RECIPES = {"paper": Recipe(...), "lab": ..., "smoke": ...}``.
``paper`` is the published schedule (every field annotated with its source in the paper file);
``lab`` fits a class session on one GPU; ``smoke`` is a handful of CPU steps for CI (DESIGN.md, Profiles).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Recipe", "recipe_dataset", "recipe_loader", "recipe_epochs", "make_optimizer", "make_scheduler",
           "train_with_recipe"]


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
        momentum: SGD momentum.
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
        model: the registered model configuration the recipe trains (None: the method's own; a narrow
            configuration for a CPU recipe, e.g. ``"lkc_funet_narrow"``).
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
    momentum: float = 0.9
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
    model: str | None = None
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


# --- from a recipe to the objects a training run needs ----------------------------------------------------
def recipe_dataset(recipe: Recipe, *, seed: int = 0, crop: int | None = None, data_dir=None, cache: bool = True):
    """The training pairs the recipe names, as random crops of the bundled sets.

    ``recipe.datasets`` holds ``"name/split"`` strings (``"msrs/train"``, ``"harvard_pet/train"``); a
    bare ``"name"`` means its ``train`` split, and a ``*N`` suffix (``"msrs/train*270"``) takes each
    pair N times per epoch with its own crop. ``crop`` overrides ``recipe.crop_size``.
    """
    from fusionlib.data import bundled_concat

    if not recipe.datasets:
        raise ValueError("this recipe names no training sets (Recipe.datasets is empty)")
    specs = [_dataset_spec(d) for d in recipe.datasets]
    return bundled_concat(*specs, crop=crop or recipe.crop_size, mode="train", min_border=recipe.crop_border,
                          seed=seed, cache=cache, data_dir=data_dir)


def _dataset_spec(text: str) -> tuple[str, str, int]:
    """``"msrs/train*270"`` -> ``("msrs", "train", 270)``; ``"roadscene"`` -> ``("roadscene", "train", 1)``."""
    name, _, times = text.partition("*")
    if times and not times.isdigit():
        raise ValueError(f"recipe dataset {text!r}: the part after '*' must be a whole number of repeats")
    name, _, split = name.partition("/")
    return name, split or "train", int(times or 1)


def recipe_loader(recipe: Recipe, *, seed: int = 0, batch_size: int | None = None, crop: int | None = None,
                  data_dir=None):
    """``make_loader`` over :func:`recipe_dataset` (shuffled from ``seed``, last partial batch dropped)."""
    from fusionlib.data import collate_pairs
    from fusionlib.train import make_loader

    ds = recipe_dataset(recipe, seed=seed, crop=crop, data_dir=data_dir)
    bs = min(batch_size or recipe.batch_size, len(ds))
    return make_loader(ds, bs, shuffle=True, seed=seed, drop_last=True, collate_fn=collate_pairs)


def recipe_epochs(recipe: Recipe, steps_per_epoch: int) -> tuple[int, int | None]:
    """``(epochs, max_steps_per_epoch)`` that realise the recipe's budget on a loader of this length.

    A recipe bounded by ``max_steps`` runs ``ceil(max_steps / steps_per_epoch)`` epochs, each cut to
    ``ceil(max_steps / epochs)`` steps: the total is ``max_steps`` rounded up to a multiple of the epochs
    (fewer than one step per epoch over; 25 steps on a loader of 10 run 3 x 9 = 27). The records count the
    steps that ran (``History``), not the budget.

    Examples:
        >>> recipe_epochs(Recipe(epochs=3), 10)
        (3, None)
        >>> recipe_epochs(Recipe(max_steps=25), 10)
        (3, 9)
    """
    if steps_per_epoch <= 0:
        raise ValueError("the loader is empty")
    if recipe.max_steps is None:
        return int(recipe.epochs), None
    per = min(steps_per_epoch, recipe.max_steps)
    epochs = -(-recipe.max_steps // per)
    if recipe.epochs is not None:
        epochs = min(epochs, recipe.epochs)
    return epochs, -(-recipe.max_steps // epochs)


def make_optimizer(recipe: Recipe, params):
    """The recipe's optimiser over ``params``."""
    import torch

    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)


def make_scheduler(recipe: Recipe, optimizer, total_epochs: int):
    """``LambdaLR`` following :meth:`Recipe.lr_at`, stepped once per epoch."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, recipe.lr_lambda(total_epochs))


def train_with_recipe(model, criterion, loader, *, recipe: Recipe, device="auto", seed: int = 0, out_dir=None,
                      epochs: int | None = None, callbacks=(), max_steps_per_epoch: int | None = None,
                      progress: bool = True):
    """``fusionlib.train.fit`` with one criterion and the recipe's optimiser, schedule and clipping.

    The common body of ``train_<paper>`` for methods trained by a single loss ``criterion(fused, ir, vi)``
    (SIBA, LKC-FUNet, TinyFuse). ``epochs`` / ``max_steps_per_epoch`` default to what the recipe's
    budget gives on this loader (:func:`recipe_epochs`). Returns the ``History``.
    """
    from fusionlib.train import fit

    auto_epochs, auto_cut = recipe_epochs(recipe, len(loader))
    epochs = int(epochs or auto_epochs)
    opt = make_optimizer(recipe, model.parameters())
    sched = make_scheduler(recipe, opt, epochs) if recipe.scheduler != "none" else None
    return fit(model, criterion, loader, epochs=epochs, optimizer=opt, scheduler=sched, device=device, seed=seed,
               out_dir=out_dir, clip_grad_norm=recipe.clip_grad_norm, callbacks=list(callbacks),
               max_steps_per_epoch=max_steps_per_epoch or auto_cut, progress=progress,
               run={"recipe": recipe, "criterion": type(criterion).__name__})
