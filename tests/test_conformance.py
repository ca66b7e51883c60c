"""fusionlib.conformance: the per-preset conformance note of 06 says what the data files and the toolbox
reference say, and nothing else."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fusionlib import conformance as cf
from fusionlib import metrics
from fusionlib import paper_numbers as pn


def test_checked_metrics_exist_in_their_preset():
    for preset, names in cf.TOOLBOX_CHECKED.items():
        p = metrics.get_preset(preset)
        for n in names:
            assert n in p.metrics, f"{preset}: {n} is listed as toolbox-checked but the preset lacks it"


def test_checked_lists_are_what_the_reference_file_holds(shared):
    """TOOLBOX_CHECKED[preset] = the toolbox's reported names, resolved in our preset (lkc: SSIM is the
    data_range=255 column, SSIM_dr2 the range-2 one)."""
    values = json.loads((shared / "metric_ref" / "values.json").read_text())
    for preset, toolbox in cf.REFERENCE.items():
        p = metrics.get_preset(preset)
        reported = {k: v for tag in values[toolbox].values() for k, v in tag["max"].items() if v is not None}
        names = set()
        for k, v in reported.items():
            if v is None:
                continue
            if preset == "lkc" and k == "SSIM":  # the evaluator's own SSIM is the range-2 one
                k = "SSIM_dr2"
            try:
                names.add(p.resolve(k))
            except ValueError:
                pass
        assert names == set(cf.TOOLBOX_CHECKED[preset]), preset


def test_lkc_preset_matches_the_cddfuse_evaluator_numbers(shared):
    """lkc shares the CDDFuse evaluator's code: each metric listed as checked equals its number there."""
    values = json.loads((shared / "metric_ref" / "values.json").read_text())
    img = shared / "metric_ref" / "images"
    tag = "msrs_00055D"
    a, b, f = (torch.from_numpy(np.array(Image.open(img / f"{tag}_{k}.png")))[None, None]
               for k in ("A", "B", "max"))
    ref = dict(values["cddfuse_pinned_py38"][tag]["max"])
    ref["SSIM"], ref["SSIM_dr2"] = ref.pop("SSIM_dr255"), ref["SSIM"]
    ref["VIF"] = ref.pop("VIFF")
    ours = metrics.evaluate(f, a, b, "lkc", list(cf.TOOLBOX_CHECKED["lkc"]))
    for n in cf.TOOLBOX_CHECKED["lkc"]:
        assert float(ours[n][0]) == pytest.approx(ref[n], rel=1e-5), n


def test_preset_table_statuses_come_from_the_conventions():
    for preset in ("tang", "cddfuse", "lkc"):
        t = cf.preset_table(preset)
        assert list(t.index) == [n for n, m in metrics.get_preset(preset).metrics.items() if m.default]
        for key, title in pn.PAPERS.items():
            for name, rec in pn.conventions(key).items():
                on_preset = rec["status"] != "unknown" and rec["preset"] == preset and rec["ours"] in t.index
                if on_preset:
                    assert t.loc[rec["ours"], title] == rec["status"], (preset, key, name)
                elif title in t.columns and rec["ours"] in t.index and rec["preset"] != preset:
                    assert t.loc[rec["ours"], title] == "–", (preset, key, name)


def test_counts_and_summary_agree_with_the_records():
    total = {s: 0 for s in ("verified", "code", "inferred")}
    for preset in ("tang", "cddfuse", "lkc"):
        for s, n in cf.status_counts(preset).items():
            total[s] += n
    recs = [r for p in pn.PAPERS for r in pn.conventions(p).values()]
    for s in total:
        assert total[s] == sum(r["status"] == s for r in recs), s
    md = cf.summary_markdown()
    assert md.count("\n| `") == 3 and "unknown" in md
    for p, title in pn.PAPERS.items():
        for name, rec in pn.conventions(p).items():
            if rec["status"] == "unknown":
                assert name in cf.left_out(), (p, name)
    t = cf.summary_table()
    assert t.loc["tang", "paper values: code"] == "–"
    # a preset whose paper values are all inferred is not read as a like-for-like comparison
    for preset in t.index:
        c = cf.status_counts(preset)
        says = t.loc[preset, "comparing with the paper rows"]
        assert ("convention difference" in says) == bool(c["inferred"]), preset


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="preset"):
        cf.preset_table("matlab")
