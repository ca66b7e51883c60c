"""RPFNet's training losses (ACM MM 2025; authors' ``loss.py`` / ``train.py`` @ 43e555a).

``total = L_c + 5 * L_ssim + L_SS``, as the released ``train.py`` sums them:

=====================  ==============================================================================
term                    definition (code, our default; the paper's form is a switch where they differ)
=====================  ==============================================================================
adaptive mask w         S_M = σ(z(IR − VI)), S_IR = σ(z(IR)), z(x) = (x − mean x) / std x over the batch;
                        S_en = (S_IR (1 + S_M) + S_M (1 + S_IR)) / 2   (paper: 1 − S_M, 1 − S_IR);
                        w = [S_en > mean S_en + std S_en]              (:func:`rpfnet_mask`)
L_c (FCR)               ratio of spectral L1 distances, positives / negatives  (:func:`frequency_contrastive_loss`)
L_ssim                  (1 − SSIM_3x3(F, VI)) / 2 + (1 − SSIM_3x3(F, IR)) / 2, weight λ2 = 5 (kornia)
L_SS                    MSE(∇M'/(max ∇M' + 1e-6), ∇IR/(max ∇IR + 1e-6)) − mean(M' [IR > μ + σ])
                        − 0.3 mean(M' [∇VI > mean ∇VI]); ∇ = integer Sobel, zero padding
                        (code; kornia's normalised, replicate-padded Sobel is the switch
                        ``sobel="kornia"``)                             (:func:`saliency_structure_loss`)
=====================  ==============================================================================

All images are ``(B, 1, H, W)`` in [0, 1]; ``vi`` is the visible luma; M' is the output of the auxiliary
decoder (:class:`fusionlib.models.rpfnet.RPFNetAux`) on the last residual feature. Statistics (means,
standard deviations, maxima) are taken over the **whole batch tensor**, as the code does (not per image),
and standard deviations are PyTorch's default (unbiased). Facts: ``notebooks/released_code.md`` §RPFNet.
"""

from __future__ import annotations

from typing import Literal

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from fusionlib.losses._common import check_images
from fusionlib.losses.ssim import kornia_ssim_loss_term

__all__ = [
    "rpfnet_mask",
    "spectral_l1",
    "frequency_contrastive_loss",
    "rpfnet_ssim_term",
    "sobel_magnitude",
    "SOBEL_X",
    "SOBEL_Y",
    "saliency_structure_loss",
    "FrequencyContrastiveLoss",
    "SaliencyStructureLoss",
    "RPFNetLoss",
]

Variant = Literal["code", "paper"]
SobelForm = Literal["released", "kornia"]


def _variant(where: str, name: str, value: str) -> None:
    if value not in ("code", "paper"):
        raise ValueError(f"{where}: {name} must be 'code' or 'paper', got {value!r}")


def _zsig(x: torch.Tensor) -> torch.Tensor:
    """``sigmoid((x - mean) / std)`` with the statistics of the whole tensor (unbiased std)."""
    return torch.sigmoid((x - x.mean()) / x.std())


def rpfnet_mask(ir: torch.Tensor, vi: torch.Tensor, *, form: Variant = "code",
                return_saliency: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""The adaptive mask w of L_c (paper Eq. 9, the code's ``M_v``): where the infrared image leads.

    .. math::

        S_M = \sigma\Big(\frac{D - \mu_D}{\sigma_D}\Big),\ D = I_{ir} - I_{vi},\qquad
        S_{IR} = \sigma\Big(\frac{I_{ir} - \mu_{ir}}{\sigma_{ir}}\Big)

        S_{en} = \tfrac12\big(S_{IR}(1 + S_M) + S_M(1 + S_{IR})\big)\ \text{(code)},\qquad
        \tfrac12\big(S_{IR}(1 - S_M) + S_M(1 - S_{IR})\big)\ \text{(paper)}

        w = [S_{en} > \mu_{S_{en}} + \sigma_{S_{en}}]

    μ and σ (unbiased) over the whole batch tensor. The code's form is ``S_IR + S_M + 2 S_IR S_M`` over 2:
    large where *both* the residual and the infrared intensity are high. The paper's form is an XOR-like
    ``(S_IR + S_M - 2 S_IR S_M) / 2``: large where exactly one of them is. w is a hard 0/1 mask (no
    gradient); its complement ``1 - w`` selects the visible image's share.

    Args:
        ir, vi: ``(B, 1, H, W)`` in [0, 1].
        form: ``"code"`` (released ``train.py``, default) or ``"paper"`` (Eq. 9's ``1 - S``).
        return_saliency: also return S_en.

    Returns:
        w ``(B, 1, H, W)`` float 0/1, or ``(w, S_en)``.

    Examples:
        >>> ir = torch.zeros(1, 1, 8, 8); ir[..., 2:4, 2:4] = 1.0
        >>> w = rpfnet_mask(ir, torch.full_like(ir, 0.3))
        >>> int(w.sum()), bool(w[0, 0, 2, 2] == 1)
        (4, True)
    """
    check_images("rpfnet_mask", ir=ir, vi=vi)
    _variant("rpfnet_mask", "form", form)
    s_m, s_ir = _zsig(ir - vi), _zsig(ir)
    if form == "code":
        s_en = (s_ir * (1 + s_m) + s_m * (1 + s_ir)) / 2
    else:
        s_en = (s_ir * (1 - s_m) + s_m * (1 - s_ir)) / 2
    w = (s_en > s_en.mean() + s_en.std()).to(ir.dtype)
    return (w, s_en) if return_saliency else w


def spectral_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""``F.l1_loss(fft2(a), fft2(b))``: the mean complex modulus ``mean |FFT(a) - FFT(b)|``.

    ``torch.fft.fft2`` over (H, W), unnormalised (``norm="backward"``), as the code calls it; for complex
    inputs ``F.l1_loss`` is the mean of the modulus of the difference.

    Examples:
        >>> a = torch.zeros(1, 1, 4, 4); b = a.clone(); b[..., 0, 0] = 1.0
        >>> float(spectral_l1(a, b))      # a delta has a flat spectrum of modulus 1
        1.0
    """
    return (torch.fft.fft2(a) - torch.fft.fft2(b)).abs().mean()


def frequency_contrastive_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor,
                               w: torch.Tensor | None = None, *, negatives: Variant = "code",
                               eps: float | None = None, return_parts: bool = False):
    r"""The frequency contrastive regularisation L_c (paper Eqs. 10-12, the code's ``FCR``).

    With ``d(x, y) =`` :func:`spectral_l1` ``(x, y)`` and ``w̄ = 1 - w``:

    .. math::

        L_c = \frac{d(Fw, I_{ir}w) + d(F\bar w, I_{vi}\bar w)}
                   {d(Fw, I_{ir}\bar w) + d(Fw, I_{vi}w) + N_3 + N_4 + \epsilon}

    Positives pull F towards the infrared image inside w and towards the visible image outside it. The
    negatives N_3, N_4 are ``d(Fw̄, I_ir w̄) + d(Fw̄, I_vi w)`` in the code (default, ε = 1e-10) and
    ``d(Fw̄, I_ir w) + d(Fw̄, I_vi w̄)`` in the paper (ε = 1e-9) — the paper's last negative is the same
    pair as the second positive.

    Args:
        fused, ir, vi: ``(B, 1, H, W)``.
        w: the mask (default :func:`rpfnet_mask` ``(ir, vi)``).
        negatives: ``"code"`` or ``"paper"``.
        eps: the denominator's ε (default 1e-10 for the code, 1e-9 for the paper).
        return_parts: also return ``{"positive": numerator, "negative": denominator}`` (detached).

    Examples:
        >>> ir, vi = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
        >>> w = rpfnet_mask(ir, vi)
        >>> perfect = ir * w + vi * (1 - w)
        >>> float(frequency_contrastive_loss(perfect, ir, vi, w))
        0.0
    """
    check_images("frequency_contrastive_loss", fused=fused, ir=ir, vi=vi)
    _variant("frequency_contrastive_loss", "negatives", negatives)
    if w is None:
        w = rpfnet_mask(ir, vi)
    else:
        check_images("frequency_contrastive_loss", fused=fused, w=w)
    wb = 1 - w
    fw, fwb = fused * w, fused * wb
    pos = spectral_l1(fw, ir * w) + spectral_l1(fwb, vi * wb)
    neg = spectral_l1(fw, ir * wb) + spectral_l1(fw, vi * w)
    if negatives == "code":
        neg = neg + spectral_l1(fwb, ir * wb) + spectral_l1(fwb, vi * w)
        eps = 1e-10 if eps is None else eps
    else:
        neg = neg + spectral_l1(fwb, ir * w) + spectral_l1(fwb, vi * wb)
        eps = 1e-9 if eps is None else eps
    loss = pos / (neg + eps)
    if return_parts:
        return loss, {"positive": pos.detach(), "negative": neg.detach()}
    return loss


def rpfnet_ssim_term(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, window: int = 3
                     ) -> torch.Tensor:
    r"""The SSIM term as ``train.py`` computes it: ``SSIMLoss(3)(F, VI) + SSIMLoss(3)(F, IR)``.

    Each part is kornia's ``mean(clamp((1 - SSIM_3x3) / 2, 0, 1))``
    (:func:`fusionlib.losses.kornia_ssim_loss_term`), so the term lies in [0, 2]; the total weights it by
    λ2 = 5, an effective ``2.5 (1 - SSIM)`` per source. The paper's Eq. 13 prints
    ``L_s = SSIM(F, IR) + SSIM(F, VIS_Y)`` (the sign of a similarity, not of a loss) and cites [16], whose
    SSIM uses an 11x11 Gaussian window; the code's window is 3x3.

    Examples:
        >>> x = torch.rand(1, 1, 8, 8)
        >>> float(rpfnet_ssim_term(x, x, x)) < 1e-6
        True
    """
    return kornia_ssim_loss_term(fused, vi, window=window) + kornia_ssim_loss_term(fused, ir, window=window)


#: The released ``train.py``'s Sobel kernels (``SaliencySelfsupervisedLoss``): integers, not divided by 8.
SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def _sobel_variant(where: str, value: str) -> None:
    if value not in ("released", "kornia"):
        raise ValueError(f"{where}: sobel must be 'released' or 'kornia', got {value!r}")


def sobel_magnitude(x: torch.Tensor, eps: float = 1e-6, *, sobel: SobelForm = "released") -> torch.Tensor:
    r"""The gradient magnitude ∇ of L_SS, ``sqrt(gx² + gy² + eps)``, per channel: ``(B, C, H, W) -> (B, C, H, W)``.

    - ``sobel="released"`` (default): what the released ``train.py`` computes: the integer Sobel kernels
      :data:`SOBEL_X`, :data:`SOBEL_Y` (not divided by 8) by ``F.conv2d(..., padding=1)``, i.e. **zero
      padding**, so the image border reads as a step down to 0.
    - ``sobel="kornia"``: ``kornia.filters.sobel(normalized=True)``: kernels divided by 8, **replicate**
      padding (this library's earlier reading; the paper only says "∇ denotes the Sobel operator", Eq. 6).

    Inside the image the two differ by the factor 8 only (up to the eps); on the one-pixel border they differ
    in kind: a flat image of value c has ``sqrt(eps)`` everywhere under ``"kornia"``, but under
    ``"released"`` ``4c`` along the edges and ``3√2·c`` in the corners (and ``sqrt(eps)`` inside).

    Examples:
        >>> x = torch.ones(1, 1, 5, 5)
        >>> round(float(sobel_magnitude(x, sobel="kornia").max()), 6)          # flat: sqrt(eps) everywhere
        0.001
        >>> g = sobel_magnitude(x)                                             # zero padding: the border is an edge
        >>> round(float(g[0, 0, 2, 2]), 6), round(float(g[0, 0, 0, 2]), 4), round(float(g[0, 0, 0, 0]), 4)
        (0.001, 4.0, 4.2426)
    """
    _sobel_variant("sobel_magnitude", sobel)
    if sobel == "kornia":
        return kornia.filters.sobel(x, normalized=True, eps=eps)
    b, c, h, w = x.shape
    k = x.new_tensor((SOBEL_X, SOBEL_Y)).unsqueeze(1)                        # (2, 1, 3, 3)
    g = F.conv2d(x.reshape(b * c, 1, h, w), k, padding=1)                   # (B*C, 2, H, W), zero padding
    return torch.sqrt(g[:, :1].pow(2) + g[:, 1:].pow(2) + eps).reshape(b, c, h, w)


def saliency_structure_loss(aux: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, lam: float = 0.3,
                            sobel: SobelForm = "released", return_parts: bool = False):
    r"""The self-supervised saliency-structure loss L_SS on the auxiliary decoder's map M' (paper Eqs. 5-7).

    As the released ``train.py`` computes it (``SaliencySelfsupervisedLoss``), ``sobel="released"``:

    .. math::

        L_{SS} = \mathrm{MSE}\Big(\frac{\nabla M'}{\max \nabla M' + 10^{-6}},
                                   \frac{\nabla I_{ir}}{\max\nabla I_{ir} + 10^{-6}}\Big)
                 - \mathrm{mean}\big(M' \cdot [I_{ir} > \mu_{ir} + \sigma_{ir}]\big)
                 - \lambda_1\,\mathrm{mean}\big(M' \cdot [\nabla I_{vi} > \mathrm{mean}\,\nabla I_{vi}]\big)

    ∇ = :func:`sobel_magnitude` (integer Sobel, zero padding, eps 1e-6 inside the root); maxima, μ, σ
    (unbiased) over the whole batch tensor; λ1 = 0.3. The paper (Eqs. 6-7) writes ``‖∇M' − ∇IR‖₂`` and
    ``‖·‖₂`` norms with no normalisation; the code uses the max-normalised MSE and means. The first term
    asks M' for the infrared image's structure, the second for brightness on hot targets (Eq. 7, L_reg),
    the third for brightness on visible texture (Eq. 6's λ1 term). The loss is negative when M' is bright
    on those regions; its minimum is not 0.

    ``sobel="kornia"`` is this library's earlier reading: kornia's normalised Sobel with replicate padding
    and plain ``/ max`` (no 1e-6). With zero padding the border of every crop is a step edge, so under
    ``"released"`` a near-flat M' (what an untrained sigmoid head gives) has its gradient maximum on the
    border and ``∇M'/max ≈ 0`` inside, whereas under ``"kornia"`` a flat M' has ``∇M'/max = 1`` everywhere.

    Args:
        aux: M' ``(B, 1, H, W)`` in (0, 1) (sigmoid output of the auxiliary decoder).
        ir, vi: ``(B, 1, H, W)`` in [0, 1].
        lam: λ1.
        sobel: ``"released"`` (default) or ``"kornia"``.
        return_parts: also return ``{"structure", "target", "texture"}`` (detached, unweighted).

    Examples:
        >>> ir, vi = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
        >>> float(saliency_structure_loss(ir, ir, vi)) < 0      # M' = IR: zero structure error
        True
    """
    check_images("saliency_structure_loss", aux=aux, ir=ir, vi=vi)
    _sobel_variant("saliency_structure_loss", sobel)
    g_m, g_ir, g_vi = (sobel_magnitude(t, sobel=sobel) for t in (aux, ir, vi))
    tiny = 1e-6 if sobel == "released" else 0.0
    structure = F.mse_loss(g_m / (g_m.max() + tiny), g_ir / (g_ir.max() + tiny))
    target_mask = (ir > ir.mean() + ir.std()).to(aux.dtype)
    texture_mask = (g_vi > g_vi.mean()).to(aux.dtype)
    target, texture = (aux * target_mask).mean(), (aux * texture_mask).mean()
    loss = structure - target - lam * texture
    if return_parts:
        return loss, {"structure": structure.detach(), "target": target.detach(), "texture": texture.detach()}
    return loss


class FrequencyContrastiveLoss(nn.Module):
    """Module form of :func:`frequency_contrastive_loss` (mask from :func:`rpfnet_mask`); ``forward(fused, ir, vi)``."""

    def __init__(self, *, negatives: Variant = "code", mask_form: Variant = "code", eps: float | None = None):
        super().__init__()
        _variant("FrequencyContrastiveLoss", "negatives", negatives)
        _variant("FrequencyContrastiveLoss", "mask_form", mask_form)
        self.negatives, self.mask_form, self.eps = negatives, mask_form, eps

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        w = rpfnet_mask(ir, vi, form=self.mask_form)
        return frequency_contrastive_loss(fused, ir, vi, w, negatives=self.negatives, eps=self.eps)


class SaliencyStructureLoss(nn.Module):
    """Module form of :func:`saliency_structure_loss`; ``forward(aux, ir, vi)``."""

    def __init__(self, *, lam: float = 0.3, sobel: SobelForm = "released") -> None:
        super().__init__()
        _sobel_variant("SaliencyStructureLoss", sobel)
        self.lam, self.sobel = lam, sobel

    def forward(self, aux: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return saliency_structure_loss(aux, ir, vi, lam=self.lam, sobel=self.sobel)


class RPFNetLoss(nn.Module):
    """RPFNet's total loss ``w_fcr·L_c + w_ssim·L_ssim + w_ss·L_SS`` (code: 1, 5, 1).

    ``forward(fused, ir, vi, aux=None) -> (total, terms)``; ``aux`` is M' from the auxiliary decoder
    (L_SS is left out, and reported as 0, when it is None). ``terms`` holds the unweighted, detached
    ``fcr``, ``ssim``, ``ss`` values and the mask's area fraction ``w_area``, for logging.

    Args:
        negatives: L_c's negative pairs, ``"code"`` (default) or ``"paper"``.
        mask_form: w's formula, ``"code"`` (default) or ``"paper"``.
        w_fcr, w_ssim, w_ss: weights (1, λ2 = 5, 1 in ``train.py``).
        lam: λ1 of L_SS (0.3).
        sobel: L_SS's gradient operator, ``"released"`` (default) or ``"kornia"`` (:func:`sobel_magnitude`).

    Examples:
        >>> ir, vi = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
        >>> total, terms = RPFNetLoss()((ir + vi) / 2, ir, vi, aux=ir)
        >>> sorted(terms)
        ['fcr', 'ss', 'ssim', 'w_area']
    """

    def __init__(self, *, negatives: Variant = "code", mask_form: Variant = "code", w_fcr: float = 1.0,
                 w_ssim: float = 5.0, w_ss: float = 1.0, lam: float = 0.3, sobel: SobelForm = "released") -> None:
        super().__init__()
        _variant("RPFNetLoss", "negatives", negatives)
        _variant("RPFNetLoss", "mask_form", mask_form)
        _sobel_variant("RPFNetLoss", sobel)
        self.negatives, self.mask_form, self.sobel = negatives, mask_form, sobel
        self.w_fcr, self.w_ssim, self.w_ss, self.lam = w_fcr, w_ssim, w_ss, lam

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, aux: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w = rpfnet_mask(ir, vi, form=self.mask_form)
        fcr = frequency_contrastive_loss(fused, ir, vi, w, negatives=self.negatives)
        ssim = rpfnet_ssim_term(fused, ir, vi)
        total = self.w_fcr * fcr + self.w_ssim * ssim
        if aux is not None:
            ss = saliency_structure_loss(aux, ir, vi, lam=self.lam, sobel=self.sobel)
            total = total + self.w_ss * ss
        else:
            ss = fused.new_zeros(())
        return total, {"fcr": fcr.detach(), "ssim": ssim.detach(), "ss": ss.detach(), "w_area": w.mean()}
