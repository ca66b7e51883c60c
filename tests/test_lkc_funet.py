"""LKC-FUNet: golden outputs of the authors' model (seeded random init), parameter counts, switches, loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusionlib.losses import gradient_max_loss, intensity_max_loss, ssim_loss
from fusionlib.losses.lkc import LKCLoss
from fusionlib.models import create_model
from fusionlib.models.lkc_funet import (
    LKC_RECIPES, MPAFM, PAPER, InitBlock, LKCBlock, LKCFUNet, LKDCBlock, lkc_key_map, load_lkc_golden,
    train_lkc_funet,
)

TINY = dict(stem=8, width=16, norm_groups=8)


def _meta(**kw) -> LKCFUNet:
    with torch.device("meta"):
        return LKCFUNet(**kw)


def _count(m) -> int:
    return sum(p.numel() for p in m.parameters())


# --- architecture ---------------------------------------------------------------------------------
def test_parameter_count_code_and_paper_variants():
    assert _count(_meta(init_norm="bn")) == PAPER["params_code"] == 41_174_438
    # IN with affine=True has the same parameters as BN: the paper variant loads the same weights
    assert _count(_meta()) == 41_174_438
    assert _count(_meta(block_norm="bn")) == 41_174_438
    assert _count(_meta(mpafm_roles="paper")) == 41_174_438


def test_where_the_parameters_are():
    m = _meta(init_norm="bn")
    by = {n: _count(c) for n, c in m.named_children()}
    assert by["init_block"] == 32 * 2 + 128 * 32 * 225 + 128          # 0.92 M
    conv1, conv2, skip = 256 * 128 * 225 + 128, 128 * 128 * 225 + 128, 256 * 128 + 128
    assert _count(m.decoder[2].lkc) == conv1 + conv2 + skip + 2 * 256 + 2 * 128 == 11_093_120  # "11.09 M"
    assert _count(m.decoder[0].mpafm) == 54_551                        # "each MPAFM 54.6 K" (golden key shapes)
    full15 = sum(p.numel() for n, p in m.named_parameters() if p.ndim == 4 and p.shape[-1] == 15 and p.shape[1] > 1)
    assert full15 / _count(m) > 0.6                                    # the dense 15x15 convs dominate


def test_normalisation_switches():
    paper, code = _meta(), _meta(init_norm="bn")
    assert isinstance(paper.init_block.norm, torch.nn.InstanceNorm2d)
    assert isinstance(code.init_block.norm, torch.nn.BatchNorm2d)
    n_bn = sum(isinstance(x, torch.nn.BatchNorm2d) for x in code.modules())
    n_gn32 = sum(isinstance(x, torch.nn.GroupNorm) and x.num_groups == 32 for x in code.modules())
    n_gn1 = sum(isinstance(x, torch.nn.GroupNorm) and x.num_groups == 1 for x in code.modules())
    assert (n_bn, n_gn32, n_gn1) == (10, 15, 40)                       # released_code.md §LKC-FUNet
    assert sum(isinstance(x, torch.nn.BatchNorm2d) for x in paper.modules()) == 9  # MPAFM's, as released
    allbn = _meta(init_norm="bn", block_norm="bn")
    assert not any(isinstance(x, torch.nn.GroupNorm) for x in allbn.modules())
    with pytest.raises(ValueError, match="init_norm"):
        LKCFUNet(init_norm="ln")


def test_registry_and_shapes():
    m = create_model("lkc_funet_tiny").eval()
    ir, vi = torch.rand(2, 1, 24, 32), torch.rand(2, 1, 24, 32)
    out = m(ir, vi)
    assert out.shape == (2, 1, 24, 32) and torch.isfinite(out).all()
    assert torch.equal(out, m.forward_cat(torch.cat([vi, ir], 1)))     # channel 0 = vi, 1 = ir
    assert create_model("lkc_funet_code", **TINY).config.init_norm == "bn"
    with pytest.raises(ValueError, match="multiples of 4"):
        m(torch.rand(1, 1, 30, 30), torch.rand(1, 1, 30, 30))
    with pytest.raises(ValueError, match="ir"):
        m(torch.rand(1, 2, 32, 32), torch.rand(1, 1, 32, 32))
    blocks = m.laziness_blocks()
    names = [n for n, _ in m.named_parameters()]
    claimed = {n for n in names for ps in blocks.values() for p in ps if n.startswith(p)}
    assert claimed == set(names)


def test_mpafm_roles_swap_inputs():
    torch.manual_seed(0)
    code = MPAFM(16).eval()
    paper = MPAFM(16, roles="paper").eval()
    paper.load_state_dict(code.state_dict())
    d, e = torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8)
    assert torch.allclose(paper(d, e), code(e, d))
    assert not torch.allclose(paper(d, e), code(d, e))
    code.keep = True
    code(d, e)
    w = code.last
    assert torch.allclose(w["w1"] + w["w2"], torch.ones_like(w["w1"]))
    assert w["A"].shape == (1, 16, 8, 8) and float(w["A"].min()) > 0 and float(w["A"].max()) < 1


def test_blocks_shapes_and_residuals():
    x = torch.randn(2, 16, 12, 12)
    assert LKCBlock(16, 8, 5, groups=8).eval()(x).shape == (2, 8, 12, 12)
    blk = LKDCBlock(16, 7).eval()
    torch.nn.init.zeros_(blk.pw2_norm.weight)                          # branch off -> identity
    assert torch.equal(blk(x), x)
    ib = InitBlock(16, 8, 5, norm="in").eval()
    assert ib(x).shape == (2, 8, 12, 12)
    # IN normalises each image on its own: scaling one image does not change the other's features
    y = x.clone()
    y[1] *= 10
    assert torch.allclose(ib(x)[0], ib(y)[0], atol=1e-5)


def test_key_map_covers_golden_keys(shared):
    import json

    keys = [d["key"] for d in json.loads((shared / "golden/lkc_funet/state_dict_keys.json").read_text())["keys"]]
    mapping = lkc_key_map(keys)
    ours = set(_meta(init_norm="bn").state_dict())
    assert set(mapping.values()) == ours and len(mapping) == len(keys) == 276
    with pytest.raises(KeyError, match="cannot place"):
        lkc_key_map(["model.nothing.weight"])


# --- golden outputs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def golden_model(shared):
    path = shared / "golden/lkc_funet/init_seed0_q4.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return load_lkc_golden(path).eval()


def test_golden_crop32_and_intermediates(golden_model, shared):
    d = shared / "golden/lkc_funet/intermediates_crop32"
    ld = lambda n: torch.from_numpy(np.load(d / f"{n}.npy"))  # noqa: E731
    m = golden_model
    with torch.no_grad():
        out = m.forward_cat(ld("input_cat_vi_ir"))
        torch.testing.assert_close(out, ld("out_raw"), atol=1e-4, rtol=0)
        torch.testing.assert_close(m.init_block(ld("init_conv")), ld("IN_conv"), atol=1e-4, rtol=0)
        mp = m.decoder[0].mpafm(ld("mid.1.ResnetBlocWithAttn"), ld("downs.7.ResnetBlocWithAttn"))
        torch.testing.assert_close(mp, ld("ups.0.MultiScaleGatedAttn"), atol=1e-4, rtol=0)
        fuse = m.fuse(torch.cat([m.decoder[2].lkdc(m.decoder[2].lkc(ld("ups.10.MultiScaleGatedAttn"))),
                                 ld("init_conv")], 1))
        torch.testing.assert_close(fuse, ld("ups.13.ResnetBlocWithAttn"), atol=1e-4, rtol=0)


def test_golden_crop64(golden_model, shared):
    d = shared / "golden/lkc_funet/crop64"
    x = torch.from_numpy(np.load(d / "input_cat_vi_ir.npy"))
    ref = torch.from_numpy(np.load(d / "out_raw.npy"))
    with torch.no_grad():
        vi, ir = x[:, :1], x[:, 1:]
        out = golden_model(ir, vi)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


# --- loss and training ------------------------------------------------------------------------------
def test_lkc_loss_is_the_sum_of_the_three_terms():
    g = torch.Generator().manual_seed(0)
    f, ir, vi = (torch.rand(2, 1, 20, 20, generator=g) for _ in range(3))
    total, terms = LKCLoss()(f, ir, vi)
    expect = ssim_loss(f, ir, vi) + intensity_max_loss(f, ir, vi) + gradient_max_loss(f, ir, vi)
    torch.testing.assert_close(total, expect)
    assert set(terms) == {"ssim", "int", "grad"}
    total.backward() if total.requires_grad else None
    assert float(LKCLoss()(vi, vi, vi)[0]) < 1e-6 + float(gradient_max_loss(vi, vi, vi))


def test_recipes():
    p = LKC_RECIPES["paper"]
    assert (p.batch_size, p.crop_size, p.epochs, p.optimizer, p.lr) == (32, 64, 1000, "adam", 1e-4)
    assert set(p.datasets) == {"harvard_ct", "harvard_pet", "harvard_spect"}
    assert LKC_RECIPES["paper_ivif"].datasets == ("msrs",)
    assert {"paper", "lab", "smoke"} <= set(LKC_RECIPES)


def test_train_tiny_two_steps(tmp_path):
    from fusionlib.laziness import LazinessTracker
    from fusionlib.models.lkc_funet import lkc_loader

    torch.manual_seed(0)
    m = create_model("lkc_funet_tiny")
    loader = lkc_loader(LKC_RECIPES["smoke"], seed=0, batch_size=2, crop=16)
    assert m.config.kernels == (7, 5, 3)
    tr = LazinessTracker()
    hist = train_lkc_funet(m, loader, recipe=LKC_RECIPES["smoke"], device="cpu", epochs=1, max_steps_per_epoch=2,
                           callbacks=[tr], progress=False, out_dir=None)
    assert len(hist.epochs) == 1 and np.isfinite(hist.epochs[0]["loss"])
    assert {r["block"] for r in tr.records} == set(m.laziness_blocks())


# --- the paper's recipe, the 40-pair subset and the kernel x normalisation grid ------------------------
def test_paper_recipe_step_counts():
    from fusionlib.models.lkc_funet import PAPER_RECIPE, paper_steps

    r = PAPER_RECIPE
    # 40 pairs at batch 32 with drop_last: one step per epoch, so 1000 epochs are 1000 steps
    assert paper_steps(r["train_pairs_mif"], r["batch_size"], r["epochs"]) == 1000
    assert paper_steps(r["train_pairs_ivif"], r["batch_size"], r["epochs"]) == 33 * 1000
    assert paper_steps(96, 32, 1000) == 3000 and paper_steps(40, 32, 10, drop_last=False) == 20
    assert (r["batch_size"], r["crop_size"], r["lr"]) == (LKC_RECIPES["paper"].batch_size,
                                                        LKC_RECIPES["paper"].crop_size, LKC_RECIPES["paper"].lr)
    with pytest.raises(ValueError):
        paper_steps(0, 32, 1)


def test_balanced_subset():
    from fusionlib.models.lkc_funet import balanced_subset

    idx = balanced_subset([11, 22, 63], 40)
    assert [len(i) for i in idx] == [11, 15, 14] and sum(map(len, idx)) == 40
    assert idx[0] == list(range(11))                                   # the small set gives all it has
    assert all(len(set(i)) == len(i) and max(i) < n for i, n in zip(idx, [11, 22, 63]))
    assert idx[2][0] == 0 and idx[2][-1] == 62                         # spread over the whole set
    assert balanced_subset([3, 5], 8) == [[0, 1, 2], [0, 1, 2, 3, 4]]
    with pytest.raises(ValueError):
        balanced_subset([3, 5], 9)


def test_loader_with_the_papers_40_pairs_new_crops_each_epoch():
    from fusionlib.models.lkc_funet import lkc_loader

    ld = lkc_loader(LKC_RECIPES["paper"], seed=0, pairs=40, crop=16)
    assert len(ld.dataset) == 40 and len(ld) == 1                      # one step of 32 per epoch
    assert len(ld.dataset.names) == 40 and ld.dataset.names[:11] == ld.dataset.dataset.names[:11]  # all 11 CT pairs
    ld.set_epoch(0)
    a = ld.dataset[5]["ir"].clone()
    ld.set_epoch(1)
    b = ld.dataset[5]["ir"]
    assert a.shape == b.shape == (1, 16, 16) and not torch.equal(a, b)  # set_epoch reaches the crops


@pytest.mark.parametrize("kmax", [3, 7, 15])
def test_kernel_sets_build_and_use_their_kernels(kmax):
    from fusionlib.models.lkc_funet import KERNEL_SETS

    m = LKCFUNet(stem=8, width=16, norm_groups=4, init_norm="gn", init_groups=2, block_norm="gn",
                 **KERNEL_SETS[kmax]).eval()
    assert m.init_block.conv.kernel_size == (kmax, kmax)
    assert max(p.shape[-1] for p in m.parameters() if p.ndim == 4) == kmax
    assert m.init_block.norm.num_groups == 2                           # a GN InitBlock that is not IN
    out = m(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
    assert out.shape == (1, 1, 16, 16) and torch.isfinite(out).all()


def test_groupnorm_with_one_channel_per_group_is_instancenorm():
    from fusionlib.models.lkc_funet import make_norm

    x = torch.randn(3, 32, 9, 9) * torch.linspace(0.1, 5, 32)[:, None, None] + 2
    gn, inn = make_norm("gn", 32, 32), make_norm("in", 32)
    with torch.no_grad():
        gn.weight.normal_(), gn.bias.normal_()
        inn.weight.copy_(gn.weight), inn.bias.copy_(gn.bias)
    torch.testing.assert_close(gn(x), inn(x), atol=1e-5, rtol=0)
    assert (make_norm("gn", 32, 8)(x) - make_norm("in", 32)(x)).abs().max() > 0.1  # 8 groups of 4 is not IN


def test_skip_fusion_concat_replaces_the_mpafm():
    from fusionlib.models.lkc_funet import ConcatSkip

    m = LKCFUNet(**TINY, kernels=(5, 3, 3), mid_kernel=3, init_kernel=5, skip_fusion="concat").eval()
    full = LKCFUNet(**TINY, kernels=(5, 3, 3), mid_kernel=3, init_kernel=5).eval()
    assert m.mpafms() == [] and len(full.mpafms()) == 3
    assert _count(full) - _count(m) == sum(_count(x) for x in full.mpafms()) > 0
    d, e = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4)
    assert torch.equal(ConcatSkip()(d, e), torch.cat([d, e], 1))
    out = m(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
    assert out.shape == (1, 1, 16, 16) and torch.isfinite(out).all()
    assert _count(_meta()) == 41_174_438                                # the default keeps the MPAFM
    with pytest.raises(ValueError, match="skip_fusion"):
        LKCFUNet(skip_fusion="sum")
