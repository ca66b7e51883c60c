"""Notebook helpers: run profiles, one-cell setup, ``show`` (render fusionlib's own source)
and ``record`` (the machine-readable ``results.json`` every notebook writes).
"""

from __future__ import annotations

import inspect
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionlib.atomic import atomic_write_text
from fusionlib.train import resolve_device, seed_everything

__all__ = ["PROFILES", "resolve_profile", "resolve_device", "setup", "Setup", "show", "record", "atomic_write_text",
           "laziness_section"]

#: Run profiles (DESIGN.md): every profile runs every section; smoke shrinks steps and sizes.
PROFILES: dict[str, str] = {
    "smoke": "CPU / CI: <= ~2 min a notebook on 2 cores, bundled pairs, tiny crops, a few steps",
    "lab": "one GPU, a class session: <= ~15 min a notebook, bundled train splits and test sets",
    "paper": "GPUs, hours: the paper's recipe on the full public dataset under data_root",
}


def resolve_profile(profile: str | None = "auto", device: str | torch.device = "auto") -> str:
    """``"auto"``/None -> ``lab`` when a CUDA GPU is present, else ``smoke``; names are checked."""
    if profile in (None, "", "auto"):
        return "lab" if resolve_device(device).type == "cuda" else "smoke"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)} or 'auto'")
    return profile


@dataclass(frozen=True)
class Setup:
    """What a notebook's setup cell decided: device, profile, seed, output folder."""

    device: torch.device
    profile: str
    seed: int
    out_dir: Path
    versions: dict[str, str]

    @property
    def train_dir(self) -> Path:
        """``out_dir/train_<profile>``: the training checkpoints, one folder per profile (a smoke run's
        checkpoint is never resumed by a lab run; ``fusionlib.train.fit`` refuses that anyway)."""
        return self.out_dir / f"train_{self.profile}"


def _versions() -> dict[str, str]:
    import fusionlib

    out = {"python": platform.python_version(), "torch": torch.__version__, "fusionlib": fusionlib.__version__}
    for mod in ("kornia", "einops", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            pass
    return out


def setup(*, seed: int = 0, device: str = "auto", profile: str = "auto", out_dir: str | Path = "runs/scratch",
          threads: int | None = None, verbose: bool = True) -> Setup:
    """One call at the top of every notebook: seed, device, profile, output folder, versions printed.

    Also keeps freed memory in the process for reuse (:func:`fusionlib.allocator.keep_freed_memory`): full-size
    forwards and training steps then spend far less time in the kernel.
    """
    from fusionlib.allocator import keep_freed_memory

    keep_freed_memory()
    dev = resolve_device(device)
    prof = resolve_profile(profile, dev)
    seed_everything(seed)
    if threads:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    versions = _versions()
    if verbose:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
        print(f"profile={prof} ({PROFILES[prof]})")
        print(f"device={dev} [{name}], torch threads={torch.get_num_threads()}, seed={seed}")
        print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        print(f"outputs -> {out.resolve()}")
    return Setup(device=dev, profile=prof, seed=seed, out_dir=out, versions=versions)


def budget(budgets: dict[str, dict[str, Any]], profile: str, **overrides: Any) -> dict[str, Any]:
    """The notebook's budget for ``profile`` (a copy), with the non-None ``overrides`` (e.g. ``epochs``), printed.

    Examples:
        >>> budget({"smoke": {"epochs": 2, "crop": 64}}, "smoke", epochs=None, crop=32)
        budget: {'epochs': 2, 'crop': 32}
        {'epochs': 2, 'crop': 32}
    """
    if profile not in budgets:
        raise ValueError(f"no budget for profile {profile!r}; this notebook defines {sorted(budgets)}")
    b = dict(budgets[profile])
    b.update({k: (int(v) if isinstance(v, float) and v.is_integer() else v)
              for k, v in overrides.items() if v is not None})
    print("budget:", b)
    return b


HIDDEN_SOURCES: set[str] = set()
"""``module.Name`` of the exercise targets whose source ``show`` hides (set by a student notebook)."""


def show(obj: Any) -> Any:
    """Render the source of a fusionlib class or function (there is one copy of the code).

    In a student notebook (``make labs``) the exercise targets print a pointer to the exercise instead.
    """
    if f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}" in HIDDEN_SOURCES:
        print(f"(the source of {obj.__qualname__} is hidden in the student version: you write it in its exercise)")
        return None
    src = inspect.getsource(obj)
    try:
        from IPython.display import Code

        return Code(src, language="python")
    except ImportError:  # pragma: no cover - outside IPython
        print(src)
        return None


def _jsonable(x: Any, where: str, bad: list[str]) -> Any:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.item() if x.numel() == 1 else x.tolist()
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, dict):
        return {str(k): _jsonable(v, f"{where}.{k}" if where else str(k), bad) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]", bad) for i, v in enumerate(x)]
    if isinstance(x, float) and not math.isfinite(x):
        bad.append(where)
    if isinstance(x, Path):
        return str(x)
    return x


def record(out_dir: str | Path, results: dict[str, Any], *, name: str = "results.json",
           meta: Setup | None = None) -> Path:
    """Write ``results`` (nested dict of numbers/strings) to ``out_dir/name`` atomically.

    Every number must be finite: a NaN in a results file is a bug to surface, not to store;
    the error lists the offending keys.
    """
    bad: list[str] = []
    payload = _jsonable(dict(results), "", bad)
    if bad:
        raise ValueError(f"non-finite values in results for {name}: {', '.join(bad)}")
    if meta is not None:
        payload = {"meta": {"profile": meta.profile, "device": str(meta.device), "seed": meta.seed,
                            "versions": meta.versions, "written": time.strftime("%Y-%m-%dT%H:%M:%S")},
                   **payload}
    return atomic_write_text(Path(out_dir) / name, json.dumps(payload, indent=1, sort_keys=False) + "\n")


def laziness_section(records, out_dir: str | Path, results: dict[str, Any], *, threshold: float = 1e-3):
    """A paper notebook's laziness summary: the relative-update curves, saved, and two entries in ``results``.

    Plots ``‖W_e − W_{e−1}‖_F / ‖W_{e−1}‖_F`` per block and epoch (log scale) to
    ``<out_dir>/laziness_rel.png``; stores ``laziness_fraction_above_1e-3`` (for the default threshold) (per block, the
    fraction of epochs above ``threshold``, :func:`fusionlib.laziness.summarise`) and
    ``laziness_last_relative`` (per block, the last epoch's relative update) in ``results``, prints
    the first, and returns the figure.
    """
    from fusionlib import viz
    from fusionlib.laziness import summarise

    records = list(records)
    fig = viz.plot_laziness(records, relative=True, logy=True, title="relative ‖ΔW‖_F / ‖W‖_F per epoch")
    viz.save_figure(fig, out_dir, "laziness_rel")
    lazy = summarise(records, threshold=threshold)
    label = f"{threshold:.0e}".replace("e-0", "e-").replace("e+0", "e")  # 1e-3, as the results keys spell it
    print(f"fraction of epochs each block's relative update stayed above {label}:", lazy)
    last = max(int(r["epoch"]) for r in records) if records else None
    results[f"laziness_fraction_above_{label}"] = lazy
    results["laziness_last_relative"] = {r["block"]: r["relative"] for r in records if r["epoch"] == last}
    return fig
