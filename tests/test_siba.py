"""SIBA (fusionlib.models.siba): golden outputs of the released weights, sizes, contracts, fast path, loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fusionlib.checkpoints import load_siba_released, load_tensors, siba_key_map
from fusionlib.models import create_model, list_models
from fusionlib.models.siba import PAPER, SIBA, SIBA_RECIPES, SIBAConfig, SIBALoss

TAGS = ["msrs_00004N", "msrs_00055D"]
TOL = 1e-4  # max abs, float32 CPU

# golden file stem -> our submodule (hooked output)
INTERMEDIATES = {
    "ir_conv": "stem_ir", "vi_conv": "stem_vi", "ir_sa": "sa_ir", "vi_sa": "sa_vi",
    "cbsm_weight_ir": "cbsm_ir", "cbsm_weight_irI": "cbsm_irI",
    "cbsm_weight_vi": "cbsm_vi", "cbsm_weight_viI": "cbsm_viI",
    "ca_ir2vi": "ca_ir2vi", "ca_irI2vi": "ca_irI2vi", "ca_vi2ir": "ca_vi2ir", "ca_viI2ir": "ca_viI2ir",
    "ca_ir2vi_norm1": "ca_ir2vi.norm1", "ca_ir2vi_attn_only": "ca_ir2vi.attn",
    "ca_ir2vi_attention_softmax": "ca_ir2vi.attn.attend", "fuse_conv1": "fuse_conv",
}


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def npy(path) -> torch.Tensor:
    return torch.from_numpy(np.load(path))


@pytest.fixture(scope="module")
def released(shared):
    return load_siba_released(shared / "golden/siba/SIBA_epoch60.pth")


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# --- sizes ---------------------------------------------------------------------------------------------
def test_parameter_count_and_breakdown():
    m = create_model("siba")
    assert n_params(m) == 565_941 == PAPER["params_code"]
    parts = {name: n_params(child) for name, child in m.named_children()}
    expected = {"fuse_conv": 335_954, "out_conv": 493}
    expected |= {f"cbsm_{t}": 21_553 for t in ("ir", "irI", "vi", "viI")}
    expected |= {f"stem_{t}": 21_649 for t in ("ir", "vi")} | {f"sa_{t}": 18_488 for t in ("ir", "vi")}
    expected |= {f"ca_{t}": 15_752 for t in ("ir2vi", "irI2vi", "vi2ir", "viI2ir")}
    assert parts == expected
    assert len(m.state_dict()) == 137 and not list(m.buffers())


def test_query_layernorm_switch_adds_one_layernorm_per_cross_attention():
    base, paper = create_model("siba"), create_model("siba", query_layernorm=True)
    assert n_params(paper) - n_params(base) == 4 * 2 * 48
    tiny = create_model("siba_tiny", query_layernorm=True)
    assert n_params(tiny) - n_params(create_model("siba_tiny")) == 4 * 2 * 8
    torch.manual_seed(0)
    ir, vi = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12)
    with torch.no_grad():  # the query is a CBSM output (non-negative, not centred): LN changes the result
        ref = create_model("siba_tiny")
        ref.load_state_dict({k: v for k, v in tiny.state_dict().items() if ".norm_q." not in k})
        assert not torch.allclose(ref(ir, vi), tiny(ir, vi))


def test_laziness_blocks_partition_the_parameters():
    m = create_model("siba")
    blocks = m.laziness_blocks()
    assert set(blocks) == {"stems", "self_attention", "cbsm", "cross_attention", "fusion_head"}
    owner = {}
    for name, _ in m.named_parameters():
        hits = [b for b, prefixes in blocks.items() if any(name.startswith(p) for p in prefixes)]
        assert len(hits) == 1, (name, hits)
        owner[name] = hits[0]
    assert sum(p.numel() for n, p in m.named_parameters() if owner[n] == "fusion_head") == 335_954 + 493


# --- registry, contracts ------------------------------------------------------------------------------
def test_registry():
    assert {"siba", "siba_tiny"} <= set(list_models("siba*"))
    assert list_models("*_tiny") and all(n.endswith("_tiny") for n in list_models("*_tiny"))
    assert create_model("siba_tiny", num_heads=4).config == SIBAConfig(dim=8, num_heads=4)
    with pytest.raises(TypeError, match="unknown config field"):
        create_model("siba", heads=4)
    with pytest.raises(KeyError, match="unknown model"):
        create_model("sibaa")


def test_tiny_shape_contract_and_errors():
    torch.manual_seed(0)
    m = create_model("siba_tiny")
    out = m(torch.rand(2, 1, 17, 23), torch.rand(2, 1, 17, 23))  # odd sizes: no down-sampling anywhere
    assert out.shape == (2, 1, 17, 23) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="same shape"):
        m(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match=r"vi must be \(B, 1, H, W\)"):
        m(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8))


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    m = create_model("siba_tiny")
    ir, vi = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    total, terms = SIBALoss()(m(ir, vi), ir, vi)
    total.backward()
    grads = {n: p.grad for n, p in m.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # zero only where an SE bottleneck unit's ReLU is inactive for the whole batch (1 unit at width 8)
    zero = [n for n, g in grads.items() if g.abs().sum() == 0]
    assert all(".se.fc." in n for n in zero), zero
    assert any(g.abs().sum() > 0 for n, g in grads.items() if ".se.fc." in n)


def test_attention_probe_rows_sum_to_one():
    m = create_model("siba_tiny")
    maps = {}
    for name in ("ca_ir2vi", "ca_viI2ir"):
        m.get_submodule(f"{name}.attn.attend").register_forward_hook(
            lambda mod, i, o, name=name: maps.__setitem__(name, o))
    m(torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12))
    for a in maps.values():
        assert a.shape == (1, 2, 4, 4)
        torch.testing.assert_close(a.sum(-1), torch.ones(1, 2, 4))


# --- fast path -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, {"query_layernorm": True, "sa_depth": 2, "num_heads": 4},
                                       {"bias": True}, {"LayerNorm_type": "BiasFree"}])
def test_fast_path_equals_reference(overrides):
    torch.manual_seed(0)
    m = create_model("siba_tiny", **overrides).eval()
    with torch.no_grad():  # move away from the init (LN affines at 1/0, temperature 1) to exercise folding
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ir, vi = torch.rand(2, 1, 19, 21), torch.rand(2, 1, 19, 21)
    with torch.inference_mode():
        assert _max_err(m.forward_fast(ir, vi), m(ir, vi)) < 1e-5


def test_fast_path_in_bf16_and_not_under_autocast():
    torch.manual_seed(0)
    m = create_model("siba_tiny").eval()
    ir, vi = torch.rand(1, 1, 16, 20), torch.rand(1, 1, 16, 20)
    m16 = create_model("siba_tiny").eval()
    m16.load_state_dict(m.state_dict())
    m16.to(torch.bfloat16)
    with torch.inference_mode():
        ref = m(ir, vi)
        fast16 = m16.forward_fast(ir.bfloat16(), vi.bfloat16())
        assert fast16.dtype == torch.bfloat16
        # bf16 keeps 8 bits of mantissa: the two paths agree with each other and with float32 to ~1e-2
        assert _max_err(fast16.float(), m16(ir.bfloat16(), vi.bfloat16()).float()) < 2e-2
        assert _max_err(fast16.float(), ref) < 5e-2
        with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="autocast"):
            m.forward_fast(ir, vi)


# --- loss and recipes -----------------------------------------------------------------------------------
def test_siba_loss_weights_and_terms():
    torch.manual_seed(0)
    ir, vi, fused = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    total, terms = SIBALoss()(fused, ir, vi)
    torch.testing.assert_close(total, 10 * terms["lap"] + 0.1 * terms["int"] + terms["sobel"])
    assert all(t > 0 for t in terms.values())
    _, at_max = SIBALoss()(torch.maximum(ir, vi), ir, vi)
    assert at_max["int"] == 0


def test_recipes():
    paper = SIBA_RECIPES["paper"]
    got = (paper.optimizer, paper.lr, paper.batch_size, paper.crop_size, paper.epochs)
    assert got == ("adam", 1e-4, 4, 128, 60)
    assert paper.clip_grad_norm == 0.01
    assert [paper.lr_at(e) for e in (0, 24, 25, 49, 50, 59)] == [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5]
    assert SIBA_RECIPES["smoke"].crop_size == 64 and SIBA_RECIPES["smoke"].max_steps <= 10
    # the bundled stand-in for MSRS-train (1083) + RoadScene (200): 4 MSRS pairs x 270 crops + 200
    from fusionlib.recipes import recipe_loader

    for name in ("paper", "lab"):
        loader = recipe_loader(SIBA_RECIPES[name], seed=0)
        assert len(loader.dataset) == 4 * 270 + 200 and len(loader) == 320  # the paper's steps per epoch
    with pytest.raises(Exception):
        paper.lr = 1.0  # frozen


# --- released weights ------------------------------------------------------------------------------------
def test_key_map_covers_the_released_keys(shared):
    info = json.loads((shared / "golden/siba/state_dict_keys.json").read_text())
    ours = {k: tuple(v.shape) for k, v in SIBA().state_dict().items()}
    mapped = {siba_key_map(e["key"]): tuple(e["shape"]) for e in info["keys"]}
    assert mapped == ours


def test_loader_errors(tmp_path, shared):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_siba_released(tmp_path / "nope.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="'model'"):
        load_siba_released(tmp_path / "list.pth")
    sd = load_tensors(shared / "golden/siba/SIBA_epoch60.pth", key="model")
    extra = dict(sd, **{"ir_conv.extra.weight": torch.zeros(1)})
    torch.save({"model": extra}, tmp_path / "extra.pth")
    with pytest.raises(KeyError, match="ir_conv.extra.weight"):
        load_siba_released(tmp_path / "extra.pth")
    missing = {k: v for k, v in sd.items() if k != "out_conv.act.weight"}
    torch.save({"model": missing}, tmp_path / "missing.pth")
    with pytest.raises(KeyError, match="out_conv.act.weight"):
        load_siba_released(tmp_path / "missing.pth")
    wrong = dict(sd, **{"ir_sa.0.attn.scale": torch.ones(4, 1, 1)})
    torch.save({"model": wrong}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="sa_ir.0.attn.temperature"):
        load_siba_released(tmp_path / "wrong.pth")


@pytest.mark.parametrize("tag", TAGS)
def test_golden_crop128(released, shared, tag):
    d = shared / "golden/siba/crop128"
    ir, vi, ref = npy(d / f"{tag}_ir.npy"), npy(d / f"{tag}_vi_y.npy"), npy(d / f"{tag}_out_raw.npy")
    with torch.inference_mode():
        out, fast = released(ir, vi), released.forward_fast(ir, vi)
    assert _max_err(out, ref) < TOL
    assert _max_err(fast, ref) < TOL
    assert _max_err(out.clamp(0, 1), npy(d / f"{tag}_out_clamped.npy")) < TOL


def test_golden_intermediates(released, shared):
    d = shared / "golden/siba/intermediates_00004N_crop48"
    got, handles = {}, []
    for stem, name in INTERMEDIATES.items():
        handles.append(released.get_submodule(name).register_forward_hook(
            lambda mod, i, o, stem=stem: got.__setitem__(stem, o.detach().clone())))
    try:
        with torch.inference_mode():
            out = released(npy(d / "input_ir.npy"), npy(d / "input_vi_y.npy"))
    finally:
        for h in handles:
            h.remove()
    errors = {stem: _max_err(got[stem], npy(d / f"{stem}.npy")) for stem in INTERMEDIATES}
    errors["out_raw"] = _max_err(out, npy(d / "out_raw.npy"))
    assert max(errors.values()) < TOL, errors
    assert got["ca_ir2vi_attention_softmax"].shape == (1, 8, 6, 6)


@pytest.mark.slow
@pytest.mark.parametrize("tag", TAGS)
def test_golden_full_size(released, shared, tag):
    d = shared / "golden/siba/full"
    ir, vi, ref = npy(d / f"{tag}_ir.npy"), npy(d / f"{tag}_vi_y.npy"), npy(d / f"{tag}_out_raw.npy")
    assert ir.shape == (1, 1, 480, 640)
    with torch.inference_mode():
        assert _max_err(released.forward_fast(ir, vi), ref) < TOL
        assert _max_err(released(ir, vi), ref) < TOL
