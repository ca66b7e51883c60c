"""Notebooks 00, 01 and 02: the numbers their prose states agree with what the code computes, and the
sections that show a trained network pick it through ``fusionlib.weights.pick_network``.

Numbers that depend on a training run are generated in the notebooks (a cell that prints markdown); the
numbers typed into their markdown are facts of the bundle, the architecture or the paper, and are checked
here against the library, so an edit to either side that makes them disagree fails. Cheap: no training,
FLOPs counted on the meta device.
"""

from __future__ import annotations

import re

import pytest
import torch

from fusionlib import data
from fusionlib.nbsource import source_cells, source_text

NOTEBOOKS = {"00_foundations": "tinyfuse", "01_aidfusion": "aidfusion", "02_siba": "siba"}


_cells = source_cells


def _markdown(stem: str) -> str:
    return source_text(stem, "markdown")


def _numbers(pattern: str, text: str) -> list[str]:
    found = re.findall(pattern, text)
    assert found, f"the prose no longer says {pattern!r}: update this test with it"
    return found


def _pairs(name: str, split: str) -> int:
    return len(data.bundled(name, split))


# --- 00 -------------------------------------------------------------------------------------------

def test_00_training_pairs():
    (n,) = _numbers(r"train splits \((\d+) pairs\)", _markdown("00_foundations"))
    assert int(n) == _pairs("msrs", "train") + _pairs("roadscene", "train")


# --- 01 -------------------------------------------------------------------------------------------

def test_01_widths_tokens_and_loss_weights():
    from fusionlib.models import create_model

    import fusionlib.models.aidfusion  # noqa: F401  (registers "aidfusion")
    md = _markdown("01_aidfusion")
    model = create_model("aidfusion")
    (widths,) = _numbers(r"channels (\d+(?:/\d+)+)", md)
    assert tuple(int(w) for w in widths.split("/")) == tuple(model.config.channels)
    tokens = {tuple(int(t) for t in m.split(", ")) for m in _numbers(r"P = \((\d+(?:, \d+)+)\)", md)}
    assert tokens == {tuple(model.mmfm[0].msrt_vi.tokens)}


def test_01_pho_schedule_as_the_prose_states():
    from fusionlib import diils

    md = _markdown("01_aidfusion")
    assert "epochs 1–50, 51–60, 61–70, 71–100" in md
    active = diils.pho_table(100, 4).sum(1).tolist()
    assert active[:50] == [1] * 50 and active[50:60] == [2] * 10 and active[60:70] == [3] * 10
    assert active[70:] == [4] * 30
    # "smoke trains 10 epochs ...: the second half has five epochs, one per row of Eq. 1 and three with every level"
    assert "10 epochs of 2 steps" in md and "three with every level" in md
    assert diils.pho_table(10, 4).sum(1).tolist() == [1, 1, 1, 1, 1, 2, 3, 4, 4, 4]


# --- 02 -------------------------------------------------------------------------------------------

def test_02_bundle_sizes_and_mix():
    md = _markdown("02_siba")
    (msrs_test,) = _numbers(r"MSRS (\d+)\s*#?\s*test pairs at 480×640", md)
    (tno_test,) = _numbers(r"TNO (\d+) pairs at their own sizes", md)
    assert int(msrs_test) == _pairs("msrs", "test") and int(tno_test) == _pairs("tno", "test")
    (n_msrs_train,) = _numbers(r"The bundle holds only (\d+)\s*#?\s*MSRS training pairs", md)
    msrs_train = data.bundled("msrs", "train")
    assert int(n_msrs_train) == len(msrs_train)
    days = sum(n.endswith("D") for n in msrs_train.names)
    assert f"({days} day, {len(msrs_train) - days} night)" in md
    n_road = _pairs("roadscene", "train")
    assert f"the same {n_road} RoadScene pairs" in md
    (once,) = _numbers(r"MSRS\s*#?\s*would be (\d+) % of the crops", md)
    assert int(once) == round(100 * len(msrs_train) / (len(msrs_train) + n_road))
    (paper_share,) = _numbers(r"so (\d+) % of its crops are MSRS", md)
    assert int(paper_share) == round(100 * 1083 / (1083 + 200))       # the paper's MSRS train + 200 RoadScene
    assert "1,080 MSRS : 200 RoadScene crops" in md and "270" in md
    assert 270 * len(msrs_train) == 1080 and -(-(1080 + 200) // 4) == 320   # "its 320 steps per epoch" at batch 4


def test_02_parameters_and_flops_as_the_prose_states():
    from fusionlib import profiling
    from fusionlib.models import create_model

    md = _markdown("02_siba")
    model = create_model("siba")
    n = profiling.count_parameters(model)
    assert f"{n:,}" in md
    head = sum(p.numel() for k, p in model.named_parameters() if k.startswith(("fuse_conv", "out_conv")))
    shares = _numbers(r"(\d+) % of the weights", md)
    assert {int(s) for s in shares} == {round(100 * head / n)}
    c128 = profiling.count_flops(model, torch.Size([1, 1, 128, 128]), torch.Size([1, 1, 128, 128]), meta=True)
    (gflops, gmac) = _numbers(r"FlopCounter ([\d.]+) GFLOPs = ([\d.]+) GMAC", md)[0]
    assert float(gflops) == pytest.approx(c128["gflops"], abs=0.006)
    assert float(gmac) == pytest.approx(c128["gmac"], abs=0.006)
    full = profiling.count_flops(model, torch.Size([1, 1, 480, 640]), torch.Size([1, 1, 480, 640]), meta=True)
    (g_full,) = _numbers(r"about (\d+) GFLOPs per image", md)
    assert int(g_full) == round(full["gflops"])
    (a, fps, tflops) = _numbers(r"(\d+) × (\d+) ≈ ([\d.]+) TFLOP/s", md)[0]
    assert int(a) == int(g_full) and float(tflops) == pytest.approx(int(a) * int(fps) / 1000, abs=0.05)


# --- all three: which network the inspection sections show ---------------------------------------

@pytest.mark.parametrize("stem", list(NOTEBOOKS))
def test_sections_pick_the_network_through_weights(stem: str):
    code = "\n".join(c["source"] for c in _cells(stem) if c["type"] == "code")
    assert f'weights.pick_network("{NOTEBOOKS[stem]}"' in code
    assert 'RESULTS["evaluated_network"] = NET_LABEL' in code
    params = next(c for c in _cells(stem) if "parameters" in c.get("tags", []))
    assert re.search(r"^weights_dir = None", params["source"], re.M), "a weights_dir parameter (tests pass a folder)"


@pytest.mark.parametrize("stem", list(NOTEBOOKS))
def test_pyplot_figures_are_closed_before_they_are_shown(stem: str):
    """A pyplot figure returned by a cell is drawn twice (inline backend + the returned object) unless closed."""
    for c in _cells(stem):
        src = c["source"]
        if c["type"] != "code" or not re.search(r"plt\.(subplots|figure)\(", src):
            continue
        last = src.strip().splitlines()[-1].strip()
        if last.startswith("fig"):
            assert f"plt.close({last})" in src, f"{stem}: a cell returns pyplot figure {last!r} without closing it"
