"""The papers' tables and conventions: the shipped transcription equals the team's, every own row of every
main table is reachable, and each paper metric maps onto our metrics under a stated convention."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fusionlib import paper_numbers as pn
from fusionlib.data import list_bundled
from fusionlib.methods import list_methods
from fusionlib.metrics import list_metrics

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper_tables.json"


def test_data_files_validate():
    assert pn.validate() == []


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/reference/paper_tables.json absent (a user's clone)")
def test_shipped_transcription_equals_the_reference():
    assert pn.transcription() == json.loads(SHARED.read_text(encoding="utf-8"))


def test_every_own_row_of_every_main_table_is_an_entry():
    """Each main comparison table's own row, block by block, is in all_rows() with the printed values."""
    rows = pn.all_rows()
    for paper, key in pn.PAPERS.items():
        skip = set(pn.paper_info(paper).get("cost_columns", []))
        for t in pn.transcription(paper)["tables"]:
            if not t.get("main_comparison") or t.get("kind") not in ("fusion_metrics", "fusion_metrics+efficiency",
                                                                     "fusion_metrics_medical"):
                continue
            own = [r for r in t["rows"] if r.get("own")]
            assert own, (paper, t["id"])
            for r in own:
                got = {}
                for e in rows:
                    if e["paper"] == paper and e["table"] == t["id"] and e["row"] == r["method"]:
                        got.update({(e["paper_dataset"], k): v for k, v in e["values"].items()})
                expected = [v for c, v in zip(t["columns"], r["values"]) if v is not None and c not in skip]
                assert sorted(got.values()) == sorted(float(v) for v in expected), (paper, t["id"])


def test_entries_point_at_registered_methods_and_bundled_sets():
    methods, sets = set(list_methods()), set(list_bundled())
    assert set(pn.methods()) == set(pn.PAPERS)
    for e in pn.entries():
        assert e["method"] in methods and e["dataset"] in sets
        assert e["source"]["kind"] == "paper text" and e["source"]["table"] == e["table"]
        assert all(math.isfinite(v) for v in e["values"].values())


def test_known_values_read_from_the_paper_text():
    assert pn.reported("rpfnet", "msrs")["SD"] == 10.06
    assert pn.reported("dmnet", "tno")["MS-SSIM"] == 1.012
    assert pn.reported("lkc_funet", "harvard_spect")["VIFF"] == 0.676
    assert pn.reported("aidfusion", "m3fd")["MS_SSIM"] == 1.071
    assert pn.entries()[0]["test_pairs"] is None  # AIDFusion does not state its MSRS test size
    assert pn.provenance("dmnet", "llvip")["test_pairs"] == 3463


def test_conventions_name_real_metrics_and_unknown_ones_stay_out():
    for paper in pn.PAPERS:
        for name, rec in pn.conventions(paper).items():
            assert rec["status"] in pn.STATUSES and rec["evidence"]
            if rec["status"] == "unknown":
                assert pn.preset_for(paper, name) is None
            else:
                assert rec["ours"] in list_metrics(rec["preset"])
    assert pn.preset_for("siba", "VIF") == "tang"
    assert "SD" not in pn.paper_column("rpfnet", "msrs")  # unknown convention: no column
    assert pn.paper_column("siba", "msrs", "cddfuse") == {}
    col = pn.paper_column("siba", "msrs", "tang")
    assert col["FMI_pixel"] == 0.933 and "SSIM" not in col


def test_paper_table_shapes_and_attrs():
    df = pn.paper_table("dmnet", "TABLE V", configs=True)
    assert len(df) == 15 and "config" in df.columns and df.attrs["own"] == ["Ours"]
    t2 = pn.paper_table("lkc_funet", "Table 2", configs=True)
    assert t2.loc["a", "config"] == "Norm BN, LKC ×, MPAFM ✓"
    t7 = pn.paper_table("lkc_funet", "Table 7")
    assert t7.loc["EMMA [38]", "Ranking"] == "24/25/27" and t7.loc["EMMA [38]", "Params (K)"] == 1520.0
    t4 = pn.paper_table("rpfnet", "Table 4")
    assert t4.shape == (10, 18) and t4.attrs["source"] == "paper text, Table 4"
    with pytest.raises(KeyError, match="TABLE I"):
        pn.paper_table("dmnet", "Table 1")
    with pytest.raises(KeyError, match="choose one of"):
        pn.table_ids("cddfuse")


def test_paper_rows_and_rows_for():
    df = pn.paper_rows("rpfnet", "tno", "cddfuse")
    assert "SD" not in df.columns and "EN" in df.columns and len(df) == 10
    rows = pn.rows_for("msrs", "tang")
    assert any("SIBA" in k for k in rows) and all(v for v in rows.values())
    assert pn.rows_for("harvard_ct", "tang") == {}


def test_results_block_is_json_ready():
    block = json.loads(json.dumps(pn.results_block()))
    assert block["entries"] and any("SD" in s for s in block["unknown_conventions"])


def test_readme_conventions_table_is_current():
    """The README's conventions table is generated from paper_numbers.json; regenerate it when the JSON changes
    (`python -c "from fusionlib import paper_numbers as p; print(p.conventions_markdown())"`)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- conventions:start -->\n", "<!-- conventions:end -->"
    assert start in readme and end in readme
    block = readme.split(start, 1)[1].split(end, 1)[0]
    assert block == pn.conventions_markdown()
