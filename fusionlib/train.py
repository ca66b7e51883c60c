"""A thin training loop in plain PyTorch: device, seeds, bf16, progress, callbacks, checkpoints, resume, DDP.

``fit`` trains a fusion model whose batches are dicts with at least ``ir`` and ``vi`` tensors
``(B, 1, H, W)``. One *step* is ``step(model, batch) -> loss`` or ``-> (loss, {name: scalar})``;
``loss_step(criterion)`` builds the common one, ``criterion(model(ir, vi), ir, vi)``.

Reproducibility contract (what makes an interrupted-and-resumed run bit-identical to an
uninterrupted one on CPU):

* ``make_loader`` orders epoch ``e`` from ``(seed, e)`` only (a ``DistributedSampler`` with
  ``set_epoch(e)``, also for one process), re-seeds its worker-seed generator from ``(seed, e)``
  and calls ``dataset.set_epoch(e)`` when the dataset has one. Random crops are then drawn from
  ``sample_generator(seed, e, index)``: a generator seeded per (seed, epoch, sample index), so a
  crop depends neither on the worker that loads it nor on what ran before.
* ``last.pt`` also holds the python / numpy / torch / CUDA RNG states of every rank, so global-RNG
  randomness (dropout, a dataset using ``torch.rand`` with ``num_workers=0``) resumes exactly too.

Checkpoints hold tensors and plain containers only and are read with
``torch.load(..., weights_only=True)``. Epochs are numbered from 1; epoch ``e``'s checkpoint says
``epoch = e`` (epochs completed) and a resumed run continues with ``e + 1``. Checkpoints are also
written inside an epoch (every ``checkpoint_every`` steps, or when ``checkpoint_seconds`` have passed
since the last one; 5 minutes by default): a run resumed from one skips the batches already trained on
(the loader re-creates them from ``(seed, epoch)``) and continues bit-identically.

Every checkpoint records what produced it (``run``: the method, profile and recipe the caller passes,
plus the model class and a digest of its parameter shapes). A resume into a folder holding another
run's checkpoint is refused with :class:`ResumeMismatchError`, which says what is there and what to do,
so that a ``smoke`` run is never continued as a ``lab`` one.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from fusionlib.atomic import atomic_save, atomic_write_text

__all__ = [
    "fit",
    "loss_step",
    "make_loader",
    "EpochLoader",
    "sample_generator",
    "mix_seed",
    "seed_everything",
    "resolve_device",
    "unwrap_model",
    "atomic_save",
    "load_checkpoint",
    "History",
    "TrainState",
    "Callback",
    "NonFiniteLossError",
    "ResumeMismatchError",
    "run_identity",
]

CHECKPOINT_NAME = "last.pt"
HISTORY_NAME = "history.json"
_FORMAT = "fusionlib.train/1"
CHECKPOINT_SECONDS = 300.0  # default: a checkpoint inside an epoch at least every 5 minutes
_RESERVED = frozenset({"loss", "epoch", "step", "lr", "seconds", "steps", "grad_norm"})


class ResumeMismatchError(ValueError):
    """A checkpoint in ``out_dir`` was written by another run (method, profile, recipe or model)."""


def _canonical(x: Any) -> Any:
    """JSON-able, order-independent form of a run description (tuples as lists, keys sorted later)."""
    if isinstance(x, Mapping):
        return {str(k): _canonical(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_canonical(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if is_dataclass(x) and not isinstance(x, type):
        return _canonical(asdict(x))
    return repr(x)


def run_identity(model: nn.Module, run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a checkpoint records about the run that wrote it, and what a resume must match.

    ``run`` is the caller's description (``{"method": "siba", "profile": "smoke", "recipe": Recipe}``;
    dataclasses are expanded, a ``notes`` field is left out). The model's class and a digest of its
    parameter names and shapes are added. Returns ``{"run": {...}, "digest": sha256 hex}``.
    """
    import hashlib

    desc = _canonical(dict(run or {}))
    if isinstance(desc.get("recipe"), dict):
        desc["recipe"].pop("notes", None)
    shapes = ";".join(f"{k}:{tuple(v.shape)}" for k, v in unwrap_model(model).state_dict().items())
    desc["model"] = type(unwrap_model(model)).__name__
    desc["model_shapes"] = hashlib.sha256(shapes.encode()).hexdigest()[:16]
    digest = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()
    return {"run": desc, "digest": digest}


def _describe(run: Mapping[str, Any]) -> str:
    """``method 'siba', profile 'smoke'``, or the model and the recipe's budget when those are not given."""
    parts = [f"{k} {run[k]!r}" for k in ("method", "profile") if k in run]
    if not parts:
        parts = [f"model {run.get('model')!r}"]
        recipe = run.get("recipe")
        if isinstance(recipe, dict):
            parts += [f"{k}={recipe[k]!r}" for k in ("max_steps", "epochs", "lr") if recipe.get(k) is not None]
    return ", ".join(parts)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or ±inf; training stopped before the step was applied.

    Attributes: ``epoch`` (1-based), ``step`` (global step number, 1-based), ``step_in_epoch``,
    ``loss`` (float) and ``terms`` (the logged loss terms of that step).
    """

    def __init__(self, message: str, *, epoch: int, step: int, step_in_epoch: int, loss: float,
                 terms: Mapping[str, float]):
        super().__init__(message)
        self.epoch, self.step, self.step_in_epoch = epoch, step, step_in_epoch
        self.loss, self.terms = loss, dict(terms)


# --------------------------------------------------------------------------- seeds and devices


def mix_seed(*values: int) -> int:
    """Hash non-negative integers to one seed in ``[0, 2**63)`` (numpy ``SeedSequence``).

    Examples:
        >>> mix_seed(0, 3) == mix_seed(0, 3) != mix_seed(0, 4)
        True
    """
    vals = [int(v) for v in values]
    if any(v < 0 for v in vals):
        raise ValueError(f"mix_seed: seeds must be non-negative integers, got {vals}")
    return int(np.random.SeedSequence(vals).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from (seed, epoch, sample index), for per-sample augmentation.

    A dataset that random-crops draws its crop from this generator in ``__getitem__`` (having been
    told the epoch by ``set_epoch``); the crop then depends only on (seed, epoch, index).

    Examples:
        >>> g1, g2 = sample_generator(0, 1, 5), sample_generator(0, 1, 5)
        >>> torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
        True
    """
    return torch.Generator().manual_seed(mix_seed(seed, epoch, index))


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """``"auto"`` → cuda, then mps, then cpu; otherwise ``torch.device(device)``.

    Under ``torchrun`` (``local_rank`` given) a bare CUDA device becomes ``cuda:<local_rank>``.
    """
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda")
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            dev = torch.device("mps")
        else:
            dev = torch.device("cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"fit: device={device!r} is not a torch device name (use 'auto', 'cpu', "
                             f"'cuda', 'cuda:1', 'mps')") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"fit: device={device!r} but CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
    return dev


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


# --------------------------------------------------------------------------- data loading


class EpochLoader(DataLoader):
    """A ``DataLoader`` whose epoch ``e`` (order, worker seeds, dataset epoch) depends only on (seed, e).

    Built by ``make_loader``; ``fit`` calls ``set_epoch(e)`` before iterating epoch ``e``.
    """

    def __init__(self, dataset: Dataset, *, seed: int, **kwargs: Any):
        super().__init__(dataset, **kwargs)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s order; forward it to ``dataset.set_epoch`` when present."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        if self.generator is not None:
            self.generator.manual_seed(mix_seed(self.seed, self.epoch))


def _dist_env() -> tuple[int, int, int]:
    """(world_size, rank, local_rank) from an initialised process group, else from torchrun's env."""
    if dist.is_available() and dist.is_initialized():
        ws, rank = dist.get_world_size(), dist.get_rank()
    else:
        ws, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    return ws, rank, int(os.environ.get("LOCAL_RANK", str(rank)))


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False, world_size: int | None = None,
                rank: int | None = None, **kwargs: Any) -> EpochLoader:
    """A resumable loader: the samples of epoch ``e`` depend only on ``(seed, e)``.

    Args:
        dataset: a map-style dataset (``__len__``, ``__getitem__``); if it has ``set_epoch(e)`` it
            is called each epoch (seed its per-sample randomness with ``sample_generator``).
        batch_size: samples per batch **per process** (the global batch is ``batch_size * world``).
        shuffle: permute each epoch from ``seed + e`` (``DistributedSampler``'s rule).
        world_size, rank: default to torchrun's ``WORLD_SIZE`` / ``RANK`` (1 / 0 when absent); each
            rank gets the interleaved shard ``perm[rank::world_size]``, so one process with batch
            ``world_size * batch_size`` sees the same samples per step as the distributed run.
        drop_last: drop the incomplete last batch (and the tail that does not split evenly
            across ranks).
        **kwargs: passed to ``DataLoader`` (``pin_memory``, ``collate_fn``, ...). Keep
            ``persistent_workers`` off: workers must be re-created to see the new epoch.
    """
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"make_loader: dataset must be map-style (__len__ and __getitem__), got "
                        f"{type(dataset).__name__}")
    if int(batch_size) < 1:
        raise ValueError(f"make_loader: batch_size must be >= 1, got {batch_size}")
    if kwargs.get("persistent_workers"):
        raise ValueError("make_loader: persistent_workers=True would keep workers on a stale epoch")
    for bad in ("sampler", "batch_sampler", "generator"):
        if bad in kwargs:
            raise ValueError(f"make_loader: {bad}= is set by make_loader itself; use DataLoader directly "
                             f"for a custom one")
    env_ws, env_rank, _ = _dist_env()
    ws = env_ws if world_size is None else int(world_size)
    rk = env_rank if rank is None else int(rank)
    if not 0 <= rk < ws:
        raise ValueError(f"make_loader: rank={rk} is outside world_size={ws}")
    sampler = DistributedSampler(dataset, num_replicas=ws, rank=rk, shuffle=shuffle, seed=seed,
                                 drop_last=drop_last)
    generator = torch.Generator().manual_seed(mix_seed(seed, 0))
    kwargs.setdefault("pin_memory", torch.cuda.is_available())
    loader = EpochLoader(dataset, seed=seed, batch_size=int(batch_size), sampler=sampler,
                         num_workers=num_workers, drop_last=drop_last, generator=generator, **kwargs)
    loader.set_epoch(0)
    return loader


# --------------------------------------------------------------------------- steps


def loss_step(criterion: Callable[..., Any]) -> Callable[[nn.Module, Mapping[str, Any]], Any]:
    """A step computing ``criterion(model(ir, vi), ir, vi)`` with ``ir, vi = batch['ir'], batch['vi']``.

    ``criterion`` returns a scalar loss or ``(loss, {term: value})``; that is passed through.
    """

    def step(model: nn.Module, batch: Mapping[str, Any]) -> Any:
        if not isinstance(batch, Mapping) or "ir" not in batch or "vi" not in batch:
            keys = list(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise KeyError(f"loss_step: a batch must be a dict with 'ir' and 'vi' tensors (B, 1, H, W); "
                           f"got {keys}")
        ir, vi = batch["ir"], batch["vi"]
        return criterion(model(ir, vi), ir, vi)

    step.criterion = criterion  # type: ignore[attr-defined]
    return step


def _as_step(fn: Callable[..., Any]) -> Callable[[nn.Module, Mapping[str, Any]], Any]:
    """A module (criterion) or a 3-argument callable becomes ``loss_step(fn)``; a 2-argument one is a step."""
    if isinstance(fn, nn.Module):
        return loss_step(fn)
    if not callable(fn):
        raise TypeError(f"fit: step_fn_or_loss must be callable, got {type(fn).__name__}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn
    for n, wrap in ((2, False), (3, True)):
        try:
            sig.bind(*range(n))
        except TypeError:
            continue
        return loss_step(fn) if wrap else fn
    raise TypeError(f"fit: step_fn_or_loss{sig} takes neither (model, batch) nor (fused, ir, vi)")


def _split_output(out: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    if isinstance(out, torch.Tensor):
        loss, terms = out, {}
    elif isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], Mapping):
        loss, terms = out[0], dict(out[1])
    elif isinstance(out, Mapping) and "loss" in out:
        terms = {k: v for k, v in out.items() if k != "loss"}
        loss = out["loss"]
    else:
        raise TypeError(f"fit: the step must return a loss tensor, (loss, dict) or a dict with 'loss'; "
                        f"got {type(out).__name__}")
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TypeError(f"fit: the step's loss must be a scalar tensor, got {shape}")
    clash = _RESERVED.intersection(terms)
    if clash:
        raise ValueError(f"fit: logged term names {sorted(clash)} are reserved; rename them")
    return loss, terms


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _scalar(v: Any) -> float:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise TypeError(f"fit: logged terms must be scalars, got a tensor of shape {tuple(v.shape)}")
        return float(v.detach().float().item())
    return float(v)


# --------------------------------------------------------------------------- history and state


@dataclass
class History:
    """What ``fit`` returns: per-epoch records and (with ``record_steps=True``) per-step losses.

    ``epochs``: list of ``{"epoch", "loss", <terms>..., "lr", "seconds", "steps"}`` (means over the
    epoch's steps, over all ranks). ``steps``: list of ``{"epoch", "step", "loss", <terms>...}``.
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_frame(self, steps: bool = False):
        """The epoch records (or step records) as a ``pandas.DataFrame``."""
        import pandas as pd

        return pd.DataFrame(self.steps if steps else self.epochs)

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": [dict(r) for r in self.epochs], "steps": [dict(r) for r in self.steps]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epochs = [dict(r) for r in state.get("epochs", [])]
        self.steps = [dict(r) for r in state.get("steps", [])]

    def __len__(self) -> int:
        return len(self.epochs)

    def __repr__(self) -> str:
        if not self.epochs:
            return "History(0 epochs)"
        last = self.epochs[-1]
        return f"History({len(self.epochs)} epochs, last: epoch {last['epoch']} loss {last['loss']:.6g})"


@dataclass
class TrainState:
    """What callbacks see. ``epoch`` is the current epoch (1-based) inside an epoch, the number of
    completed epochs in ``on_train_start``. Set ``stop_training = True`` to stop after this epoch
    (its checkpoint is still written).
    """

    model: nn.Module                      # the module being trained (unwrapped)
    train_model: nn.Module                # what the step receives (the DDP wrapper when distributed)
    optimizer: Any                        # as passed to fit
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    history: History
    out_dir: Path | None
    device: torch.device
    epochs: int
    epoch: int = 0
    global_step: int = 0
    step_in_epoch: int = 0
    logs: dict[str, float] = field(default_factory=dict)        # the last step's loss and terms
    epoch_logs: dict[str, Any] = field(default_factory=dict)    # the last epoch record
    rank: int = 0
    world_size: int = 1
    stop_training: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME


class Callback:
    """Optional base class; ``fit`` only needs the hooks a callback defines.

    Hooks (all take ``state: TrainState``) run on every rank: ``on_train_start``, ``on_step_end``,
    ``on_epoch_end`` (before the epoch's checkpoint), ``on_train_end``. A callback with
    ``state_dict()`` / ``load_state_dict()`` is checkpointed and restored on resume.
    """

    def on_train_start(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...


def _call(callbacks: Sequence[Any], hook: str, state: TrainState) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)


def _callback_keys(callbacks: Sequence[Any]) -> list[str]:
    keys, seen = [], {}
    for cb in callbacks:
        base = getattr(cb, "state_key", None) or type(cb).__name__
        n = seen.get(base, 0)
        seen[base] = n + 1
        keys.append(base if n == 0 else f"{base}#{n}")
    return keys


# --------------------------------------------------------------------------- checkpoint files


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a ``fit`` checkpoint with ``weights_only=True``; ``ckpt['model']`` is the state dict."""
    from fusionlib.checkpoints import safe_torch_load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path}")
    try:
        ckpt = safe_torch_load(path, map_location=map_location, what="training checkpoint")
    except ValueError as e:
        raise ValueError(f"{e}. Delete it to train from the start (or pass resume=False); the last "
                         f"finished weights, if any, are in the folder above it") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
        raise ValueError(f"load_checkpoint: {path} is not a fusionlib.train checkpoint "
                         f"(format {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__})")
    return ckpt


def _rng_state(device: torch.device) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [int(version), [int(v) for v in internal], gauss],
        "numpy": [str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


# --------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    created: bool = False

    @property
    def on(self) -> bool:
        return self.world_size > 1

    def barrier(self, device: torch.device) -> None:
        if self.on:
            if device.type == "cuda":
                dist.barrier(device_ids=[device.index])
            else:
                dist.barrier()


def _setup_distributed(device_arg: str | torch.device) -> tuple[_Dist, torch.device]:
    initialised = dist.is_available() and dist.is_initialized()
    env_ws = int(os.environ.get("WORLD_SIZE", "1"))
    if not initialised and env_ws <= 1:
        return _Dist(), resolve_device(device_arg)
    if not dist.is_available():
        raise RuntimeError(f"fit: WORLD_SIZE={env_ws} but torch.distributed is not available in this build")
    ws, rank, local_rank = _dist_env()
    device = resolve_device(device_arg, local_rank=local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    created = False
    if not initialised:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kw = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kw)
        created = True
        ws, rank = dist.get_world_size(), dist.get_rank()
    return _Dist(ws, rank, local_rank, created), device


def _check_sharded(loader: Iterable[Any], d: _Dist) -> None:
    sampler = getattr(loader, "sampler", None)
    inner = getattr(getattr(loader, "batch_sampler", None), "sampler", None)
    if not (isinstance(sampler, DistributedSampler) or isinstance(inner, DistributedSampler)):
        raise ValueError(f"fit: distributed run (world size {d.world_size}) but the loader has no "
                         f"DistributedSampler, so every rank would see every sample; build it with "
                         f"fusionlib.train.make_loader(...) inside the torchrun process")


# --------------------------------------------------------------------------- fit


def _as_named(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return {str(k): v for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return {str(i): v for i, v in enumerate(obj)}
    return {"0": obj}


def _lrs(optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, (name, opt) in enumerate(optimizers.items()):
        lr = float(opt.param_groups[0]["lr"])
        if i == 0:
            out["lr"] = lr
        if len(optimizers) > 1:
            out[f"lr_{name}"] = lr
    return out


def _format_terms(loss: float, terms: Mapping[str, float]) -> str:
    parts = [f"loss={loss:.6g}"] + [f"{k}={v:.6g}" for k, v in terms.items()]
    return ", ".join(parts)


def fit(
    model: nn.Module,
    step_fn_or_loss: Callable[..., Any],
    loader: Iterable[Any],
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | Mapping[str, torch.optim.Optimizer],
    scheduler: Any = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    clip_grad_norm: float | None = None,
    bf16: bool = False,
    callbacks: Sequence[Any] = (),
    resume: bool = True,
    progress: bool = True,
    max_steps_per_epoch: int | None = None,
    extra_state: Mapping[str, Any] | None = None,
    scheduler_interval: str = "epoch",
    record_steps: bool = False,
    ddp_kwargs: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
) -> History:
    """Train ``model`` for ``epochs`` epochs; checkpoint and resume through ``out_dir/last.pt``.

    Args:
        model: the network; moved to ``device``. Its parameters must be in ``optimizer``.
        step_fn_or_loss: ``step(model, batch) -> loss | (loss, {term: scalar}) | {"loss": .., ...}``,
            or a criterion ``(fused, ir, vi)`` (an ``nn.Module`` or a 3-argument callable), wrapped
            by ``loss_step``. The step receives the DDP wrapper in distributed runs, so call it
            (``model(ir, vi)``) rather than reaching into submodules.
        loader: an iterable of batches (dicts of tensors, moved to ``device``); ``make_loader``
            gives one that resumes exactly and shards across ranks.
        epochs: total epochs (a resumed run continues up to this number).
        optimizer: one optimiser, a list, or a dict ``{name: optimiser}``; every one is stepped
            after each backward (e.g. RPFNet's model and auxiliary-decoder Adams).
        scheduler: an LR scheduler, a list or a dict; stepped each epoch (``scheduler_interval=
            "step"``: each step). ``ReduceLROnPlateau`` is stepped with the epoch's mean loss.
        device: ``"auto"`` (cuda → mps → cpu) or a device name.
        seed: seeds python/numpy/torch at the start (``mix_seed(seed, rank)`` per process under
            torchrun); a resumed run restores the saved RNG states instead.
        out_dir: where ``last.pt`` and ``history.json`` go (rank 0 writes); ``None`` saves nothing.
        clip_grad_norm: max total L2 norm of all optimised gradients (``clip_grad_norm_``); the
            pre-clip norm is logged as ``grad_norm``.
        bf16: bfloat16 autocast on CUDA; ignored, with a warning, elsewhere.
        callbacks: objects with any of ``on_train_start / on_step_end / on_epoch_end /
            on_train_end(state)``, and optionally ``state_dict / load_state_dict``.
        resume: continue from ``out_dir/last.pt`` when it exists.
        progress: a ``tqdm.auto`` bar per epoch with the running loss, and a line per epoch.
        max_steps_per_epoch: cut each epoch after this many steps (smoke runs).
        extra_state: ``{name: obj}`` with ``state_dict / load_state_dict`` saved alongside (an
            auxiliary decoder, an EMA); ``nn.Module`` entries are moved to ``device``.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        record_steps: also keep ``{"epoch", "step", "loss", terms}`` per step in ``History.steps``.
        ddp_kwargs: keyword arguments for ``DistributedDataParallel``.
        run: what this run is (``{"method", "profile", "recipe"}``), recorded in every checkpoint; a
            resume from a checkpoint of another run (or of a different model) raises
            :class:`ResumeMismatchError` (see :func:`run_identity`).
        checkpoint_every: also checkpoint inside an epoch every this many steps.
        checkpoint_seconds: also checkpoint inside an epoch when this many seconds have passed since the
            last checkpoint (default 300; None: only ``checkpoint_every`` and the end of each epoch). Single
            process only: under torchrun the ranks would disagree on the time, so only ``checkpoint_every``.

    Returns:
        The ``History`` (``.epochs`` list of dicts, ``.to_frame()``), identical on every rank.

    Raises:
        NonFiniteLossError: a step's loss was NaN/inf. Nothing of that epoch is saved; the last
            good checkpoint stays as it was.
        ResumeMismatchError: ``out_dir`` holds a checkpoint of another run.
    """
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive integer, got {epochs!r}")
    epochs = int(epochs)
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"fit: scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"fit: clip_grad_norm must be > 0 or None, got {clip_grad_norm!r}")
    if max_steps_per_epoch is not None and max_steps_per_epoch < 1:
        raise ValueError(f"fit: max_steps_per_epoch must be >= 1 or None, got {max_steps_per_epoch!r}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"fit: checkpoint_every must be >= 1 or None, got {checkpoint_every!r}")
    if checkpoint_seconds is not None and not checkpoint_seconds > 0:
        raise ValueError(f"fit: checkpoint_seconds must be > 0 or None, got {checkpoint_seconds!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit: model must be an nn.Module, got {type(model).__name__}")
    optimizers = _as_named(optimizer)
    if not optimizers:
        raise ValueError("fit: optimizer is required (one optimiser, a list or a dict of them)")
    for name, opt in optimizers.items():
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"fit: optimizer {name!r} is a {type(opt).__name__}, not a torch.optim.Optimizer")
    schedulers = _as_named(scheduler)
    extras = dict(extra_state or {})
    for name, obj in extras.items():
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise TypeError(f"fit: extra_state[{name!r}] ({type(obj).__name__}) lacks "
                            f"state_dict/load_state_dict")
    callbacks = list(callbacks)
    step = _as_step(step_fn_or_loss)

    d, dev = _setup_distributed(device)
    try:
        return _fit(model, step, loader, epochs=epochs, optimizer=optimizer, optimizers=optimizers,
                    schedulers=schedulers, device=dev, d=d, seed=seed, out_dir=out_dir,
                    clip_grad_norm=clip_grad_norm, bf16=bf16, callbacks=callbacks, resume=resume,
                    progress=progress, max_steps_per_epoch=max_steps_per_epoch, extras=extras,
                    scheduler_interval=scheduler_interval, record_steps=record_steps,
                    ddp_kwargs=dict(ddp_kwargs or {}), identity=run_identity(model, run),
                    checkpoint_every=checkpoint_every, checkpoint_seconds=checkpoint_seconds)
    finally:
        if d.created and dist.is_initialized():
            dist.destroy_process_group()


def _fit(model: nn.Module, step: Callable[..., Any], loader: Iterable[Any], *, epochs: int, optimizer: Any,
         optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, Any], device: torch.device,
         d: _Dist, seed: int, out_dir: Any, clip_grad_norm: float | None, bf16: bool, callbacks: list[Any],
         resume: bool, progress: bool, max_steps_per_epoch: int | None, extras: dict[str, Any],
         scheduler_interval: str, record_steps: bool, ddp_kwargs: dict[str, Any], identity: dict[str, Any],
         checkpoint_every: int | None, checkpoint_seconds: float | None) -> History:
    main = d.rank == 0
    say = print if main else (lambda *a, **k: None)
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(out, say)

    model = unwrap_model(model)
    model.to(device)
    for obj in extras.values():
        if isinstance(obj, nn.Module):
            obj.to(device)
    if d.on:
        _check_sharded(loader, d)

    use_bf16 = bool(bf16) and device.type == "cuda"
    if bf16 and not use_bf16:
        warnings.warn(f"fit: bf16 autocast is CUDA-only; ignored on {device.type}", stacklevel=3)

    history = History()
    cb_keys = _callback_keys(callbacks)
    seed_everything(mix_seed(seed, d.rank) if d.on else seed)
    done, global_step = 0, 0

    partial: dict[str, Any] | None = None
    if ckpt_path is not None and resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        _check_same_run(ckpt, identity, ckpt_path)
        model.load_state_dict(ckpt["model"])
        _load_named(optimizers, ckpt["optimizers"], "optimizer", ckpt_path)
        _load_named(schedulers, ckpt["schedulers"], "scheduler", ckpt_path)
        _load_named(extras, ckpt.get("extra", {}), "extra_state", ckpt_path)
        for key, cb in zip(cb_keys, callbacks):
            saved = ckpt.get("callbacks", {}).get(key)
            if saved is not None and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(saved)
            elif hasattr(cb, "state_dict"):
                say(f"fit: note: {ckpt_path} holds no state for callback {key!r}; it starts afresh")
        history.load_state_dict(ckpt["history"])
        done, global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        partial = ckpt.get("partial")
        rngs = ckpt["rng"]
        rng_restore = None
        if int(ckpt["meta"]["world_size"]) == d.world_size and d.rank < len(rngs):
            rng_restore = rngs[d.rank]
            _set_rng_state(rng_restore, device)
        else:
            say(f"fit: note: world size changed ({ckpt['meta']['world_size']} -> {d.world_size}); "
                f"RNG streams re-seeded, so the resumed run is not bit-identical")
            seed_everything(mix_seed(seed, d.rank, done))
        if partial is not None:
            partial = {**partial, "rng": rng_restore}  # set again after the trained batches are skipped
        if int(ckpt["meta"].get("seed", seed)) != seed:
            say(f"fit: note: checkpoint was trained with seed={ckpt['meta']['seed']}, now seed={seed}")
        inside = f", and {partial['step_in_epoch']} steps of epoch {done + 1}" if partial else ""
        say(f"fit: resuming from {ckpt_path} ({done} of {epochs} epochs done{inside})")
        d.barrier(device)
    elif ckpt_path is not None:
        say(f"fit: checkpoints -> {ckpt_path} (history -> {out / HISTORY_NAME})")
    else:
        say("fit: out_dir=None, nothing is saved (no checkpoint, no resume)")

    train_model: nn.Module = model
    if d.on:
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids, **ddp_kwargs)

    state = TrainState(model=model, train_model=train_model, optimizer=optimizer, optimizers=optimizers,
                       schedulers=schedulers, history=history, out_dir=out, device=device, epochs=epochs,
                       epoch=done, global_step=global_step, rank=d.rank, world_size=d.world_size)
    params = list({id(p): p for o in optimizers.values() for g in o.param_groups
                   for p in g["params"]}.values())
    _call(callbacks, "on_train_start", state)
    if done >= epochs:
        say(f"fit: already trained for {done} epochs (epochs={epochs}); nothing to do")
    last_save = time.perf_counter()

    def save(epoch_done: int, partial_state: dict[str, Any] | None) -> None:
        nonlocal last_save
        rng = _rng_state(device)
        if d.on:
            rngs: list[Any] = [None] * d.world_size
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        if main and ckpt_path is not None:
            atomic_save(_checkpoint(model, optimizers, schedulers, extras, callbacks, cb_keys, history,
                                    epoch_done, global_step, rngs, d, seed, identity, partial_state), ckpt_path)
            atomic_write_text(out / HISTORY_NAME, json.dumps(history.state_dict(), indent=1))
        d.barrier(device)
        last_save = time.perf_counter()

    for epoch in range(done + 1, epochs + 1):
        state.epoch, state.step_in_epoch = epoch, 0
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        else:
            sampler = getattr(loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            ds = getattr(loader, "dataset", None)
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)
        model.train()
        for obj in extras.values():
            if isinstance(obj, nn.Module):
                obj.train()
        lrs = _lrs(optimizers)
        sums: dict[str, float] = {}
        n_steps = 0
        t0 = time.perf_counter()
        skip = 0
        if partial is not None and int(partial["epoch"]) == epoch:  # resume inside this epoch
            skip, n_steps = int(partial["step_in_epoch"]), int(partial["n_steps"])
            sums, lrs = dict(partial["sums"]), dict(partial["lrs"])
            t0 -= float(partial["seconds"])
        resume_rng = partial.get("rng") if partial is not None else None
        partial = None

        total = None
        with contextlib.suppress(TypeError):
            total = len(loader)  # type: ignore[arg-type]
        if max_steps_per_epoch is not None:
            total = max_steps_per_epoch if total is None else min(total, max_steps_per_epoch)
        bar = None
        batches: Iterable[Any] = loader
        if skip:  # the batches trained on before the checkpoint: re-created from (seed, epoch), not used
            batches = iter(loader)
            for _ in range(skip):
                next(batches)
            if resume_rng is not None:
                _set_rng_state(resume_rng, device)
        if max_steps_per_epoch is not None:
            batches = itertools.islice(batches, max_steps_per_epoch - skip)  # no extra batch is loaded
        if progress and main:
            from tqdm.auto import tqdm

            bar = tqdm(batches, total=None if total is None else total - skip, desc=f"epoch {epoch}/{epochs}",
                       leave=False, dynamic_ncols=True)
            batches = bar

        try:
            for i, batch in enumerate(batches, start=skip):
                batch = _to_device(batch, device)
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                ctx = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
                with ctx:
                    loss, raw_terms = _split_output(step(train_model, batch))
                loss_val = float(loss.detach().float().item())
                terms = {k: _scalar(v) for k, v in raw_terms.items()}
                bad = not math.isfinite(loss_val)
                if d.on:
                    flag = torch.tensor([1.0 if bad else 0.0], device=device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    bad = bool(flag.item() > 0)
                if bad:
                    if ckpt_path is None:
                        where = "none (out_dir=None)"
                    elif ckpt_path.is_file():
                        where = f"{ckpt_path}, left untouched"
                    else:
                        where = f"none yet in {out}"
                    other = " (on another rank)" if math.isfinite(loss_val) else ""
                    raise NonFiniteLossError(
                        f"non-finite loss{other} at epoch {epoch}, step {i + 1} of the epoch (global step "
                        f"{global_step + 1}): {_format_terms(loss_val, terms)}. Training stopped before this "
                        f"update; last good checkpoint: {where}.",
                        epoch=epoch, step=global_step + 1, step_in_epoch=i + 1, loss=loss_val, terms=terms)
                loss.backward()
                if clip_grad_norm is not None:
                    grads = [p for p in params if p.grad is not None]
                    gn = torch.nn.utils.clip_grad_norm_(grads, clip_grad_norm)
                    terms["grad_norm"] = float(gn)
                for opt in optimizers.values():
                    opt.step()
                if scheduler_interval == "step":
                    _step_schedulers(schedulers, loss_val)
                global_step += 1
                n_steps += 1
                state.global_step, state.step_in_epoch = global_step, i + 1
                state.logs = {"loss": loss_val, **terms}
                for k, v in state.logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                if record_steps:
                    history.steps.append({"epoch": epoch, "step": global_step, **state.logs})
                if bar is not None:
                    bar.set_postfix(loss=f"{sums['loss'] / n_steps:.4g}")
                _call(callbacks, "on_step_end", state)
                if ckpt_path is not None and (total is None or i + 1 < total) and (
                        (checkpoint_every and (i + 1) % checkpoint_every == 0)
                        or (checkpoint_seconds and not d.on and time.perf_counter() - last_save >= checkpoint_seconds)):
                    save(epoch - 1, {"epoch": epoch, "step_in_epoch": i + 1, "n_steps": n_steps, "sums": sums,
                                     "lrs": lrs, "seconds": time.perf_counter() - t0})
        finally:
            if bar is not None:
                bar.close()
        if n_steps == 0:
            raise RuntimeError(f"fit: the loader yielded no batches in epoch {epoch} (empty dataset, or "
                               f"drop_last with fewer samples than one batch?)")

        means = _mean_over_ranks(sums, n_steps, d, device)
        record: dict[str, Any] = {"epoch": epoch, **means, **lrs,
                                  "seconds": time.perf_counter() - t0, "steps": n_steps}
        if scheduler_interval == "epoch":
            _step_schedulers(schedulers, record["loss"])
        history.epochs.append(record)
        state.epoch_logs = record
        _call(callbacks, "on_epoch_end", state)

        save(epoch, None)
        if progress and main:
            from tqdm.auto import tqdm

            parts = [f"epoch {epoch}/{epochs}", f"loss {record['loss']:.6g}"]
            parts += [f"{k} {v:.4g}" for k, v in means.items() if k != "loss"]
            parts += [f"lr {lrs['lr']:.3g}", f"{record['seconds']:.1f}s"]
            tqdm.write("  ".join(parts))
        if state.stop_training:
            say(f"fit: stopped by a callback after epoch {epoch}")
            break

    _call(callbacks, "on_train_end", state)
    return history


def _step_schedulers(schedulers: Mapping[str, Any], loss: float) -> None:
    for sch in schedulers.values():
        if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sch.step(loss)
        else:
            sch.step()


def _mean_over_ranks(sums: dict[str, float], n: int, d: _Dist, device: torch.device) -> dict[str, float]:
    keys = list(sums)
    if not d.on:
        return {k: sums[k] / n for k in keys}
    t = torch.tensor([sums[k] for k in keys] + [float(n)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(t[i] / t[-1]) for i, k in enumerate(keys)}


def _load_named(objs: Mapping[str, Any], saved: Mapping[str, Any], what: str, path: Path) -> None:
    if set(objs) != set(saved):
        raise ValueError(f"fit: {path} holds {what}s {sorted(saved)} but this run has {sorted(objs)}; "
                         f"pass the same set, or resume=False / another out_dir")
    for name, obj in objs.items():
        obj.load_state_dict(saved[name])


def _checkpoint(model: nn.Module, optimizers: Mapping[str, Any], schedulers: Mapping[str, Any],
                extras: Mapping[str, Any], callbacks: Sequence[Any], cb_keys: Sequence[str], history: History,
                epoch: int, global_step: int, rngs: list[Any], d: _Dist, seed: int, identity: dict[str, Any],
                partial: dict[str, Any] | None) -> dict[str, Any]:
    ckpt = {
        "format": _FORMAT,
        "model": model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "extra": {k: o.state_dict() for k, o in extras.items()},
        "callbacks": {k: cb.state_dict() for k, cb in zip(cb_keys, callbacks) if hasattr(cb, "state_dict")},
        "history": history.state_dict(),
        "epoch": epoch,
        "global_step": global_step,
        "rng": rngs,
        "meta": {"world_size": d.world_size, "seed": int(seed), "torch": str(torch.__version__),
                 "run": json.dumps(identity["run"], sort_keys=True), "run_digest": identity["digest"]},
    }
    if partial is not None:
        ckpt["partial"] = partial
    return ckpt


_BUDGET_FIELDS = ("recipe.max_steps", "recipe.epochs")


def _budget_extension(saved: Mapping[str, Any], now: Mapping[str, Any], changed: Sequence[str]) -> str | None:
    """``"recipe.max_steps 600 -> 900"`` when the only change is a larger step/epoch budget of a recipe
    without an lr schedule, else None.

    Such a run goes on from the checkpoint: with a constant learning rate the steps already taken stand. It
    equals a run trained with the larger budget from the start when each epoch's step cut
    (:func:`fusionlib.recipes.recipe_epochs`) is the same for both budgets, as when epochs are whole passes
    over the data; a scheduled recipe (cosine, step) depends on the total, so its budget change is another run.
    """
    if not changed or any(k not in _BUDGET_FIELDS for k in changed):
        return None
    if now["recipe"].get("scheduler", "none") not in (None, "none"):
        return None
    grown = []
    for k in changed:
        field = k.split(".", 1)[1]
        old, new = saved["recipe"].get(field), now["recipe"].get(field)
        if old is None or new is None or not new > old:
            return None
        grown.append(f"{k} {old} -> {new}")
    return ", ".join(grown)


def _check_same_run(ckpt: Mapping[str, Any], identity: Mapping[str, Any], path: Path) -> None:
    """Refuse to resume a checkpoint written by another run (see :func:`run_identity`)."""
    saved_digest = ckpt["meta"].get("run_digest")
    if saved_digest == identity["digest"]:
        return
    now = identity["run"]
    if saved_digest is None:
        there = "a run of unknown origin (written before checkpoints recorded their run)"
        diff = ""
    else:
        saved = json.loads(ckpt["meta"]["run"])
        there = f"a run of {_describe(saved)}"
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if "recipe" in changed and isinstance(saved.get("recipe"), dict) and isinstance(now.get("recipe"), dict):
            changed.remove("recipe")
            changed += [f"recipe.{k}" for k in sorted(set(saved["recipe"]) | set(now["recipe"]))
                        if saved["recipe"].get(k) != now["recipe"].get(k)]
        if not changed:  # only fields added since (absent there, None here): the same run, written by older code
            return
        grown = _budget_extension(saved, now, changed)
        if grown:
            print(f"fit: {path} continues with a larger budget ({grown}; constant learning rate, so the steps "
                  f"already taken stand)")
            return
        diff = f" (different: {', '.join(changed)})"
    raise ResumeMismatchError(
        f"{path} holds {there}, epoch {ckpt['epoch']}, but this run is {_describe(now)}{diff}: resuming would "
        f"mix two runs. Train into another folder (each profile has its own), or delete {path.parent} to "
        f"start this run from scratch (resume=False does that).")


def _remove_stale_temporaries(out: Path, say: Callable[..., Any]) -> None:
    """Delete ``.last.pt.<pid>.tmp`` / ``.history.json.<pid>.tmp`` left by a run killed while writing."""
    for name in (CHECKPOINT_NAME, HISTORY_NAME):
        for tmp in out.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                say(f"fit: removed {tmp.name}, left by a run interrupted while writing it")
