"""Notebook sources in ``py:percent`` text, built into ``.ipynb`` (reviewable diffs, one truth).

``notebooks/src/NN_name.py`` is the source; ``python -m fusionlib.nbsource`` writes
``notebooks/NN_name.ipynb`` (no outputs, kernelspec ``fusionlib``). Cell markers:

    # %% [markdown]            a markdown cell: its lines carry a leading "# "
    # %%                       a code cell
    # %% tags=["parameters"]   a code cell with tags (papermill's parameters cell)

``tests/test_nbsource.py`` checks that every stored notebook equals its built source.

A code cell whose source has the comment line ``# NBVAL_CHECK_OUTPUT`` (nbval's marker) keeps, across
rebuilds, the outputs stored for it in the existing ``.ipynb`` as long as its source is unchanged
(``python -m fusionlib.nbval_check update`` writes them; ``tests/test_notebooks.py`` compares them with
the smoke run). A marked cell whose source changed is written without outputs, and the checks then say
to run ``make nbval-update``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import nbformat

__all__ = ["SOURCE_DIR", "source_cells", "source_text", "parse_percent", "build_notebook", "build_all",
           "carry_checked_outputs", "is_checked", "CHECK_MARKER", "main"]

_MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?(?:\s+tags=(?P<tags>\[.*\]))?\s*$")
KERNELSPEC = {"name": "fusionlib", "display_name": "Python (fusionlib)", "language": "python"}
CHECK_MARKER = "NBVAL_CHECK_OUTPUT"


def is_checked(source: str) -> bool:
    r"""True when a code cell's source holds the comment line ``# NBVAL_CHECK_OUTPUT`` (nbval's rule).

    Examples:
        >>> is_checked("x = 1\n#  NBVAL_CHECK_OUTPUT"), is_checked("print('# NBVAL_CHECK_OUTPUT')")
        (True, False)
    """
    return any(ln.strip().startswith("#") and ln.strip().lstrip("#").strip() == CHECK_MARKER
               for ln in source.splitlines())


def parse_percent(text: str) -> list[dict]:
    """Split percent-format text into cells ``{"type", "source", "tags"}``."""
    cells: list[dict] = []
    cur: dict | None = None
    for line in text.splitlines():
        m = _MARKER.match(line)
        if m:
            cur = {"type": "markdown" if m.group("md") else "code", "lines": [],
                   "tags": json.loads(m.group("tags")) if m.group("tags") else []}
            cells.append(cur)
            continue
        if cur is None:  # header before the first marker (e.g. a module docstring): dropped
            continue
        cur["lines"].append(line)
    out = []
    for c in cells:
        lines = c["lines"]
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if c["type"] == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln[1:] if ln.startswith("#") else ln for ln in lines]
        out.append({"type": c["type"], "source": "\n".join(lines), "tags": c["tags"]})
    return out


#: The repository's notebook sources (``notebooks/src``).
SOURCE_DIR = Path(__file__).resolve().parent.parent / "notebooks" / "src"


def source_cells(stem: str, src_dir: str | Path = SOURCE_DIR) -> list[dict]:
    """The cells of ``<src_dir>/<stem>.py`` (:func:`parse_percent`), e.g. ``source_cells("02_siba")``."""
    return parse_percent((Path(src_dir) / f"{stem}.py").read_text(encoding="utf-8"))


def source_text(stem: str, kind: str, src_dir: str | Path = SOURCE_DIR) -> str:
    """The sources of every ``kind`` (``"markdown"`` or ``"code"``) cell of a notebook, joined by newlines."""
    return "\n".join(c["source"] for c in source_cells(stem, src_dir) if c["type"] == kind)


def build_notebook(src: str | Path, stored: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
    """The ``.ipynb`` for a percent source (ids derived from the position). Outputs are empty, but for
    the ``# NBVAL_CHECK_OUTPUT`` cells of ``stored`` (the previous build) whose source is unchanged."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(parse_percent(Path(src).read_text())):
        meta = {"tags": c["tags"]} if c["tags"] else {}
        if c["type"] == "markdown":
            cell = nbformat.v4.new_markdown_cell(c["source"], metadata=meta)
        else:
            cell = nbformat.v4.new_code_cell(c["source"], metadata=meta)
        cell["id"] = f"c{i:03d}"
        nb.cells.append(cell)
    if stored is not None:
        carry_checked_outputs(nb, stored)
    return nb


def _checked_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.get("cell_type") == "code" and is_checked("".join(c.get("source", "")))]


def carry_checked_outputs(nb: nbformat.NotebookNode, stored: nbformat.NotebookNode) -> int:
    """Copy outputs and execution counts of the checked cells of ``stored`` into the checked cells of
    ``nb`` with the same source (in order when sources repeat); returns how many were copied."""
    pool: dict[str, list] = {}
    for c in _checked_cells(stored):
        pool.setdefault("".join(c.source), []).append(c)
    n = 0
    for c in _checked_cells(nb):
        same = pool.get("".join(c.source))
        if same:
            old = same.pop(0)
            c["outputs"] = [nbformat.from_dict(o) for o in old.get("outputs", [])]
            c["execution_count"] = old.get("execution_count")
            n += 1
    return n


def _read_stored(target: Path) -> nbformat.NotebookNode | None:
    try:
        return nbformat.read(target, as_version=4) if target.exists() else None
    except Exception:  # an unreadable notebook is rebuilt from scratch  # noqa: BLE001
        return None


def dumps(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def build_all(src_dir: str | Path = "notebooks/src", out_dir: str | Path = "notebooks",
              check: bool = False, only: list[str] | None = None) -> list[Path]:
    """Build every ``src_dir/*.py`` (or those whose stem starts with one of ``only``); with ``check``
    return the notebooks that are out of date."""
    stale = []
    for src in sorted(Path(src_dir).glob("[0-9][0-9]_*.py")):
        if only and not any(src.stem.startswith(o) for o in only):
            continue
        target = Path(out_dir) / (src.stem + ".ipynb")
        text = dumps(build_notebook(src, stored=_read_stored(target)))
        if not target.exists() or target.read_text() != text:
            stale.append(target)
            if not check:
                target.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusionlib.nbsource")
    ap.add_argument("--src", default="notebooks/src")
    ap.add_argument("--out", default="notebooks")
    ap.add_argument("--check", action="store_true", help="only report notebooks out of date")
    ap.add_argument("--only", nargs="*", default=None, help="notebook stems or numbers, e.g. 04 02_siba")
    a = ap.parse_args(argv)
    stale = build_all(a.src, a.out, check=a.check, only=a.only)
    for p in stale:
        print(("out of date: " if a.check else "wrote ") + str(p))
    return 1 if (a.check and stale) else 0


if __name__ == "__main__":
    raise SystemExit(main())
