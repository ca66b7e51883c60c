"""DIILS (fusionlib.diils): PHO schedule values, pyramids, soft weights and std masks, L_int / L_ACF known
answers and finite gradients, adaptive level weights, the composite loss and its fit callback."""

from __future__ import annotations

import pytest
import torch

from fusionlib.diils import (
    DIILSLoss, PHOCallback, acf_loss, default_stage_length, intensity_soft_loss, level_weights, local_std,
    pho_schedule, pho_table, soft_weights, source_pyramid, std_masks,
)


def test_stage_length():
    assert default_stage_length(100, 4) == 20
    assert default_stage_length(5, 4) == 1
    with pytest.raises(ValueError):
        default_stage_length(0, 4)


def test_pho_schedule_cumulative_paper_budget():
    # 100 epochs, L = 4, T = 20: level 4 alone, then 3, 2, 1 join; "Others" (80-99) all levels
    tab = pho_table(100, 20, 4)
    assert tab.shape == (100, 4)
    assert tab[0].tolist() == [False, False, False, True]
    assert tab[19].tolist() == [False, False, False, True]
    assert tab[20].tolist() == [False, False, True, True]
    assert tab[45].tolist() == [False, True, True, True]
    assert tab[60].tolist() == [True, True, True, True]
    assert tab[99].tolist() == [True, True, True, True]
    assert tab.sum(1).tolist() == [1] * 20 + [2] * 20 + [3] * 20 + [4] * 40


def test_pho_schedule_single_and_others():
    assert [pho_schedule(e, 2, 3, mode="single") for e in (0, 2, 4, 6)] == [
        (False, False, True), (False, True, False), (True, False, False), (True, True, True)]
    assert pho_schedule(6, 2, 3, mode="single", others="final") == (True, False, False)
    with pytest.raises(ValueError, match="mode"):
        pho_schedule(0, 1, 3, mode="zigzag")
    with pytest.raises(ValueError, match="others"):
        pho_schedule(0, 1, 3, others="none")


def test_source_pyramid_is_max_pooled():
    x = torch.zeros(1, 1, 4, 4)
    x[..., 1, 2] = 0.9                                     # a single hot pixel survives max pooling
    p = source_pyramid(x, 3)
    assert [tuple(t.shape[-2:]) for t in p] == [(4, 4), (2, 2), (1, 1)]
    assert float(p[1][0, 0, 0, 1]) == pytest.approx(0.9) and float(p[2].max()) == pytest.approx(0.9)


def test_soft_weights_known_values():
    ir, vi = torch.full((1, 1, 1, 1), 1.0), torch.zeros(1, 1, 1, 1)
    w_ir, w_vi = soft_weights(ir, vi, delta=1.0)
    e = torch.e
    assert float(w_ir) == pytest.approx(e / (e + 1))
    assert float(w_ir + w_vi) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        soft_weights(ir, vi, delta=0)


def test_local_std_and_masks():
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert float(local_std(flat).max()) < 1e-5
    checker = (torch.arange(64).view(1, 1, 8, 8) % 2).float()
    m_ir, m_vi = std_masks(checker, flat)
    assert bool((m_ir == 1).all()) and bool((m_vi == 0).all())
    m_ir2, _ = std_masks(flat, checker)
    assert bool((m_ir2 == 0).all())


def test_intensity_soft_loss_known_answer():
    ir, vi = torch.full((1, 1, 8, 8), 0.8), torch.full((1, 1, 8, 8), 0.2)
    fused = torch.full((1, 1, 8, 8), 0.5)
    # flat sources: equal std -> M_ir = 1 (>=); w_ir = sigmoid(0.6); W_ir = 0.5 w_ir + 0.5
    w_ir = torch.sigmoid(torch.tensor(0.6))
    big_w = 0.5 * w_ir + 0.5
    expect = big_w * 0.3 + (1 - big_w) * 0.3
    assert float(intensity_soft_loss(fused, ir, vi)) == pytest.approx(float(expect), rel=1e-5)
    # fused equal to ir: only the vi share remains
    got = float(intensity_soft_loss(ir, ir, vi))
    assert got == pytest.approx(float((1 - big_w) * 0.6), rel=1e-5)
    assert intensity_soft_loss(fused, ir, vi, reduction="none").shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="mask_mix"):
        intensity_soft_loss(fused, ir, vi, mask_mix=2.0)


def test_acf_loss_weights_and_finite_grad():
    torch.manual_seed(0)
    ir, vi = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    fused = torch.rand(2, 1, 12, 12, requires_grad=True)
    total, terms = acf_loss(fused, ir, vi, alpha=2.0, beta=3.0, gamma=4.0)
    expect = 2 * terms["corr"] + 3 * terms["grad"] + 4 * terms["int"]
    torch.testing.assert_close(total, expect)
    total.backward()
    assert fused.grad is not None and torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0


def test_acf_gradcheck_float64():
    torch.manual_seed(0)
    ir, vi = torch.rand(1, 1, 6, 6, dtype=torch.float64), torch.rand(1, 1, 6, 6, dtype=torch.float64)
    fused = (0.2 + 0.6 * torch.rand(1, 1, 6, 6, dtype=torch.float64)).requires_grad_()
    # the L1 kinks are measure-zero for random inputs; gradcheck the smooth corr + int parts
    assert torch.autograd.gradcheck(lambda f: acf_loss(f, ir, vi, beta=0.0)[0], (fused,), eps=1e-6, atol=1e-5)


def test_level_weights():
    losses = torch.tensor([1.0, 3.0, 4.0])
    uniform = level_weights(losses, [True, True, True], mode="uniform")
    torch.testing.assert_close(uniform, torch.full((3,), 1 / 3))
    w = level_weights(losses, [False, True, True], mode="proportional")
    torch.testing.assert_close(w, torch.tensor([0.0, 3 / 7, 4 / 7]))
    w = level_weights(losses, [True, True, True], reference=torch.tensor([2.0, 3.0, 8.0]))
    torch.testing.assert_close(w, torch.tensor([0.25, 0.5, 0.25]))
    w = level_weights(losses, [True, False, True], mode="softmax")
    assert float(w[1]) == 0.0 and float(w.sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no active"):
        level_weights(losses, [False, False, False])
    with pytest.raises(ValueError, match="reference"):
        level_weights(losses, [True, True, True], mode="relative")


def _outputs(levels=3, size=16, requires_grad=True):
    preds = [torch.rand(1, 1, size // 2**i, size // 2**i, requires_grad=requires_grad) for i in range(levels)]
    return {"levels": preds, "fused": preds[0], "recon_ir": torch.rand(1, 1, size, size),
            "recon_vi": torch.rand(1, 1, size, size)}


def test_diils_loss_follows_schedule():
    torch.manual_seed(0)
    ir, vi = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    loss = DIILSLoss(levels=3, stage_length=1, lambda1=0.0)
    out = _outputs()
    total, terms = loss(out, ir, vi)                       # epoch 0: only the coarsest level
    total.backward()
    assert [p.grad is None for p in out["levels"]] == [True, True, False]
    assert float(terms["n_active"]) == 1 and float(terms["eta_l3"]) == pytest.approx(1.0)
    torch.testing.assert_close(total, terms["acf_l3"])
    loss.set_epoch(5)                                      # "Others": all levels
    out = _outputs()
    total, terms = loss(out, ir, vi)
    total.backward()
    assert all(p.grad is not None for p in out["levels"])
    assert sum(float(terms[f"eta_l{i}"]) for i in (1, 2, 3)) == pytest.approx(1.0)


def test_diils_loss_final_strategy_and_reconstruction():
    torch.manual_seed(0)
    ir, vi = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    base = DIILSLoss(levels=3, strategy="final", lambda1=0.5, lambda2=2.0)
    base.set_epoch(0)
    out = _outputs()
    out["recon_ir"], out["recon_vi"] = ir.clone(), vi.clone()   # perfect reconstruction -> rec = 0
    total, terms = base(out, ir, vi)
    assert float(terms["rec"]) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(total, 2.0 * terms["acf_l1"])
    with pytest.raises(ValueError, match="levels"):
        base({"levels": out["levels"][:2]}, ir, vi)
    with pytest.raises(ValueError, match="strategy"):
        DIILSLoss(levels=3, strategy="both")


def test_pho_callback_tracks_fit_epochs():
    loss = DIILSLoss(levels=2, stage_length=1)
    cb = PHOCallback(loss)

    class S:
        epoch = 0

    cb.on_train_start(S)
    assert loss.epoch == 0 and loss.active() == (False, True)
    S.epoch = 1
    cb.on_epoch_end(S)
    assert loss.epoch == 1 and loss.active() == (True, True)
    assert cb.records == [{"epoch": 1, "active": [False, True]}]   # what epoch 1 trained with
    state = cb.state_dict()
    cb2 = PHOCallback(DIILSLoss(levels=2, stage_length=1))
    cb2.load_state_dict(state)
    assert cb2.records == cb.records
