"""DIILS (fusionlib.diils) against the paper: the PHO schedule of Eq. 1 (paper budget and small budgets),
Eq. 3 and Eq. 5 against hand-computed values, Eq. 6 level weights, float64 gradchecks, the composite loss
and its fit callback, and the laziness experiment's first-half identity (baseline == DIILS until T/2)."""

from __future__ import annotations

import math

import pytest
import torch

from fusionlib.diils import (
    DIILSLoss, PHOCallback, acf_loss, corr_loss_paper, intensity_loss_paper, intensity_soft_loss, level_weights,
    pho_active_count, pho_schedule, pho_table, soft_weights_paper, source_pyramid, std_masks_paper,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


# --- PHO, Eq. 1 ---------------------------------------------------------------------------------------------


def test_pho_table_paper_budget_follows_eq1():
    tab = pho_table(100, 4)
    assert tab.shape == (100, 4) and tab.dtype == torch.bool
    # Fusion_1 alone in rows 0-49, Fusion_1-2 in 50-59, Fusion_1-3 in 60-69, all four from row 70
    assert all(tab[e].tolist() == [True, False, False, False] for e in range(0, 50))
    assert all(tab[e].tolist() == [True, True, False, False] for e in range(50, 60))
    assert all(tab[e].tolist() == [True, True, True, False] for e in range(60, 70))
    assert all(tab[e].tolist() == [True, True, True, True] for e in range(70, 100))
    assert tab.sum(0).tolist() == [100, 50, 40, 30]           # epochs per level; the final output always on


@pytest.mark.parametrize("epochs, levels, counts", [
    (10, 4, [1, 1, 1, 1, 1, 2, 3, 4, 4, 4]),        # T/10 = 1 epoch: one level joins per epoch
    (20, 4, [1] * 10 + [2, 2, 3, 3] + [4] * 6),
    (4, 3, [1, 1, 3, 3]),                          # T/10 < 1 epoch: Fusion_2 and Fusion_3 join at once
    (5, 4, [1, 1, 2, 4, 4]),                       # T/2 = 2.5: epoch 3 (row 2) is past half
    (2, 4, [1, 4]),
    (1, 4, [4]),                                   # T/2 = 0.5 < epoch 1: every level at once
    (100, 2, [1] * 50 + [2] * 50),
])
def test_pho_table_small_budgets(epochs, levels, counts):
    tab = pho_table(epochs, levels)
    assert tab.shape == (epochs, levels)
    assert tab.sum(1).tolist() == counts
    assert bool(tab[:, 0].all())                                  # Fusion_1 in every row
    # cumulative and in order: Fusion_l only with Fusion_1 .. Fusion_{l-1}
    assert all(row.tolist() == [i < int(row.sum()) for i in range(levels)] for row in tab)
    assert [pho_active_count(e, epochs, levels) for e in range(epochs)] == counts


def test_pho_alternatives_stay_one_switch_away():
    assert bool(pho_table(10, 3, first_half="all")[:5].all())     # row 1 of Eq. 1 read as every Fusion_l
    old = pho_table(100, 4, order="coarse_first", stage_length=20)
    assert old[0].tolist() == [False, False, False, True]          # the suite's earlier, inverted schedule
    assert old.sum(1).tolist() == [1] * 20 + [2] * 20 + [3] * 20 + [4] * 40
    assert pho_schedule(6, 8, 3, order="coarse_first", stage_length=2, mode="single", others="final") == (
        True, False, False)
    for bad in (dict(order="zigzag"), dict(first_half="none"), dict(order="coarse_first", mode="x"),
                dict(order="coarse_first", others="x")):
        with pytest.raises(ValueError):
            pho_schedule(0, 10, 3, **bad)
    with pytest.raises(ValueError):
        pho_table(0, 4)


def test_source_pyramid_is_max_pooled():
    x = torch.zeros(1, 1, 4, 4)
    x[..., 1, 2] = 0.9                                     # a single hot pixel survives max pooling
    p = source_pyramid(x, 3)
    assert [tuple(t.shape[-2:]) for t in p] == [(4, 4), (2, 2), (1, 1)]
    assert float(p[1][0, 0, 0, 1]) == pytest.approx(0.9) and float(p[2].max()) == pytest.approx(0.9)


# --- Eq. 3 ----------------------------------------------------------------------------------------------------
X = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
Y = torch.tensor([1.0, 3.0, 2.0, 4.0]).view(1, 1, 2, 2)          # r(X, Y) = 4 / 5 = 0.8


def test_corr_loss_eq3_hand_values():
    # r(F, IR) = 1, r(F, VI) = 0.8: 1 / (1.8 + 1e-6)
    assert float(corr_loss_paper(X, X, Y)) == pytest.approx(1 / (1.8 + 1e-6), rel=1e-6)
    # s = 1 - 1 = 0: as printed 1/ε = 1e6; guarded: the tangent at s0 = 0.5, 1/s0 + s0/s0² = 4
    assert float(corr_loss_paper(X, X, -X, guard=None)) == pytest.approx(1e6, rel=1e-3)
    assert float(corr_loss_paper(X, X, -X)) == pytest.approx(4.0, rel=1e-4)
    # s = 0.8 - 1 = -0.2: printed gives a negative loss (-5); guarded 2 + 0.7 * 4 = 4.8
    assert float(corr_loss_paper(X, Y, -X, guard=None)) == pytest.approx(-5.0, rel=1e-4)
    assert float(corr_loss_paper(X, Y, -X)) == pytest.approx(4.8, rel=1e-4)
    # batch of two: per-sample then mean
    b = corr_loss_paper(torch.cat([X, X]), torch.cat([X, X]), torch.cat([Y, -X]), reduction="none")
    torch.testing.assert_close(b, torch.tensor([1 / 1.800001, 4.0]), rtol=1e-4, atol=1e-6)


def test_corr_guard_is_continuous_and_decreasing():
    torch.manual_seed(0)
    f = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    vals = []
    for a in torch.linspace(-1, 1, 41, dtype=torch.float64):    # vi = a f + noise: s sweeps through s0
        vi = a * f + 0.3 * torch.rand(1, 1, 6, 6, dtype=torch.float64)
        s = float(torch.corrcoef(torch.stack([f.flatten(), f.flatten()]))[0, 1]) + float(
            torch.corrcoef(torch.stack([f.flatten(), vi.flatten()]))[0, 1])
        vals.append((s, float(corr_loss_paper(f, f, vi))))
    vals.sort()
    losses = [v for _, v in vals]
    assert all(a >= b - 1e-9 for a, b in zip(losses, losses[1:]))   # decreasing in s
    assert max(losses) < 10                                         # no blow-up near s = 0


# --- Eq. 5 ----------------------------------------------------------------------------------------------------
IR = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
FLAT = torch.full((1, 1, 1, 2), 0.5)


def test_eq5_soft_weights_and_masks():
    w = soft_weights_paper(IR)                                     # Sigmoid(-(IR - 0.5))
    torch.testing.assert_close(w.flatten(), torch.sigmoid(torch.tensor([0.5, -0.5])))
    assert float(soft_weights_paper(IR, delta=2.0)[0, 0, 0, 0]) == pytest.approx(float(torch.sigmoid(torch.tensor(1.0))))
    assert std_masks_paper(IR, FLAT) == (torch.tensor([1.0]), torch.tensor([0.0]))
    assert std_masks_paper(FLAT, IR) == (torch.tensor([0.0]), torch.tensor([1.0]))
    assert std_masks_paper(IR, IR) == (torch.tensor([0.0]), torch.tensor([1.0]))   # ">": a tie goes to VI
    with pytest.raises(ValueError):
        soft_weights_paper(IR, delta=0)


def test_eq5_intensity_loss_hand_values():
    fused = torch.tensor([0.2, 0.6]).view(1, 1, 1, 2)
    s1, s2 = (float(v) for v in torch.sigmoid(torch.tensor([0.5, -0.5])))
    # IR has the larger std: only the IR term; squared errors 0.04, 0.16, weighted per pixel, mean
    expect = (s1 * 0.04 + s2 * 0.16) / 2
    assert float(intensity_loss_paper(fused, IR, FLAT)) == pytest.approx(expect, rel=1e-6)
    # literal reading: mean(ω_soft) * MSE = 0.5 * 0.1
    assert float(intensity_loss_paper(fused, IR, FLAT, literal=True)) == pytest.approx(0.05, rel=1e-6)
    # VI has the larger std: IR flat -> ω_soft = 0.5 everywhere; errors to VI 0.04, 0.16
    assert float(intensity_loss_paper(fused, FLAT, IR)) == pytest.approx(0.5 * 0.1, rel=1e-6)
    # a batch mixes both cases: the mean of the two
    both = intensity_loss_paper(torch.cat([fused, fused]), torch.cat([IR, FLAT]), torch.cat([FLAT, IR]))
    assert float(both) == pytest.approx((expect + 0.05) / 2, rel=1e-6)


def test_acf_loss_combines_the_printed_terms():
    torch.manual_seed(0)
    ir, vi = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    fused = (0.5 * ir + 0.5 * vi).requires_grad_()
    total, terms = acf_loss(fused, ir, vi, alpha=2.0, beta=3.0, gamma=4.0)
    torch.testing.assert_close(total, 2 * terms["corr"] + 3 * terms["grad"] + 4 * terms["int"])
    torch.testing.assert_close(terms["corr"], corr_loss_paper(fused, ir, vi))
    torch.testing.assert_close(terms["int"], intensity_loss_paper(fused, ir, vi))
    assert terms["corr_s"].shape == (2,)
    _, old = acf_loss(fused, ir, vi, corr_form="linear", intensity_form="l1_mix")
    torch.testing.assert_close(old["int"], intensity_soft_loss(fused, ir, vi))
    total.backward()
    assert fused.grad is not None and torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="corr_form"):
        acf_loss(fused, ir, vi, corr_form="x")


def test_gradchecks_float64():
    torch.manual_seed(0)
    ir, vi = torch.rand(2, 1, 6, 6, dtype=torch.float64), torch.rand(2, 1, 6, 6, dtype=torch.float64)
    f = (0.2 + 0.6 * torch.rand(2, 1, 6, 6, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: corr_loss_paper(t, ir, vi), (f,))   # guarded branch (s ~ 0)
    g = (0.3 * ir + 0.7 * vi + 0.01 * torch.rand_like(ir)).requires_grad_()        # s > 0.5: Eq. 3 itself
    assert float((corr_loss_paper(g, ir, vi, reduction="none") < 2).all())
    assert torch.autograd.gradcheck(lambda t: corr_loss_paper(t, ir, vi), (g,))
    assert torch.autograd.gradcheck(lambda t: intensity_loss_paper(t, ir, vi), (f,))
    assert torch.autograd.gradcheck(lambda t: intensity_loss_paper(t, ir, vi, literal=True), (f,))
    # the Sobel L1 of Eq. 4 has kinks; gradcheck the smooth corr + int parts of Eq. 2
    assert torch.autograd.gradcheck(lambda t: acf_loss(t, ir, vi, beta=0.0)[0], (f,))


# --- Eq. 6 ----------------------------------------------------------------------------------------------------
def test_level_weights_eq6():
    losses = torch.tensor([1.0, 3.0, 4.0, 2.0])
    w = level_weights(losses, [True, True, True, True])             # ΣL = 10
    torch.testing.assert_close(w, torch.tensor([1.1, 0.3, 0.4, 0.2]))
    assert float(w.sum()) == pytest.approx(2.0)
    w = level_weights(losses, [True, True, False, False])           # active sum 4
    torch.testing.assert_close(w, torch.tensor([1.25, 0.75, 0.0, 0.0]))
    torch.testing.assert_close(level_weights(losses, [True, False, False, False]), torch.tensor([2.0, 0, 0, 0]))
    w = level_weights(losses, [True, True, False, False], eq6_sum="all")   # printed Σ over all L
    torch.testing.assert_close(w, torch.tensor([1.1, 0.3, 0.0, 0.0]))
    w = level_weights(losses, [False, True, True, False])           # no Fusion_1: no +1
    torch.testing.assert_close(w, torch.tensor([0.0, 3 / 7, 4 / 7, 0.0]))
    x = torch.tensor([1.0, 3.0], requires_grad=True)
    assert not level_weights(x, [True, True]).requires_grad          # detached
    with pytest.raises(ValueError, match="no active"):
        level_weights(losses, [False] * 4)
    with pytest.raises(ValueError, match="reference"):
        level_weights(losses, [True] * 4, mode="relative")
    torch.testing.assert_close(level_weights(losses, [True] * 4, mode="uniform"), torch.full((4,), 0.25))


# --- the composite loss ----------------------------------------------------------------------------------
def _outputs(levels=3, size=16, requires_grad=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    preds = [torch.rand(1, 1, size // 2**i, size // 2**i, generator=g).requires_grad_(requires_grad)
             for i in range(levels)]
    return {"levels": preds, "fused": preds[0], "recon_ir": torch.rand(1, 1, size, size, generator=g),
            "recon_vi": torch.rand(1, 1, size, size, generator=g)}


def test_diils_loss_follows_eq1_and_eq6():
    torch.manual_seed(0)
    ir, vi = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    loss = DIILSLoss(levels=3, epochs=10, lambda1=0.0)
    out = _outputs()
    total, terms = loss(out, ir, vi)                       # epoch 0: Fusion_1 only, ω_1 = 2
    total.backward()
    assert [p.grad is None for p in out["levels"]] == [False, True, True]
    assert float(terms["n_active"]) == 1 and float(terms["omega_l1"]) == pytest.approx(2.0)
    torch.testing.assert_close(total, 2 * terms["acf_l1"])
    loss.set_epoch(6)                                      # row 6 = epoch 7: Fusion_1-3
    out = _outputs()
    total, terms = loss(out, ir, vi)
    total.backward()
    assert all(p.grad is not None for p in out["levels"])
    acf = torch.stack([terms[f"acf_l{i}"] for i in (1, 2, 3)])
    omega = torch.stack([terms[f"omega_l{i}"] for i in (1, 2, 3)])
    torch.testing.assert_close(omega, torch.tensor([1.0, 0, 0]) + acf / acf.sum())
    torch.testing.assert_close(total, (omega * acf).sum())
    assert 0.0 <= float(terms["corr_guard"]) <= 1.0


def test_baseline_equals_diils_in_the_first_half():
    torch.manual_seed(0)
    ir, vi = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    diils_loss, base = DIILSLoss(levels=3, epochs=10), DIILSLoss(levels=3, epochs=10, strategy="final")
    for epoch in range(10):
        diils_loss.set_epoch(epoch)
        base.set_epoch(epoch)
        a, _ = diils_loss(_outputs(seed=epoch), ir, vi)
        b, _ = base(_outputs(seed=epoch), ir, vi)
        if epoch < 5:
            assert torch.equal(a, b), epoch
        else:
            assert not torch.equal(a, b), epoch


def test_diils_loss_reconstruction_and_errors():
    torch.manual_seed(0)
    ir, vi = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    base = DIILSLoss(levels=3, strategy="final", lambda1=0.5, lambda2=2.0)
    out = _outputs()
    out["recon_ir"], out["recon_vi"] = ir.clone(), vi.clone()   # perfect reconstruction -> rec = 0
    total, terms = base(out, ir, vi)
    assert float(terms["rec"]) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(total, 2.0 * 2.0 * terms["acf_l1"])
    with pytest.raises(ValueError, match="levels"):
        base({"levels": out["levels"][:2]}, ir, vi)
    with pytest.raises(ValueError, match="strategy"):
        DIILSLoss(levels=3, strategy="both")
    with pytest.raises(ValueError, match="corr_form"):
        DIILSLoss(levels=3, corr_form="x")


def test_diils_loss_gradcheck_float64():
    torch.manual_seed(0)
    ir, vi = torch.rand(1, 1, 8, 8, dtype=torch.float64), torch.rand(1, 1, 8, 8, dtype=torch.float64)
    loss = DIILSLoss(levels=2, epochs=2, beta=0.0, lambda1=0.0)
    p1 = (0.2 + 0.6 * torch.rand(1, 1, 8, 8, dtype=torch.float64)).requires_grad_()
    p2 = (0.2 + 0.6 * torch.rand(1, 1, 4, 4, dtype=torch.float64)).requires_grad_()
    # epoch 0: Fusion_1 alone, ω_1 = 2 is a constant, so the whole loss is smooth in p1
    assert torch.autograd.gradcheck(lambda a: loss({"levels": [a, p2.detach()]}, ir, vi)[0], (p1,))
    # epoch 1: both levels; ω is detached, so the gradient is Σ ω_l ∇L_ACF^l with ω held fixed
    loss.set_epoch(1)
    total, terms = loss({"levels": [p1, p2]}, ir, vi)
    g1, g2 = torch.autograd.grad(total, (p1, p2))
    ir2, vi2 = source_pyramid(ir, 2)[1], source_pyramid(vi, 2)[1]
    (d2,) = torch.autograd.grad(acf_loss(p2, ir2, vi2, beta=0.0)[0], (p2,))
    (d1,) = torch.autograd.grad(acf_loss(p1, ir, vi, beta=0.0)[0], (p1,))
    torch.testing.assert_close(g2, terms["omega_l2"] * d2)
    torch.testing.assert_close(g1, terms["omega_l1"] * d1)


def test_pho_callback_tracks_fit_epochs():
    loss = DIILSLoss(levels=2, epochs=2)
    cb = PHOCallback(loss)

    class S:
        epoch = 0

    cb.on_train_start(S)
    assert loss.epoch == 0 and loss.active() == (True, False)
    S.epoch = 1
    cb.on_epoch_end(S)
    assert loss.epoch == 1 and loss.active() == (True, True)
    assert cb.records == [{"epoch": 1, "active": [True, False]}]   # what epoch 1 trained with
    cb2 = PHOCallback(DIILSLoss(levels=2, epochs=2))
    cb2.load_state_dict(cb.state_dict())
    assert cb2.records == cb.records


# --- the laziness experiment: baseline and DIILS are one network until T/2 --------------------------------------
def test_laziness_first_half_identity():
    g = torch.Generator().manual_seed(1)
    batches = [{"ir": torch.rand(2, 1, 16, 16, generator=g), "vi": torch.rand(2, 1, 16, 16, generator=g)}
               for _ in range(2)]
    runs: dict = {}
    _train_both(batches, runs)
    lz = {s: {(r["epoch"], r["block"]): r["delta"] for r in runs[s][1]} for s in runs}
    half = [k for k in lz["final"] if k[0] <= 2]               # epochs 1-2 = the first half of T = 4
    assert half and all(lz["final"][k] == lz["diils"][k] for k in half)
    assert any(lz["final"][k] != lz["diils"][k] for k in lz["final"] if k[0] > 2)
    assert [e["n_active"] for e in runs["diils"][2]] == [1.0, 1.0, 2.0, 2.0]
    assert [e["n_active"] for e in runs["final"][2]] == [1.0] * 4
    assert all(math.isfinite(e["loss"]) for s in runs for e in runs[s][2])


def _train_both(batches, runs):
    from fusionlib.laziness import LazinessTracker
    from fusionlib.models import create_model
    from fusionlib.models.aidfusion import AID_RECIPES, train_aidfusion

    for strategy in ("final", "diils"):
        torch.manual_seed(0)
        m = create_model("aidfusion_tiny")
        tr = LazinessTracker()
        h = train_aidfusion(m, batches, recipe=AID_RECIPES["smoke"], device="cpu", epochs=4, callbacks=[tr],
                            progress=False, strategy=strategy)
        runs[strategy] = (m, tr.records, h.epochs)
