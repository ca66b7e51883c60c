"""The papers' own reported metric values, with where each was read.

The data live in ``fusionlib/paper_numbers.json`` (package data). Only values that a retrieved
text shows are recorded; every entry carries its source (URL or repository + path), the paper's
table, the dataset and metric names as the paper gives them, and a short verbatim quote. What
was searched for and not found is listed too (:func:`not_found`).

**Comparable in kind only.** The papers evaluate their full test sets (MSRS 361 pairs, TNO 45,
M3FD 300 at half resolution, ...); our bundled sets are small subsets (MSRS 22, TNO 20, M3FD one
full-size pair), and our networks are trained at the profile's budget. A paper value next to
ours says which scale a metric lives on under that evaluator, not whether a run reproduced it.

Metric names: each paper's names map to ours (:func:`paper_column`) under the preset that
matches the paper's evaluator (SIBA: Tang's MATLAB toolbox = ``"tang"``; AIDFusion: a sum over
the two sources, inferred from SSIM > 1 = ``"cddfuse"``, flagged unverified). A paper metric
with no counterpart among ours (SIBA's SSIM, see the JSON's ``metric_notes``) maps to ``None``
and is left out of the column.

Examples:
    >>> reported("siba", "msrs")["VIF"]
    1.061
    >>> paper_column("siba", "msrs", "tang")["FMI_pixel"]
    0.933
    >>> paper_column("siba", "msrs", "cddfuse")  # SIBA used the tang evaluator: nothing to show
    {}
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = [
    "load", "entries", "methods", "datasets", "reported", "provenance", "paper_column", "paper_info",
    "not_found", "rows_for", "results_block", "validate", "QUOTE_MAX",
]

QUOTE_MAX = 200  # characters of verbatim evidence per entry
_DATA = "paper_numbers.json"


@lru_cache(maxsize=1)
def _load_cached() -> str:
    return resources.files("fusionlib").joinpath(_DATA).read_text(encoding="utf-8")


def load() -> dict[str, Any]:
    """The parsed JSON (a fresh copy each call, so callers may modify it).

    Raises:
        ValueError: the file is not valid JSON or lacks ``papers`` / ``entries``.
    """
    try:
        data = json.loads(_load_cached())
    except json.JSONDecodeError as e:
        raise ValueError(f"fusionlib/{_DATA}: invalid JSON ({e})") from e
    for key in ("papers", "entries", "not_found"):
        if key not in data:
            raise ValueError(f"fusionlib/{_DATA}: missing top-level key {key!r}")
    return data


def entries() -> list[dict[str, Any]]:
    """Every recorded (method, dataset) entry, in file order."""
    return load()["entries"]


def methods() -> list[str]:
    """Method keys (as in ``fusionlib.methods.list_methods()``) with at least one reported value."""
    return list(dict.fromkeys(e["method"] for e in entries()))


def datasets(method: str) -> list[str]:
    """Bundled data-set keys (``fusionlib.data.list_bundled()``) with values from ``method``'s paper."""
    return [e["dataset"] for e in entries() if e["method"] == method]


def _entry(method: str, dataset: str) -> dict[str, Any]:
    for e in entries():
        if e["method"] == method and e["dataset"] == dataset:
            return e
    have = ", ".join(f"{e['method']}/{e['dataset']}" for e in entries())
    raise KeyError(f"no paper-reported values for method={method!r}, dataset={dataset!r}; recorded: {have}")


def paper_info(method: str) -> dict[str, Any]:
    """Title, venue, evaluator, matching preset and metric-name map of ``method``'s paper."""
    papers = load()["papers"]
    if method not in papers:
        raise KeyError(f"no paper record for method={method!r}; recorded: {', '.join(papers)}")
    return papers[method]


def reported(method: str, dataset: str) -> dict[str, float]:
    """The paper's values for its own method on ``dataset``, keyed by the **paper's** metric names.

    Raises:
        KeyError: nothing recorded for that pair (the message lists what is).
    """
    return {k: float(v) for k, v in _entry(method, dataset)["values"].items()}


def provenance(method: str, dataset: str) -> dict[str, Any]:
    """Where the values were read: ``source``, ``table``, ``quote``, ``paper_dataset`` (the
    paper's own name for the set), ``corroboration``, ``notes``, plus the paper's evaluator and
    matching ``preset``."""
    e = _entry(method, dataset)
    p = paper_info(method)
    out = {k: v for k, v in e.items() if k not in ("values",)}
    out.update(paper=p["title"], venue=p["venue"], evaluator=p["evaluator"], preset=p["preset"],
               convention_verified=p["convention_verified"])
    return out


def paper_column(method: str, dataset: str, preset: str | None = None) -> dict[str, float]:
    """The paper's values under **our** metric names, for the table of ``preset``.

    Returns ``{}`` when ``preset`` is given and is not the one matching the paper's evaluator
    (a value is only shown next to ours computed the same way). Paper metrics without a
    counterpart (mapped to ``None``) are dropped.
    """
    p = paper_info(method)
    if preset is not None and preset != p["preset"]:
        return {}
    mapping = p["metric_map"]
    out = {}
    for name, value in reported(method, dataset).items():
        if name not in mapping:
            raise ValueError(f"fusionlib/{_DATA}: {method} metric {name!r} has no entry in metric_map")
        ours = mapping[name]
        if ours is not None:
            out[ours] = value
    return out


def rows_for(dataset: str, preset: str, methods: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Extra table rows for one of our per-set tables: ``{label: {our_metric: value}}``.

    ``methods``: only these method keys (default: every paper with values for ``dataset``).

    Label: ``"<Title> (paper, full test set, <preset>)"``, ``"<preset> inferred"`` when the
    paper's evaluator is not verified. Empty when no paper reports ``dataset`` under ``preset``.
    """
    from fusionlib.methods import get_method

    rows = {}
    for e in entries():
        if e["dataset"] != dataset or (methods is not None and e["method"] not in methods):
            continue
        col = paper_column(e["method"], dataset, preset)
        if not col:
            continue
        conv = preset if paper_info(e["method"])["convention_verified"] else f"{preset} inferred"
        rows[f"{get_method(e['method']).title} (paper, full test set, {conv})"] = col
    return rows


def not_found() -> list[dict[str, str]]:
    """What was searched for and not found, per method (``method``, ``what``, ``searched``)."""
    return load()["not_found"]


def results_block() -> dict[str, Any]:
    """A JSON-ready summary for ``results.json``: per entry the mapped values, preset and provenance."""
    from fusionlib.methods import get_method

    out = []
    for e in entries():
        p = paper_info(e["method"])
        src = e["source"]
        out.append({
            "method": e["method"], "title": get_method(e["method"]).title, "dataset": e["dataset"],
            "preset": p["preset"],
            "convention_verified": p["convention_verified"], "paper_dataset": e["paper_dataset"],
            "table": e["table"], "values_paper_names": reported(e["method"], e["dataset"]),
            "values": paper_column(e["method"], e["dataset"]),
            "source": src.get("url") or (f"{src['repo']}:{src['path']}" if "repo" in src else src["path"]),
            "source_kind": src["kind"], "quote": e["quote"],
        })
    return {"entries": out, "not_found": [f"{n['method']}: {n['what']}" for n in not_found()]}


def validate(check_registry: bool = True) -> list[str]:
    """Problems in the data file (an empty list when it is sound).

    Checks: every entry has a source (``url``, ``repo`` + ``path``, or ``path``), a ``table``, a
    quote of at most :data:`QUOTE_MAX` characters and finite values; every paper metric appears in
    its paper's ``metric_map``; with ``check_registry``, methods and data sets are registered and
    mapped names exist in the paper's preset (``fusionlib.metrics.list_metrics``).
    """
    data = load()
    errors: list[str] = []
    papers = data["papers"]
    reg_methods = reg_sets = None
    if check_registry:
        from fusionlib import data as fdata
        from fusionlib.methods import list_methods
        from fusionlib.metrics import list_metrics

        reg_methods, reg_sets = set(list_methods()), set(fdata.list_bundled())
        for m, p in papers.items():
            ours = set(list_metrics(p["preset"]))
            for k, v in p["metric_map"].items():
                if v is not None and v not in ours:
                    errors.append(f"papers.{m}.metric_map: {k!r} -> {v!r} is not a {p['preset']!r} metric")
    seen = set()
    for i, e in enumerate(data["entries"]):
        where = f"entries[{i}] ({e.get('method')}/{e.get('dataset')})"
        for key in ("method", "dataset", "paper_dataset", "table", "values", "source", "quote"):
            if not e.get(key):
                errors.append(f"{where}: missing {key!r}")
        if (e.get("method"), e.get("dataset")) in seen:
            errors.append(f"{where}: duplicate method/dataset")
        seen.add((e.get("method"), e.get("dataset")))
        if e.get("method") not in papers:
            errors.append(f"{where}: no papers.{e.get('method')} record")
            continue
        src = e.get("source") or {}
        if not (src.get("url") or (src.get("repo") and src.get("path")) or src.get("path")):
            errors.append(f"{where}: source needs a url, repo + path, or path")
        if not src.get("kind"):
            errors.append(f"{where}: source.kind missing (primary / secondary ...)")
        if len(e.get("quote", "")) > QUOTE_MAX:
            errors.append(f"{where}: quote longer than {QUOTE_MAX} characters")
        for k, v in (e.get("values") or {}).items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                errors.append(f"{where}: value {k}={v!r} is not a finite number")
            if k not in papers[e["method"]]["metric_map"]:
                errors.append(f"{where}: metric {k!r} missing from papers.{e['method']}.metric_map")
        if reg_methods is not None and e["method"] not in reg_methods:
            errors.append(f"{where}: method not in fusionlib.methods.list_methods()")
        if reg_sets is not None and e.get("dataset") not in reg_sets:
            errors.append(f"{where}: dataset not in fusionlib.data.list_bundled()")
    for i, n in enumerate(data["not_found"]):
        for key in ("method", "what", "searched"):
            if not n.get(key):
                errors.append(f"not_found[{i}]: missing {key!r}")
        if reg_methods is not None and n.get("method") not in reg_methods:
            errors.append(f"not_found[{i}]: method {n.get('method')!r} not registered")
    return errors
