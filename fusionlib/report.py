"""The README's results table, generated from the benchmark notebook's ``results.json``.

    python -m fusionlib.report runs/06_benchmark/results.json            # print the Markdown
    python -m fusionlib.report runs/06_benchmark/results.json --readme README.md   # rewrite the marked block

The block in the README sits between ``<!-- results:start -->`` and ``<!-- results:end -->``; it
always states the profile, device and date of the run it came from, and where each method's
weights came from, because a smoke run's numbers say nothing about the methods.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["results_markdown", "shipped_markdown", "update_readme", "START", "END"]

START, END = "<!-- results:start -->", "<!-- results:end -->"
DEFAULT_METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")


def _fmt(v: Any) -> str:
    if isinstance(v, (int, float)):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.3g}"
    return str(v)


def results_markdown(results: dict[str, Any], *, sets: tuple[str, ...] = ("msrs", "tno", "harvard_pet"),
                     preset: str = "tang", metrics: tuple[str, ...] = DEFAULT_METRICS,
                     manifest: dict[str, Any] | None = None) -> str:
    """Markdown tables (one per data set) of the benchmark's mean metrics, with provenance.

    When ``results["paper_reported"]`` holds entries (the notebook stores
    :func:`fusionlib.paper_numbers.results_block`), each table also gets the paper's own row for
    that set, if the paper's evaluator matches ``preset``. ``manifest`` (``weights/MANIFEST.json``) adds the
    shipped networks measured on every bundled test pair (:func:`shipped_markdown`).
    """
    meta = results.get("meta", {})
    tables = results.get("tables", {})
    if not tables:
        raise ValueError("results.json has no 'tables' entry: is it the 06_benchmark notebook's?")
    budget = results.get("budget", {})
    lines = [f"Measured by `notebooks/06_benchmark.ipynb` at profile **{meta.get('profile', '?')}** on "
             f"`{meta.get('device', '?')}` (seed {meta.get('seed', '?')}, {meta.get('written', '?')}); "
             f"evaluation pairs per set: {budget.get('n_eval') or 'all'}, crop: {budget.get('eval_crop') or 'full size'}; "
             f"`{preset}` preset.", ""]
    weights = results.get("weights", {})
    if weights:
        lines.append("Weights: " + "; ".join(f"{k}: {v}" for k, v in weights.items()) + ".")
        lines.append("")
    paper = (results.get("paper_reported") or {}).get("entries", [])
    shown_paper = False
    for s in sets:
        t = tables.get(f"{s}/{preset}")
        if not t:
            continue
        cols = [m for m in metrics if any(m in row for row in t.values())]
        lines += [f"**{s}**", "", "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for meth, row in t.items():
            lines.append(f"| {meth} | " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |")
        for e in paper:  # the papers' own values, only the metrics on this preset's scale
            if e.get("dataset") != s:
                continue
            on_scale = {ours: e["values_paper_names"][name] for name, ours in _on_scale(e, preset).items()}
            if not any(c in on_scale for c in cols):
                continue
            n = f"{e['test_pairs']} pairs" if e.get("test_pairs") else "full test set"
            label = f"{e.get('title', e['method'])} (paper, {n})"
            lines.append(f"| {label} | " + " | ".join(_fmt(on_scale.get(c, "")) for c in cols) + " |")
            shown_paper = True
        lines.append("")
    if shown_paper:
        lines += ["Rows marked *paper* are the values each paper reports on its full test set with its own "
                  "network (the paper text's tables, `fusionlib/paper_tables.json`), only the metrics whose "
                  "convention is this preset's (`fusionlib/paper_numbers.json`); ours use the bundled "
                  "subsets, so they compare in kind only; a blank cell is a metric the paper does not "
                  "report.", ""]
    if manifest and manifest.get("weights"):
        lines += [shipped_markdown(manifest, metrics=metrics)]
    return "\n".join(lines).rstrip() + "\n"


def shipped_markdown(manifest: dict[str, Any], *, metrics: tuple[str, ...] = DEFAULT_METRICS) -> str:
    """The shipped networks (``weights/MANIFEST.json``) on every bundled test pair, beside average fusion."""
    from fusionlib.methods import get_method

    recs = manifest["weights"]
    sets = list(dict.fromkeys(s for r in recs.values() for s in r.get("metrics", {})))
    first = next(iter(recs.values()))
    lines = ["**The shipped networks** (`weights/`, trained by `make weights` with each notebook's own training "
             f"function) on {first.get('evaluation', 'the bundled test pairs')}; the same file `make run` uses at "
             "smoke:", ""]
    base = manifest.get("average_fusion", {})
    for s in sets:
        cols = [m for m in metrics if any(m in r["metrics"].get(s, {}) for r in recs.values())]
        n = next((r["metrics"][s].get("pairs") for r in recs.values() if s in r["metrics"]), "?")
        lines += [f"**{s}** ({n} pairs, full resolution)", "",
                  "| network | recipe, steps, device, wall time | " + " | ".join(cols) + " |",
                  "|---|---" + "|---" * len(cols) + "|"]
        if s in base:
            lines.append("| Average | rule | " + " | ".join(_fmt(base[s].get(c, "")) for c in cols) + " |")
        for meth, r in recs.items():
            if s not in r.get("metrics", {}):
                continue
            name = get_method(meth).title + (f" (narrow `{r['config']}`, {r['parameters'] / 1e6:.1f} M params)"
                                             if r.get("narrow") else "")
            how = f"{r['profile']}, {r['steps']} steps, {r['device'].split(' (')[0]}, {r['wall_seconds'] / 60:.0f} min"
            lines.append(f"| {name} | {how} | " + " | ".join(_fmt(r["metrics"][s].get(c, "")) for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def _on_scale(entry: dict[str, Any], preset: str) -> dict[str, str]:
    """Paper metric name -> our name, for the metrics of a ``results_block`` entry on ``preset``'s scale."""
    from fusionlib import paper_numbers

    out = {}
    for name, p in entry.get("presets", {}).items():
        if p == preset:
            out[name] = paper_numbers.convention(entry["method"], name)["ours"]
    return out


def update_readme(readme: str | Path, markdown: str) -> bool:
    """Replace the block between the markers; True if the file changed. Raises if the markers are missing."""
    from fusionlib.atomic import atomic_write_text

    p = Path(readme)
    text = p.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{p} has no {START} ... {END} block to replace")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{markdown}{END}{tail}"
    if new == text:
        return False
    atomic_write_text(p, new)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusionlib.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="runs/06_benchmark/results.json")
    ap.add_argument("--readme", default=None, help="rewrite this README's results block instead of printing")
    ap.add_argument("--preset", default="tang", choices=["tang", "cddfuse"])
    a = ap.parse_args(argv)
    p = Path(a.results)
    if not p.is_file():
        print(f"error: {p} not found: run `make run` (or the 06_benchmark notebook) first", file=sys.stderr)
        return 2
    from fusionlib.weights import load_manifest

    md = results_markdown(json.loads(p.read_text()), preset=a.preset, manifest=load_manifest())
    if a.readme:
        changed = update_readme(a.readme, md)
        print(f"{a.readme}: results block {'updated' if changed else 'unchanged'}")
    else:
        print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
