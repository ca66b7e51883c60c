"""Weights trained by the suite and shipped in ``weights/``: train, record, verify, find.

``make weights`` (``python -m fusionlib.weights train``) trains every shipped network with its notebook's own
training function and recipe (:func:`fusionlib.methods.train_method`), evaluates it on the bundled test sets
and writes ``weights/<method>.pt`` plus its record in ``weights/MANIFEST.json`` (sha256, notebook, profile and
recipe, optimiser steps, seed, date, device, wall time, commit, metrics, data terms). ``python -m
fusionlib.weights check`` verifies the files against the manifest.

Two networks are too large to train on two CPU cores in a few hours (LKC-FUNet, 41 M parameters with 15x15
kernels; DMNet, a 391 M-parameter denoiser). For them the shipped file is a *narrow configuration of the same
architecture* (registered as ``lkc_funet_narrow`` / ``dmnet_narrow``) trained by the ``cpu`` recipe; every
place that shows it says so (:func:`shipped_label`). The full-size path is unchanged and trains on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionlib.gitinfo import checkout_commit

__all__ = ["ShippedSpec", "SHIPPED", "WEIGHTS_DIR", "MANIFEST", "sha256", "load_manifest", "shipped_weights",
           "shipped_record", "shipped_label", "describe_record", "resolve_weights", "shipped_model", "network_for",
           "PickedNetwork", "pick_network", "train_shipped", "evaluate_weights", "publish",
           "check_manifest", "main"]

#: The repository's ``weights/`` folder (beside ``fusionlib/``).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class ShippedSpec:
    """How a shipped network is trained: the method, the recipe profile, and what differs from the paper."""

    method: str
    profile: str
    narrow: str = ""          # what differs from the paper's configuration ("" = the notebook's network)


#: Every shipped network, in training order (cheap first).
SHIPPED: dict[str, ShippedSpec] = {s.method: s for s in (
    ShippedSpec("tinyfuse", "lab"),
    ShippedSpec("rpfnet", "lab"),
    ShippedSpec("siba", "lab"),
    ShippedSpec("aidfusion", "lab"),
    ShippedSpec("lkc_funet", "cpu", narrow="narrow: see LKC_RECIPES['cpu'] (lkc_funet_narrow)"),
    ShippedSpec("dmnet", "cpu", narrow="narrow: see DMNET_RECIPES['cpu'] (dmnet_narrow)"),
)}

#: Terms that apply to weights trained on the bundled data (data/README.md lists each set's source).
DATA_TERMS = ("trained only on the bundled training pairs (data/msrs_mini/train, data/roadscene_train, "
              "data/harvard_train, as the recipe names); those images keep their sources' terms "
              "(data/README.md, data/*/SOURCE.md): for research and teaching, cite the datasets")


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file (``fusionlib.data.checks.sha256_file``, imported here so that the site build, which
    reads the manifest, does not import torch)."""
    from fusionlib.data.checks import sha256_file

    return sha256_file(path)


def load_manifest(weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Any]:
    """``weights/MANIFEST.json`` as a dict (``{"schema": 1, "weights": {}}`` when absent)."""
    p = Path(weights_dir) / MANIFEST
    if not p.is_file():
        return {"schema": 1, "weights": {}}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None


def shipped_record(method: str, weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Any] | None:
    """The manifest record of ``method``'s shipped weights, or None."""
    return load_manifest(weights_dir)["weights"].get(method)


def shipped_weights(method: str, weights_dir: str | Path = WEIGHTS_DIR) -> Path | None:
    """``weights/<method>.pt`` when the manifest lists it and the file is there, else None."""
    rec = shipped_record(method, weights_dir)
    if rec is None:
        return None
    p = Path(weights_dir) / rec["file"]
    return p if p.is_file() else None


def shipped_label(method: str, weights_dir: str | Path = WEIGHTS_DIR) -> str:
    """One line saying which network the shipped file is, e.g. ``"shipped (lab, 500 steps on cpu)"``."""
    rec = shipped_record(method, weights_dir)
    if rec is None:
        return "no shipped weights"
    narrow = f", {rec['config']} ({rec['parameters']:,} parameters; {rec['narrow']})" if rec.get("narrow") else ""
    return (f"shipped weights/{rec['file']} ({rec['profile']} recipe, {rec['steps']} steps on {rec['device']}"
            f"{narrow})")


def describe_record(rec: dict[str, Any]) -> str:
    """One line on how a shipped network was trained (a manifest record), for a notebook to print."""
    narrow = f"{rec['config']}, {rec['parameters']:,} parameters; " if rec.get("narrow") else ""
    return (f"weights/{rec['file']}: {narrow}{rec['steps']} steps of the {rec['profile']!r} recipe, trained on "
            f"{rec['device']} in {rec['wall_seconds'] / 60:.1f} min, started {rec['started']}, commit "
            f"{rec['commit'][:12]}, seed {rec['seed']}, sha256 {rec['sha256'][:12]}...")


def resolve_weights(method: str, runs: str | Path = "runs", weights_dir: str | Path = WEIGHTS_DIR
                    ) -> tuple[Path | None, str]:
    """``(path, where)``: ``runs/<notebook>/weights.pt`` when present, else the shipped file, else None.

    ``where`` says which, for a command or a table to print.
    """
    from fusionlib.methods import default_weights, get_method

    run = default_weights(method, runs)
    if run is not None:
        return run, f"{get_method(method).notebook} run ({run})"
    shipped = shipped_weights(method, weights_dir)
    if shipped is not None:
        return shipped, shipped_label(method, weights_dir)
    return None, "no weights (train the notebook, or `make weights`)"


def shipped_model(method: str, weights_dir: str | Path = WEIGHTS_DIR):
    """The shipped network of ``method`` (CPU, eval mode), or None when ``weights/`` has none."""
    from fusionlib.methods import load_model

    p = shipped_weights(method, weights_dir)
    return None if p is None else load_model(method, p)


def network_for(method: str, own_model, profile: str, weights_dir: str | Path = WEIGHTS_DIR):
    """``(model, label)``: the network a notebook's inspection and evaluation sections show.

    At ``lab``/``paper`` the notebook's own trained ``own_model``; at ``smoke`` the shipped lab-trained
    network when ``weights/`` has it (a smoke run trains a few steps and learns little), else ``own_model``.
    ``label`` names it, for figure titles and tables.
    """
    if profile != "smoke":
        return own_model, f"this run's network ({profile} profile)"
    shipped = shipped_model(method, weights_dir)
    if shipped is None:
        return own_model, "this run's smoke network (a few steps: it learns little; weights/ has none shipped)"
    try:
        device = next(own_model.parameters()).device
    except (AttributeError, StopIteration):
        device = "cpu"
    return shipped.to(device), shipped_label(method, weights_dir)


@dataclass
class PickedNetwork:
    """The network a notebook's inspection and evaluation sections show (:func:`pick_network`)."""

    model: Any                    # eval mode, on the device of the notebook's own model
    label: str                    # one line for figure titles and tables
    short: str                    # a few words for legends, e.g. "shipped, lab recipe, 500 steps"
    record: dict[str, Any] | None  # the manifest record when the shipped network is shown, else None

    @property
    def shipped(self) -> bool:
        return self.record is not None


def pick_network(method: str, own_model, profile: str, *, own_short: str, weights_dir: str | Path = WEIGHTS_DIR,
                 where: str = "the sections below") -> PickedNetwork:
    """:func:`network_for` plus what a notebook prints and labels with it.

    Prints how the shipped network was trained (:func:`describe_record`) when it is the one shown, then
    ``"the network <where> show: <label>"``. ``own_short`` is the legend label of the notebook's own network.
    """
    model, label = network_for(method, own_model, profile, weights_dir)
    record = shipped_record(method, weights_dir) if model is not own_model else None
    if record is None:
        short = own_short
    else:
        narrow = (f" {record['config']} (narrow, {record['parameters'] / 1e6:.2g} M parameters)"
                  if record.get("narrow") else "")
        short = f"shipped{narrow}, {record['profile']} recipe, {record['steps']:,} steps"
        print(describe_record(record))
    print(f"the network {where} show: {label}")
    return PickedNetwork(model.eval(), label, short, record)


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    n = torch.get_num_threads()
    return f"cpu ({platform.processor() or platform.machine()}, {n} thread{'' if n == 1 else 's'})"


def train_shipped(method: str, *, runs: str | Path = "runs", device: str = "auto", seed: int = 0,
                  progress: bool = True, max_steps: int | None = None) -> dict[str, Any]:
    """Train ``method`` as :data:`SHIPPED` says into ``runs/weights/<method>/`` and record how.

    Returns the training record (also written as ``runs/weights/<method>/training.json``); the run resumes
    from its checkpoint when interrupted. :func:`publish` evaluates it and copies it into ``weights/``.
    """
    import torch

    from fusionlib.atomic import atomic_write_text
    from fusionlib.methods import recipes_of, train_method
    from fusionlib.train import resolve_device

    spec = SHIPPED[method]
    out = Path(runs) / "weights" / method
    commit = checkout_commit(("fusionlib",), WEIGHTS_DIR.parent)
    started = _dt.datetime.now().isoformat(timespec="seconds")
    dev = resolve_device(device)
    trained = train_method(method, spec.profile, out_dir=out, device=dev, seed=seed, progress=progress,
                           max_steps=max_steps)
    recipe = recipes_of(method)[spec.profile]
    steps = _count_steps(trained.history)
    record = {
        "method": method, "profile": spec.profile, "recipe": repr(recipe), "seed": seed, "steps": steps,
        "started": started, "device": _device_name(str(dev)), "torch": torch.__version__,
        "wall_seconds": round(trained.seconds, 1), "commit": commit,
        "config": getattr(recipe, "model", None) or method,
        "parameters": sum(p.numel() for p in trained.model.parameters()), "narrow": spec.narrow,
    }
    atomic_write_text(out / "training.json", json.dumps(record, indent=1) + "\n")
    return record


def _count_steps(history: Any) -> int:
    """Optimiser steps of a ``History`` (or of every stage's, for a list or dict of them)."""
    if isinstance(history, dict):
        return sum(_count_steps(h) for h in history.values())
    if isinstance(history, (list, tuple)):
        return sum(_count_steps(h) for h in history)
    return int(sum(int(e.get("steps", 0)) for e in getattr(history, "epochs", [])))


#: Where the shipped networks are measured: every bundled test pair of these sets, full resolution.
EVAL_SETS = ("msrs", "tno")
EVAL_PRESET = "tang"


def evaluate_weights(method: str, weights: str | Path | None, *, sets: tuple[str, ...] = EVAL_SETS,
                     preset: str = EVAL_PRESET, progress: bool = True) -> dict[str, dict[str, float]]:
    """``{set: {metric: mean}}`` of ``method`` with ``weights`` on every bundled test pair of ``sets``.

    Full resolution, the method's :class:`~fusionlib.methods.Fuser` (its fast path), the preset's own
    metrics; ``{set: {"pairs": n, ...}}``. ``weights=None`` for a classical rule (``"average"``).
    """
    import torch
    from tqdm.auto import tqdm

    from fusionlib import data, metrics
    from fusionlib.methods import Fuser

    fuser = Fuser(method, weights)
    out: dict[str, dict[str, float]] = {}
    for name in sets:
        ds = data.bundled(name, "test")
        sums: dict[str, float] = {}
        for i in tqdm(range(len(ds)), desc=f"{method} on {name}", disable=not progress, leave=False):
            s = ds[i]
            ir, vi = s["ir"][None], s["vi"][None]
            with torch.inference_mode():
                fused = fuser(ir, vi)
            for k, v in metrics.evaluate(fused, ir, vi, preset=preset).items():
                sums[k] = sums.get(k, 0.0) + float(v[0])
        out[name] = {"pairs": len(ds), **{k: round(v / len(ds), 4) for k, v in sums.items()}}
    return out


def publish(method: str, *, runs: str | Path = "runs", weights_dir: str | Path = WEIGHTS_DIR,
            progress: bool = True) -> dict[str, Any]:
    """Copy ``runs/weights/<method>/weights.pt`` into ``weights/<method>.pt``, measure it, record it.

    The manifest record is the training record (:func:`train_shipped`) plus file, sha256, size, notebook,
    the metrics on the bundled test sets (:func:`evaluate_weights`) beside average fusion's, and the data terms.
    """
    import shutil

    from fusionlib.atomic import atomic_write, atomic_write_text
    from fusionlib.methods import get_method

    src_dir = Path(runs) / "weights" / method
    rec_path, src = src_dir / "training.json", src_dir / "weights.pt"
    for p in (rec_path, src):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: train it first (python -m fusionlib.weights train {method})")
    record = json.loads(rec_path.read_text())
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    dst = weights_dir / f"{method}.pt"
    with open(src, "rb") as f:
        atomic_write(dst, lambda out: shutil.copyfileobj(f, out))
    man = load_manifest(weights_dir)
    baseline = man.get("average_fusion") or evaluate_weights("average", None, progress=progress)
    history = src_dir / f"train_{record['profile']}" / "history.json"
    if history.is_file():  # training time over every process of a resumed run (fit keeps an epoch's seconds)
        epochs = json.loads(history.read_text()).get("epochs", [])
        total = round(sum(float(e.get("seconds", 0.0)) for e in epochs), 1)
        if total > record["wall_seconds"] + 60:
            record["process_seconds"] = record["wall_seconds"]
            record["resumed"] = ("resumed from its checkpoint (an interrupted run, or a shorter run whose budget "
                                 "grew); wall_seconds sums every process")
        record["wall_seconds"] = max(total, record["wall_seconds"])
    digest = sha256(dst)
    old = man["weights"].get(method, {})
    metrics = (old["metrics"] if old.get("sha256") == digest and old.get("metrics")
               else evaluate_weights(method, dst, progress=progress))
    record.update({
        "file": dst.name, "sha256": digest, "bytes": dst.stat().st_size,
        "notebook": f"notebooks/{get_method(method).notebook}.ipynb",
        "evaluation": f"every bundled test pair of {', '.join(EVAL_SETS)} at full resolution, preset "
                      f"{EVAL_PRESET!r}, fusionlib.weights.evaluate_weights",
        "metrics": metrics,
        "data_terms": DATA_TERMS,
    })
    with _manifest_lock(weights_dir):  # two trainings may publish at once: re-read, then write
        man = load_manifest(weights_dir)
        man["average_fusion"] = man.get("average_fusion") or baseline
        man["weights"][method] = record
        atomic_write_text(weights_dir / MANIFEST, json.dumps(man, indent=1, sort_keys=False) + "\n")
    return record


@contextlib.contextmanager
def _manifest_lock(weights_dir: Path):
    """An exclusive lock on ``weights/.MANIFEST.lock`` (POSIX; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: one writer at a time is the user's business
        yield
        return
    with open(weights_dir / f".{MANIFEST}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_manifest(weights_dir: str | Path = WEIGHTS_DIR) -> list[str]:
    """Problems with ``weights/``: a listed file missing or with another sha256, a file not listed."""
    weights_dir = Path(weights_dir)
    man = load_manifest(weights_dir)
    problems = []
    listed = set()
    for method, rec in man["weights"].items():
        p = weights_dir / rec["file"]
        listed.add(rec["file"])
        if not p.is_file():
            problems.append(f"{method}: {p} is listed in {MANIFEST} but missing")
        elif sha256(p) != rec["sha256"]:
            problems.append(f"{method}: {p} has sha256 {sha256(p)[:12]}..., {MANIFEST} says {rec['sha256'][:12]}...")
    for p in sorted(weights_dir.glob("*.pt")) if weights_dir.is_dir() else []:
        if p.name not in listed:
            problems.append(f"{p} is not listed in {weights_dir / MANIFEST}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusionlib.weights", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the shipped networks (runs/weights/<method>/)")
    t.add_argument("methods", nargs="*", default=list(SHIPPED), help=f"default: {' '.join(SHIPPED)}")
    t.add_argument("--runs", default="runs")
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-publish", action="store_true", help="train only; do not copy into weights/")
    pub = sub.add_parser("publish", help="measure runs/weights/<method>/ and copy it into weights/")
    pub.add_argument("methods", nargs="*", default=list(SHIPPED))
    pub.add_argument("--runs", default="runs")
    sub.add_parser("check", help="verify weights/ against weights/MANIFEST.json")
    args = ap.parse_args(argv)
    if args.cmd == "check":
        problems = check_manifest()
        for p in problems:
            print("error:", p, file=sys.stderr)
        print(f"{WEIGHTS_DIR / MANIFEST}: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
        return 1 if problems else 0
    if args.cmd == "publish":
        for m in args.methods:
            rec = publish(m, runs=args.runs)
            print(f"{m}: weights/{rec['file']} " + "; ".join(
                f"{k}: VIF {v.get('VIF', float('nan')):.3f} Qabf {v.get('Qabf', float('nan')):.3f}"
                for k, v in rec["metrics"].items()), flush=True)
        return 0
    for m in args.methods:
        if m not in SHIPPED:
            ap.error(f"{m!r} is not a shipped network; choose from {', '.join(SHIPPED)}")
    for m in args.methods:
        t0 = time.perf_counter()
        rec = train_shipped(m, runs=args.runs, device=args.device, seed=args.seed)
        print(f"{m}: {rec['steps']} steps in {time.perf_counter() - t0:.0f} s -> {args.runs}/weights/{m}/",
              flush=True)
        if not args.no_publish:
            publish(m, runs=args.runs)
            print(f"{m}: published to {WEIGHTS_DIR / (m + '.pt')} ({WEIGHTS_DIR / MANIFEST})", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
