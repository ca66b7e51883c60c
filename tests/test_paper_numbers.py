"""The papers' reported values: the data file is sound, traceable, and maps onto our metrics."""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest

from fusionlib import paper_numbers as pn
from fusionlib.data import list_bundled
from fusionlib.methods import list_methods
from fusionlib.metrics import list_metrics


def test_json_loads_as_package_data_and_validates():
    raw = resources.files("fusionlib").joinpath("paper_numbers.json").read_text(encoding="utf-8")
    data = json.loads(raw)
    assert data["entries"], "no entries recorded"
    assert pn.validate() == []


def test_every_entry_has_source_table_and_short_quote():
    for e in pn.entries():
        src = e["source"]
        assert src.get("url") or (src.get("repo") and src.get("path")) or src.get("path"), e
        assert src.get("kind"), e
        assert e["table"].strip() and e["paper_dataset"].strip()
        assert 0 < len(e["quote"]) <= pn.QUOTE_MAX


def test_quotes_contain_the_values_they_support():
    """The evidence quote shows the numbers (as printed, 3 decimals), so a typo in a value fails."""
    for e in pn.entries():
        shown = [f"{v:.3f}" for v in e["values"].values()]
        in_quote = [s for s in shown if s in e["quote"]]
        missing = set(shown) - set(in_quote)
        assert in_quote == shown, f"{e['method']}/{e['dataset']}: {missing} not in the quote"


def test_values_are_finite_and_methods_and_sets_registered():
    methods, sets = set(list_methods()), set(list_bundled())
    for e in pn.entries():
        assert e["method"] in methods and e["dataset"] in sets
        for v in pn.reported(e["method"], e["dataset"]).values():
            assert math.isfinite(v)
    assert {n["method"] for n in pn.not_found()} <= methods


def test_metric_names_map_to_ours_under_the_papers_preset():
    for m in pn.methods():
        info = pn.paper_info(m)
        ours = set(list_metrics(info["preset"]))
        for d in pn.datasets(m):
            col = pn.paper_column(m, d, info["preset"])
            assert col and set(col) <= ours
            assert set(pn.reported(m, d)) <= set(info["metric_map"]), "a paper metric without a mapping entry"


def test_paper_column_only_under_the_matching_preset_and_drops_unmapped():
    assert pn.paper_column("siba", "msrs", "cddfuse") == {}
    col = pn.paper_column("siba", "msrs", "tang")
    assert "SSIM" not in col  # SIBA's SSIM is the toolbox's mef_ssim: no counterpart among ours
    assert col["VIF"] == pn.reported("siba", "msrs")["VIF"]


def test_rows_for_labels_say_paper_and_preset():
    rows = pn.rows_for("msrs", "cddfuse")
    assert any("AIDFusion (paper, full test set, cddfuse inferred)" == k for k in rows)
    assert pn.rows_for("harvard_ct", "tang") == {}


def test_unknown_pair_raises_with_what_is_recorded():
    with pytest.raises(KeyError, match="recorded: .*siba/msrs"):
        pn.reported("rpfnet", "msrs")


def test_results_block_is_json_ready_and_finite():
    block = json.loads(json.dumps(pn.results_block()))
    assert block["entries"] and block["not_found"]
    for e in block["entries"]:
        assert all(math.isfinite(v) for v in e["values"].values())
        assert e["source"] and e["quote"]
