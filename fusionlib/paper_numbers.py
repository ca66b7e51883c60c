"""The five papers' tables, and the metric convention each paper's numbers are on.

Two package-data files:

- ``fusionlib/paper_tables.json``: the transcription of every table of the five papers (own method and
  every baseline row, ablations, parameter studies, efficiency, recipes), read from the paper texts;
  OCR repairs are marked in each table's ``notes``, unreadable cells are ``null``.
  :func:`paper_table` gives one table as a DataFrame, as printed.
- ``fusionlib/paper_numbers.json``: for each paper, which of its tables are the main comparisons and
  which bundled set each block corresponds to (with the test-set size the paper states), and, per
  paper metric, the **convention**: our metric name, the preset (``fusionlib.metrics.presets``) whose
  values are on the paper's scale, a status and the evidence. The status is one of

  ``"verified"``   the authors' released weights, run here and scored under that preset, reproduce the
                   paper's own row (within the residual the evidence states);
  ``"code"``       the authors' released evaluator was read and the preset reproduces it, but no
                   released network was run against the table;
  ``"inferred"``   the scale of the paper's numbers (and of baselines shared with other papers) points to
                   the preset; not checked against code or weights;
  ``"unknown"``    no preset reproduces the paper's scale; :func:`preset_for` gives ``None`` and no value
                   of ours is placed beside the paper's.

**Comparable in kind only.** The papers evaluate their full test sets (sizes in :func:`entries`); our
bundled sets are small subsets and our networks are trained at the profile's budget.

Examples:
    >>> reported("siba", "msrs")["VIF"]
    1.061
    >>> paper_column("siba", "msrs", "tang")["FMI_pixel"]
    0.933
    >>> paper_column("siba", "msrs", "cddfuse")  # no SIBA metric is on the cddfuse scale
    {}
    >>> preset_for("rpfnet", "SD") is None  # RPFNet's SD is on no preset's scale
    True
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = [
    "PAPERS", "STATUSES", "transcription", "table_ids", "table_record", "paper_table",
    "load", "all_rows", "entries", "methods", "datasets", "reported", "provenance", "paper_info",
    "convention", "conventions", "preset_for", "convention_note", "conventions_table", "conventions_markdown",
    "paper_column", "paper_rows", "rows_for", "not_found", "results_block", "validate",
]

_DATA = "paper_numbers.json"
_TABLES = "paper_tables.json"

#: our paper keys (= method keys of ``fusionlib.methods``) -> the transcription's keys
PAPERS: dict[str, str] = {
    "aidfusion": "AIDFusion", "siba": "SIBA", "lkc_funet": "LKC-FUNet", "rpfnet": "RPFNet", "dmnet": "DMNet",
}
STATUSES = ("verified", "code", "inferred", "unknown")


# ----------------------------------------------------------------------------------- the transcription
@lru_cache(maxsize=1)
def _tables_cached() -> str:
    return resources.files("fusionlib").joinpath(_TABLES).read_text(encoding="utf-8")


def _paper_key(paper: str) -> str:
    if paper in PAPERS:
        return PAPERS[paper]
    if paper in PAPERS.values():
        return paper
    raise KeyError(f"unknown paper {paper!r}; choose one of {', '.join(PAPERS)}")


def transcription(paper: str | None = None) -> dict[str, Any]:
    """The transcription of the papers' tables (``fusionlib/paper_tables.json``), whole or one paper's.

    Each paper record holds ``tables`` (``id``, ``caption``, ``datasets``, ``columns``, ``direction``,
    ``rows`` with ``method``, ``own``, ``values`` (numbers, ``None`` where the text is unreadable) and
    ``printed`` (the tokens as extracted)), the ``recipe`` and the ``evaluation`` the paper states.
    A fresh copy each call.
    """
    try:
        data = json.loads(_tables_cached())
    except json.JSONDecodeError as e:
        raise ValueError(f"fusionlib/{_TABLES}: invalid JSON ({e})") from e
    return data if paper is None else data[_paper_key(paper)]


def table_ids(paper: str) -> list[str]:
    """The ids of ``paper``'s tables as the transcription spells them (``"Table 3"``, ``"TABLE V"``,
    ``"Table 5 (MSRS block)"``)."""
    return [t["id"] for t in transcription(paper)["tables"]]


def table_record(paper: str, table_id: str) -> dict[str, Any]:
    """One table's transcription record (see :func:`transcription`).

    Raises:
        KeyError: no table with that id (the message lists the paper's ids).
    """
    for t in transcription(paper)["tables"]:
        if t["id"] == table_id:
            return t
    raise KeyError(f"{paper}: no table {table_id!r}; the paper's tables: {', '.join(table_ids(paper))}")


def _cell(v: Any) -> Any:
    """A transcribed cell: a float, NaN where unreadable, or the text of a text column (e.g. a ranking)."""
    if v is None:
        return math.nan
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def paper_table(paper: str, table_id: str, *, configs: bool = False):
    """One of ``paper``'s tables as a ``pandas.DataFrame``, values as printed in the paper.

    Index: the row labels of the transcription (method names as the paper prints them); columns: the
    table's columns; unreadable cells are NaN, text columns (LKC-FUNet Table 7's ranking) stay text. With
    ``configs=True`` an ablation table's configuration (its check marks, or the transcriber's reading of
    garbled ones) is added as a last column ``config``.
    ``df.attrs``: ``paper``, ``table``, ``caption``, ``datasets``, ``notes``, ``own`` (the own-method
    row labels), ``direction`` (column -> "higher"/"lower"), ``source`` ("paper text, <table id>").

    Example:
        >>> df = paper_table("aidfusion", "Table 3")
        >>> float(df.loc["AIDFusion (Ours)", "SSIM"])
        1.002
    """
    import pandas as pd

    t = table_record(paper, table_id)
    rows = {}
    for r in t["rows"]:
        rec: dict[str, Any] = {c: _cell(v) for c, v in zip(t["columns"], r["values"])}
        if configs and "config_columns" in t:
            cfg = r.get("config_reading", r.get("config", ""))
            if isinstance(cfg, list):  # one mark per configuration column
                cfg = ", ".join(f"{c} {m}" for c, m in zip(t["config_columns"], cfg))
            rec["config"] = cfg
        rows[r["method"]] = rec
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "row (as printed)"
    df.attrs.update(
        paper=paper, table=table_id, caption=t.get("caption", ""), datasets=list(t.get("datasets", [])),
        notes=t.get("notes", ""), own=[r["method"] for r in t["rows"] if r.get("own")],
        direction=dict(t.get("direction", {})), source=f"paper text, {table_id}",
    )
    return df


# ----------------------------------------------------------------------------- mapping and conventions
@lru_cache(maxsize=1)
def _load_cached() -> str:
    return resources.files("fusionlib").joinpath(_DATA).read_text(encoding="utf-8")


def load() -> dict[str, Any]:
    """The parsed ``paper_numbers.json`` (a fresh copy each call).

    Raises:
        ValueError: the file is not valid JSON or lacks ``papers``.
    """
    try:
        data = json.loads(_load_cached())
    except json.JSONDecodeError as e:
        raise ValueError(f"fusionlib/{_DATA}: invalid JSON ({e})") from e
    if "papers" not in data:
        raise ValueError(f"fusionlib/{_DATA}: missing top-level key 'papers'")
    return data


def paper_info(paper: str) -> dict[str, Any]:
    """Title, venue, evaluator, the main tables' dataset map and the per-metric conventions of a paper."""
    papers = load()["papers"]
    if paper not in papers:
        raise KeyError(f"no paper record for {paper!r}; recorded: {', '.join(papers)}")
    return papers[paper]


def _blocks(paper: str):
    """``(table_id, prefix or None, dataset key or None, paper_dataset, test_pairs)`` per mapped block."""
    for tid, m in paper_info(paper)["tables"].items():
        if "prefixes" in m:
            for prefix, (ds, pds, n) in m["prefixes"].items():
                yield tid, prefix, ds, pds, n
        else:
            yield tid, None, m["dataset"], m["paper_dataset"], m["test_pairs"]


@lru_cache(maxsize=1)
def _rows_cached() -> str:
    out = []
    for paper in PAPERS:
        skip = set(paper_info(paper).get("cost_columns", []))
        for tid, prefix, ds, pds, n in _blocks(paper):
            t = table_record(paper, tid)
            for r in t["rows"]:
                values = {}
                for col, v in zip(t["columns"], r["values"]):
                    if prefix is not None:
                        if not col.startswith(prefix + " "):
                            continue
                        col = col[len(prefix) + 1:]
                    if v is not None and col not in skip:
                        values[col] = float(v)
                if not values:
                    continue
                out.append({
                    "paper": paper, "row": r["method"], "own": bool(r.get("own")),
                    "method": paper if r.get("own") else None, "dataset": ds, "paper_dataset": pds,
                    "test_pairs": n, "table": tid, "values": values,
                    "source": {"kind": "paper text", "table": tid, "path": f"fusionlib/{_TABLES}"},
                })
    return json.dumps(out)


def all_rows() -> list[dict[str, Any]]:
    """Every row of every main comparison table, one dict per (row, dataset block): ``paper``, ``row``
    (label as printed), ``own``, ``method`` (our key for the own row, else ``None``), ``dataset`` (bundled
    key or ``None`` when not bundled), ``paper_dataset``, ``test_pairs`` (as the paper states, or ``None``),
    ``table``, ``values`` (paper metric names; unreadable cells left out), ``source``."""
    return json.loads(_rows_cached())


def entries() -> list[dict[str, Any]]:
    """The own-method rows on bundled sets (what notebooks place beside ours), in file order."""
    return [e for e in all_rows() if e["own"] and e["dataset"] is not None]


def methods() -> list[str]:
    """Method keys with at least one own row on a bundled set."""
    return list(dict.fromkeys(e["method"] for e in entries()))


def datasets(method: str) -> list[str]:
    """Bundled data-set keys on which ``method``'s paper reports its own method."""
    return [e["dataset"] for e in entries() if e["method"] == method]


def _entry(method: str, dataset: str) -> dict[str, Any]:
    for e in entries():
        if e["method"] == method and e["dataset"] == dataset:
            return e
    have = ", ".join(f"{e['method']}/{e['dataset']}" for e in entries())
    raise KeyError(f"no paper-reported values for method={method!r}, dataset={dataset!r}; recorded: {have}")


def reported(method: str, dataset: str) -> dict[str, float]:
    """The paper's values for its own method on ``dataset``, keyed by the **paper's** metric names.

    Raises:
        KeyError: nothing recorded for that pair (the message lists what is).
    """
    return dict(_entry(method, dataset)["values"])


def conventions(paper: str) -> dict[str, dict[str, Any]]:
    """``paper metric -> {"ours", "preset", "status", "evidence"}`` (see the module docstring)."""
    return paper_info(paper)["conventions"]


def convention(paper: str, metric: str) -> dict[str, Any]:
    """The convention record of one paper metric (paper's name, or our name under its preset).

    Raises:
        KeyError: the paper reports no such metric.
    """
    conv = conventions(paper)
    if metric in conv:
        return conv[metric]
    for rec in conv.values():
        if rec["ours"] == metric:
            return rec
    raise KeyError(f"{paper} reports no metric {metric!r}; its metrics: {', '.join(conv)}")


def preset_for(paper: str, metric: str) -> str | None:
    """The preset whose ``metric`` is on the scale of ``paper``'s numbers, or ``None`` when unknown."""
    rec = convention(paper, metric)
    return None if rec["status"] == "unknown" else rec["preset"]


def convention_note(paper: str) -> str:
    """A markdown paragraph: the paper's evaluator and, per metric, preset, status and evidence."""
    info = paper_info(paper)
    lines = [f"**{info['title']}**: evaluator: {info['evaluator']}. {info.get('summary', '')}".rstrip()]
    for name, rec in conventions(paper).items():
        where = f"`{rec['preset']}` {rec['ours']}" if rec["status"] != "unknown" else "no preset"
        lines.append(f"- {name}: {where} ({rec['status']}): {rec['evidence']}")
    return "\n".join(lines)


def conventions_table():
    """Every paper x metric convention as a DataFrame (``paper``, ``metric``, ``ours``, ``preset``,
    ``status``, ``evidence``), for 06's conformance table."""
    import pandas as pd

    return pd.DataFrame([{"paper": p, "metric": m, **rec} for p in PAPERS for m, rec in conventions(p).items()])


def conventions_markdown() -> str:
    """The README's conventions table: one row per paper metric (preset, status, evidence)."""
    lines = ["| paper | metric | ours (preset) | status | evidence |", "|---|---|---|---|---|"]
    for p in PAPERS:
        for name, rec in conventions(p).items():
            ours = f"`{rec['ours']}` (`{rec['preset']}`)" if rec["status"] != "unknown" else "none"
            lines.append(f"| {PAPERS[p]} | {name} | {ours} | {rec['status']} | {rec['evidence']} |")
    return "\n".join(lines) + "\n"


def provenance(method: str, dataset: str) -> dict[str, Any]:
    """Where the values were read: ``source``, ``table``, ``paper_dataset``, ``test_pairs``, the paper's
    title, venue and evaluator, and the per-metric presets (``presets``)."""
    e = _entry(method, dataset)
    p = paper_info(method)
    out = {k: v for k, v in e.items() if k != "values"}
    out.update(paper=p["title"], venue=p["venue"], evaluator=p["evaluator"],
               presets={m: preset_for(method, m) for m in e["values"]})
    return out


def _mapped(paper: str, values: dict[str, float], preset: str | None) -> dict[str, float]:
    out, conv = {}, conventions(paper)
    for name, value in values.items():
        rec = conv.get(name)
        if rec is None:
            raise ValueError(f"fusionlib/{_DATA}: {paper} metric {name!r} has no convention record")
        if rec["status"] == "unknown" or rec["ours"] is None:
            continue
        if preset is None or rec["preset"] == preset:
            out[rec["ours"]] = value
    return out


def paper_column(method: str, dataset: str, preset: str | None = None) -> dict[str, float]:
    """The paper's own values under **our** metric names, only those on ``preset``'s scale.

    ``preset=None``: every metric with a known convention. Metrics whose convention is unknown are left out.
    """
    return _mapped(method, reported(method, dataset), preset)


def paper_rows(paper: str, dataset: str, preset: str | None = None, *, own_only: bool = False):
    """The paper's main-table rows on ``dataset`` as a DataFrame under our metric names (only metrics on
    ``preset``'s scale; ``preset=None``: the paper's own names, every metric). Index: row labels as printed.
    Empty when the paper does not report ``dataset``."""
    import pandas as pd

    rows = {}
    for e in all_rows():
        if e["paper"] != paper or e["dataset"] != dataset or (own_only and not e["own"]):
            continue
        vals = e["values"] if preset is None else _mapped(paper, e["values"], preset)
        rows[e["row"]] = vals
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.attrs.update(paper=paper, dataset=dataset, preset=preset)
    return df


def rows_for(dataset: str, preset: str, methods: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Extra rows for one of our per-set tables: ``{label: {our_metric: value}}``, each paper's own row
    with the metrics on ``preset``'s scale. Label: ``"<Title> (paper, <n> pairs, <preset>)"``."""
    from fusionlib.methods import get_method

    rows = {}
    for e in entries():
        if e["dataset"] != dataset or (methods is not None and e["method"] not in methods):
            continue
        col = paper_column(e["method"], dataset, preset)
        if not col:
            continue
        n = f"{e['test_pairs']} pairs" if e["test_pairs"] else "full test set"
        rows[f"{get_method(e['method']).title} (paper, {n}, {preset})"] = col
    return rows


def not_found() -> list[dict[str, str]]:
    """Metrics a paper reports whose convention is unknown: ``method``, ``what``, ``searched`` (the evidence)."""
    return [{"method": p, "what": f"{m}: no preset reproduces the paper's scale", "searched": rec["evidence"]}
            for p in PAPERS for m, rec in conventions(p).items() if rec["status"] == "unknown"]


def results_block() -> dict[str, Any]:
    """A JSON-ready summary for ``results.json``: own rows with mapped values, presets and provenance."""
    from fusionlib.methods import get_method

    out = []
    for e in entries():
        out.append({
            "method": e["method"], "title": get_method(e["method"]).title, "dataset": e["dataset"],
            "paper_dataset": e["paper_dataset"], "test_pairs": e["test_pairs"], "table": e["table"],
            "values_paper_names": dict(e["values"]), "values": paper_column(e["method"], e["dataset"]),
            "presets": {m: preset_for(e["method"], m) for m in e["values"]},
            "source": f"paper text, {e['table']}",
        })
    return {"entries": out, "unknown_conventions": [f"{n['method']}: {n['what']}" for n in not_found()]}


def validate(check_registry: bool = True) -> list[str]:
    """Problems in the two data files (an empty list when they are sound).

    Checks: every mapped table exists in the transcription and each block has columns; every metric of
    a mapped table has a convention record with a known status and non-empty evidence; with
    ``check_registry``, mapped datasets are bundled, presets exist and name one of their metrics.
    """
    errors: list[str] = []
    data = load()
    reg_sets = list_metrics = None
    if check_registry:
        from fusionlib import data as fdata
        from fusionlib.metrics import list_metrics

        reg_sets = set(fdata.list_bundled())
    for paper in PAPERS:
        if paper not in data["papers"]:
            errors.append(f"papers.{paper}: missing")
            continue
        conv = conventions(paper)
        for name, rec in conv.items():
            where = f"papers.{paper}.conventions.{name}"
            if rec.get("status") not in STATUSES:
                errors.append(f"{where}: status {rec.get('status')!r} not one of {STATUSES}")
            if not rec.get("evidence"):
                errors.append(f"{where}: no evidence")
            if rec.get("status") != "unknown" and list_metrics is not None:
                try:
                    ours = list_metrics(rec.get("preset"))
                except (ValueError, TypeError):
                    errors.append(f"{where}: unknown preset {rec.get('preset')!r}")
                    continue
                if rec.get("ours") not in ours:
                    errors.append(f"{where}: {rec.get('ours')!r} is not a metric of preset {rec.get('preset')!r}")
        try:
            blocks = list(_blocks(paper))
        except (KeyError, ValueError, TypeError) as e:
            errors.append(f"papers.{paper}.tables: {e}")
            continue
        for tid, prefix, ds, _pds, _n in blocks:
            try:
                t = table_record(paper, tid)
            except KeyError as e:
                errors.append(str(e))
                continue
            skip = set(paper_info(paper).get("cost_columns", []))
            cols = [c[len(prefix) + 1:] if prefix else c for c in t["columns"]
                    if (prefix is None or c.startswith(prefix + " ")) and c not in skip]
            if not cols:
                errors.append(f"papers.{paper}.tables.{tid}: no column for block {prefix!r}")
            for c in cols:
                if c not in conv:
                    errors.append(f"papers.{paper}: metric {c!r} of {tid} has no convention record")
            if reg_sets is not None and ds is not None and ds not in reg_sets:
                errors.append(f"papers.{paper}.tables.{tid}: dataset {ds!r} is not bundled")
    return errors
