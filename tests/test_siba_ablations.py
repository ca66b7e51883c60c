"""SIBA's ablation switches (paper Sec. 4.3, Tables 2-4) and the authors' test-time quantisation.

The full model's exactness to the released code is ``tests/test_siba.py`` (golden outputs); here: what each
switch removes or replaces, by parameter count and by recomputing the ablated forward by hand.
"""

from __future__ import annotations

import pytest
import torch

from fusionlib.models import create_model
from fusionlib.models.siba import (ABLATIONS, CBSM, SLOTS, ParameterQuery, SCABlock, SIBA, SIBALoss, SIBAConfig,
                                   quantize_output)
from fusionlib.models.siba_fast import fast_path_supported
from fusionlib.layers import ResSE, RestormerBlock

FULL = 565_941
CBSM_P, CA_P, SA_P = 21_553, 15_752, 18_488  # one CBSM, one SCA block, one Restormer block at C = 48


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _pair(seed: int = 0, size: tuple[int, int] = (12, 14)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 1, *size, generator=g), torch.rand(2, 1, *size, generator=g)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, FULL),
    ({"sca": "i_only"}, FULL - 2 * CBSM_P - 2 * CA_P),                 # V-SCA blocks and their two queries go
    ({"sca": "none"}, FULL - 4 * CBSM_P - 4 * CA_P),
    ({"sca": "restormer"}, FULL - 4 * CBSM_P - 4 * CA_P + 4 * SA_P),   # same features, self-attention
    ({"query": "parameters"}, FULL - 4 * CBSM_P + 4 * 48),
    ({"query": "conv1x1"}, FULL - 4 * CBSM_P + 4 * (48 + 48)),
    ({"query": "conv3x3"}, FULL - 4 * CBSM_P + 4 * (9 * 48 + 48)),
    ({"sca": "i_only", "removed_sca": "drop"},  # ... and the head's first ResSE reads 2C channels, not 4C
     FULL - 2 * CBSM_P - 2 * CA_P - n_params(ResSE(4 * 48, 96)) + n_params(ResSE(2 * 48, 96))),
])
def test_parameter_counts_say_what_each_ablation_removes(overrides, expected):
    assert n_params(create_model("siba", **overrides)) == expected


def test_default_is_the_released_layout():
    m = create_model("siba")
    assert m.config.is_full_model and m.slots == ["ca_ir2vi", "ca_vi2ir", "ca_irI2vi", "ca_viI2ir"]
    top = list(dict.fromkeys(k.split(".")[0] for k in m.state_dict()))
    assert top == ["stem_ir", "stem_vi", "sa_ir", "sa_vi", "cbsm_ir", "cbsm_irI", "cbsm_vi", "cbsm_viI",
                   "ca_ir2vi", "ca_irI2vi", "ca_vi2ir", "ca_viI2ir", "fuse_conv", "out_conv"]
    assert fast_path_supported(m)


def test_ablations_table_covers_the_papers_rows():
    rows = {t: set(r) for t, r in ABLATIONS.items()}
    assert rows == {"Table 2": {"I-SCA only"}, "Table 3": {"w/o I/V-SCA", "to Restormer"},
                    "Table 4": {"Parameters", "Conv1x1", "Conv3x3"}}
    for table in ABLATIONS.values():
        for overrides in table.values():
            m = create_model("siba_tiny", **overrides)
            assert not m.config.is_full_model and not fast_path_supported(m)


@pytest.mark.parametrize("bad", [{"sca": "v_only"}, {"removed_sca": "zero"}, {"query": "conv5x5"}])
def test_unknown_switch_values_are_refused(bad):
    with pytest.raises(ValueError, match="expected one of"):
        SIBAConfig(**bad)


def _shared_weights(src: SIBA, dst: SIBA) -> None:
    """Copy every tensor of ``src`` whose name and shape exist in ``dst``; the rest keep ``dst``'s."""
    own = dst.state_dict()
    own.update({k: v for k, v in src.state_dict().items() if k in own and own[k].shape == v.shape})
    dst.load_state_dict(own)


def _features(m: SIBA, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return m.sa_ir(m.stem_ir(ir)), m.sa_vi(m.stem_vi(vi))


def _head(m: SIBA, parts: list[torch.Tensor]) -> torch.Tensor:
    return m.out_conv(m.fuse_conv(torch.cat(parts, dim=1)))


@torch.no_grad()
def test_without_sca_the_head_reads_the_features_the_blocks_would_have_read():
    torch.manual_seed(0)
    full, none = create_model("siba_tiny"), create_model("siba_tiny", sca="none")
    _shared_weights(full, none)
    ir, vi = _pair()
    f_ir, f_vi = _features(none, ir, vi)
    assert torch.equal(none(ir, vi), _head(none, [f_vi, f_ir, f_vi, f_ir]))
    assert not torch.allclose(none(ir, vi), full(ir, vi), atol=1e-4)  # the SCA blocks did change something
    drop = create_model("siba_tiny", sca="none", removed_sca="drop")
    assert torch.equal(drop(ir, vi), _head(drop, list(_features(drop, ir, vi))[::-1]))


@torch.no_grad()
def test_i_sca_only_keeps_the_infrared_queries_and_passes_the_infrared_features():
    torch.manual_seed(0)
    full, ionly = create_model("siba_tiny"), create_model("siba_tiny", sca="i_only")
    _shared_weights(full, ionly)
    assert not any(hasattr(ionly, n) for n in ("cbsm_vi", "cbsm_viI", "ca_vi2ir", "ca_viI2ir"))
    ir, vi = _pair(1)
    f_ir, f_vi = _features(full, ir, vi)
    parts = [full.ca_ir2vi(f_vi, full.cbsm_ir(ir)), f_ir, full.ca_irI2vi(f_vi, full.cbsm_irI(1 - ir)), f_ir]
    assert torch.equal(ionly(ir, vi), _head(ionly, parts))


def test_i_sca_only_with_drop_leaves_the_infrared_branch_unused():
    """The reason ``identity`` is the default reading: with ``drop`` no gradient reaches stem_ir / sa_ir."""
    torch.manual_seed(0)
    m = create_model("siba_tiny", sca="i_only", removed_sca="drop")
    ir, vi = _pair(2, (16, 16))
    SIBALoss()(m(ir, vi), ir, vi)[0].backward()
    dead = {n.split(".")[0] for n, p in m.named_parameters() if p.grad is None}
    assert dead == {"stem_ir", "sa_ir"}


@pytest.mark.parametrize("overrides", [o for t in ABLATIONS.values() for o in t.values()])
def test_every_ablation_trains_every_parameter(overrides):
    torch.manual_seed(0)
    m = create_model("siba_tiny", **overrides)
    ir, vi = _pair(3, (16, 16))
    SIBALoss()(m(ir, vi), ir, vi)[0].backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    assert set(m.laziness_blocks()) <= {"stems", "self_attention", "cbsm", "cross_attention", "fusion_head"}


@torch.no_grad()
def test_to_restormer_replaces_each_block_by_self_attention_on_its_features():
    torch.manual_seed(0)
    m = create_model("siba_tiny", sca="restormer")
    assert all(isinstance(getattr(m, n), RestormerBlock) for n, *_ in SLOTS)
    assert not any(n.startswith("cbsm_") for n, _ in m.named_parameters())
    ir, vi = _pair(4)
    f_ir, f_vi = _features(m, ir, vi)
    parts = [m.ca_ir2vi(f_vi), m.ca_vi2ir(f_ir), m.ca_irI2vi(f_vi), m.ca_viI2ir(f_ir)]
    assert torch.equal(m(ir, vi), _head(m, parts))
    # without a query the output no longer depends on the image except through the features: an ablated
    # model is a function of (f_ir, f_vi) only, as the full model is not
    assert torch.equal(m.forward_fast(ir, vi), m(ir, vi))  # falls back to forward


@torch.no_grad()
def test_table4_queries_are_the_plain_lifts_the_paper_names():
    torch.manual_seed(0)
    img = torch.zeros(1, 1, 7, 7)
    img[..., 3, 3] = 1.0
    p = create_model("siba_tiny", query="parameters")
    assert isinstance(p.cbsm_ir, ParameterQuery)
    assert torch.equal(p.cbsm_ir(img), img.expand(1, 8, 7, 7))  # at init: the image copied to every channel
    c1 = create_model("siba_tiny", query="conv1x1").cbsm_ir
    c3 = create_model("siba_tiny", query="conv3x3").cbsm_ir
    assert (c1(img) - c1.bias.view(1, -1, 1, 1)).abs().sum((0, 1)).ne(0).sum() == 1  # pointwise
    assert (c3(img) - c3.bias.view(1, -1, 1, 1)).abs().sum((0, 1)).ne(0).sum() == 9  # a 3x3 footprint
    assert isinstance(create_model("siba_tiny").cbsm_ir, CBSM)
    assert all(isinstance(getattr(p, n), SCABlock) for n, *_ in SLOTS)


def test_quantize_output_floor_is_the_authors_truncation():
    f = torch.tensor([-0.1, 0.0, 0.3, 0.5, 127.7 / 255, 0.999, 1.0, 1.4]).view(1, 1, 2, 4)
    lv_floor = (quantize_output(f, "floor") * 255).round()
    lv_round = (quantize_output(f, "round") * 255).round()
    expected_floor = torch.clamp(f, 0, 1).mul(255).to(torch.uint8).float()  # torchvision's ToPILImage: mul(255).byte()
    assert torch.equal(lv_floor, expected_floor)
    assert torch.equal(lv_round, torch.tensor([0.0, 0, 77, 128, 128, 255, 255, 255]).view(1, 1, 2, 4))
    d = lv_round - lv_floor
    assert d.min() >= 0 and d.max() == 1 and d.sum() == 4
    # on the 8-bit grid a second quantisation is the identity, whichever rounding it uses
    q = quantize_output(f, "floor")
    assert torch.equal(quantize_output(q, "round"), q)
    with pytest.raises(ValueError, match="floor"):
        quantize_output(f, "nearest")


def test_each_ablation_row_names_one_row_of_the_papers_table():
    """The notebook pairs our rows with the paper's by prefix; every row must find exactly one."""
    from fusionlib import paper_numbers

    for tid, rows in ABLATIONS.items():
        pt = paper_numbers.paper_table("siba", tid)
        for row in rows:
            assert sum(str(i).startswith(row) for i in pt.index) == 1, (tid, row, list(pt.index))
        assert len(pt.attrs["own"]) == 1 and not any(str(pt.attrs["own"][0]).startswith(r) for r in rows)
