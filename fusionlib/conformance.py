"""Conformance per metric preset: how far a paper's row and ours can be compared, metric by metric.

Two questions decide whether a number of ours and a paper's number in the same table column mean
the same thing:

1. **Does our metric compute what the toolbox computes?** :data:`TOOLBOX_CHECKED` lists, per preset,
   the metrics compared number for number with the toolbox's own output on fixed images (the GNU Octave
   run of Tang's MATLAB toolbox, the pinned CDDFuse evaluator; ``tests/test_metrics_reference.py``,
   relative tolerance 1e-5). A preset metric not listed is ours (an extra) and has no toolbox to match.
2. **Is the paper's number on that preset's scale?** Each paper metric has a convention record in
   ``fusionlib/paper_numbers.json`` (:func:`fusionlib.paper_numbers.conventions`) with a status:
   ``verified`` (the authors' released weights scored here reproduce the paper's row), ``code`` (the
   authors' evaluator was read), ``inferred`` (the scale of the numbers points to the preset), ``unknown``
   (no preset reproduces it: the paper's value is never placed beside ours).

:func:`preset_table` crosses the two for one preset, metric by metric; :func:`summary_table` (markdown:
:func:`summary_markdown`) gives one row per preset with what it means for the paper rows of that preset's
tables (06_benchmark §4).

Example:
    >>> t = preset_table("tang")
    >>> t.loc["VIF", "SIBA"], t.loc["VIF", "toolbox"]
    ('verified', 'checked')
"""

from __future__ import annotations

from typing import Any

from fusionlib import metrics, paper_numbers

__all__ = ["TOOLBOX_CHECKED", "REFERENCE", "STATUS_MEANING", "preset_table", "status_counts", "summary_table",
           "summary_markdown", "left_out"]

#: preset -> the toolbox output its metrics are compared with (``../shared/metric_ref/values.json`` keys)
REFERENCE: dict[str, str] = {
    "tang": "tang_octave",            # Linfeng-Tang/Evaluation-for-Image-Fusion, run in GNU Octave
    "cddfuse": "cddfuse_pinned_py38",  # MMIF-CDDFuse utils/Evaluator.py, scikit-image 0.19.2
    "lkc": "cddfuse_pinned_py38",      # the same evaluator; SSIM compared with its data_range=255 column
}

#: preset -> our metric names checked against the toolbox's own numbers (tests/test_conformance.py
#: asserts that this is what the reference file holds and that the values agree)
TOOLBOX_CHECKED: dict[str, tuple[str, ...]] = {
    "tang": ("EN", "SF", "SD", "PSNR", "MSE", "MI", "VIF", "AG", "CC", "SCD", "Qabf", "Nabf", "SSIM",
             "MS_SSIM", "FMI_pixel", "Nabf_argfix", "FMI_dct", "FMI_w"),
    "cddfuse": ("EN", "SD", "SF", "AG", "MI", "MSE", "CC", "PSNR", "SCD", "VIF", "Qabf", "SSIM",
                "SSIM_dr255"),
    "lkc": ("EN", "SD", "SF", "AG", "MI", "MSE", "CC", "PSNR", "SCD", "VIF", "Qabf", "SSIM", "SSIM_dr2"),
}

#: what a paper row's status means for reading it beside ours
STATUS_MEANING: dict[str, str] = {
    "verified": "same scale, checked with the authors' released weights",
    "code": "same evaluator code (read), not checked with released weights",
    "inferred": "scale inferred from the numbers only: part of a gap may be a convention difference",
    "unknown": "no preset reproduces the paper's scale: its value is left out",
}


def _paper_statuses(preset: str) -> dict[str, dict[str, str]]:
    """``paper title -> {our metric: status}`` for the paper metrics recorded on ``preset`` (status
    ``unknown`` excluded: those are on no preset)."""
    out: dict[str, dict[str, str]] = {}
    for key, title in paper_numbers.PAPERS.items():
        for rec in paper_numbers.conventions(key).values():
            ours = rec.get("ours")
            if rec["status"] == "unknown" or rec["preset"] != preset or not ours:
                continue
            out.setdefault(title, {})[ours] = rec["status"]
    return out


def preset_table(preset: str):
    """One row per metric the preset computes by default (the columns of 06's tables).

    Columns: ``toolbox`` (``"checked"`` against the toolbox's numbers, or ``"ours"``), then one column per
    paper with at least one metric on this preset: that metric's convention status, ``"–"`` where the paper
    reports no value on this preset's scale.

    Raises:
        ValueError: ``preset`` is not a preset of :mod:`fusionlib.metrics`.
    """
    import pandas as pd

    p = metrics.get_preset(preset)
    names = [n for n, m in p.metrics.items() if m.default]
    checked = set(TOOLBOX_CHECKED.get(preset, ()))
    papers = _paper_statuses(preset)
    rows = []
    for n in names:
        row: dict[str, Any] = {"metric": n, "better": "↑" if p.metrics[n].higher_is_better else "↓",
                               "toolbox": "checked" if n in checked else "ours"}
        for title, st in papers.items():
            row[title] = st.get(n, "–")
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def _by_status(preset: str) -> dict[str, str]:
    """``status -> "Paper: m1, m2; Paper2: ..."`` for the paper values placed in ``preset``'s tables."""
    out: dict[str, list[str]] = {}
    for title, st in _paper_statuses(preset).items():
        for s in ("verified", "code", "inferred"):
            ms = [m for m, v in st.items() if v == s]
            if ms:
                out.setdefault(s, []).append(f"{title}: {', '.join(ms)}")
    return {s: "; ".join(v) for s, v in out.items()}


def status_counts(preset: str) -> dict[str, int]:
    """How many paper values of each status the tables of ``preset`` carry beside ours (unknown: none)."""
    counts = {s: 0 for s in paper_numbers.STATUSES if s != "unknown"}
    for st in _paper_statuses(preset).values():
        for s in st.values():
            counts[s] += 1
    return counts


def _meaning(preset: str) -> str:
    c = status_counts(preset)
    if not sum(c.values()):
        return "no paper row: nothing of a paper's to compare"
    if c["inferred"]:
        return ("paper rows give the order of magnitude; a gap may partly be a convention difference"
                + ("" if c["inferred"] == sum(c.values()) else " (only for the inferred metrics)"))
    return "a gap to a paper's row is the network, data and budget, not the metric"


def summary_table(presets: tuple[str, ...] = ("tang", "cddfuse", "lkc")):
    """One row per preset: our metrics checked against the toolbox, the paper values its tables carry by
    convention status (``verified`` / ``code`` / ``inferred``) and what that means for the comparison."""
    import pandas as pd

    rows = []
    for pr in presets:
        t = preset_table(pr)
        ours = [n for n in t.index if t.loc[n, "toolbox"] != "checked"]
        st = _by_status(pr)
        rows.append({"preset": pr,
                     "checked against the toolbox": f"{len(t) - len(ours)}/{len(t)}"
                     + (f" (not {', '.join(ours)})" if ours else ""),
                     **{f"paper values: {s}": st.get(s, "–") for s in ("verified", "code", "inferred")},
                     "comparing with the paper rows": _meaning(pr)})
    return pd.DataFrame(rows).set_index("preset")


def left_out() -> str:
    """The paper metrics no preset reproduces (never placed beside ours), ``"Paper: m1, m2; ..."``."""
    out: dict[str, list[str]] = {}
    for key, title in paper_numbers.PAPERS.items():
        for name, rec in paper_numbers.conventions(key).items():
            if rec["status"] == "unknown":
                out.setdefault(title, []).append(name)
    return "; ".join(f"{t}: {', '.join(v)}" for t, v in out.items()) or "none"


def summary_markdown(presets: tuple[str, ...] = ("tang", "cddfuse", "lkc")) -> str:
    """:func:`summary_table` as a markdown table, the left-out metrics and the status meanings below it."""
    t = summary_table(presets)
    lines = ["| " + " | ".join(["preset", *t.columns]) + " |", "|" + "---|" * (len(t.columns) + 1)]
    lines += ["| " + " | ".join([f"`{i}`", *map(str, r)]) + " |" for i, r in t.iterrows()]
    lines += ["", f"Left out of every table (status `unknown`): {left_out()}.",
              "Status: " + "; ".join(f"`{s}`: {m}" for s, m in STATUS_MEANING.items()) + "."]
    return "\n".join(lines)
