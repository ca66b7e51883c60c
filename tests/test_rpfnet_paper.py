"""RPFNet held beside its paper: what FDFM's spectral 1x1 convolution reaches, and the training budget."""

from __future__ import annotations

import pytest
import torch

from fusionlib.models.rpfnet import (FDFM, PAPER_TRAINING, RPFNET_RECIPES, fdfm_jacobian, jacobian_spread)


def _complex_linear_fdfm(c: int, a: torch.Tensor) -> FDFM:
    """An FDFM whose spectral conv multiplies each (re, im) pair by the real matrix ``a`` (no re/im mixing)."""
    f = FDFM(c)
    w = torch.zeros(2 * c, 2 * c)
    w[0::2, 0::2] = a
    w[1::2, 1::2] = a
    f.spectral_conv.weight.data.copy_(w[:, :, None, None])
    return f


def test_linear_spectral_path_with_complex_linear_weights_is_a_1x1_spatial_conv():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g)
    f = _complex_linear_fdfm(4, a)
    for h, w in ((12, 9), (10, 10)):
        x = torch.randn(2, 4, h, w, generator=g)
        torch.testing.assert_close(f.spectral(x, linear_only=True), torch.einsum("cd,bdhw->bchw", a, x),
                                   atol=1e-5, rtol=1e-5)


def test_linear_spectral_path_stays_on_two_rows_and_bn_relu_make_it_global():
    torch.manual_seed(1)
    f = FDFM(4).train()
    x = torch.randn(1, 4, 32, 32)
    p = (10, 12)
    lin = jacobian_spread(fdfm_jacobian(f, x, p, path="linear"), p)                      # impulse response
    # the linear part: everything on p's row and on the row of -p (Hilbert parts of the half spectrum)
    assert lin["rows"] == pytest.approx(1.0, abs=1e-6)
    assert lin["support"] < 0.05
    full = jacobian_spread(fdfm_jacobian(f, x, p, path="full"), p)        # BN with batch statistics + ReLU
    assert full["support"] > 0.9 and full["near"] < 0.3 and full["rows"] < 0.5
    f.eval()                                                              # stored statistics: ReLU alone spreads it
    ev = jacobian_spread(fdfm_jacobian(f, x, p, path="full"), p)
    assert ev["support"] > 0.9 and ev["near"] < 0.3
    # the linear path really is linear (the analysis rests on it)
    y1, y2 = f.spectral(x, linear_only=True), f.spectral(2 * x, linear_only=True)
    torch.testing.assert_close(y2, 2 * y1, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="path"):
        fdfm_jacobian(f, x, p, path="bn")


def test_impulse_response_is_the_difference_of_outputs_for_the_linear_path_and_matches_dependence_support():
    torch.manual_seed(2)
    f = FDFM(3).double()
    x = torch.randn(1, 3, 12, 10, dtype=torch.float64)
    p = (4, 7)
    delta = torch.zeros_like(x)
    delta[0, :, p[0], p[1]] = 1.0
    with torch.no_grad():
        ref = (f.spectral(x + delta, linear_only=True) - f.spectral(x, linear_only=True))[0].abs().sum(0)
    torch.testing.assert_close(fdfm_jacobian(f, x, p, kind="impulse"), ref)
    # the receptive field of p and the impulse response at p cover the same two rows
    for kind in ("impulse", "dependence"):
        assert jacobian_spread(fdfm_jacobian(f, x, p, kind=kind), p)["rows"] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="kind"):
        fdfm_jacobian(f, x, p, kind="column")


def test_jacobian_spread_of_a_known_map():
    j = torch.zeros(8, 8)
    j[3, 4], j[3, 0], j[5, 4], j[0, 0] = 1.0, 1.0, 1.0, 1.0      # p, its row, the row of -p (5 = -3 mod 8), far
    s = jacobian_spread(j, (3, 4), radius=1)
    assert s == pytest.approx({"near": 0.25, "at_p": 0.25, "rows": 0.75, "support": 4 / 64})


def test_paper_budget_against_the_paper_profile():
    assert PAPER_TRAINING["steps_per_epoch"] == 212 and PAPER_TRAINING["steps"] == 21_200
    r = RPFNET_RECIPES["paper"]
    assert (r.batch_size, r.crop_size, r.epochs) == (PAPER_TRAINING["batch"], PAPER_TRAINING["crop"],
                                                     PAPER_TRAINING["epochs_code"])
    # the bundled stand-in: 200 RoadScene pairs, one crop each per epoch, drop_last
    steps = (200 // r.batch_size) * r.epochs
    assert steps == 1_200 and steps < PAPER_TRAINING["steps"]
    assert "21,200" in r.notes and "1,200" in r.notes
