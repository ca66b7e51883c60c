"""Stored outputs of the deterministic notebook cells, checked against the smoke run (nbval's ``--nbval-lax``).

A few code cells per notebook carry the comment line ``# NBVAL_CHECK_OUTPUT``: a parameter count, a
shape walk, an equivalence check, whose printed output is the same on every machine (integers, shapes,
True/False; no timings, no floats that depend on the BLAS). Their outputs are stored in
``notebooks/NN_name.ipynb`` (``fusionlib.nbsource`` keeps them across rebuilds while the cell's source
is unchanged). ``pytest --nbval-lax`` would execute every notebook a second time to compare them, so
instead the notebook test compares the cells of the one smoke execution that ``make test`` already
does with the stored ones, with nbval's own comparison (``nbval.plugin.IPyNbCell.compare_outputs``:
per output type and MIME type, images and metadata skipped). Standard error is left out on both sides
(a library warning is not the cell's result).

Commands (``make nbval-update`` runs the first)::

    python -m fusionlib.nbval_check update [--only 03 ...]   # rebuild, run up to the last marked cell at
                                                             # smoke, store the marked cells' outputs
    python -m fusionlib.nbval_check update --runs runs       # store them from a full smoke `make run`
    python -m fusionlib.nbval_check check --runs runs        # compare a smoke run with the stored outputs
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import types
from pathlib import Path

import nbformat

from fusionlib.nbsource import build_notebook, dumps, is_checked

__all__ = ["checked_cells", "stored_form", "compare_outputs", "check_notebook", "store_outputs",
           "update_notebook", "main"]

# What nbval (0.11, without --nbdime) leaves out of a comparison: IPyNbFile.skip_compare.
SKIP_COMPARE = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")
# MIME types not stored at all: nbval does not compare them, and they would only bloat the notebook.
_NOT_STORED = ("image/png", "image/jpeg", "image/svg+xml", "application/vnd.jupyter.widget-view+json")


def _source(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def checked_cells(nb: nbformat.NotebookNode) -> list[tuple[int, nbformat.NotebookNode]]:
    """``(index, cell)`` of every code cell marked ``# NBVAL_CHECK_OUTPUT``."""
    return [(i, c) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code" and is_checked(_source(c))]


def _read(nb: str | Path | nbformat.NotebookNode) -> nbformat.NotebookNode:
    return nb if isinstance(nb, nbformat.NotebookNode) else nbformat.read(str(nb), as_version=4)


def stored_form(outputs: list) -> list[nbformat.NotebookNode]:
    """The outputs as they are stored and compared: streams merged (nbval's ``coalesce_streams``),
    standard error dropped, images and widget views dropped, output metadata emptied."""
    from nbval.plugin import coalesce_streams

    outs = coalesce_streams([nbformat.from_dict(copy.deepcopy(dict(o))) for o in outputs])
    kept = []
    for o in outs:
        kind = o.get("output_type")
        if kind == "stream":
            if o.get("name") == "stderr":
                continue
            kept.append(nbformat.v4.new_output("stream", name=o["name"], text=o["text"]))
        elif kind in ("display_data", "execute_result"):
            data = {k: v for k, v in o.get("data", {}).items() if k not in _NOT_STORED}
            if not data:
                continue
            new = nbformat.v4.new_output(kind, data=data)
            if kind == "execute_result":
                new["execution_count"] = o.get("execution_count")
            kept.append(new)
        else:  # an error: kept, so that it shows in the comparison
            kept.append(o)
    return kept


def compare_outputs(test: list, ref: list) -> str | None:
    """None when nbval's ``--nbval-lax`` comparison of two output lists passes, else its report."""
    from nbval.plugin import IPyNbCell, coalesce_streams, nocolors

    shim = types.SimpleNamespace(
        parent=types.SimpleNamespace(skip_compare=SKIP_COMPARE, sanitize_patterns={}), colors=nocolors,
        config=None, ihook=types.SimpleNamespace(pytest_assertrepr_compare=lambda **kw: []))
    shim.sanitize = types.MethodType(IPyNbCell.sanitize, shim)
    shim.format_output_compare = types.MethodType(IPyNbCell.format_output_compare, shim)
    test = coalesce_streams(stored_form(test))
    ref = coalesce_streams(stored_form(ref))
    if IPyNbCell.compare_outputs(shim, test, ref):
        return None
    return "\n".join(str(x) for x in shim.comparison_traceback)


def _where(nb_name: str, index: int, cell) -> str:
    lines = [ln for ln in _source(cell).splitlines() if ln.strip() and not is_checked(ln)]
    return f"{nb_name} cell {index} (id {cell.get('id', '?')}: `{lines[0][:70] if lines else ''}`)"


def _find_executed(cell, executed: nbformat.NotebookNode):
    """The executed cell with the stored cell's id and source (papermill keeps both), else by source."""
    src = _source(cell)
    for c in executed.cells:
        if c.get("id") == cell.get("id") and _source(c) == src:
            return c
    same = [c for c in executed.cells if c.get("cell_type") == "code" and _source(c) == src]
    return same[0] if same else None


def check_notebook(stored: str | Path | nbformat.NotebookNode, executed: str | Path | nbformat.NotebookNode,
                   name: str | None = None) -> list[str]:
    """Problems of an executed notebook's marked cells against the stored outputs (empty: all agree).

    A marked cell without stored outputs (its source changed since ``make nbval-update``) is a problem too.
    """
    name = name or (Path(stored).name if not isinstance(stored, nbformat.NotebookNode) else "notebook")
    stored, executed = _read(stored), _read(executed)
    stem = Path(name).stem
    hint = f"if the change is intended, store the new outputs: `make nbval-update NB={stem[:2]}`"
    problems = []
    for i, cell in checked_cells(stored):
        where = _where(name, i, cell)
        if cell.get("execution_count") is None:
            problems.append(f"{where} is marked NBVAL_CHECK_OUTPUT but has no stored outputs (its source "
                            f"changed since they were stored): `make nbval-update NB={stem[:2]}`")
            continue
        ran = _find_executed(cell, executed)
        if ran is None:
            problems.append(f"{where}: not in the executed notebook (was it run from another version?)")
            continue
        diff = compare_outputs(ran.get("outputs", []), cell.get("outputs", []))
        if diff is not None:
            problems.append(f"{where}: outputs differ from the stored ones ({hint}):\n{diff}")
    return problems


def store_outputs(stored: nbformat.NotebookNode, executed: nbformat.NotebookNode, name: str = "notebook") -> int:
    """Copy the executed outputs of every marked cell into ``stored`` (in place); returns how many.
    Raises ``ValueError`` when a marked cell is missing from the executed notebook."""
    n = 0
    for i, cell in checked_cells(stored):
        ran = _find_executed(cell, executed)
        if ran is None or ran.get("execution_count") is None:
            raise ValueError(f"{_where(name, i, cell)} was not executed in the run given: run the notebook "
                             f"from this version first")
        cell["outputs"] = stored_form(ran.get("outputs", []))
        cell["execution_count"] = ran["execution_count"]
        n += 1
    return n


def _built(nb_path: Path, src_dir: Path | None) -> nbformat.NotebookNode:
    """The notebook as ``fusionlib.nbsource`` builds it now (its stored checked outputs carried over)."""
    old = nbformat.read(nb_path, as_version=4) if nb_path.exists() else None
    src = src_dir / f"{nb_path.stem}.py" if src_dir is not None else None
    if src is not None and src.is_file():
        return build_notebook(src, stored=old)
    if old is None:
        raise FileNotFoundError(f"neither {nb_path} nor its source {src} exists")
    return old


def _run_prefix(nb: nbformat.NotebookNode, nb_path: Path, work: Path) -> nbformat.NotebookNode:
    """Execute the notebook up to its last marked cell at smoke (the outputs of a cell depend only on
    the cells before it, so these equal a full run's) into ``work``; returns the executed notebook."""
    import papermill as pm

    from fusionlib.runner import kernel_name

    last = max(i for i, _ in checked_cells(nb))
    prefix = copy.deepcopy(nb)
    prefix.cells = prefix.cells[: last + 1]
    src, out = work / f"{nb_path.stem}.ipynb", work / f"{nb_path.stem}.executed.ipynb"
    nbformat.write(prefix, str(src))
    os.environ.setdefault("FUSIONLIB_STATIC_WIDGETS", "1")
    pm.execute_notebook(str(src), str(out), parameters={"profile": "smoke", "out_dir": str(work / "out")},
                        kernel_name=kernel_name(), progress_bar=False, cwd=str(nb_path.parent.resolve()))
    return nbformat.read(str(out), as_version=4)


def update_notebook(nb_path: str | Path, runs: str | Path | None = None,
                    src_dir: str | Path | None = "notebooks/src") -> int:
    """Rebuild ``nb_path`` from its source and store its marked cells' outputs: from the executed copy in
    ``runs/<stem>/`` (a smoke run) when ``runs`` is given, else from running the notebook up to its last
    marked cell at smoke. Returns the number of cells stored (0: nothing marked, file untouched)."""
    from fusionlib.atomic import atomic_write_text

    nb_path = Path(nb_path)
    nb = _built(nb_path, Path(src_dir) if src_dir else None)
    if not checked_cells(nb):
        return 0
    if runs is not None:
        run_dir = Path(runs) / nb_path.stem
        meta = json.loads((run_dir / "results.json").read_text()).get("meta", {}) \
            if (run_dir / "results.json").is_file() else {}
        if meta.get("profile") != "smoke":
            raise ValueError(f"{run_dir} is not a finished smoke run (results.json profile "
                             f"{meta.get('profile')!r}): the stored outputs are the smoke run's")
        executed = nbformat.read(str(run_dir / nb_path.name), as_version=4)
        n = store_outputs(nb, executed, nb_path.name)
    else:
        with tempfile.TemporaryDirectory(prefix=f"nbval_{nb_path.stem}_") as tmp:
            n = store_outputs(nb, _run_prefix(nb, nb_path, Path(tmp)), nb_path.name)
    atomic_write_text(nb_path, dumps(nb))
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusionlib.nbval_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["update", "check"])
    ap.add_argument("--notebooks", default="notebooks", help="folder of NN_name.ipynb (default: notebooks)")
    ap.add_argument("--src", default="notebooks/src", help="their py:percent sources (update rebuilds from them)")
    ap.add_argument("--runs", default=None, help="a smoke run's folder (runs/<stem>/<stem>.ipynb); "
                                                 "update without it runs each notebook's marked prefix")
    ap.add_argument("--only", nargs="*", default=None, help="notebook stems or numbers, e.g. 03 05_dmnet")
    a = ap.parse_args(argv)
    from fusionlib.runner import find_notebooks

    nbs = find_notebooks(a.notebooks)
    if a.only:
        nbs = [p for p in nbs if any(p.stem.startswith(o) for o in a.only)]
    if not nbs:
        print("error: no notebooks selected", file=sys.stderr)
        return 2
    if a.action == "check" and a.runs is None:
        print("error: check needs --runs (a folder holding a smoke run of the notebooks)", file=sys.stderr)
        return 2
    bad = 0
    for p in nbs:
        if a.action == "update":
            n = update_notebook(p, a.runs, a.src)
            print(f"{p.name}: {n} marked cell(s) stored" if n else f"{p.name}: no marked cells")
        else:
            problems = check_notebook(p, Path(a.runs) / p.stem / p.name)
            bad += bool(problems)
            print(f"{p.name}: " + ("ok" if not problems else "\n".join(problems)))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
