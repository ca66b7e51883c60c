"""A map per notebook for a 90-minute class: its sections, which are the core path, which the appendix, and
how long each takes, measured where we measured it and labelled as our estimate where we did not.

The sections are the notebook's own ``## `` headings, read from ``notebooks/src/NN_name.py`` each time, so
the map cannot drift from the notebook; :data:`PLANS` names the core sections by their heading's start
(``"6 · Training"``), and ``tests/test_pacing.py`` asserts that every name matches exactly one heading.

Times in the map:

- **reading and discussion** per section: our estimate, from the section's markdown words and code lines
  (:data:`WORDS_PER_MIN`, :data:`CODE_LINES_PER_MIN`), never a measurement;
- **compute at smoke** per section: measured, the sum of papermill's per-cell ``duration`` over the
  section's cells in an executed notebook. :func:`measure` reads ``<runs>/<nb>/<nb>.ipynb`` and writes
  :data:`TIMES` (``fusionlib/pacing_times.json``) with the machine, the date of the run and the commit;
  regenerate it with ``python -m fusionlib.pacing measure runs`` after ``make run``;
- **training at lab on a CPU**: the shipped network's training in ``weights/MANIFEST.json``
  (``wall_seconds``, ``device``, ``steps``, the recipe's profile); where that is a narrow ``cpu`` recipe the
  map says the full ``lab`` recipe was not measured on a CPU;
- **on a GPU**: not measured yet, and the map says so.

In a notebook (the cell after the title)::

    from fusionlib import pacing
    pacing.show_map("00")
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionlib.gitinfo import checkout_commit
from fusionlib.nbsource import SOURCE_DIR

__all__ = ["Section", "Plan", "PLANS", "TIMES", "WORDS_PER_MIN", "CODE_LINES_PER_MIN", "notebook_stem",
           "sections", "core_sections", "measure", "load_times", "map_markdown", "show_map", "main"]

REPO = Path(__file__).resolve().parent.parent
SRC = SOURCE_DIR
TIMES = Path(__file__).resolve().with_name("pacing_times.json")
#: our estimate of class pace: markdown read aloud and discussed, and code walked through, per minute
WORDS_PER_MIN = 100
CODE_LINES_PER_MIN = 8
_HEADING = re.compile(r"^## (?P<title>.+?)\s*$")
_IMPORT = re.compile(r"^(import \S|from \S+ import )")  # not counted as code to read


@dataclass(frozen=True)
class Section:
    """One ``## `` section of a notebook source: ``key`` is the number before `` · `` (``"10b"``), or the
    whole heading when it has none; ``words``/``code_lines`` count its markdown words and non-blank code
    lines other than imports (heading included, up to the next ``## ``)."""

    key: str
    heading: str
    words: int
    code_lines: int

    @property
    def title(self) -> str:
        return self.heading.split(" · ", 1)[1] if " · " in self.heading else self.heading

    @property
    def read_minutes(self) -> float:
        """Our estimate of reading and discussion time (see :data:`WORDS_PER_MIN`)."""
        return self.words / WORDS_PER_MIN + self.code_lines / CODE_LINES_PER_MIN


@dataclass(frozen=True)
class Plan:
    """A notebook's 90-minute plan: ``core`` heading starts (the rest is appendix), the ``method`` whose
    shipped training the map quotes (None: the notebook trains no network of its own), and ``train``, the
    heading start of the section that trains it."""

    core: tuple[str, ...]
    method: str | None = None
    train: str | None = None


#: our choice of core path per notebook (sections not named are the appendix)
PLANS: dict[str, Plan] = {
    "00_foundations": Plan(core=("1 · Setup", "2 · The data", "3 · The loss terms", "4 · Classical baselines",
                                 "5 · A tiny fusion CNN", "6 · Training", "7 · The fused image",
                                 "8 · Evaluation", "10 · Results"),
                           method="tinyfuse", train="6 · Training"),
    "01_aidfusion": Plan(core=("1 · Setup", "2 · Laziness first", "3 · Building AIDFusion", "4 · DIILS",
                               "6 · The per-level predictions", "11 · Results"),
                         method="aidfusion", train="2 · Laziness first"),
    "02_siba": Plan(core=("1 · Setup", "2 · The idea", "3 · Building SIBA", "6 · The loss", "7 · Training",
                          "9 · The fused image", "12 · Results"),
                    method="siba", train="7 · Training"),
    "03_lkc_funet": Plan(core=("1 · Setup", "2 · The data", "3 · Building LKC-FUNet", "6 · Normalisation",
                               "7 · Receptive fields", "13 · Results"),
                         method="lkc_funet", train="8 · Training"),
    "04_rpfnet": Plan(core=("1 · Setup", "2 · Why the Fourier domain", "3 · Building RPFNet",
                            "6 · The losses", "7 · Training", "8 · The adaptive mask", "10 · Spectra",
                            "14 · Results"),
                      method="rpfnet", train="7 · Training"),
    "05_dmnet": Plan(core=("1 · Setup", "2 · Data", "3 · Building DMNet", "5 · The forward process",
                           "6 · Two-stage training", "7 · What the denoiser's features contain",
                           "13 · Results"),
                     method="dmnet", train="6 · Two-stage training"),
    "06_benchmark": Plan(core=("1 · Setup", "2 · Weights for every method", "3 · Fusing", "4 · Metrics",
                               "7 · Qualitative grid", "8 · Laziness", "9 · Results",
                               "Questions for a reading group")),
}


def notebook_stem(nb: str) -> str:
    """``"00"``, ``"00_foundations"`` or a path -> ``"00_foundations"`` (a source in ``notebooks/src``).

    Raises:
        FileNotFoundError: no source matches.
    """
    name = Path(nb).stem
    hits = sorted(p.stem for p in SRC.glob(f"{name}*.py") if re.match(r"\d\d_", p.stem))
    if len(hits) != 1:
        raise FileNotFoundError(f"no single notebook source in {SRC} matches {nb!r} (found {hits or 'none'})")
    return hits[0]


def _cells(stem: str) -> list[dict]:
    from fusionlib.nbsource import parse_percent  # the notebooks' own parser: same cells as the .ipynb

    return parse_percent((SRC / f"{stem}.py").read_text(encoding="utf-8"))


def _key(heading: str) -> str:
    return heading.split(" · ", 1)[0] if " · " in heading else heading


def sections(nb: str) -> list[Section]:
    """The notebook's ``## `` sections, in order, with their word and code-line counts."""
    out: list[dict[str, Any]] = []
    for c in _cells(notebook_stem(nb)):
        lines = c["source"].splitlines()
        if c["type"] == "markdown":
            for ln in lines:
                m = _HEADING.match(ln)
                if m:
                    out.append({"heading": m.group("title"), "words": 0, "code": 0})
                if out:
                    out[-1]["words"] += len(ln.lstrip("#").split())
        elif out:
            out[-1]["code"] += sum(1 for ln in lines if ln.strip() and not _IMPORT.match(ln))
    return [Section(_key(s["heading"]), s["heading"], s["words"], s["code"]) for s in out]


def _match(secs: list[Section], start: str, nb: str) -> Section:
    hits = [s for s in secs if s.heading.startswith(start)]
    if len(hits) != 1:
        raise KeyError(f"{nb}: {len(hits)} sections start with {start!r}; its sections: "
                       + "; ".join(s.heading for s in secs))
    return hits[0]


def core_sections(nb: str) -> list[Section]:
    """The sections :data:`PLANS` puts on the core path (KeyError when a name matches no single heading)."""
    stem = notebook_stem(nb)
    secs = sections(stem)
    return [_match(secs, c, stem) for c in PLANS[stem].core]


# ------------------------------------------------------------------ measured compute times (papermill)

def _section_times(executed: dict) -> dict[str, float]:
    """``section key -> seconds``: papermill's per-cell durations summed by ``## `` section (cells before the
    first heading count towards the first section)."""
    times: dict[str, float] = {}
    pending, cur = 0.0, None
    for c in executed.get("cells", []):
        src = "".join(c.get("source", ""))
        if c.get("cell_type") == "markdown":
            for ln in src.splitlines():
                m = _HEADING.match(ln)
                if m:
                    cur = _key(m.group("title"))
                    times.setdefault(cur, 0.0)
        d = (c.get("metadata", {}).get("papermill") or {}).get("duration")
        if d is None:
            continue
        if cur is None:
            pending += float(d)
        else:
            times[cur] += float(d)
    if times and pending:
        first = next(iter(times))
        times[first] += pending
    return {k: round(v, 1) for k, v in times.items()}


def measure(runs: str | Path, *, note: str = "") -> dict[str, Any]:
    """Per-section compute times of every executed notebook ``<runs>/<nb>/<nb>.ipynb`` (run by
    ``python -m fusionlib.runner``), with the machine this is called on, each run's start time and the
    checkout's commit when this is called (measure right after the runs, on the machine that ran them).

    Raises:
        FileNotFoundError: no executed notebook under ``runs``.
        ValueError: the notebooks ran at different profiles.
    """
    runs = Path(runs)
    found = sorted(p for p in runs.glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb") if p.stem == p.parent.name)
    if not found:
        raise FileNotFoundError(f"no executed notebook <runs>/NN_name/NN_name.ipynb under {runs}: run "
                                f"`python -m fusionlib.runner notebooks --out {runs} --profile smoke` first")
    nbs, profiles = {}, set()
    for p in found:
        ex = json.loads(p.read_text(encoding="utf-8"))
        pm = ex.get("metadata", {}).get("papermill", {})
        profiles.add(pm.get("parameters", {}).get("profile", "unknown"))
        secs = _section_times(ex)
        nbs[p.stem] = {"started": pm.get("start_time"), "total_s": round(sum(secs.values()), 1),
                       "sections": secs}
    if len(profiles) != 1:
        raise ValueError(f"the notebooks under {runs} ran at different profiles ({sorted(profiles)}): "
                         f"measure one profile at a time")
    return {
        "about": "compute seconds per ## section: papermill's per-cell durations of executed notebooks; "
                 "regenerate with `python -m fusionlib.pacing measure <runs>`",
        "profile": profiles.pop(),
        "machine": (f"{platform.machine()} {platform.processor() or ''}".strip()
                    + f", {os.cpu_count()} CPU cores"),
        "measured": _dt.date.today().isoformat(),
        "commit": checkout_commit(("notebooks", "fusionlib"), REPO),
        "note": note,
        "notebooks": nbs,
    }


def load_times(path: str | Path = TIMES) -> dict[str, Any] | None:
    """The stored measurement (:func:`measure`'s output), or None when there is none."""
    p = Path(path)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


# ------------------------------------------------------------------ the map

def _lab_cpu_line(stem: str, weights_dir: str | Path | None) -> str:
    plan = PLANS[stem]
    if plan.method is None:
        return ("**At `lab`** this notebook trains nothing when the paper notebooks have run before it; "
                "its `lab` run was not timed on a CPU.")
    from fusionlib import weights

    rec = weights.shipped_record(plan.method, weights_dir or weights.WEIGHTS_DIR)
    sec = _match(sections(stem), plan.train, stem) if plan.train else None
    where = f"§{sec.key}" if sec else "the training section"
    if rec is None:
        return f"**At `lab` on a CPU**: {where} was not timed (weights/ ships no {plan.method} network)."
    trained = (f"{rec['steps']:,} steps in {rec['wall_seconds'] / 60:.1f} min on {rec['device']} "
               f"(`weights/MANIFEST.json`)")
    if rec["profile"] == "lab":
        return (f"**At `lab` on a CPU**: the shipped {plan.method} network, trained by {where}'s function at "
                f"the `lab` recipe, took {trained}; this notebook's own `lab` run was not timed section by "
                f"section.")
    return (f"**At `lab` on a CPU**: not measured. The shipped network is the `{rec['profile']}` recipe "
            f"({rec.get('config') or plan.method}, {rec['parameters']:,} parameters): {trained}; the full "
            f"`lab` recipe of {where} was not run on a CPU.")


def _minutes(m: float) -> str:
    return f"{m:.0f}" if m >= 0.5 else "<1"


def map_markdown(nb: str, *, times: dict[str, Any] | None = None,
                 weights_dir: str | Path | None = None) -> str:
    """The map of one notebook as markdown: one table (section, core/appendix, our reading estimate and, when
    :data:`TIMES` has this notebook, the measured compute per section) and three lines (core path total,
    what is appendix, times at ``lab``)."""
    stem = notebook_stem(nb)
    secs = sections(stem)
    core = {s.key for s in core_sections(stem)}
    times = load_times() if times is None else times
    measured = (times or {}).get("notebooks", {}).get(stem)
    prof = (times or {}).get("profile", "smoke")
    head = "| § | section | path | reading and discussion, min (our estimate) |"
    lines = [head + (f" compute at `{prof}`, s (measured) |" if measured else ""),
             "|---|---|---|---|" + ("---|" if measured else "")]
    for s in secs:
        row = (f"| {s.key if s.key != s.heading else '–'} | {s.title} | "
               f"{'**core**' if s.key in core else 'appendix'} | {_minutes(s.read_minutes)} |")
        if measured:
            t = measured["sections"].get(s.key)
            row += f" {'–' if t is None else f'{t:.1f}'} |"
        lines.append(row)
    read = sum(s.read_minutes for s in secs if s.key in core)
    appendix = [s for s in secs if s.key not in core]
    if measured:
        comp = sum(measured["sections"].get(k, 0.0) for k in core) / 60
        src = (f"compute times measured on {times['machine']}, {times['measured']}, commit {times['commit'][:12]}"
               + (f"; {times['note']}" if times.get("note") else ""))
        total = f" plus {comp:.1f} min of compute at `{prof}`."
    else:
        src = ("compute times per section not measured yet: after `make run`, "
               "`python -m fusionlib.pacing measure runs` stores them")
        total = "."
    out = [f"**Map for a 90-minute class** (`fusionlib.pacing`; {src}).", "", *lines, "",
           f"- **Core path**: {len(core)} sections, about {read:.0f} min of reading and discussion "
           f"(our estimate: {WORDS_PER_MIN} words and {CODE_LINES_PER_MIN} code lines a minute){total}",
           ("- **Appendix** (for a second session or self-study): "
            + ", ".join(f"§{s.key}" if s.key != s.heading else s.heading for s in appendix)
            + "; every profile still runs it." if appendix else "- **Appendix**: none."),
           "- " + _lab_cpu_line(stem, weights_dir) + " **On a GPU**: not measured on a GPU yet."]
    return "\n".join(out)


def show_map(nb: str, **kw: Any) -> None:
    """Display :func:`map_markdown` in a notebook (IPython), or print it elsewhere."""
    md = map_markdown(nb, **kw)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython ships with the notebooks' requirements
        print(md)
        return
    if get_ipython() is None:
        print(md)
    else:
        display(Markdown(md))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusionlib.pacing", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="per-section compute times of executed notebooks -> pacing_times.json")
    m.add_argument("runs", help="the runner's --out folder (runs/<nb>/<nb>.ipynb)")
    m.add_argument("--out", default=str(TIMES))
    m.add_argument("--note", default="", help="what else ran on the machine, e.g. 'two trainings beside it'")
    s = sub.add_parser("show", help="print one notebook's map (markdown)")
    s.add_argument("notebook", help="e.g. 00 or 02_siba")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "measure":
            from fusionlib.atomic import atomic_write_text

            data = measure(args.runs, note=args.note)
            atomic_write_text(Path(args.out), json.dumps(data, indent=1, ensure_ascii=False) + "\n")
            print(f"{len(data['notebooks'])} notebook(s) at {data['profile']} -> {args.out}")
        else:
            print(map_markdown(args.notebook))
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
