"""RPFNet's losses (fusionlib.losses.rpfnet): known answers, code-vs-paper switches, finite gradients."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch

from fusionlib.losses.rpfnet import (
    FrequencyContrastiveLoss,
    RPFNetLoss,
    SaliencyStructureLoss,
    frequency_contrastive_loss,
    rpfnet_mask,
    rpfnet_ssim_term,
    saliency_structure_loss,
    sobel_magnitude,
    spectral_l1,
)


def _pair(seed: int = 0, b: int = 2, s: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, s, s, generator=g, dtype=torch.float64), torch.rand(b, 1, s, s, generator=g,
                                                                                dtype=torch.float64)


def _np_mask(ir: np.ndarray, vi: np.ndarray, form: str) -> np.ndarray:
    def zsig(x):
        return 1 / (1 + np.exp(-(x - x.mean()) / x.std(ddof=1)))

    sm, si = zsig(ir - vi), zsig(ir)
    sen = (si * (1 + sm) + sm * (1 + si)) / 2 if form == "code" else (si * (1 - sm) + sm * (1 - si)) / 2
    return (sen > sen.mean() + sen.std(ddof=1)).astype(np.float64)


# --- mask ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["code", "paper"])
def test_mask_matches_numpy_formula(form):
    ir, vi = _pair(1)
    w = rpfnet_mask(ir, vi, form=form)
    np.testing.assert_array_equal(w.numpy(), _np_mask(ir.numpy(), vi.numpy(), form))
    assert set(torch.unique(w).tolist()) <= {0.0, 1.0}


def test_mask_form_switch_changes_the_mask_and_batch_statistics_are_global():
    ir, vi = _pair(2)
    assert not torch.equal(rpfnet_mask(ir, vi, form="code"), rpfnet_mask(ir, vi, form="paper"))
    # statistics over the whole batch tensor: image 0 alone gives a different mask than inside the batch
    ir2 = ir.clone()
    ir2[1] = ir2[1] * 0.2
    assert not torch.equal(rpfnet_mask(ir2, vi)[0], rpfnet_mask(ir2[:1], vi[:1])[0])


def test_mask_marks_a_hot_target():
    ir = torch.full((1, 1, 12, 12), 0.2)
    ir[..., 4:7, 4:7] = 0.9
    vi = torch.full_like(ir, 0.5)
    w, s_en = rpfnet_mask(ir, vi, return_saliency=True)
    assert int(w.sum()) == 9 and float(w[..., 4:7, 4:7].min()) == 1.0
    assert s_en.shape == ir.shape


# --- L_c --------------------------------------------------------------------------------------------------
def test_spectral_l1_is_mean_complex_modulus():
    a, b = _pair(3)
    ref = np.abs(np.fft.fft2(a.numpy()) - np.fft.fft2(b.numpy())).mean()
    assert float(spectral_l1(a, b)) == pytest.approx(ref, rel=1e-12)
    # the same as F.l1_loss on complex spectra, as the code calls it
    assert float(spectral_l1(a, b)) == pytest.approx(
        float(torch.nn.functional.l1_loss(torch.fft.fft2(a), torch.fft.fft2(b))), rel=1e-12)


@pytest.mark.parametrize("negatives", ["code", "paper"])
def test_fcr_matches_numpy(negatives):
    ir, vi = _pair(4)
    f = (ir + vi) / 2 + 0.05
    w = rpfnet_mask(ir, vi)
    F_, I, V, W = f.numpy(), ir.numpy(), vi.numpy(), w.numpy()
    Wb = 1 - W

    def d(x, y):
        return np.abs(np.fft.fft2(x) - np.fft.fft2(y)).mean()

    pos = d(F_ * W, I * W) + d(F_ * Wb, V * Wb)
    neg = d(F_ * W, I * Wb) + d(F_ * W, V * W)
    if negatives == "code":
        neg += d(F_ * Wb, I * Wb) + d(F_ * Wb, V * W)
        eps = 1e-10
    else:
        neg += d(F_ * Wb, I * W) + d(F_ * Wb, V * Wb)
        eps = 1e-9
    got = frequency_contrastive_loss(f, ir, vi, w, negatives=negatives)
    assert float(got) == pytest.approx(pos / (neg + eps), rel=1e-10)


def test_fcr_zero_for_the_masked_composite_and_switch_changes_value():
    ir, vi = _pair(5)
    w = rpfnet_mask(ir, vi)
    assert float(frequency_contrastive_loss(ir * w + vi * (1 - w), ir, vi, w)) == 0.0
    f = (ir + vi) / 2
    code = frequency_contrastive_loss(f, ir, vi, negatives="code")
    paper = frequency_contrastive_loss(f, ir, vi, negatives="paper")
    assert float(code) > 0 and float(paper) > 0 and abs(float(code) - float(paper)) > 1e-3
    mod = FrequencyContrastiveLoss(negatives="paper")(f, ir, vi)
    assert float(mod) == pytest.approx(float(paper))
    _, parts = frequency_contrastive_loss(f, ir, vi, return_parts=True)
    assert float(parts["positive"] / (parts["negative"] + 1e-10)) == pytest.approx(float(code))


def test_fcr_prefers_the_composite_over_an_average():
    ir, vi = _pair(6)
    w = rpfnet_mask(ir, vi)
    composite = ir * w + vi * (1 - w)
    assert float(frequency_contrastive_loss(composite + 0.01, ir, vi, w)) < float(
        frequency_contrastive_loss((ir + vi) / 2, ir, vi, w))


# --- SSIM term ---------------------------------------------------------------------------------------------
def test_ssim_term_is_kornia_ssimloss3_summed():
    ir, vi = (t.float() for t in _pair(7))
    f = (ir + vi) / 2
    crit = kornia.losses.SSIMLoss(3)
    ref = crit(f, vi) + crit(f, ir)
    torch.testing.assert_close(rpfnet_ssim_term(f, ir, vi), ref)
    assert float(rpfnet_ssim_term(ir, ir, ir)) < 1e-6
    assert 0 < float(rpfnet_ssim_term(1 - ir, ir, ir)) <= 2


# --- L_SS ---------------------------------------------------------------------------------------------------
# The released train.py (SaliencySelfsupervisedLoss), written out by hand in NumPy: integer Sobel kernels,
# F.conv2d(padding=1) = zero padding, sqrt(gx² + gy² + 1e-6), maxima + 1e-6, MSE, batch-global masks.
_KX = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
_KY = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)


def _np_released_grad(x: np.ndarray) -> np.ndarray:
    """(B, 1, H, W) -> (B, 1, H, W): cross-correlation with the kernels over a zero-padded copy."""
    b, _, h, w = x.shape
    xp = np.zeros((b, 1, h + 2, w + 2))
    xp[:, :, 1:-1, 1:-1] = x
    gx, gy = np.zeros_like(x), np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            win = xp[:, :, i:i + 3, j:j + 3]
            gx[:, :, i, j] = (win * _KX).sum(axis=(-2, -1))
            gy[:, :, i, j] = (win * _KY).sum(axis=(-2, -1))
    return np.sqrt(gx ** 2 + gy ** 2 + 1e-6)


def _np_released_lss(m: np.ndarray, ir: np.ndarray, vi: np.ndarray, lam: float = 0.3) -> dict[str, float]:
    gm, gi, gv = _np_released_grad(m), _np_released_grad(ir), _np_released_grad(vi)
    structure = ((gm / (gm.max() + 1e-6) - gi / (gi.max() + 1e-6)) ** 2).mean()
    target = (m * (ir > ir.mean() + ir.std(ddof=1))).mean()
    texture = (m * (gv > gv.mean())).mean()
    return {"loss": structure - target - lam * texture, "structure": structure, "target": target,
            "texture": texture}


def test_released_sobel_by_hand_on_a_tiny_image_with_its_border():
    x = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], dtype=torch.float64).view(1, 1, 2, 3)
    g = sobel_magnitude(x)                                      # sobel="released" is the default
    # top-left pixel; zero padding makes its 3x3 window [[0, 0, 0], [0, 0, 1], [0, 3, 4]]:
    # gx = 2·0 − 2·1 + 1·0 − 1·4 = −6, gy = (top row, all padding) 0 − (1·0 + 2·3 + 1·4) = −10
    assert float(g[0, 0, 0, 0]) == pytest.approx(np.sqrt(36 + 100 + 1e-6), rel=1e-12)
    # top-middle pixel, window [[0, 0, 0], [0, 1, 2], [3, 4, 5]]: gx = 2·(0 − 2) + (3 − 5) = −6,
    # gy = 0 − (3 + 2·4 + 5) = −16
    assert float(g[0, 0, 0, 1]) == pytest.approx(np.sqrt(36 + 256 + 1e-6), rel=1e-12)
    np.testing.assert_allclose(g.numpy(), _np_released_grad(x.numpy()), rtol=1e-12)
    # inside a flat image sqrt(eps), on its border a step edge: 4c on the edges, 3√2 c in the corners
    flat = sobel_magnitude(torch.full((1, 1, 5, 6), 0.5, dtype=torch.float64))
    assert float(flat[0, 0, 2, 3]) == pytest.approx(1e-3, rel=1e-9)
    assert float(flat[0, 0, 0, 3]) == pytest.approx(2.0, rel=1e-6)
    assert float(flat[0, 0, 0, 0]) == pytest.approx(1.5 * np.sqrt(2), rel=1e-6)
    # the kornia switch: ÷8 and replicate padding, so a flat image is sqrt(eps) everywhere, border included
    torch.testing.assert_close(sobel_magnitude(torch.ones(1, 1, 6, 6, dtype=torch.float64), sobel="kornia"),
                               torch.full((1, 1, 6, 6), 1e-3, dtype=torch.float64))


def test_released_sobel_is_per_channel():
    x = torch.rand(2, 3, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = sobel_magnitude(x)
    for c in range(3):
        np.testing.assert_allclose(g[:, c:c + 1].numpy(), _np_released_grad(x[:, c:c + 1].numpy()), rtol=1e-12)


@pytest.mark.parametrize("seed", [13, 14])
def test_lss_matches_the_released_formula_by_hand(seed):
    g = torch.Generator().manual_seed(seed)
    ir, vi = torch.rand(2, 1, 5, 6, generator=g, dtype=torch.float64), torch.rand(2, 1, 5, 6, generator=g,
                                                                                   dtype=torch.float64)
    aux = torch.sigmoid(torch.randn(2, 1, 5, 6, generator=g, dtype=torch.float64))
    loss, parts = saliency_structure_loss(aux, ir, vi, return_parts=True)
    ref = _np_released_lss(aux.numpy(), ir.numpy(), vi.numpy())
    assert float(loss) == pytest.approx(ref["loss"], rel=1e-12)
    for k in ("structure", "target", "texture"):
        assert float(parts[k]) == pytest.approx(ref[k], rel=1e-12)
    assert float(SaliencyStructureLoss()(aux, ir, vi)) == pytest.approx(ref["loss"], rel=1e-12)


def test_lss_flat_aux_is_border_dominated_under_the_released_operator():
    """A near-flat M' (an untrained sigmoid head): released ∇M'/max is ≈ 1 on the border, ≈ 0 inside;
    under the kornia switch it is spread over the whole image, and the two gradients w.r.t. M' disagree."""
    g = torch.Generator().manual_seed(15)
    ir, vi = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64), torch.rand(2, 1, 16, 16, generator=g,
                                                                                     dtype=torch.float64)
    aux = (0.5 + 0.01 * torch.randn(2, 1, 16, 16, generator=g, dtype=torch.float64)).requires_grad_(True)
    gm = sobel_magnitude(aux.detach())
    norm = gm / (gm.max() + 1e-6)
    inner = norm[..., 1:-1, 1:-1]
    assert float(norm[..., 0, :].min()) > 0.6 and float(inner.max()) < 0.1
    grads = {}
    for form in ("released", "kornia"):
        aux.grad = None
        saliency_structure_loss(aux, ir, vi, sobel=form).backward()
        grads[form] = aux.grad.flatten().clone()
    cos = float(torch.nn.functional.cosine_similarity(grads["released"], grads["kornia"], dim=0))
    assert abs(cos) < 0.5


def test_lss_kornia_switch_known_answers():
    ir, vi = _pair(8)
    loss, parts = saliency_structure_loss(ir, ir, vi, sobel="kornia", return_parts=True)
    assert float(parts["structure"]) == 0.0
    tmask = (ir > ir.mean() + ir.std()).double()
    g = kornia.filters.sobel(vi, normalized=True, eps=1e-6)
    xmask = (g > g.mean()).double()
    expected = -(ir * tmask).mean() - 0.3 * (ir * xmask).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-12)
    # a flat M' has ∇M'/max = 1 everywhere under kornia's replicate padding
    aux = torch.full_like(ir, 0.4)
    _, parts = saliency_structure_loss(aux, ir, vi, sobel="kornia", return_parts=True)
    gi = kornia.filters.sobel(ir, normalized=True, eps=1e-6)
    assert float(parts["structure"]) == pytest.approx(float(((1.0 - gi / gi.max()) ** 2).mean()), rel=1e-12)
    # and the released default differs from it on the same input
    _, rel = saliency_structure_loss(aux, ir, vi, return_parts=True)
    assert abs(float(rel["structure"]) - float(parts["structure"])) > 1e-3


def test_lss_constant_aux_target_term_and_lambda():
    ir, vi = _pair(9)
    c = 0.4
    aux = torch.full_like(ir, c)
    loss, parts = saliency_structure_loss(aux, ir, vi, return_parts=True)
    tfrac = float((ir > ir.mean() + ir.std()).double().mean())
    assert float(parts["target"]) == pytest.approx(c * tfrac, rel=1e-12)
    assert float(SaliencyStructureLoss(lam=0.0)(aux, ir, vi)) == pytest.approx(
        float(parts["structure"] - parts["target"]), rel=1e-12)


# --- composite -------------------------------------------------------------------------------------------
def test_composite_weights_and_terms():
    ir, vi = (t.float() for t in _pair(10))
    f = (ir + vi) / 2
    aux = torch.sigmoid(ir - 0.5)
    total, terms = RPFNetLoss()(f, ir, vi, aux=aux)
    expected = terms["fcr"] + 5 * terms["ssim"] + terms["ss"]
    assert float(total) == pytest.approx(float(expected), rel=1e-5)
    no_aux, t2 = RPFNetLoss()(f, ir, vi)
    assert float(t2["ss"]) == 0.0
    assert float(no_aux) == pytest.approx(float(terms["fcr"] + 5 * terms["ssim"]), rel=1e-5)
    paper, _ = RPFNetLoss(negatives="paper")(f, ir, vi, aux=aux)
    assert abs(float(paper) - float(total)) > 1e-4
    assert float(terms["ss"]) == pytest.approx(float(saliency_structure_loss(aux, ir, vi)), rel=1e-6)
    _, t_k = RPFNetLoss(sobel="kornia")(f, ir, vi, aux=aux)
    assert float(t_k["ss"]) == pytest.approx(float(saliency_structure_loss(aux, ir, vi, sobel="kornia")), rel=1e-6)
    assert abs(float(t_k["ss"]) - float(terms["ss"])) > 1e-4
    assert 0 < float(terms["w_area"]) < 0.5


def test_gradients_are_finite_through_a_tiny_rpfnet():
    from fusionlib.models.rpfnet import RPFNet, RPFNetAux

    torch.manual_seed(0)
    model, aux_dec = RPFNet(channels=4, num_stages=1), RPFNetAux(4)
    ir, vi = (t.float() for t in _pair(11, b=2, s=24))
    fused, f_r = model.forward_features(ir, vi)
    total, _ = RPFNetLoss()(fused, ir, vi, aux=aux_dec(f_r))
    total.backward()
    for net in (model, aux_dec):
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in (p.grad for p in aux_dec.parameters()))


def test_bad_arguments_raise():
    ir, vi = _pair(12)
    with pytest.raises(ValueError, match="form"):
        rpfnet_mask(ir, vi, form="other")
    with pytest.raises(ValueError, match="negatives"):
        frequency_contrastive_loss(ir, ir, vi, negatives="x")
    with pytest.raises(ValueError, match="shape"):
        saliency_structure_loss(ir[:, :, :8], ir, vi)
    with pytest.raises(ValueError, match="sobel"):
        saliency_structure_loss(ir, ir, vi, sobel="scharr")
    with pytest.raises(ValueError, match="sobel"):
        RPFNetLoss(sobel="x")


# --- colour: the released studio-range restoration (fusionlib.ops.studio) --------------------------------
def test_released_colour_reproduces_the_authors_png(shared, repo):
    from PIL import Image

    from fusionlib.ops.studio import released_colour

    gold = np.asarray(Image.open(shared / "golden/rpfnet/full/msrs_00004N_fused_colour_testpy.png")).astype(np.int64)
    fy = torch.from_numpy(np.load(shared / "golden/rpfnet/full/msrs_00004N_out_sigmoid_testpy_trainBN.npy"))
    vi = np.asarray(Image.open(repo / "data/msrs_mini/test/vi/00004N.png").convert("RGB"))
    rgb = torch.from_numpy(vi.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    ours = (released_colour(fy.double(), rgb.double())[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int64)
    diff = np.abs(ours - gold)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


def test_studio_vs_full_range_on_grey():
    from fusionlib.data import merge_luma
    from fusionlib.ops.studio import released_colour

    y = torch.linspace(0, 1, 256).view(1, 1, 1, 256)
    grey = y.expand(1, 3, 1, 256)
    full = merge_luma(y, torch.full((1, 2, 1, 256), 0.5))
    studio = released_colour(y, grey, quantize=False)
    torch.testing.assert_close(full[:, 0], y[:, 0])                        # full range: identity on grey
    mid = (y > 30 / 255) & (y < 220 / 255)
    torch.testing.assert_close(studio[:, 0][mid[:, 0]], (1.164 * (255 * y[:, 0] - 16) / 255)[mid[:, 0]])
    assert float(studio[..., :10].max()) == 0.0 and float(studio[..., -5:].min()) == 1.0  # clipped ends
