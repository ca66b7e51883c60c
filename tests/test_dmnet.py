"""DMNet: invertibility of the coupling layers, shapes, meta-device parameter counts, the β schedule,
and one step of each training stage on the tiny configuration."""

from __future__ import annotations

import math

import pytest
import torch

from fusionlib.diffusion import (
    NoiseSchedule,
    diffusion_training_loss,
    linear_beta_schedule,
    noise_loss,
    q_sample,
)
from fusionlib.laziness import LazinessTracker
from fusionlib.losses.dmnet import dmnet_stage1_loss, dmnet_stage2_loss
from fusionlib.models import create_model
from fusionlib.models.sr3 import SR3UNet

TINY = dict(dim=8, num_heads=2, denoiser_inner=8, denoiser_groups=4)


@pytest.fixture(scope="module")
def dm():
    """``fusionlib.models.dmnet``, imported when the first test runs, not at collection: importing it registers
    ``dmnet_tiny``, and the generic model-contract test must not pick that up before it exempts the noise
    head (trained by the diffusion loss only, never reached by ``forward``)."""
    import fusionlib.models.dmnet as module

    return module


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


# fewer blocks and levels than dmnet_tiny, for the tests where only the wiring matters (the machine is small)
FAST = dict(TINY, dtb_depths=(1, 2), dib_layers=2, dib_repeats=2, denoiser_mults=(1, 2),
            denoiser_res_blocks=1, denoiser_attn_res=(64,), timesteps=(5, 100))


# --- invertible layers ---------------------------------------------------------------------------------
def test_affine_coupling_inverts_exactly(dm):
    torch.manual_seed(0)
    layer = dm.AffineCoupling(64)
    x = torch.randn(2, 64, 6, 6)
    y = layer(x)
    assert y.shape == x.shape
    assert not torch.allclose(y, x, atol=1e-2)  # the layer does something
    # float32: exact up to rounding (the 1x1 conv's inverse amplifies it by its condition number)
    torch.testing.assert_close(layer.inverse(y), x, atol=5e-5, rtol=1e-5)
    assert (layer.inverse(y) - x).abs().mean() < 5e-6
    # float64: the algebra is exact
    layer64, x64 = layer.double(), x.double()
    torch.testing.assert_close(layer64.inverse(layer64(x64)), x64, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(layer64(layer64.inverse(x64)), x64, atol=1e-10, rtol=1e-10)


def test_dib_cascade_inverts_and_shared_mode_refuses(dm):
    torch.manual_seed(1)
    dib = dm.DIB(16, mode="cascade").double()  # three layers compound float32 rounding; the algebra is exact
    x = torch.randn(1, 16, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(dib.inverse(dib(x)), x, atol=1e-9, rtol=1e-9)
    shared = dm.DIB(16, mode="shared").double()
    shared.load_state_dict(dib.state_dict())
    y1 = dib.stack(x)
    y2 = dib.stack(y1)
    y3 = dib.stack(y2)
    torch.testing.assert_close(shared(x), (y1 + y2 + y3) / 3)  # the released "1/3" average of three passes
    with pytest.raises(ValueError, match="not invertible"):
        shared.inverse(x)
    with pytest.raises(ValueError, match="shared"):
        dm.DIB(16, mode="averaged")
    with pytest.raises(ValueError, match="even"):
        dm.AffineCoupling(7)


def test_dtb_parallel_is_the_mean_of_the_branches_and_cascade_chains(dm):
    torch.manual_seed(2)
    dtb = dm.DTB(dim=8, num_heads=2, depths=(1, 2, 3))
    x = torch.rand(1, 8, 10, 10)
    outs = [b(x) for b in dtb.branches]
    torch.testing.assert_close(dtb(x), torch.stack(outs).mean(0))
    cas = dm.DTB(dim=8, num_heads=2, depths=(1, 2, 3), mode="serial")
    cas.load_state_dict(dtb.state_dict())
    torch.testing.assert_close(cas(x), dtb.branches[2](dtb.branches[1](dtb.branches[0](x))))


def test_csab_gates_and_pooling(dm):
    torch.manual_seed(3)
    m = dm.CSAB(8)
    x = torch.rand(2, 8, 9, 11)
    y = m(x)
    assert y.shape == x.shape
    # naive recomputation of Eq. (channel, then spatial attention)
    mx = x.amax((2, 3), keepdim=True)
    ca = torch.sigmoid(m.mlp(mx) + m.mlp(0.5 * x.mean((2, 3), keepdim=True) + 0.5 * mx))
    x1 = x * ca
    mc = x1.amax(1, keepdim=True)
    sa = torch.sigmoid(m.spatial(torch.cat([mc, 0.5 * x1.mean(1, keepdim=True) + 0.5 * mc], 1)))
    torch.testing.assert_close(y, x1 * sa)
    assert sum(p.numel() for p in dm.CSAB(64).parameters()) == dm.PAPER["params_csab_code"]


# --- diffusion ------------------------------------------------------------------------------------------
def test_linear_beta_schedule_values():
    b = linear_beta_schedule()
    assert b.shape == (2000,) and b.dtype == torch.float64
    assert b[0].item() == pytest.approx(1e-6) and b[-1].item() == pytest.approx(1e-2)
    assert b[1].item() - b[0].item() == pytest.approx((1e-2 - 1e-6) / 1999)
    s = NoiseSchedule()
    acp = torch.cumprod(1 - b, 0)
    assert s.sqrt_alphas_cumprod_prev[0].item() == 1.0
    assert s.gamma(100) == pytest.approx(math.sqrt(acp[99].item()))
    assert s.gamma(5) > s.gamma(50) > s.gamma(100) > s.gamma(2000) > 0
    lo, hi = s.gamma_range(50)
    assert lo == pytest.approx(s.gamma(49)) and hi == pytest.approx(s.gamma(50))
    g = s.sample_gamma(50, torch.zeros(64), generator=torch.Generator().manual_seed(0))
    assert bool(((g <= lo) & (g >= hi)).all()) and g.std() > 0
    assert s.snr_db(5) > s.snr_db(50) > s.snr_db(100)
    with pytest.raises(ValueError, match="integer in"):
        s.gamma(0)
    with pytest.raises(ValueError, match="start"):
        linear_beta_schedule(10, 0.1, 0.01)


def test_q_sample_is_variance_preserving():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 2, 64, 64, generator=g), torch.randn(4, 2, 64, 64, generator=g)
    gamma = torch.tensor([1.0, 0.9, 0.5, 0.0])
    xt = q_sample(x0, gamma, eps)
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[3], eps[3])
    torch.testing.assert_close(xt[1], 0.9 * x0[1] + math.sqrt(1 - 0.81) * eps[1])
    assert abs(xt[2].var().item() - 1.0) < 0.05
    with pytest.raises(ValueError, match="noise"):
        q_sample(x0, gamma, eps[:, :1])
    assert noise_loss(eps, eps).item() == 0.0


def test_diffusion_training_loss_perfect_denoiser_is_zero():
    s = NoiseSchedule()
    x0 = torch.zeros(3, 2, 8, 8)  # x_t = sqrt(1 - γ²) ε, so ε = x_t / sqrt(1 - γ²)
    loss = diffusion_training_loss(lambda xt, gm: xt / (1 - gm**2).sqrt().view(-1, 1, 1, 1), x0, s,
                                   generator=torch.Generator().manual_seed(0))
    assert loss.item() < 1e-8


# --- the network ------------------------------------------------------------------------------------------
def test_full_configuration_parameter_count_on_meta(dm):
    parts = dm.parameter_breakdown()
    assert parts["denoiser"] == dm.PAPER["params_unet_code"] == 391_045_762
    assert parts["encoder"] == dm.PAPER["params_encoder_code"] == 733_944
    assert parts["decoder"] == dm.PAPER["params_decoder_used_code"] == 63_976
    assert parts["csab"] == dm.PAPER["params_csab_code"] == 2_147
    # the learned projection is the code's per-call upSkip: 414.06 M - 392.49 M
    upskip_m = dm.PAPER["params_with_upskip_code_M"] - dm.PAPER["params_persistent_code_M"]
    assert abs(parts["features"] / 1e6 - upskip_m) < 0.02
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
    assert abs(parts["total"] / 1e6 - dm.PAPER["params_M"]) > 1  # the paper's 386.358 M is not this model
    with torch.device("meta"):
        unet = SR3UNet()
    assert sum(type(m).__name__ == "SelfAttention" for m in unet.modules()) == 6
    assert len(unet.up_levels) == 15


def test_forward_shapes_padding_and_determinism(dm):
    torch.manual_seed(0)
    m = dm.DMNet(**FAST).eval()
    ir, vi = torch.rand(1, 1, 10, 13), torch.rand(1, 1, 10, 13)  # not multiples of 2: padded inside
    with torch.no_grad():
        out = m(ir, vi)
        again = m(ir, vi)
        parts = m.fusion_feature(ir, vi)
        per_t = m.diffusion_features(ir, vi, per_step=True)
    assert out.shape == (1, 1, 10, 13) and bool(((out > 0) & (out < 1)).all())
    torch.testing.assert_close(out, again)  # eval noise comes from the seeded generator
    assert sorted(per_t) == [5, 100] and all(v.shape == (1, 8, 10, 13) for v in per_t.values())
    torch.testing.assert_close(parts["av"], torch.stack(list(per_t.values())).mean(0))
    assert set(parts) == {"f_ir", "f_vi", "a_ir", "a_vi", "av", "a_l", "fused_feature"}
    torch.testing.assert_close(parts["a_l"], parts["av"])  # code reading: no CSAB on the latent
    with pytest.raises(ValueError, match="must have the same shape"):
        m(ir, vi[..., :9])
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        m(ir[0], vi[0])
    with pytest.raises(ValueError, match="feature_gamma"):
        dm.DMNet(**TINY, feature_gamma="mean")


def test_feature_projection_levels_and_scale(dm):
    proj = dm.FeatureProjection([4, 8], 6, scale=0.5)
    feats = [(1, torch.rand(1, 8, 5, 5)), (0, torch.rand(1, 4, 10, 10))]
    y = proj(feats)
    assert y.shape == (1, 6, 10, 10)
    torch.testing.assert_close(y, 0.5 * (proj.levels[1](feats[0][1]) + proj.levels[0](feats[1][1])))


def test_gradients_reach_every_module_but_the_noise_head(dm):
    torch.manual_seed(0)
    m = dm.DMNet(**FAST)
    ir, vi = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    m(ir, vi).square().mean().backward()
    missing = sorted({n.rsplit(".", 2)[0] for n, p in m.named_parameters() if p.grad is None})
    assert missing == ["denoiser.final_conv"], missing  # the ε head is trained by the noise loss only
    m.zero_grad(set_to_none=True)
    m.diffusion_loss(ir, vi).backward()
    assert m.denoiser.final_conv[3].weight.grad is not None
    detached = dm.DMNet(**FAST, feature_grad=False)
    detached(ir, vi).mean().backward()
    assert all(p.grad is None for p in detached.denoiser.parameters())


def test_laziness_blocks_cover_every_parameter(dm):
    from fusionlib.laziness import resolve_blocks

    m = dm.DMNet(**FAST, diffusion_input="branch_mix")
    blocks = resolve_blocks(m)
    assert sum(len(v) for v in blocks.values()) == len(list(m.parameters()))


# --- training ---------------------------------------------------------------------------------------------
def test_losses_known_values():
    ir, vi = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    total, terms = dmnet_stage1_loss(ir, vi, ir, vi, torch.tensor(0.25), w_diff=2.0)
    assert total.item() == pytest.approx(0.5) and terms["rec_ir"].item() == pytest.approx(0.0, abs=1e-6)
    total, terms = dmnet_stage2_loss(torch.maximum(ir, vi), ir, vi, torch.tensor(0.0))
    assert terms["int"].item() == 0.0 and total.item() == pytest.approx(10 * terms["grad"].item())


def test_recipes_and_stage_split(dm):
    paper = dm.DMNET_RECIPES["paper"]
    assert (paper.stage1_epochs, paper.stage2_epochs, paper.lr, paper.crop_size) == (15, 30, 1e-4, 128)
    assert paper.optimizer == "adam" and paper.datasets == ("msrs/train",)
    assert set(dm.DMNET_RECIPES) == {"paper", "lab", "smoke", "cpu"}
    assert dm.DMNET_RECIPES["cpu"].model == "dmnet_narrow"  # the shipped weights/dmnet.pt
    assert dm.stage_epochs(paper, (0, 3)) == (0, 3) and dm.stage_epochs(paper, 3) == (1, 2)
    with pytest.raises(ValueError, match="must equal"):
        dm.DMNetRecipe(epochs=4, stage1_epochs=1, stage2_epochs=2)


def test_both_stages_train_one_step_each(dm, tmp_path):
    torch.manual_seed(0)
    m = create_model("dmnet_tiny")
    g = torch.Generator().manual_seed(0)
    batches = [{"ir": torch.rand(2, 1, 16, 16, generator=g), "vi": torch.rand(2, 1, 16, 16, generator=g)}]
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    tracker = LazinessTracker()
    hist = dm.train_dmnet(m, batches, recipe=dm.DMNET_RECIPES["smoke"], device="cpu", seed=0, out_dir=tmp_path,
                       epochs=(1, 1), callbacks=[tracker], max_steps_per_epoch=1, progress=False)
    assert [e["stage"] for e in hist.epochs] == [1.0, 2.0]
    assert {"rec_ir", "rec_vi", "diff"} <= set(hist.epochs[0])
    assert {"int", "grad", "diff"} <= set(hist.epochs[1])
    assert all(math.isfinite(e["loss"]) for e in hist.epochs)
    moved = {n.split(".")[0] for n, p in m.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert {"encoder", "decoder", "denoiser", "csab", "features"} <= moved
    assert sorted({r["epoch"] for r in tracker.records}) == [1, 2]
    assert (tmp_path / "last.pt").is_file()


def test_step_stage_one_trains_csab_through_eq11_but_not_the_projection(dm):
    torch.manual_seed(0)
    m = dm.DMNet(**FAST)
    batch = {"ir": torch.rand(1, 1, 8, 8), "vi": torch.rand(1, 1, 8, 8)}
    loss, terms = dm.DMNetStep(dm.DMNET_RECIPES["smoke"], stage=1)(m, batch)
    loss.backward()
    assert terms["stage"] == 1.0
    # Eq. 11: Î = DE(A(D(B(I)))): stage I reaches CSAB (the default; no released stage-I code)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.csab.parameters())
    assert all(p.grad is None for p in m.features.parameters())
    assert m.encoder.embed.weight.grad is not None and m.denoiser.final_conv[3].weight.grad is not None
    # CDDFuse's stage I (one switch away) skips CSAB
    m2 = dm.DMNet(**FAST, reconstruct_csab=False)
    loss, _ = dm.DMNetStep(dm.DMNET_RECIPES["smoke"], stage=1)(m2, batch)
    loss.backward()
    assert all(p.grad is None for p in m2.csab.parameters())


# --- the paper's readings (issue 18) -----------------------------------------------------------------------
def test_reconstruct_is_decoder_of_csab_of_encoder(dm):
    torch.manual_seed(0)
    m = dm.DMNet(**FAST).eval()
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(m.reconstruct(x), m.decoder(x, m.csab(m.encoder(x))))
        off = dm.DMNet(**FAST, reconstruct_csab=False).eval()
        off.load_state_dict(m.state_dict())
        torch.testing.assert_close(off.reconstruct(x), m.decoder(x, m.encoder(x)))
        assert not torch.allclose(off.reconstruct(x), m.reconstruct(x))


def test_dtb_dense_is_five_single_layers_in_cascade_weighted_by_alpha(dm):
    torch.manual_seed(4)
    dtb = dm.DTB(dim=8, num_heads=2, mode="dense")
    assert [len(b) for b in dtb.branches] == [1, 1, 1, 1, 1] and dtb.alpha == pytest.approx(0.2)
    x = torch.rand(1, 8, 6, 6)
    s, states = x, []
    for b in dtb.branches:
        s = b(s)
        states.append(s)
    torch.testing.assert_close(dtb(x), 0.2 * sum(states))
    y = dtb(x)
    y.square().mean().backward()
    assert all(p.grad is not None for p in dtb.parameters())
    with pytest.raises(ValueError, match="dense"):
        dm.DTB(dim=8, num_heads=2, mode="cascade")


def test_dib_dense_beta_sum_and_where_the_inverse_holds(dm):
    torch.manual_seed(5)
    dib = dm.DIB(16, mode="dense").double()
    assert dib.beta == pytest.approx(1 / 3)
    x = torch.randn(1, 16, 6, 6, dtype=torch.float64)
    states = dib.states(x)
    torch.testing.assert_close(dib(x), (states[0] + states[1] + states[2]) / 3)
    # the cascade inverts exactly; the β-weighted sum does not (DIB.inverse refuses)
    torch.testing.assert_close(dib.inverse_stack(states[-1]), x, atol=1e-9, rtol=1e-9)
    assert not torch.allclose(dib.inverse_stack(dib(x)), x, atol=1e-3)
    with pytest.raises(ValueError, match="not invertible"):
        dib.inverse(dib(x))


def test_paper_reading_resolves_and_counts(dm):
    cfg = dm.DMNetConfig(reading="paper").resolved()
    for k, v in dm.PAPER_READING.items():
        assert getattr(cfg, k) == v
    assert dm.DMNetConfig(reading="paper", dib_mode="cascade").resolved().dib_mode == "cascade"
    with pytest.raises(ValueError, match="reading"):
        dm.DMNet(**TINY, reading="authors")
    parts = dm.parameter_breakdown(reading="paper")
    assert parts["denoiser"] == 391_045_762
    assert parts["features"] == (128 + 256 + 512 + 1024 + 1024) * 64 + 64  # one 1x1 conv from the 5 stages
    assert parts["dtb_to_image"] == 2 * 64 * 2 + 2                       # Eq. 9's conv, 2C -> 2
    assert parts["encoder"] < dm.parameter_breakdown()["encoder"]       # 5 transformer layers, not 15
    assert parts["total"] / 1e6 - dm.PAPER["params_M"] > 5                # still not the paper's 386.358 M


def test_paper_reading_forward_gradients_and_eq9_input(dm):
    torch.manual_seed(0)
    m = dm.DMNet(**FAST, reading="paper")
    assert isinstance(m.features, dm.ConvFeatureFusion) and m.config.latent_csab
    ir, vi = torch.rand(2, 1, 8, 12), torch.rand(2, 1, 8, 12)
    out = m(ir, vi)
    assert out.shape == (2, 1, 8, 12) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = sorted({n.rsplit(".", 2)[0] for n, p in m.named_parameters() if p.grad is None})
    assert missing == ["denoiser.final_conv"], missing
    assert m.dtb_to_image.weight.grad.abs().sum() > 0                    # Eq. 9's conv reaches the loss
    with torch.no_grad():
        x1, x2 = m.diffusion_input(ir, vi, 1), m.diffusion_input(ir, vi, 2)
        torch.testing.assert_close(x1, torch.cat([vi, ir], 1) * 2 - 1)   # stage I: the images
        b = torch.cat([m.encoder.basic(ir), m.encoder.basic(vi)], 1)
        torch.testing.assert_close(x2, m.dtb_to_image(b))               # stage II: Conv(C(Φ_I^B, Φ_V^B))
        m.eval()
        parts = m.fusion_feature(ir, vi)
        torch.testing.assert_close(parts["a_l"], m.csab(parts["av"]))  # Eq. 10: A(Φ^L)
    m.train()
    m.zero_grad(set_to_none=True)
    m.diffusion_loss(ir, vi, stage=2).backward()
    assert m.encoder.embed.weight.grad is not None                      # stage-II noise loss reaches the DTB
    m.zero_grad(set_to_none=True)
    m.diffusion_loss(ir, vi, stage=1).backward()
    assert m.encoder.embed.weight.grad is None


def test_conv_feature_fusion_uses_one_map_per_stage(dm):
    fuse = dm.ConvFeatureFusion([4, 8], 6)
    a0, a1, b1 = torch.rand(1, 4, 8, 8), torch.rand(1, 8, 4, 4), torch.rand(1, 8, 4, 4)
    y = fuse([(1, a1), (1, b1), (0, a0)])                   # deepest first; b1 is level 1's stage output
    up = torch.nn.functional.interpolate(b1, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(y, fuse.conv(torch.cat([a0, up], 1)))
    with pytest.raises(ValueError, match="one feature per level"):
        fuse([(0, a0)])


# --- Table V / Table VI ablations ----------------------------------------------------------------------------
@pytest.mark.parametrize("ablate", [("dtb",), ("dib",), ("dm",), ("csab",), ("dtb", "dib", "dm", "csab")])
def test_ablations_build_run_and_train(dm, ablate):
    torch.manual_seed(0)
    m = dm.DMNet(**FAST, ablate=ablate)
    names = {n for n, _ in m.named_parameters()}
    if "dtb" in ablate:
        assert isinstance(m.encoder.dtb, torch.nn.Conv2d)
    if "dib" in ablate:
        assert isinstance(m.encoder.dib, torch.nn.Conv2d)
    if "dm" in ablate:
        assert not any(n.startswith(("denoiser.", "features.")) for n in names) and "dm_conv.weight" in names
        assert m.diffusion_loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)).item() == 0.0
    if "csab" in ablate:
        assert not any("csab" in n or "spatial" in n for n in names)
    ir, vi = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    out = m(ir, vi)
    assert out.shape == (2, 1, 8, 8)
    out.square().mean().backward()
    missing = sorted({n.rsplit(".", 2)[0] for n, p in m.named_parameters() if p.grad is None})
    assert missing in ([], ["denoiser.final_conv"]), missing
    from fusionlib.laziness import resolve_blocks
    assert sum(len(v) for v in resolve_blocks(m).values()) == len(list(m.parameters()))
    with pytest.raises(ValueError, match="unknown module"):
        dm.DMNet(**FAST, ablate=("tst",))


@pytest.mark.parametrize("op", ["sobel", "canny", "log", "roberts"])
def test_gradient_operators_shapes_gradients_and_zero_at_target(op):
    from fusionlib.losses.dmnet import gradient_map

    g = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(2, 1, 12, 10, generator=g), torch.rand(2, 1, 12, 10, generator=g)
    e = gradient_map(ir, op)
    assert e.shape == ir.shape and (e >= 0).all() and e.abs().sum() > 0
    flat = gradient_map(torch.full((1, 1, 9, 9), 0.3), op)[..., 1:-1, 1:-1]   # Sobel zero-pads the border
    assert flat.abs().max() < 1e-6                                             # flat image: no edges
    fused = ((ir + vi) / 2).requires_grad_()
    total, terms = dmnet_stage2_loss(fused, ir, vi, torch.tensor(0.0), grad_operator=op)
    total.backward()
    assert fused.grad.abs().sum() > 0 and terms["grad"] > 0
    # the source that dominates everywhere gives a zero gradient term
    _, t2 = dmnet_stage2_loss(ir, ir, torch.zeros_like(ir), torch.tensor(0.0), grad_operator=op)
    assert t2["grad"].item() == pytest.approx(0.0, abs=1e-6)


def test_sobel_operator_is_the_existing_loss_and_recipe_validates(dm):
    ir, vi = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    f = (ir + vi) / 2
    a = dmnet_stage2_loss(f, ir, vi, torch.tensor(0.0))[0]
    b = dmnet_stage2_loss(f, ir, vi, torch.tensor(0.0), grad_operator="sobel")[0]
    assert a.item() == b.item()
    c = dmnet_stage2_loss(f, ir, vi, torch.tensor(0.0), grad_operator="roberts")[0]
    assert c.item() != a.item()
    with pytest.raises(ValueError, match="grad_operator"):
        dm.DMNetRecipe(epochs=3, stage1_epochs=1, stage2_epochs=2, grad_operator="prewitt")


@pytest.mark.parametrize("over,rec", [({"reading": "paper"}, {}), ({"ablate": ("dm", "csab")}, {"grad_operator": "canny"})])
def test_train_one_step_per_stage_with_switches(dm, tmp_path, over, rec):
    import dataclasses

    torch.manual_seed(0)
    m = dm.DMNet(**FAST, **over)
    g = torch.Generator().manual_seed(0)
    batches = [{"ir": torch.rand(2, 1, 16, 16, generator=g), "vi": torch.rand(2, 1, 16, 16, generator=g)}]
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    recipe = dataclasses.replace(dm.DMNET_RECIPES["smoke"], **rec)
    hist = dm.train_dmnet(m, batches, recipe=recipe, device="cpu", seed=0, out_dir=tmp_path, epochs=(1, 1),
                          max_steps_per_epoch=1, progress=False)
    assert [e["stage"] for e in hist.epochs] == [1.0, 2.0] and all(math.isfinite(e["loss"]) for e in hist.epochs)
    moved = {n.split(".")[0] for n, p in m.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert {"encoder", "decoder"} <= moved
    if "reading" in over:
        assert {"csab", "denoiser", "features", "dtb_to_image"} <= moved
    else:
        assert "dm_conv" in moved and hist.epochs[0]["diff"] == 0.0
