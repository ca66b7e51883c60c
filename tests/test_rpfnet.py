"""RPFNet (fusionlib.models.rpfnet): golden outputs of the released weights in both BatchNorm modes,
stage intermediates, sizes, key map, contracts, paper switches, inference-mode side effects."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fusionlib.checkpoints import load_rpfnet_released, rpfnet_key_map
from fusionlib.laziness import resolve_blocks
from fusionlib.models import create_model, list_models
from fusionlib.models.rpfnet import PAPER, RPFNet, RPFNetAux, RPFNetConfig, batch_stat_bn, rpfnet_infer
from fusionlib.probes import Recorder

TAGS = ["msrs_00004N", "msrs_00055D"]
TOL = 1e-4  # max abs, float32 CPU
# mode -> golden file suffix
GOLDEN = {"as_released": "out_sigmoid_testpy_trainBN", "eval": "out_sigmoid_eval"}


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def npy(path) -> torch.Tensor:
    return torch.from_numpy(np.load(path))


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def golden(shared):
    return shared / "golden/rpfnet"


@pytest.fixture(scope="module")
def released(golden):
    return load_rpfnet_released(golden / "rpfnet_state_dict.pt")


# --- sizes and names -----------------------------------------------------------------------------------
def test_parameter_counts():
    m = create_model("rpfnet")
    assert n_params(m) == 72_074 == PAPER["params_code"]
    assert n_params(RPFNetAux(32)) == 14_113 == n_params(m.head) == PAPER["params_aux"]
    unused = n_params(m.stage.rpm.ca) + n_params(m.stage.rpm.sa)
    assert unused == 1_897 == PAPER["params_unused_attention"]
    assert len(m.state_dict()) == 93
    assert sum(b.numel() for b in m.buffers()) == 780


def test_key_map_covers_released_keys_with_shapes(golden):
    keys = json.loads((golden / "state_dict_keys.json").read_text())["keys"]
    ours = create_model("rpfnet").state_dict()
    mapped = {rpfnet_key_map(k["key"]): tuple(k["shape"]) for k in keys}
    assert len(mapped) == len(keys) == len(ours)  # one-to-one
    assert mapped == {k: tuple(v.shape) for k, v in ours.items()}


def test_loader_is_strict(tmp_path, golden):
    sd = torch.load(golden / "rpfnet_state_dict.pt", weights_only=True)
    sd.pop("decoder.6.bias")
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(KeyError, match="head.6.bias"):
        load_rpfnet_released(tmp_path / "partial.pt")


def test_registry_names():
    assert {"rpfnet", "rpfnet_tiny"} <= set(list_models("rpfnet*"))
    tiny = create_model("rpfnet_tiny")
    assert isinstance(tiny, RPFNet) and tiny.config.channels == 8 and tiny.config.num_stages == 2


def test_laziness_blocks_partition_parameters():
    for m in (create_model("rpfnet"), create_model("rpfnet", shared_stages=False)):
        blocks = m.laziness_blocks()
        assert set(blocks) == {"stem", "cpm", "residual_branch", "fusion_branch", "head"}
        owners = {name: [b for b, ps in blocks.items() if any(name.startswith(p) for p in ps)]
                  for name, _ in m.named_parameters()}
        assert all(len(v) == 1 for v in owners.values()), [k for k, v in owners.items() if len(v) != 1]
        resolve_blocks(m, blocks)  # accepted by the laziness tracker


# --- golden outputs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["as_released", "eval"])
@pytest.mark.parametrize("tag", TAGS)
def test_golden_crop128(released, golden, tag, mode):
    ir, vi = npy(golden / f"crop128/{tag}_ir.npy"), npy(golden / f"crop128/{tag}_vis_y.npy")
    out = rpfnet_infer(released, ir, vi, mode=mode)
    assert _max_err(out, npy(golden / f"crop128/{tag}_{GOLDEN[mode]}.npy")) < TOL


@pytest.mark.parametrize(("tag", "mode"), [
    ("msrs_00004N", "as_released"),  # ~3 s on 2 CPU threads: kept in the default tier
    pytest.param("msrs_00055D", "as_released", marks=pytest.mark.slow),
    pytest.param("msrs_00004N", "eval", marks=pytest.mark.slow)])
def test_golden_full(released, golden, shared, tag, mode):
    ir = npy(shared / f"golden/siba/full/{tag}_ir.npy")       # bitwise the RPFNet test.py inputs
    vi = npy(shared / f"golden/siba/full/{tag}_vi_y.npy")
    out = rpfnet_infer(released, ir, vi, mode=mode)
    assert _max_err(out, npy(golden / f"full/{tag}_{GOLDEN[mode]}.npy")) < TOL


def test_golden_intermediates_eval(released, golden):
    d = golden / "intermediates_00004N_crop48_eval"
    ir, vi = npy(d / "input_ir.npy"), npy(d / "input_vis_y.npy")
    released.eval()
    with torch.no_grad(), Recorder(released, ["f_r", "f_f", "fused_feat"]) as rec:
        out, f_r_last = released.forward_features(ir, vi)
    assert len(rec["f_r"]) == len(rec["f_f"]) == 4  # stems + 3 stages
    for s in range(4):
        assert _max_err(rec["f_r"][s], npy(d / f"stage{s}_spatial_residual_feat.npy")) < TOL, s
        assert _max_err(rec["f_f"][s], npy(d / f"stage{s}_freq_fusion_feat.npy")) < TOL, s
    assert _max_err(rec["fused_feat"][0], npy(d / "fusion_feat.npy")) < TOL
    assert _max_err(out, npy(d / "out_sigmoid.npy")) < TOL
    assert torch.equal(f_r_last, rec["f_r"][-1])


# --- inference modes -------------------------------------------------------------------------------------
def test_infer_modes_leave_model_untouched(released, golden):
    ir, vi = npy(golden / "crop128/msrs_00004N_ir.npy"), npy(golden / "crop128/msrs_00004N_vis_y.npy")
    before = {k: v.clone() for k, v in released.state_dict().items()}
    released.train()
    a = rpfnet_infer(released, ir, vi, mode="as_released")
    assert released.training  # mode restored
    released.eval()
    e = rpfnet_infer(released, ir, vi, mode="eval")
    after = released.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats and counters unchanged
    assert all(m.track_running_stats for m in released.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert (a - e).abs().max() > 0.1  # the two modes really differ (notebooks/released_code.md §RPFNet)
    assert abs(a.mean().item() - 0.55) < 0.1  # as-released outputs sit around 0.55


def test_as_released_batch_is_per_image(released, golden):
    ir = torch.cat([npy(golden / f"crop128/{t}_ir.npy") for t in TAGS])
    vi = torch.cat([npy(golden / f"crop128/{t}_vis_y.npy") for t in TAGS])
    out = rpfnet_infer(released, ir, vi, mode="as_released")
    for i, t in enumerate(TAGS):
        assert _max_err(out[i:i + 1], npy(golden / f"crop128/{t}_{GOLDEN['as_released']}.npy")) < TOL


def test_batch_stat_bn_matches_train_mode_without_updates():
    torch.manual_seed(0)
    m = RPFNet(channels=8, num_stages=2)
    x, y = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12)
    m.eval()
    with torch.no_grad(), batch_stat_bn(m):
        ours = m(x, y)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.train()
    with torch.no_grad():
        ref = m(x, y)  # what test.py does, running stats updated as a side effect
    assert _max_err(ours, ref) < 1e-6
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_infer_rejects_bad_arguments():
    m = create_model("rpfnet_tiny")
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="mode"):
        rpfnet_infer(m, x, x, mode="train")
    with pytest.raises(ValueError, match="vi"):
        rpfnet_infer(m, x, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        m(x, torch.rand(2, 1, 8, 8))


# --- contracts -----------------------------------------------------------------------------------------
def _grads_after_loss(m: RPFNet) -> dict[str, bool]:
    torch.manual_seed(0)
    ir, vi = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    aux = RPFNetAux(m.config.channels)
    m.train()
    fused, f_r = m.forward_features(ir, vi)
    assert fused.shape == (2, 1, 16, 16) and torch.isfinite(fused).all()
    assert ((fused > 0) & (fused < 1)).all()
    m_aux = aux(f_r)
    assert m_aux.shape == fused.shape
    ((fused - ir).abs().mean() + m_aux.mean()).backward()
    return {n: p.grad is not None and p.grad.abs().sum().item() > 0 for n, p in m.named_parameters()}


def test_gradients_reach_all_but_discarded_attention():
    got = _grads_after_loss(create_model("rpfnet", channels=8))
    missing = sorted(n for n, ok in got.items() if not ok)
    assert missing and all(n.startswith(("stage.rpm.ca.", "stage.rpm.sa.")) for n in missing), missing
    assert {n for n in got if n.startswith(("stage.rpm.ca.", "stage.rpm.sa."))} == set(missing)


def test_attention_in_rpm_switch_uses_the_attention():
    got = _grads_after_loss(create_model("rpfnet", channels=8, attention_in_rpm=True))
    assert all(got.values()), sorted(n for n, ok in got.items() if not ok)


def test_residual_input_is_detached():
    m = create_model("rpfnet_tiny")
    ir, vi = torch.rand(1, 1, 8, 8, requires_grad=True), torch.rand(1, 1, 8, 8, requires_grad=True)
    with Recorder(m, ["stem_residual", "stem_fusion"], detach=False) as rec:
        m(ir, vi)
    g_res = torch.autograd.grad(rec["stem_residual"][0].sum(), (ir, vi), allow_unused=True)
    assert g_res == (None, None)  # (ir - vi).detach(): no gradient back to the images
    g_fus = torch.autograd.grad(rec["stem_fusion"][0].sum(), (ir, vi))
    assert all(g.abs().sum() > 0 for g in g_fus)


def test_switches_change_structure():
    base = create_model("rpfnet")
    stage = n_params(base.stage)
    sep = create_model("rpfnet", shared_stages=False)
    assert len(sep.stages) == 3 and n_params(sep) == 72_074 + 2 * stage
    assert len({id(s) for s in sep.stage_modules()}) == 3 and len({id(s) for s in base.stage_modules()}) == 1
    k3 = create_model("rpfnet", cpm_kernel=3)
    assert k3.stage.cpm.gate_conv[0].weight.shape == (32, 32, 3, 3)
    assert n_params(k3) == 72_074 + 32 * 32 * 8
    att = create_model("rpfnet", attention_in_rpm=True)
    assert n_params(att) == 72_074 and att.stage.rpm.attention
    with pytest.raises(ValueError, match="cpm_kernel"):
        RPFNet(cpm_kernel=2)
    assert RPFNetConfig() == create_model("rpfnet").config


def test_attention_switch_changes_output_with_same_weights():
    torch.manual_seed(0)
    code = RPFNet(channels=8).eval()
    paper = RPFNet(channels=8, attention_in_rpm=True).eval()
    paper.load_state_dict(code.state_dict())
    x, y = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert (code(x, y) - paper(x, y)).abs().max() > 1e-5


# --- recipes and training ------------------------------------------------------------------------------
def test_paper_recipe_is_multisteplr_on_the_main_model():
    from fusionlib.models.rpfnet import RPFNET_MILESTONES, RPFNET_RECIPES

    r = RPFNET_RECIPES["paper"]
    assert (r.lr, r.batch_size, r.crop_size, r.epochs, r.betas) == (1e-3, 16, 128, 100, (0.9, 0.999))
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=r.lr)
    ms = torch.optim.lr_scheduler.MultiStepLR(opt, list(RPFNET_MILESTONES), gamma=0.5)
    ref = []
    for _ in range(r.epochs):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        ms.step()
    ours = [r.lr_at(e, r.epochs) for e in range(r.epochs)]
    assert ours == pytest.approx(ref, rel=1e-12)
    assert {"paper", "lab", "smoke"} <= set(RPFNET_RECIPES)


def test_forward_return_residual_matches_forward_features():
    torch.manual_seed(0)
    m = RPFNet(channels=4, num_stages=2).eval()
    ir, vi = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12)
    fused, f_r = m(ir, vi, return_residual=True)
    ref_fused, ref_r = m.forward_features(ir, vi)
    torch.testing.assert_close(fused, ref_fused)
    torch.testing.assert_close(f_r, ref_r)
    assert f_r.shape == (1, 4, 12, 12)


def test_train_rpfnet_two_optimisers_and_aux_checkpoint(tmp_path):
    from fusionlib.laziness import LazinessTracker
    from fusionlib.models.rpfnet import RPFNET_RECIPES, train_rpfnet
    from fusionlib.train import load_checkpoint

    g = torch.Generator().manual_seed(0)
    batches = [{"ir": torch.rand(2, 1, 16, 16, generator=g), "vi": torch.rand(2, 1, 16, 16, generator=g)}
               for _ in range(2)]
    torch.manual_seed(0)
    m = RPFNet(channels=4, num_stages=1)
    aux = RPFNetAux(4)
    before_m = {k: v.clone() for k, v in m.state_dict().items()}
    before_a = {k: v.clone() for k, v in aux.state_dict().items()}
    tracker = LazinessTracker()
    hist = train_rpfnet(m, batches, recipe=RPFNET_RECIPES["smoke"], device="cpu", seed=1, out_dir=str(tmp_path),
                        epochs=2, callbacks=[tracker], progress=False, aux=aux)
    assert len(hist.epochs) == 2
    rec = hist.epochs[-1]
    for k in ("loss", "fcr", "ssim", "ss", "w_area"):
        assert np.isfinite(rec[k]), k
    # the step schedule moves the main model's lr only
    assert hist.epochs[0]["lr_model"] == 1e-3 and hist.epochs[1]["lr_model"] == 5e-4
    assert hist.epochs[1]["lr_aux"] == 1e-3
    assert any(not torch.equal(before_m[k], v) for k, v in m.state_dict().items())
    assert any(not torch.equal(before_a[k], v) for k, v in aux.state_dict().items())
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert set(ckpt["optimizers"]) == {"model", "aux"} and "aux" in ckpt["extra"]
    assert {r["block"] for r in tracker.records} == set(m.laziness_blocks())


# --- the eval-mode fast path ------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", ["msrs_00004N", "msrs_00055D"])
def test_fast_path_eval_equals_readable_and_golden(released, golden, tag):
    from fusionlib.models.rpfnet_fast import rpfnet_forward_fast

    ir, vi = npy(golden / f"crop128/{tag}_ir.npy"), npy(golden / f"crop128/{tag}_vis_y.npy")
    fast = rpfnet_forward_fast(released, ir, vi, mode="eval")
    assert _max_err(fast, rpfnet_infer(released, ir, vi, mode="eval")) < 1e-5
    assert _max_err(fast, npy(golden / f"crop128/{tag}_out_sigmoid_eval.npy")) < TOL


@pytest.mark.parametrize("overrides", [{}, {"shared_stages": False, "cpm_kernel": 3}, {"channels": 8, "num_stages": 1}])
def test_fast_path_folds_batchnorm_exactly(overrides):
    from fusionlib.models.rpfnet_fast import fast_path_supported, rpfnet_forward_fast

    torch.manual_seed(0)
    m = RPFNet(**overrides).eval()
    for bn in m.modules():  # non-trivial running statistics and affines, so that the folding matters
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)
    ir, vi = torch.rand(2, 1, 40, 52), torch.rand(2, 1, 40, 52)
    assert fast_path_supported(m, mode="eval") and not fast_path_supported(m, mode="as_released")
    assert _max_err(rpfnet_forward_fast(m, ir, vi, mode="eval"), rpfnet_infer(m, ir, vi, mode="eval")) < 1e-5
    # the released test script's mode (batch statistics) is left to the readable path, bit for bit
    assert torch.equal(rpfnet_forward_fast(m, ir, vi), rpfnet_infer(m, ir, vi))
    att = RPFNet(attention_in_rpm=True).eval()
    assert not fast_path_supported(att, mode="eval")
    assert torch.equal(rpfnet_forward_fast(att, ir, vi, mode="eval"), rpfnet_infer(att, ir, vi, mode="eval"))
