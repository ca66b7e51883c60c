"""Every fusion method by name: model factory, weights, inference, training recipe (one implementation).

The ``fuse`` command, the benchmark notebook and the paper notebooks use these entries, so a method
is built, loaded and run the same way everywhere::

    from fusionlib.methods import get_method, load_fuser
    fuser = load_fuser("rpfnet", weights="runs/04_rpfnet/weights.pt")
    fused = fuser(ir, vi)            # (B, 1, H, W) in [0, 1] -> (B, 1, H, W)

Weights files hold tensors only and are read with ``torch.load(weights_only=True)``: our own
``weights.pt`` (a plain state_dict, or ``{"model": state_dict}`` as in ``last.pt``) or, for SIBA and
RPFNet, the authors' released weights (recognised by their key names).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusionlib.checkpoints import load_tensors

__all__ = ["Method", "METHODS", "register_method", "get_method", "list_methods", "Fuser", "load_fuser",
           "PATHS", "inference_path", "fast_forward",
           "default_weights", "load_model", "train_method", "TrainedMethod", "recipes_of", "save_laziness",
           "load_laziness"]


@dataclass(frozen=True)
class Method:
    """One fusion method.

    Args:
        name: command-line name.
        title: how tables and figures name it.
        model: ``fusionlib.models`` registry name (None for a classical rule).
        notebook: the notebook that trains it (its ``runs/<notebook>/weights.pt`` is the default weights).
        multiple: inputs are padded (reflect) to a multiple of this and cropped back.
        rule: ``(ir, vi) -> fused`` for a classical method without weights.
        released: ``"module:function"`` loading the authors' released weights into a model.
        infer: ``"module:function"`` called as ``infer(model, ir, vi, **infer_kwargs)``; None calls the model.
        infer_kwargs: defaults for ``infer`` (RPFNet's BatchNorm mode).
        fast: ``"module:function"`` of an inference-only path computing the same function as the
            readable one (``fast(model, ir, vi, **infer_kwargs)``), exact to it within 1e-5 on the golden
            inputs (LKC-FUNet's FFT convolutions: 1.5e-5; all within the golden tolerance 1e-4). The module
            also defines ``fast_path_supported(model, **infer_kwargs)``; :class:`Fuser`
            uses the fast path by default where it is supported, ``path="readable"`` keeps the readable one.
        train: ``"module:function"`` training it (``train_<paper>``), for the benchmark.
        recipes: ``"module:NAME"`` of its ``{profile: Recipe}``.
        loader: ``"module:function"`` ``(recipe, *, seed) -> loader`` when the method has its own
            augmentation (default: :func:`fusionlib.recipes.recipe_loader`).
        variants: other registry configurations whose weights this method also loads (e.g. the narrow
            denoiser a smoke run trains); the one whose parameter names and shapes match is built.
        paper: citation.
    """

    name: str
    title: str
    model: str | None = None
    notebook: str | None = None
    multiple: int = 1
    rule: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    released: str | None = None
    infer: str | None = None
    infer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    fast: str | None = None
    train: str | None = None
    recipes: str | None = None
    loader: str | None = None
    variants: tuple[str, ...] = ()
    paper: str = ""

    @property
    def needs_weights(self) -> bool:
        return self.rule is None


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def _resolve(ref: str) -> Any:
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)


def get_method(name: str) -> Method:
    """The method called ``name``; a ``KeyError`` lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown fusion method {name!r}; known: {', '.join(sorted(METHODS))}") from None


def list_methods(trainable: bool | None = None) -> list[str]:
    """Method names (``trainable=True``: only networks; ``False``: only classical rules)."""
    return [n for n, m in METHODS.items() if trainable is None or m.needs_weights == trainable]


def default_weights(name: str, runs: str | Path = "runs") -> Path | None:
    """``runs/<notebook>/weights.pt`` of the notebook that trains ``name``, when it exists and that run did not
    fail (a failed run leaves ``FAILED.txt``: :func:`fusionlib.runner.run_failed`)."""
    from fusionlib.runner import run_failed

    m = get_method(name)
    if m.notebook is None:
        return None
    p = Path(runs) / m.notebook / "weights.pt"
    return p if p.is_file() and run_failed(p.parent) is None else None


def _state_dict_from(path: Path) -> dict[str, torch.Tensor]:
    """A plain state_dict, or the ``"model"`` entry of ``{"model": state_dict, ...}`` (``last.pt``, SIBA's file)."""
    return load_tensors(path, key="model", optional=True)


def load_model(name: str, weights: str | Path | None) -> nn.Module:
    """Build ``name`` and load ``weights`` (ours, or the authors' released file); returned in eval mode.

    Raises:
        FileNotFoundError: ``weights`` is missing.
        ValueError: no weights given for a network, or keys that fit neither our names nor the released ones.
    """
    from fusionlib.models import create_model

    m = get_method(name)
    if m.model is None:
        raise ValueError(f"{name} is a classical rule: it has no model")
    if weights is None:
        raise ValueError(f"{name} needs trained weights: pass --weights FILE (train it with notebooks/"
                         f"{m.notebook}.ipynb, which saves runs/{m.notebook}/weights.pt, or `make weights`, "
                         f"which trains the shipped weights/{name}.pt"
                         + (", or give the authors' released weights" if m.released else "") + ")")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    tensors = _state_dict_from(path)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    for config in (m.model, *m.variants):  # which configuration were these weights trained with?
        with torch.device("meta"):
            ours = {k: tuple(v.shape) for k, v in create_model(config).state_dict().items()}
        if ours == shapes:
            model = create_model(config)
            model.load_state_dict(tensors)
            return model.eval()
    model = create_model(m.model)
    ours = set(model.state_dict())
    if m.released is not None and set(tensors) != ours:
        try:
            model = _resolve(m.released)(path, model)
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path}: the keys fit neither fusionlib's {name} ({len(ours)} tensors) nor the "
                             f"authors' released weights: {e}") from None
    else:
        missing = sorted(ours - set(tensors))[:5]
        extra = sorted(set(tensors) - ours)[:5]
        wrong = [k for k in ours & set(tensors) if tuple(model.state_dict()[k].shape) != shapes[k]][:5]
        raise ValueError(f"{path} does not hold {name} weights (configurations tried: {(m.model, *m.variants)}): "
                         f"missing {missing} ..., unexpected {extra} ..., wrong shapes {wrong}")
    return model.eval()


#: Inference paths a :class:`Fuser` can take: the fastest exact one, or the readable reference.
PATHS = ("fast", "readable")


def inference_path(name: str, model: nn.Module | None, path: str = "fast", **infer_kwargs: Any
                   ) -> tuple[str, Callable[..., torch.Tensor] | None]:
    """``(label, fn)``: the path ``name`` runs on ``model``; ``fn(model, ir, vi, **infer_kwargs)``, or None for
    the readable one (``infer`` or ``model(ir, vi)``).

    ``path="fast"`` takes the method's fast path when it has one that supports ``model``'s configuration and
    the inference options (RPFNet: only ``mode="eval"``); else the readable one, and the label says why.
    ``"readable"`` always the readable ``forward``.
    """
    if path not in PATHS:
        raise ValueError(f"unknown inference path {path!r}; choose one of {', '.join(PATHS)}")
    m = get_method(name)
    if m.rule is not None:
        return "rule", None
    if path == "readable" or m.fast is None:
        return "readable" + ("" if path == "readable" else " (no fast path for this method)"), None
    mod, _, fn = m.fast.partition(":")
    options = {**m.infer_kwargs, **infer_kwargs}
    if not _resolve(f"{mod}:fast_path_supported")(model, **options):
        why = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "this configuration"
        return f"readable (no fast path for {why})", None
    return f"fast ({fn})", _resolve(m.fast)


def fast_forward(name: str, model: nn.Module, path: str = "fast", **infer_kwargs: Any
                 ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(ir, vi) -> fused`` on ``model`` by :func:`inference_path` (no clamping, no padding), for notebooks.

    The method's inference options (RPFNet's ``mode``) apply to either path.
    """
    m = get_method(name)
    options = {**m.infer_kwargs, **infer_kwargs} if m.infer else {}
    _, fn = inference_path(name, model, path, **options)
    if fn is None:
        fn = _resolve(m.infer) if m.infer else None
    if fn is None:
        return model
    return lambda ir, vi: fn(model, ir, vi, **options)


class Fuser:
    """A ready-to-use fusion function ``(ir, vi) -> fused`` on ``(B, 1, H, W)`` in [0, 1].

    Pads (reflect) to the method's size multiple and crops back, runs without gradients on ``device``.
    ``path="fast"`` (default) runs the method's fastest exact inference path where it has one (SIBA's
    ``forward_fast``; RPFNet's folded-BatchNorm path in ``mode="eval"``); ``path="readable"`` the readable
    ``forward``. ``self.path`` says which runs.
    """

    def __init__(self, name: str, weights: str | Path | None = None, *, device: str | torch.device = "cpu",
                 path: str = "fast", **infer_kwargs: Any) -> None:
        self.method = get_method(name)
        self.device = torch.device(device)
        self.model = None if self.method.rule else load_model(name, weights).to(self.device)
        self.infer = _resolve(self.method.infer) if self.method.infer else None
        self.infer_kwargs = {**self.method.infer_kwargs, **infer_kwargs}
        self.path, self._fast = inference_path(name, self.model, path, **self.infer_kwargs)

    def forward_only(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """The network (or rule) alone on already padded, on-device inputs."""
        if self.method.rule is not None:
            return self.method.rule(ir, vi)
        with torch.inference_mode():
            if self._fast is not None:  # infer_kwargs (RPFNet's BatchNorm mode) belong to methods with ``infer``
                return self._fast(self.model, ir, vi, **(self.infer_kwargs if self.infer else {}))
            if self.infer is not None:
                return self.infer(self.model, ir, vi, **self.infer_kwargs)
            return self.model(ir, vi)

    def __call__(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        if ir.shape != vi.shape or ir.ndim != 4 or ir.shape[1] != 1:
            raise ValueError(f"{self.method.name}: ir and vi must both be (B, 1, H, W), got {tuple(ir.shape)} and "
                             f"{tuple(vi.shape)}")
        h, w = ir.shape[-2:]
        k = self.method.multiple
        ph, pw = (-h) % k, (-w) % k
        x = torch.cat([ir, vi], 1).to(self.device)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if (ph < h and pw < w) else "replicate")
        out = self.forward_only(x[:, :1], x[:, 1:])
        return out[..., :h, :w].clamp(0, 1)


def load_fuser(name: str, weights: str | Path | None = None, *, device: str | torch.device = "cpu",
               path: str = "fast", **infer_kwargs: Any) -> Fuser:
    """``Fuser(name, weights, device=..., path=...)``."""
    return Fuser(name, weights, device=device, path=path, **infer_kwargs)


def recipes_of(name: str) -> Mapping[str, Any]:
    """``{profile: Recipe}`` of a trainable method."""
    m = get_method(name)
    if m.recipes is None:
        raise ValueError(f"{name} has no training recipe")
    return _resolve(m.recipes)


@dataclass
class TrainedMethod:
    """What :func:`train_method` returns: the model (CPU, eval), its history, laziness records, weights file."""

    name: str
    model: nn.Module
    history: Any
    laziness: list[dict]
    weights: Path
    seconds: float


def train_method(name: str, profile: str = "smoke", *, out_dir: str | Path, device: str | torch.device = "auto",
                 seed: int = 0, progress: bool = True, data_dir: str | Path | None = None,
                 resume: bool = True, max_steps: int | None = None) -> TrainedMethod:
    """Train ``name`` with its own training function and recipe; save ``out_dir/weights.pt``.

    The same ``train_<paper>`` function its notebook uses, on the bundled training sets the recipe
    names, with a :class:`fusionlib.laziness.LazinessTracker`. Checkpoints go to ``out_dir/train_<profile>``
    (an interrupted run resumes there unless ``resume=False``; another profile trains in its own folder); the laziness records to
    ``out_dir/laziness.json``. ``max_steps`` caps the recipe's optimiser steps (a shorter run, same recipe).
    """
    from fusionlib.atomic import atomic_save
    from fusionlib.laziness import LazinessTracker
    from fusionlib.models import create_model
    from fusionlib.recipes import recipe_epochs, recipe_loader

    m = get_method(name)
    if m.train is None:
        raise ValueError(f"{name} has no training function")
    recipes = recipes_of(name)
    if profile not in recipes:
        raise ValueError(f"{name} has no {profile!r} recipe; it has {sorted(recipes)}")
    recipe = recipes[profile]
    if max_steps is not None:
        recipe = dataclasses.replace(recipe, max_steps=min(max_steps, recipe.max_steps or max_steps))
    out_dir = Path(out_dir)
    train_dir = out_dir / f"train_{profile}"  # one checkpoint folder per profile: smoke never resumes as lab
    if not resume and train_dir.exists():
        shutil.rmtree(train_dir)
    torch.manual_seed(seed)
    model = create_model(getattr(recipe, "model", None) or m.model)  # a recipe may name a smaller configuration
    loader = (_resolve(m.loader)(recipe, seed=seed, data_dir=data_dir) if m.loader
              else recipe_loader(recipe, seed=seed, data_dir=data_dir))
    tracker = LazinessTracker()
    t0 = time.perf_counter()
    epochs, cut = recipe_epochs(recipe, len(loader))  # every train_<paper> takes these two explicitly
    history = _resolve(m.train)(model, loader, recipe=recipe, device=device, seed=seed, out_dir=train_dir,
                                epochs=epochs, max_steps_per_epoch=cut, callbacks=[tracker], progress=progress)
    seconds = time.perf_counter() - t0
    model = model.to("cpu").eval()
    weights = atomic_save(model.state_dict(), out_dir / "weights.pt")
    save_laziness(tracker.records, out_dir)
    return TrainedMethod(name, model, history, list(tracker.records), Path(weights), seconds)


def save_laziness(records: list[dict], out_dir: str | Path) -> Path:
    """``out_dir/laziness.json``: a training run's laziness records, read back by the benchmark notebook."""
    from fusionlib.atomic import atomic_write_text

    return atomic_write_text(Path(out_dir) / "laziness.json", json.dumps(list(records)) + "\n")


def load_laziness(name: str, runs: str | Path = "runs") -> list[dict] | None:
    """The laziness records the notebook of ``name`` saved in ``runs/<notebook>/laziness.json``, if any."""
    m = get_method(name)
    p = Path(runs) / (m.notebook or "-") / "laziness.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _builtin() -> None:
    from fusionlib.baselines import average_fusion, max_fusion

    register_method(Method("average", "Average", rule=average_fusion, paper="classical: (ir + vi) / 2"))
    register_method(Method("max", "Max", rule=max_fusion, paper="classical: max(ir, vi)"))
    register_method(Method("tinyfuse", "TinyFuse (00)", model="tinyfuse", notebook="00_foundations",
                           recipes="fusionlib.models.tinyfuse:TINYFUSE_RECIPES",
                           train="fusionlib.models.tinyfuse:train_tinyfuse",
                           paper="the suite's small teaching CNN"))
    register_method(Method("aidfusion", "AIDFusion", model="aidfusion", notebook="01_aidfusion",
                           recipes="fusionlib.models.aidfusion:AID_RECIPES",
                           train="fusionlib.models.aidfusion:train_aidfusion",
                           paper="AIDFusion, AAAI 2026 (re-implemented from the paper; no code released)"))
    register_method(Method("siba", "SIBA", model="siba", notebook="02_siba",
                           released="fusionlib.checkpoints:load_siba_released",
                           fast="fusionlib.models.siba_fast:siba_forward_fast",
                           recipes="fusionlib.models.siba:SIBA_RECIPES", train="fusionlib.models.siba:train_siba",
                           paper="Wang et al., The Source Image is the Best Attention..., ICCV 2025"))
    register_method(Method("dmnet", "DMNet", model="dmnet", notebook="05_dmnet", variants=("dmnet_tiny", "dmnet_narrow"),
                           recipes="fusionlib.models.dmnet:DMNET_RECIPES", train="fusionlib.models.dmnet:train_dmnet",
                           paper="DMNet, IEEE TMM (re-implemented; every module trained, see 05_dmnet)"))
    register_method(Method("lkc_funet", "LKC-FUNet", model="lkc_funet", notebook="03_lkc_funet", multiple=4,
                           variants=("lkc_funet_narrow", "lkc_funet_tiny"),
                           recipes="fusionlib.models.lkc_funet:LKC_RECIPES",
                           train="fusionlib.models.lkc_funet:train_lkc_funet",
                           loader="fusionlib.models.lkc_funet:lkc_loader",
                           fast="fusionlib.models.lkc_funet_fast:lkc_forward_fast",
                           paper="LKC-FUNet, Pattern Recognition 2026 (paper normalisation: IN + GN)"))
    register_method(Method("rpfnet", "RPFNet", model="rpfnet", notebook="04_rpfnet",
                           released="fusionlib.checkpoints:load_rpfnet_released",
                           infer="fusionlib.models.rpfnet:rpfnet_infer", infer_kwargs={"mode": "as_released"},
                           fast="fusionlib.models.rpfnet_fast:rpfnet_forward_fast",
                           recipes="fusionlib.models.rpfnet:RPFNET_RECIPES", train="fusionlib.models.rpfnet:train_rpfnet",
                           paper="RPFNet, ACM MM 2025"))


_builtin()
