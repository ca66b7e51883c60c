"""fusionlib.pacing: the 90-minute map of each notebook names only sections the notebook has, reads its
measured times from executed notebooks, and says where a time was not measured."""

from __future__ import annotations

import json
import re

import pytest

from fusionlib import pacing
from fusionlib.methods import list_methods
from fusionlib.nbsource import parse_percent

STEMS = sorted(p.stem for p in pacing.SRC.glob("[0-9][0-9]_*.py"))


def test_every_notebook_has_a_plan():
    assert STEMS and sorted(pacing.PLANS) == STEMS


@pytest.mark.parametrize("stem", STEMS)
def test_plan_names_existing_sections(stem):
    """Every core name and the training section match exactly one ## heading of the source."""
    src = (pacing.SRC / f"{stem}.py").read_text(encoding="utf-8")
    headings = re.findall(r"^# ## (.+?)\s*$", src, flags=re.M)
    secs = pacing.sections(stem)
    assert [s.heading for s in secs] == headings
    core = pacing.core_sections(stem)
    assert len({s.key for s in core}) == len(pacing.PLANS[stem].core)
    assert 0 < len(core) < len(secs) + 1
    plan = pacing.PLANS[stem]
    if plan.train:
        assert sum(h.startswith(plan.train) for h in headings) == 1, plan.train
    if plan.method:
        assert plan.method in list_methods()


@pytest.mark.parametrize("stem", STEMS)
def test_map_cell_follows_the_title(stem):
    cells = parse_percent((pacing.SRC / f"{stem}.py").read_text(encoding="utf-8"))
    assert cells[0]["type"] == "markdown" and cells[0]["source"].startswith("# ")
    assert cells[1]["type"] == "code" and f'pacing.show_map("{stem[:2]}")' in cells[1]["source"], (
        f"{stem}: the cell after the title should show the map")
    assert pacing.notebook_stem(stem[:2]) == stem


def test_a_wrong_plan_name_is_refused(monkeypatch):
    monkeypatch.setitem(pacing.PLANS, "00_foundations", pacing.Plan(core=("1 · Setup", "42 · Nothing")))
    with pytest.raises(KeyError, match="42 · Nothing"):
        pacing.core_sections("00")
    with pytest.raises(FileNotFoundError, match="99"):
        pacing.notebook_stem("99")


def _executed(profile: str, cells: list[tuple[str, str, float | None]]) -> dict:
    pm = {"parameters": {"profile": profile}, "start_time": "2026-12-07T10:00:00"}
    return {"metadata": {"papermill": pm},
            "cells": [{"cell_type": t, "source": s,
                       "metadata": {} if d is None else {"papermill": {"duration": d}}} for t, s, d in cells]}


def test_section_times_sum_cell_durations(tmp_path):
    ex = _executed("smoke", [("markdown", "# 00 · Title", 0.5), ("code", "x = 1", 2.0),
                             ("markdown", "## 1 · Setup\ntext", 0.1), ("code", "y", 3.0),
                             ("markdown", "## 10b · More", None), ("code", "z", 1.25), ("code", "w", 0.25)])
    assert pacing._section_times(ex) == {"1": 5.6, "10b": 1.5}
    d = tmp_path / "00_foundations"
    d.mkdir()
    (d / "00_foundations.ipynb").write_text(json.dumps(ex))
    m = pacing.measure(tmp_path, note="test")
    assert m["profile"] == "smoke" and m["note"] == "test"
    assert m["notebooks"]["00_foundations"]["total_s"] == pytest.approx(7.1)
    e = tmp_path / "01_aidfusion"
    e.mkdir()
    (e / "01_aidfusion.ipynb").write_text(json.dumps(_executed("lab", [("markdown", "## 1 · Setup", 1.0)])))
    with pytest.raises(ValueError, match="different profiles"):
        pacing.measure(tmp_path)
    with pytest.raises(FileNotFoundError, match="runner"):
        pacing.measure(tmp_path / "none")


def test_map_markdown_reports_measured_and_unmeasured(tmp_path):
    times = {"profile": "smoke", "machine": "testbox", "measured": "2026-12-07", "commit": "abc", "note": "",
             "notebooks": {"00_foundations": {"sections": {"1": 12.5, "6": 30.0}}}}
    md = pacing.map_markdown("00", times=times)
    for s in pacing.sections("00"):
        assert s.title in md
    assert "| 12.5 |" in md and "| 30.0 |" in md and "testbox" in md
    assert "not measured on a GPU yet" in md and "our estimate" in md
    assert md.count("\n|") >= len(pacing.sections("00")) + 1
    core_min = sum(s.read_minutes for s in pacing.core_sections("00"))
    assert f"about {core_min:.0f} min" in md
    none = pacing.map_markdown("02", times=times, weights_dir=tmp_path)  # no entry, no shipped network
    assert "not measured yet" in none and "was not timed" in none and "(measured)" not in none


def test_lab_cpu_line_follows_the_manifest(tmp_path):
    rec = {"steps": 300, "wall_seconds": 600.0, "device": "cpu (test)", "config": "narrow_x",
           "parameters": 10, "file": "lkc_funet.pt"}
    for profile, says in (("cpu", "not measured"), ("lab", "took 300 steps in 10.0 min on cpu (test)")):
        manifest = {"schema": 1, "weights": {"lkc_funet": {**rec, "profile": profile}}}
        (tmp_path / "MANIFEST.json").write_text(json.dumps(manifest))
        md = pacing.map_markdown("03", times={}, weights_dir=tmp_path)
        assert says in md, md
    assert "trains nothing" in pacing.map_markdown("06", times={})


def test_stored_times_match_the_sources():
    """The shipped measurement names the sections the sources have (else: regenerate it)."""
    times = pacing.load_times()
    if times is None:
        pytest.skip("no fusionlib/pacing_times.json")
    for stem, rec in times["notebooks"].items():
        keys = {s.key for s in pacing.sections(stem)}
        assert set(rec["sections"]) <= keys, (
            f"{stem}: pacing_times.json names sections {sorted(set(rec['sections']) - keys)} the source no "
            f"longer has: rerun the notebook and `python -m fusionlib.pacing measure runs`")
    assert times["machine"] and times["measured"] and times["commit"]


def test_benchmark_has_every_trained_method_s_laziness_and_the_conformance_note():
    """06 draws the laziness of every method its paper notebook trained (the notebook must save
    laziness.json where 06 reads it, as LKC-FUNet's did not before) and shows the per-preset conformance."""
    from fusionlib.methods import get_method

    for name in list_methods():
        nb = get_method(name).notebook
        if nb is None:
            continue
        src = (pacing.SRC / f"{nb}.py").read_text(encoding="utf-8")
        assert re.search(r"^save_laziness\([^)]*, out_dir\)", src, flags=re.M), (
            f"{nb} never saves laziness.json in its out_dir: 06 would draw no curve for {name}")
    bench = (pacing.SRC / "06_benchmark.py").read_text(encoding="utf-8")
    assert "load_laziness(name, runs_dir)" in bench and "conformance.summary_markdown(" in bench
