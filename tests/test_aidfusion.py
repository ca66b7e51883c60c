"""AIDFusion network (fusionlib.models.aidfusion): shapes, cost band, MPSA entropy weights, MSRT, FAConv,
ablation switches, laziness blocks, the training entry point."""

from __future__ import annotations

import math

import pytest
import torch

from fusionlib.models import create_model
from fusionlib.models.aidfusion import (
    AID_RECIPES, FAConv, MMFM, MPSA, MSRT, PAPER, AIDFusion, ConvGELU, entropy_weights, map_entropy,
    resize_pair, train_aidfusion,
)
from fusionlib.profiling import count_parameters


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def test_registered_and_shapes():
    torch.manual_seed(0)
    m = create_model("aidfusion_tiny")
    ir, vi = torch.rand(2, 1, 10, 9), torch.rand(2, 1, 10, 9)
    out = m.forward_all(ir, vi)
    assert out["fused"].shape == (2, 1, 10, 9)
    assert [tuple(p.shape[-2:]) for p in out["levels"]] == [(10, 9), (5, 5)]
    assert out["recon_ir"].shape == out["recon_vi"].shape == (2, 1, 10, 9)
    assert out["fused"] is out["levels"][0]
    assert ((out["fused"] > 0) & (out["fused"] < 1)).all()
    torch.testing.assert_close(m(ir, vi), out["fused"])


def test_full_model_levels_and_odd_sizes():
    m = AIDFusion().eval()
    with torch.no_grad():
        out = m.forward_all(torch.rand(1, 1, 17, 14), torch.rand(1, 1, 17, 14))
    assert [tuple(p.shape[-2:]) for p in out["levels"]] == [(17, 14), (9, 7), (5, 4), (3, 2)]


def test_parameter_count_within_band_of_paper():
    n = count_parameters(AIDFusion())
    assert abs(n / (PAPER["params_M"] * 1e6) - 1) < 0.15, n


def test_bad_inputs_are_named():
    m = create_model("aidfusion_tiny")
    with pytest.raises(ValueError, match="ir must be"):
        m(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        m(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 10))
    with pytest.raises(ValueError, match="multiples of 4"):
        AIDFusion(channels=(6, 8))


def test_entropy_weights_sum_to_one_and_follow_eq9():
    ent = torch.rand(5, 3) + 0.1
    w = entropy_weights(ent)
    torch.testing.assert_close(w.sum(-1), torch.ones(5))
    e_hat = ent / ent.sum(-1, keepdim=True)
    for i in range(3):                                   # ω_i = 1 - Σ_{j≠i} Ê_j
        others = sum(e_hat[:, j] for j in range(3) if j != i)
        torch.testing.assert_close(w[:, i], 1 - others)


def test_map_entropy_known_values():
    assert float(map_entropy(torch.ones(1, 1, 4, 4))) == pytest.approx(1.0)
    peaked = torch.zeros(1, 1, 4, 4)
    peaked[..., 0, 0] = 1.0
    assert float(map_entropy(peaked)) == pytest.approx(0.0, abs=1e-6)
    assert float(map_entropy(torch.full((1, 4), 0.5), mode="binary")) == pytest.approx(1.0)
    assert float(map_entropy(torch.tensor([[0.0, 1.0]]), mode="binary")) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="mode"):
        map_entropy(torch.ones(1, 4), mode="shannon")
    two = torch.zeros(1, 16)
    two[0, :2] = 1.0                                     # two equal positions of 16: log 2 / log 16
    assert float(map_entropy(two)) == pytest.approx(math.log(2) / math.log(16), rel=1e-5)


def test_mpsa_equals_weighted_sum_of_perspectives():
    torch.manual_seed(0)
    mpsa = MPSA(hidden=2)
    x = torch.rand(2, 8, 6, 5)
    a_hw, a_hc, a_wc = mpsa.maps(x)
    assert (a_hw.shape, a_hc.shape, a_wc.shape) == ((2, 1, 6, 5), (2, 8, 6, 1), (2, 8, 1, 5))
    w = entropy_weights(torch.stack([map_entropy(a) for a in (a_hw, a_hc, a_wc)], -1))
    expect = sum(w[:, i, None, None, None] * x * a for i, a in enumerate((a_hw, a_hc, a_wc)))
    torch.testing.assert_close(mpsa(x), expect)
    flat = MPSA(hidden=2, entropy_weighting=False)
    flat.load_state_dict(mpsa.state_dict())
    torch.testing.assert_close(flat(x), x * (a_hw + a_hc + a_wc) / 3)


def test_msrt_attention_shapes_and_recurrence():
    torch.manual_seed(0)
    msrt = MSRT(channels=8, tokens=(8, 4, 2, 1))
    seen = []
    hooks = [a.register_forward_hook(lambda m, i, o: seen.append(o)) for a in msrt.attend]
    x = torch.rand(2, 8, 16, 12)
    y = msrt(x)
    for h in hooks:
        h.remove()
    assert y.shape == x.shape
    assert [tuple(a.shape) for a in seen] == [(2, 2, 2)] * 4
    for a in seen:
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 2))
    # recurrence (Eq. 10): perturbing group 1 changes the attention of the later groups through y_1
    first = [a.clone() for a in seen]
    x2 = x.clone()
    x2[:, 0:2] = torch.rand(2, 2, 16, 12)
    seen.clear()
    hooks = [a.register_forward_hook(lambda m, i, o: seen.append(o)) for a in msrt.attend]
    msrt(x2)
    for h in hooks:
        h.remove()
    assert not torch.allclose(seen[1], first[1])                       # group 2 sees x_2 + y_1
    x3 = x.clone()
    x3[:, 6:8] = torch.rand(2, 2, 16, 12)                              # the last group feeds nobody
    seen.clear()
    hooks = [a.register_forward_hook(lambda m, i, o: seen.append(o)) for a in msrt.attend]
    msrt(x3)
    for h in hooks:
        h.remove()
    for k in range(3):
        torch.testing.assert_close(seen[k], first[k])
    with pytest.raises(ValueError, match="divisible by 4"):
        MSRT(channels=6)


def test_msrt_group_follows_eq10():
    """One group by hand: Q, K = LP(GELU(LN(MP(X) + AP(X)))), V = LP(X), X' = V Softmax(Qᵀ K / P)."""
    torch.manual_seed(0)
    msrt = MSRT(channels=8, tokens=(4, 4, 2, 2))
    x = torch.rand(2, 2, 8, 6)
    t = torch.nn.functional.adaptive_max_pool2d(x, (4, 4)) + torch.nn.functional.adaptive_avg_pool2d(x, (4, 4))
    t = t.flatten(2).transpose(1, 2)                                     # (B, P², C/4)
    h = torch.nn.functional.gelu(torch.nn.functional.layer_norm(t, (2,), msrt.norm[0].weight, msrt.norm[0].bias))
    q, k = (h @ msrt.qk[0].weight.T + msrt.qk[0].bias).chunk(2, dim=-1)
    a = torch.softmax(q.transpose(1, 2) @ k / 4.0, dim=-1)               # (B, C/4, C/4), √(P²) = 4
    v = x.flatten(2).transpose(1, 2) @ msrt.v[0].weight.T + msrt.v[0].bias
    expect = (v @ a).transpose(1, 2).reshape(2, 2, 8, 6)
    torch.testing.assert_close(msrt._group(0, x), expect)
    # the max pooling matters: one hot pixel changes the tokens of MP + AP
    x2 = x.clone()
    x2[0, 0, 0, 0] = 5.0
    assert not torch.allclose(msrt._group(0, x2)[0], msrt._group(0, x)[0])
    unscaled = MSRT(channels=8, tokens=(4, 4, 2, 2), scale=False)
    unscaled.load_state_dict(msrt.state_dict())
    assert not torch.allclose(unscaled._group(0, x), expect)            # the printed, unscaled Softmax


def test_mmfm_takes_the_coarser_decoder_and_prediction():
    torch.manual_seed(0)
    mm = MMFM(channels=8, coarser=12, hidden=2).eval()
    vie, ire = torch.rand(1, 8, 8, 8), torch.rand(1, 8, 8, 8)
    de, pred = torch.rand(1, 12, 4, 4), torch.rand(1, 1, 4, 4)
    base = mm(vie, ire, de, pred)
    assert base.shape == (1, 8, 8, 8)
    assert not torch.allclose(mm(vie, ire, de, torch.rand(1, 1, 4, 4)), base)    # Fusion_{l+1} enters
    assert not torch.allclose(mm(vie, ire, torch.rand(1, 12, 4, 4), pred), base)  # De_{l+1} enters
    assert len(mm.rounds) == 2 and hasattr(mm, "msrt_vi") and hasattr(mm, "msrt_ir")
    with pytest.raises(ValueError, match="coarser"):
        mm(vie, ire)
    top = MMFM(channels=8, coarser=None, hidden=2)
    with pytest.raises(ValueError, match="coarser"):
        top(vie, ire, de, pred)


def test_faconv_split_sizes_and_branches():
    fa = FAConv(channels=16)
    assert fa.split == (4, 8)                            # C/4 periodic (-> cos and sin), C/2 GELU
    assert fa.conv.out_channels == 12
    x = torch.rand(1, 16, 5, 5)
    z_p, z_g = fa.conv(x).split(fa.split, dim=1)
    out = fa(x)
    torch.testing.assert_close(out[:, :4], torch.cos(z_p))
    torch.testing.assert_close(out[:, 4:8], torch.sin(z_p))
    torch.testing.assert_close(out[:, 8:], torch.nn.functional.gelu(z_g))
    assert (out[:, :4] ** 2 + out[:, 4:8] ** 2 - 1).abs().max() < 1e-5   # cos² + sin² = 1
    with pytest.raises(ValueError):
        FAConv(channels=2, periodic_fraction=0.5)


def test_ablation_switches_change_the_graph():
    full, no_mmfm, no_fa = AIDFusion(), AIDFusion(use_mmfm=False), AIDFusion(use_faconv=False)
    names = lambda m: {n for n, _ in m.named_modules()}  # noqa: E731
    assert any(".mpsa" in n for n in names(full))
    assert not any(".mpsa" in n or ".msrt" in n for n in names(no_mmfm))
    assert all(isinstance(d.body, FAConv) for d in full.dec)
    assert all(isinstance(d.body, ConvGELU) for d in no_fa.dec)
    assert count_parameters(no_mmfm) < count_parameters(full)
    plain = MMFM(channels=8, coarser=None, use_attention=False)
    assert isinstance(plain(torch.rand(1, 8, 4, 4), torch.rand(1, 8, 4, 4)), torch.Tensor)


def test_every_parameter_gets_a_gradient_from_forward_all():
    torch.manual_seed(0)
    m = create_model("aidfusion_tiny")
    out = m.forward_all(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    loss = sum(p.mean() for p in out["levels"]) + out["recon_ir"].mean() + out["recon_vi"].mean()
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing
    # forward(ir, vi) alone reaches every head through the coarse-to-fine cascade (not the recon heads)
    m.zero_grad(set_to_none=True)
    m(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)).mean().backward()
    assert [n for n, p in m.named_parameters() if p.grad is None and not n.startswith("recon_")] == []


def test_laziness_blocks_partition_parameters():
    from fusionlib.laziness import resolve_blocks

    m = AIDFusion()
    blocks = resolve_blocks(m)
    assert list(blocks) == ["encoder", "fusion", "decoder", "prediction"]
    assert sum(len(v) for v in blocks.values()) == len(list(m.parameters()))


def test_resize_pair_and_recipes():
    t = resize_pair(12)({"ir": torch.rand(1, 20, 30), "vi": torch.rand(1, 20, 30), "name": "x"})
    assert t["ir"].shape == (1, 12, 12) and t["name"] == "x"
    paper = AID_RECIPES["paper"]
    got = (paper.optimizer, paper.lr, paper.batch_size, paper.epochs, paper.crop_size)
    assert got == ("sgd", 1e-3, 12, 100, 352)
    assert set(AID_RECIPES) == {"paper", "lab", "smoke"}


def test_train_aidfusion_runs_both_strategies():
    from fusionlib.laziness import LazinessTracker

    batches = [{"ir": torch.rand(1, 1, 8, 8), "vi": torch.rand(1, 1, 8, 8)}]
    for strategy in ("final", "diils"):
        torch.manual_seed(0)
        m = create_model("aidfusion_tiny")
        tr = LazinessTracker()
        h = train_aidfusion(m, batches, recipe=AID_RECIPES["smoke"], device="cpu", epochs=3, callbacks=[tr],
                            progress=False, strategy=strategy)
        assert len(h.epochs) == 3 and all(math.isfinite(e["loss"]) for e in h.epochs)
        assert {r["block"] for r in tr.records} == {"encoder", "fusion", "decoder", "prediction"}
        n_active = [e["n_active"] for e in h.epochs]
        assert n_active == ([1.0, 1.0, 1.0] if strategy == "final" else [1.0, 2.0, 2.0])   # L = 2, T = 1
    with pytest.raises(ValueError, match="strategy"):
        train_aidfusion(m, batches, recipe=AID_RECIPES["smoke"], device="cpu", epochs=1, strategy="x")
