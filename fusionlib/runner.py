"""Execute the notebooks with papermill: ``python -m fusionlib.runner notebooks --out runs``.

Each notebook ``notebooks/NN_name.ipynb`` runs with parameters ``profile``, ``out_dir`` (and
``data_root`` when given) into ``runs/NN_name/``: the executed notebook, its figures and
``results.json``. A notebook that reads the other notebooks' runs (06_benchmark's ``runs_dir``) is
pointed at the same ``--out`` folder. ``make run`` and ``tests/test_notebooks.py`` both go through here.

Before a notebook runs, what its previous run left in ``runs/NN_name/`` (results, figures, weights) is
moved to ``runs/NN_name/.previous/``, so nothing of an old run is mistaken for the new one's; the
training checkpoints (``train_<profile>/``) stay, so an interrupted run resumes. A notebook that fails
leaves ``FAILED.txt`` (the cell, the exception and its message) in its folder: the ``fuse`` command,
06_benchmark and the site do not use a failed run's weights or results, and the runner's summary prints
the error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from fusionlib.nb import resolve_profile

__all__ = ["find_notebooks", "kernel_name", "run_notebook", "check_results", "failure_reason", "run_failed",
           "FAILED_NAME", "main"]

FAILED_NAME = "FAILED.txt"
PREVIOUS_NAME = ".previous"


def find_notebooks(folder: str | Path) -> list[Path]:
    """The numbered notebooks ``NN_*.ipynb`` of a folder, in order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {folder} does not exist (run from the repository root, or "
                                f"give the folder holding NN_name.ipynb)")
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def kernel_name() -> str:
    """The registered ``fusionlib`` kernel when present (``make`` installs it), else ``python3``."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        if "fusionlib" in KernelSpecManager().find_kernel_specs():
            return "fusionlib"
    except Exception:  # pragma: no cover - jupyter_client always ships with papermill
        pass
    return "python3"


def _finite_numbers(x: Any, where: str = "") -> list[str]:
    bad: list[str] = []
    if isinstance(x, dict):
        for k, v in x.items():
            bad += _finite_numbers(v, f"{where}.{k}" if where else str(k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            bad += _finite_numbers(v, f"{where}[{i}]")
    elif isinstance(x, float) and not math.isfinite(x):
        bad.append(where)
    return bad


def check_results(path: str | Path) -> dict[str, Any]:
    """Load a ``results.json`` and check it holds at least one number, all of them finite."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} was not written")
    data = json.loads(path.read_text(), parse_constant=lambda c: float(c))
    bad = _finite_numbers(data)
    if bad:
        raise ValueError(f"{path}: non-finite values at {', '.join(bad)}")

    def count(x: Any) -> int:
        if isinstance(x, dict):
            return sum(count(v) for v in x.values())
        if isinstance(x, list):
            return sum(count(v) for v in x)
        return int(isinstance(x, (int, float)) and not isinstance(x, bool))

    if count(data) == 0:
        raise ValueError(f"{path}: holds no numbers")
    return data


def run_failed(out_dir: str | Path) -> str | None:
    """The reason recorded in ``out_dir/FAILED.txt`` when that notebook's last run failed, else None."""
    p = Path(out_dir) / FAILED_NAME
    if not p.is_file():
        return None
    return p.read_text().strip() or "failed"


def failure_reason(e: BaseException) -> str:
    """One line: the failing cell, the exception and its message (papermill's error, or any other)."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename is not None:
        cell = getattr(e, "exec_count", None)
        where = f"cell [{cell}]" if cell is not None else f"cell #{getattr(e, 'cell_index', '?')}"
        msg = (str(evalue).strip().splitlines() or [""])[0]
        return f"{where}: {ename}: {msg}"
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _set_aside_previous(out_dir: Path) -> None:
    """Move the previous run's outputs into ``out_dir/.previous/`` (replacing an older copy); keep ``train_*``."""
    import shutil

    stale = [p for p in out_dir.iterdir() if p.name != PREVIOUS_NAME and not p.name.startswith("train")]
    if not stale:
        return
    prev = out_dir / PREVIOUS_NAME
    if prev.exists():
        shutil.rmtree(prev)
    prev.mkdir()
    for p in stale:
        p.rename(prev / p.name)


def parse_param_value(text: str) -> Any:
    """A ``-p KEY=VALUE`` value as the notebook expects it: ``True``/``False``/``None``, ints, floats and
    Python literals (lists, dicts, quoted strings) are parsed, anything else stays a string (a path).

    Examples:
        >>> parse_param_value("False"), parse_param_value("12"), parse_param_value("/data/x.pth")
        (False, 12, '/data/x.pth')
    """
    import ast

    low = {"true": True, "false": False, "none": None, "null": None}
    if text.strip().lower() in low:
        return low[text.strip().lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _declared_parameters(nb: Path) -> set[str]:
    """Names assigned in the notebook's ``parameters`` cell (empty when it has none)."""
    cells = json.loads(nb.read_text(encoding="utf-8")).get("cells", [])
    src = next(("".join(c.get("source", "")) for c in cells
                if "parameters" in c.get("metadata", {}).get("tags", [])), "")
    return {m.split("=")[0].strip() for m in src.splitlines() if "=" in m and m[:1].isidentifier()}


def run_notebook(nb: str | Path, out_root: str | Path, *, profile: str = "auto",
                 parameters: dict[str, Any] | None = None, progress: bool = True,
                 timeout: int | None = None) -> Path:
    """Execute one notebook with papermill into ``out_root/<stem>/``; returns the results.json path.

    The previous run's outputs are set aside first (``.previous/``); on failure ``FAILED.txt`` records why
    and the exception propagates.
    """
    import papermill as pm

    from fusionlib.atomic import atomic_write_text

    nb = Path(nb)
    if not nb.is_file():
        raise FileNotFoundError(f"notebook {nb} does not exist")
    out_dir = Path(out_root) / nb.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    _set_aside_previous(out_dir)
    params = {"profile": resolve_profile(profile), "out_dir": str(out_dir.resolve())}
    if "runs_dir" in _declared_parameters(nb):  # 06 reads the paper notebooks' runs: those of this out_root
        params["runs_dir"] = str(Path(out_root).resolve())
    params.update(parameters or {})
    # Widgets draw their static fallback in batch runs; figures do not need a display.
    os.environ.setdefault("FUSIONLIB_STATIC_WIDGETS", "1")
    try:
        pm.execute_notebook(
            str(nb), str(out_dir / nb.name), parameters=params, kernel_name=kernel_name(),
            progress_bar=progress, cwd=str(nb.parent.resolve()), execution_timeout=timeout,
        )
        check_results(out_dir / "results.json")
    except BaseException as e:
        atomic_write_text(out_dir / FAILED_NAME, f"{nb.name} at profile {params['profile']!r}: "
                                                 f"{failure_reason(e)}\n")
        raise
    return out_dir / "results.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusionlib.runner", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default="notebooks")
    ap.add_argument("--out", default="runs")
    ap.add_argument("--profile", default="auto", help="smoke | lab | paper | auto (lab on a GPU, else smoke)")
    ap.add_argument("--only", nargs="*", default=None, help="notebook stems or numbers to run, e.g. 00 02_siba")
    ap.add_argument("--data-root", default=None, help="full datasets for the paper profile")
    ap.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                    help="extra notebook parameter, e.g. -p checkpoint=/path/SIBA_epoch60.pth (repeatable)")
    args = ap.parse_args(argv)

    try:
        profile = resolve_profile(args.profile)
        notebooks = find_notebooks(args.folder)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.data_root and profile != "paper":
        print(f"error: --data-root is read only at --profile paper (01_aidfusion's full MSRS training set); "
              f"this run's profile is {profile!r}: drop --data-root, or add --profile paper", file=sys.stderr)
        return 2
    if args.only:
        notebooks = [p for p in notebooks if any(p.stem == o or p.stem.startswith(o) for o in args.only)]
    if not notebooks:
        print(f"error: no notebooks selected in {args.folder}", file=sys.stderr)
        return 2
    extra = {"data_root": args.data_root} if args.data_root else {}
    for kv in args.param:
        if "=" not in kv:
            print(f"error: --param expects KEY=VALUE, got {kv!r}", file=sys.stderr)
            return 2
        key, value = kv.split("=", 1)
        extra[key] = parse_param_value(value)
    why = ("set by --profile" if args.profile != "auto"
           else "auto: GPU found" if profile == "lab" else "auto: no GPU, CPU smoke run")
    print(f"profile {profile!r} ({why}); {len(notebooks)} notebook(s) -> {args.out}/")
    failures, summary = [], []
    for i, nb in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {nb.name}", flush=True)
        t0 = time.perf_counter()
        try:
            run_notebook(nb, args.out, profile=profile, parameters=extra)
            status = "ok"
        except Exception as e:  # keep going: report every notebook
            status = f"FAILED at {failure_reason(e)}"
            failures.append(nb.name)
            print(f"  {nb.name} FAILED at {failure_reason(e)} (executed notebook: {Path(args.out) / nb.stem / nb.name})",
                  file=sys.stderr)
        summary.append((nb.name, time.perf_counter() - t0, status))
    print("\nnotebook                          seconds  status")
    for name, sec, status in summary:
        print(f"{name:<33} {sec:7.1f}  {status}")
    total = sum(sec for _, sec, _ in summary)
    print(f"{'total':<33} {total:7.1f}  ({total / 60:.1f} min)")
    print(f"\noutputs: {Path(args.out).resolve()}/<notebook>/ (the executed notebook, results.json, figures, "
          f"weights.pt)")
    print("next: `make site` (an offline HTML site of these runs), `make lab` (open the notebooks in JupyterLab), "
          "`make labs` (student versions), `python -m fusionlib.fuse --help` (fuse your own images)")
    if failures:
        print(f"\n{len(failures)} notebook(s) failed; their folders hold FAILED.txt and their previous outputs "
              f"are in .previous/ (the fuse command and 06_benchmark do not use a failed run's weights)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
