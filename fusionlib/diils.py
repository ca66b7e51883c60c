"""DIILS: AIDFusion's learning strategy against network laziness (AAAI'26, Method, Eqs. 1-7).

A training strategy for any multi-level fusion network that returns one prediction per level: progressive
hierarchical optimisation (PHO, Eq. 1) decides which levels are supervised at each epoch, and the adaptive
collaborative fusion loss (L_ACF, Eqs. 2-6) supervises each active level against max-pooled source pyramids
with adaptive level weights; Eq. 7 adds a reconstruction term. No code was released (``notebooks/released_code.md``
§AIDFusion), so the paper's printed equations are the defaults; where a printed form is ambiguous or unsafe the
docstring quotes it, says which reading we take and why, and keeps the other reading one argument away.

=================  ===========  ========================================================================
item               default      source
=================  ===========  ========================================================================
PHO (Eq. 1)        "paper"      T = all epochs; Fusion_1 alone while epoch <= T/2, then one more level
                                (Fusion_2, Fusion_3, ...) every T/10 epochs. ``order="coarse_first"``
                                is the suite's earlier schedule (not the paper's), kept for teaching
Eq. 1 row 1        "final"      printed "Fusion_l"; read as Fusion_1 (``first_half="all"``: every level)
L_corr (Eq. 3)     "paper"      1 / (r_IR + r_VI + ε), ε = 1e-6, with a tangent guard below s = 0.5
                                (``corr_guard``); ``corr_form="linear"``: 1 - (r_IR + r_VI)/2 (ours)
L_int (Eq. 5)      "paper"      Σ_p ω_soft(p) map (F(p) - S(p))² / HW, ω_soft = Sigmoid(-δ(IR - mean IR)),
                                image-level std masks; ``"paper_literal"``: mean(ω_soft)·map·MSE;
                                ``"l1_mix"``: the suite's earlier L1 form (ours)
δ (Eq. 5)          1            paper
ω_l (Eq. 6)        "paper"      ω_1 = 1 + L_1/ΣL, ω_l = L_l/ΣL, the sum over the *active* levels
                                (``eq6_sum="all"``: over all L as printed); detached (ours)
α, β, γ (Eq. 2)    1, 5, 10     not given: ours, so the three terms are of similar size (0.5-1.5) for a
                                freshly initialised network on MSRS crops (notebook 01, section 4)
λ1, λ2 (Eq. 7)     0.5, 1       not given: ours; L_rec = MSE + (1 - SSIM) per source (ours)
=================  ===========  ========================================================================

Levels are numbered from 1 (full resolution) to L (coarsest, 1/2^{L-1}); lists are 0-based (index l-1).
Epochs are 0-based here (row e is the paper's epoch e + 1); :class:`PHOCallback` translates ``fit``'s count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusionlib.losses import correlation_loss, gradient_max_loss, reconstruction_loss
from fusionlib.losses._common import check_images
from fusionlib.losses.correlation import pearson_correlation

__all__ = [
    "default_stage_length", "pho_active_count", "pho_schedule", "pho_table", "source_pyramid",
    "corr_loss_paper", "soft_weights_paper", "std_masks_paper", "intensity_loss_paper", "soft_weights",
    "local_std", "std_masks", "intensity_soft_loss", "acf_loss", "level_weights", "DIILSLoss", "PHOCallback",
]

PHO_ORDERS = ("paper", "coarse_first")
FIRST_HALF = ("final", "all")
PHO_MODES = ("cumulative", "single")
OTHERS = ("all", "final")
CORR_FORMS = ("paper", "linear")
INT_FORMS = ("paper", "paper_literal", "l1_mix")
LEVEL_WEIGHTINGS = ("paper", "relative", "proportional", "uniform", "softmax")
EQ6_SUMS = ("active", "all")
EPS_CORR = 1e-6          # Eq. 3's ε


# --- PHO (Eq. 1) ----------------------------------------------------------------------------------------
def pho_active_count(epoch: int, epochs: int, levels: int) -> int:
    r"""How many levels Eq. 1 supervises at the 0-based ``epoch`` of ``epochs`` (= T), with L = ``levels``.

    Printed (Eq. 1): "Fusion_l, 0 < epoch <= T/2; Fusion_1, Fusion_2, T/2 < epoch <= T/2 + T/10;
    Fusion_1, ..., Fusion_L, Others", and the text: "the first half of the learning period is normal. In the
    second half, for each additional T/10 epochs, one more supervisory signal is added". With p = epoch + 1
    (the paper counts from 1): 1 for p <= T/2, else ``min(L, 1 + ceil((p - T/2) / (T/10)))``, in exact
    integer arithmetic. When T/10 < 1 epoch several levels can join at once (the literal rule).

    Examples:
        >>> [pho_active_count(e, 100, 4) for e in (0, 49, 50, 59, 60, 69, 70, 99)]
        [1, 1, 2, 2, 3, 3, 4, 4]
        >>> [pho_active_count(e, 10, 4) for e in range(10)]
        [1, 1, 1, 1, 1, 2, 3, 4, 4, 4]
    """
    if epochs < 1 or levels < 1 or epoch < 0:
        raise ValueError(f"pho_active_count: need epoch >= 0, epochs >= 1, levels >= 1; got {epoch}, {epochs}, "
                         f"{levels}")
    k = 10 * (epoch + 1) - 5 * epochs            # 10 (p - T/2), an integer
    if k <= 0:
        return 1
    return min(levels, 1 + (k + epochs - 1) // epochs)   # 1 + ceil(k / T)


def default_stage_length(epochs: int, levels: int) -> int:
    """Stage length of the ``order="coarse_first"`` schedule: T = max(1, epochs // (L + 1)).

    Examples:
        >>> default_stage_length(100, 4), default_stage_length(5, 4), default_stage_length(2, 4)
        (20, 1, 1)
    """
    if epochs < 1 or levels < 1:
        raise ValueError(f"default_stage_length: epochs and levels must be >= 1, got {epochs}, {levels}")
    return max(1, epochs // (levels + 1))


def pho_schedule(epoch: int, epochs: int, levels: int, *, order: str = "paper", first_half: str = "final",
                 stage_length: int | None = None, mode: str = "cumulative", others: str = "all"
                 ) -> tuple[bool, ...]:
    """Which levels PHO supervises at the 0-based ``epoch`` of an ``epochs``-long run; index l-1 = Fusion_l.

    ``order="paper"`` (Eq. 1): Fusion_1 .. Fusion_n with n = :func:`pho_active_count`. Row 1 of Eq. 1
    prints "Fusion_l"; we read it as Fusion_1, the full-resolution output, because the text calls the first
    half "normal" training, row 2 starts with Fusion_1 and Eq. 6 gives Fusion_1 an extra +1.
    ``first_half="all"`` is the other reading (every level from the start).

    ``order="coarse_first"`` is the suite's earlier schedule, **not the paper's**: stages of ``stage_length``
    epochs (default ``epochs // (L + 1)``); stage s < L supervises levels >= L - s (``mode="cumulative"``) or
    only L - s (``"single"``); afterwards ``others`` = "all" levels or only the "final" Fusion_1.

    Examples:
        >>> [sum(pho_schedule(e, 100, 4)) for e in (49, 50, 60, 70)]
        [1, 2, 3, 4]
        >>> pho_schedule(55, 100, 4)
        (True, True, False, False)
        >>> [pho_schedule(e, 4, 3, order="coarse_first") for e in range(4)]
        [(False, False, True), (False, True, True), (True, True, True), (True, True, True)]
    """
    if order not in PHO_ORDERS:
        raise ValueError(f"pho_schedule: order must be one of {PHO_ORDERS}, got {order!r}")
    if epochs < 1 or levels < 1 or epoch < 0:
        raise ValueError(f"pho_schedule: need epoch >= 0, epochs >= 1, levels >= 1; got {epoch}, {epochs}, "
                         f"{levels}")
    if order == "paper":
        if first_half not in FIRST_HALF:
            raise ValueError(f"pho_schedule: first_half must be one of {FIRST_HALF}, got {first_half!r}")
        n = pho_active_count(epoch, epochs, levels)
        if n == 1 and first_half == "all":
            return tuple(True for _ in range(levels))
        return tuple(i < n for i in range(levels))
    if mode not in PHO_MODES:
        raise ValueError(f"pho_schedule: mode must be one of {PHO_MODES}, got {mode!r}")
    if others not in OTHERS:
        raise ValueError(f"pho_schedule: others must be one of {OTHERS}, got {others!r}")
    t = default_stage_length(epochs, levels) if stage_length is None else int(stage_length)
    if t < 1:
        raise ValueError(f"pho_schedule: stage_length must be >= 1, got {stage_length}")
    s = epoch // t
    if s >= levels:                      # "Others"
        return tuple(True for _ in range(levels)) if others == "all" else tuple(i == 0 for i in range(levels))
    first = levels - s                   # 1-based level that joins at stage s
    if mode == "cumulative":
        return tuple(level >= first for level in range(1, levels + 1))
    return tuple(level == first for level in range(1, levels + 1))


def pho_table(epochs: int, levels: int, **kw: Any) -> torch.Tensor:
    """``(epochs, L)`` bool table of :func:`pho_schedule`: row e = 0-based epoch (the paper's epoch e + 1),
    column l-1 = Fusion_l (Fusion_1 the full-resolution output). Defaults follow Eq. 1.

    Examples:
        >>> pho_table(100, 4).sum(0).tolist()        # epochs each level is supervised
        [100, 50, 40, 30]
    """
    if epochs < 1 or levels < 1:
        raise ValueError(f"pho_table: epochs and levels must be >= 1, got {epochs}, {levels}")
    rows = [pho_schedule(e, epochs, levels, **kw) for e in range(epochs)]
    return torch.tensor(rows, dtype=torch.bool).reshape(epochs, levels)


# --- targets --------------------------------------------------------------------------------------------
def source_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Max-pooled pyramid ``[x, MP(x), MP(MP(x)), ...]`` (L entries), 2x2 max pooling, ceil mode.

    The paper: "IR and VI are downsampled multiple times using MaxPooling (MP) ... to match the size of
    Fusion_l". Ceil mode gives ``ceil(H/2)``, the size of a stride-2 3x3 conv with padding 1.

    Examples:
        >>> [tuple(t.shape[-2:]) for t in source_pyramid(torch.rand(1, 1, 9, 8), 3)]
        [(9, 8), (5, 4), (3, 2)]
    """
    out = [x]
    for _ in range(levels - 1):
        out.append(F.max_pool2d(out[-1], 2, 2, ceil_mode=True))
    return out


# --- Eq. 3 ------------------------------------------------------------------------------------------------
def corr_loss_paper(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, eps: float = EPS_CORR,
                    guard: float | None = 0.5, reduction: str = "mean") -> torch.Tensor:
    r"""L_corr of Eq. 3: ``1 / (corr(IR_l, F_l) + corr(VI_l, F_l) + ε)``, ε = 1e-6, Pearson r per sample.

    Unsafe as printed: at s = r_IR + r_VI <= 0 the reciprocal is infinite or negative, and minimising a
    negative reciprocal drives s further below 0 (towards -ε): a loss that rewards anti-correlation. With
    ``guard`` = s₀ (0.5, ours), below s₀ the curve continues along its tangent at s₀,
    ``1/(s₀+ε) − (s − s₀)/(s₀+ε)²``: continuous, with the same slope at s₀, decreasing in s everywhere, so
    a badly correlated output is still pushed up. Above s₀ it is exactly Eq. 3. ``guard=None``: as printed.

    Shape:
        (B, C, H, W) x 3 -> scalar (``"mean"`` over the batch) or (B,) (``"none"``)

    Examples:
        >>> x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
        >>> round(float(corr_loss_paper(x, x, x)), 5)          # 1 / (1 + 1 + 1e-6)
        0.5
    """
    check_images("corr_loss_paper", fused=fused, ir=ir, vi=vi)
    if reduction not in ("mean", "none"):
        raise ValueError(f"corr_loss_paper: reduction must be 'mean' or 'none', got {reduction!r}")
    s = pearson_correlation(fused, ir) + pearson_correlation(fused, vi)
    if guard is None:
        per = 1.0 / (s + eps)
    else:
        s0 = float(guard) + eps
        if s0 <= 0:
            raise ValueError(f"corr_loss_paper: guard must be > 0, got {guard}")
        tangent = 1.0 / s0 - (s + eps - s0) / s0**2
        per = torch.where(s + eps >= s0, 1.0 / (s + eps).clamp_min(s0), tangent)
    return per.mean() if reduction == "mean" else per


# --- Eq. 5 ------------------------------------------------------------------------------------------------
def soft_weights_paper(ir: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    r"""ω_soft of Eq. 5: ``Sigmoid(−δ (IR_l − mean(IR_l)))`` per pixel, the mean per sample. δ = 1 (paper).

    Pixels darker than the image's mean infrared weigh more than 0.5, brighter ones less.

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> soft_weights_paper(torch.tensor([0.0, 1.0]).view(1, 1, 1, 2))    # mean 0.5
        tensor([[[[0.6225, 0.3775]]]])
    """
    if delta <= 0:
        raise ValueError(f"soft_weights_paper: delta must be > 0, got {delta}")
    mean = ir.mean(dim=(1, 2, 3), keepdim=True)
    return torch.sigmoid(-delta * (ir - mean))


def std_masks_paper(ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """map_ir, map_vi of Eq. 5: ``map_ir = 1 if std_ir > std_vi else 0`` per sample (image-level), map_vi =
    1 − map_ir. (The paper says "std is the variance"; the comparison is the same.) ``(B, ...) -> (B,), (B,)``.

    Examples:
        >>> a, b = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2), torch.full((1, 1, 1, 2), 0.5)
        >>> std_masks_paper(a, b)
        (tensor([1.]), tensor([0.]))
    """
    m_ir = (ir.flatten(1).std(1) > vi.flatten(1).std(1)).to(ir.dtype)
    return m_ir, 1.0 - m_ir


def intensity_loss_paper(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, delta: float = 1.0,
                         literal: bool = False) -> torch.Tensor:
    r"""L_int of Eq. 5, squared error, ω_soft on both terms, image-level masks; mean over the batch.

    Printed: ``L_int = 1/(HW) ω_soft (map_ir MSE(IR_l, F_l)) + 1/(HW) ω_soft (map_vi MSE(VI_l, F_l))``,
    ``MSE(X, Y) = 1/N Σ (X − Y)²``: a per-pixel weight times a mean, then 1/(HW). Default reading: the
    weight acts per pixel inside the mean, ``1/(HW) Σ_p ω_soft(p) map (F(p) − S(p))²``, the only reading
    in which the "soft-assigned weights" assign anything. ``literal=True``: ``mean(ω_soft) · map · MSE``,
    where ω_soft only rescales the loss per image.

    Shape:
        (B, C, H, W) x 3 -> scalar

    Examples:
        >>> ir, vi = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2), torch.full((1, 1, 1, 2), 0.5)
        >>> float(intensity_loss_paper(ir, ir, vi))     # map_ir = 1: only the IR term, and F = IR
        0.0
        >>> round(float(intensity_loss_paper(vi, ir, vi)), 4)   # (0.6225 * 0.25 + 0.3775 * 0.25) / 2
        0.125
    """
    check_images("intensity_loss_paper", fused=fused, ir=ir, vi=vi)
    w = soft_weights_paper(ir, delta)
    m_ir, m_vi = std_masks_paper(ir, vi)
    b = (-1,) + (1,) * (ir.ndim - 1)
    m_ir, m_vi = m_ir.view(b), m_vi.view(b)
    if literal:
        mse_ir = ((fused - ir) ** 2).mean(dim=(1, 2, 3), keepdim=True)
        mse_vi = ((fused - vi) ** 2).mean(dim=(1, 2, 3), keepdim=True)
        wbar = w.mean(dim=(1, 2, 3), keepdim=True)
        return (wbar * (m_ir * mse_ir + m_vi * mse_vi)).mean()
    per_pixel = w * (m_ir * (fused - ir) ** 2 + m_vi * (fused - vi) ** 2)
    return per_pixel.mean()


# --- the suite's earlier L_int (not the paper's), kept as intensity_form="l1_mix" ----------------------------
def soft_weights(ir: torch.Tensor, vi: torch.Tensor, delta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Ours, not Eq. 5: ``w_ir = sigmoid((ir − vi)/δ)``, ``w_vi = 1 − w_ir`` (the brighter source weighs more).

    Examples:
        >>> w_ir, w_vi = soft_weights(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
        >>> float(w_ir), float(w_vi)
        (0.5, 0.5)
    """
    if delta <= 0:
        raise ValueError(f"soft_weights: delta must be > 0, got {delta}")
    w_ir = torch.sigmoid((ir - vi) / delta)
    return w_ir, 1.0 - w_ir


def local_std(x: torch.Tensor, window: int = 5, eps: float = 1e-12) -> torch.Tensor:
    """Local standard deviation in a ``window x window`` box (reflect padding). ``(B, C, H, W) -> same``."""
    if window < 1 or window % 2 != 1:
        raise ValueError(f"local_std: window must be an odd positive size, got {window}")
    pad = window // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
    xp = F.pad(x, (pad, pad, pad, pad), mode=mode)
    mean = F.avg_pool2d(xp, window, 1)
    sq = F.avg_pool2d(xp * xp, window, 1)
    return (sq - mean * mean).clamp_min(0).add(eps).sqrt()


def std_masks(ir: torch.Tensor, vi: torch.Tensor, window: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Ours, not Eq. 5 (which compares image-level stds): per-pixel ``M_ir = 1[σ_ir >= σ_vi]`` with
    σ = :func:`local_std`; ``M_vi = 1 − M_ir``."""
    m_ir = (local_std(ir, window) >= local_std(vi, window)).to(ir.dtype)
    return m_ir, 1.0 - m_ir


def intensity_soft_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, delta: float = 1.0,
                        window: int = 5, mask_mix: float = 0.5, reduction: str = "mean") -> torch.Tensor:
    r"""The suite's earlier intensity loss (ours, **not** Eq. 5): ``mean(W_ir |F − I_ir| + W_vi |F − I_vi|)``,
    ``W_ir = (1 − μ) w_ir + μ M_ir`` with :func:`soft_weights` and local :func:`std_masks`, μ = ``mask_mix``.

    Examples:
        >>> ir = torch.rand(1, 1, 8, 8)
        >>> float(intensity_soft_loss(ir, ir, ir))
        0.0
    """
    check_images("intensity_soft_loss", fused=fused, ir=ir, vi=vi)
    if not 0.0 <= mask_mix <= 1.0:
        raise ValueError(f"intensity_soft_loss: mask_mix must lie in [0, 1], got {mask_mix}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"intensity_soft_loss: reduction must be 'mean' or 'none', got {reduction!r}")
    w_ir, _ = soft_weights(ir, vi, delta)
    m_ir, _ = std_masks(ir, vi, window)
    big_w = (1.0 - mask_mix) * w_ir + mask_mix * m_ir
    per_pixel = big_w * (fused - ir).abs() + (1.0 - big_w) * (fused - vi).abs()
    return per_pixel.mean() if reduction == "mean" else per_pixel


# --- Eq. 2 ------------------------------------------------------------------------------------------------
def acf_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, alpha: float = 1.0,
             beta: float = 5.0, gamma: float = 10.0, delta: float = 1.0, corr_form: str = "paper",
             corr_guard: float | None = 0.5, intensity_form: str = "paper", std_window: int = 5,
             mask_mix: float = 0.5) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""L_ACF of one level, Eq. 2: ``α L_corr + β L_grad + γ L_int``.

    - ``L_corr`` (Eq. 3): :func:`corr_loss_paper` (``corr_form="paper"``) or ``"linear"``
      (:func:`fusionlib.losses.correlation_loss`, ``1 − (r_IR + r_VI)/2``, ours);
    - ``L_grad`` (Eq. 4): :func:`fusionlib.losses.gradient_max_loss`, ``1/(HW) ‖|∇F| − max(|∇IR|, |∇VI|)‖₁``;
    - ``L_int`` (Eq. 5): :func:`intensity_loss_paper` (``"paper"``, ``"paper_literal"``) or ``"l1_mix"``
      (:func:`intensity_soft_loss`, ours).

    Returns ``(total, {"corr", "grad", "int", "corr_s"})``: the unweighted terms (in the graph) and the
    per-sample correlation sum s = r_IR + r_VI (detached, (B,)), which shows when the Eq. 3 guard acts.

    Examples:
        >>> x = torch.rand(2, 1, 8, 8)
        >>> total, terms = acf_loss(x, x, x, corr_form="linear")
        >>> round(float(total), 6), sorted(terms)
        (0.0, ['corr', 'corr_s', 'grad', 'int'])
    """
    if corr_form not in CORR_FORMS:
        raise ValueError(f"acf_loss: corr_form must be one of {CORR_FORMS}, got {corr_form!r}")
    if intensity_form not in INT_FORMS:
        raise ValueError(f"acf_loss: intensity_form must be one of {INT_FORMS}, got {intensity_form!r}")
    with torch.no_grad():
        s = pearson_correlation(fused, ir) + pearson_correlation(fused, vi)
    corr = (corr_loss_paper(fused, ir, vi, guard=corr_guard) if corr_form == "paper"
            else correlation_loss(fused, ir, vi))
    grad = gradient_max_loss(fused, ir, vi)
    if intensity_form == "l1_mix":
        inten = intensity_soft_loss(fused, ir, vi, delta=delta, window=std_window, mask_mix=mask_mix)
    else:
        inten = intensity_loss_paper(fused, ir, vi, delta=delta, literal=intensity_form == "paper_literal")
    total = alpha * corr + beta * grad + gamma * inten
    return total, {"corr": corr, "grad": grad, "int": inten, "corr_s": s}


# --- Eq. 6 ------------------------------------------------------------------------------------------------
def level_weights(losses: torch.Tensor, active: Sequence[bool] | torch.Tensor, *, mode: str = "paper",
                  eq6_sum: str = "active", reference: torch.Tensor | None = None, temperature: float = 1.0,
                  eps: float = 1e-12) -> torch.Tensor:
    r"""Level weights ω of Eq. 6 (inactive levels get 0). Losses are detached: ω steers, it is not optimised.

    ``"paper"`` (default): ``ω_1 = 1 + L_1 / ΣL``, ``ω_l = L_l / ΣL`` (l ≠ 1), so Σω = 2 and the final
    output always weighs >= 1. Eq. 6 prints ``Σ_{l=1}^{L}``; PHO (Eq. 1) activates fewer levels, so by default
    the sum runs over the active levels (``eq6_sum="active"``: with Fusion_1 alone, ω_1 = 2);
    ``eq6_sum="all"`` sums over every level as printed (inactive losses enter the denominator only). If
    Fusion_1 is inactive (other schedules) no level gets the +1.

    Other modes are the suite's earlier choices, **not Eq. 6** (they sum to 1): ``"relative"``
    (L_l / L_l^ref, ``reference`` = the level's loss when it joined), ``"proportional"`` (L_l),
    ``"uniform"``, ``"softmax"`` (of L_l / ``temperature``).

    Shape:
        losses (L,), active (L,) -> (L,)

    Examples:
        >>> level_weights(torch.tensor([1.0, 3.0, 4.0]), [True, True, False])     # ΣL = 4
        tensor([1.2500, 0.7500, 0.0000])
        >>> level_weights(torch.tensor([1.0, 3.0, 4.0]), [True, True, False], eq6_sum="all")
        tensor([1.1250, 0.3750, 0.0000])
    """
    if mode not in LEVEL_WEIGHTINGS:
        raise ValueError(f"level_weights: mode must be one of {LEVEL_WEIGHTINGS}, got {mode!r}")
    if eq6_sum not in EQ6_SUMS:
        raise ValueError(f"level_weights: eq6_sum must be one of {EQ6_SUMS}, got {eq6_sum!r}")
    l_det = losses.detach()
    m = torch.as_tensor(active, dtype=torch.bool, device=l_det.device)
    if m.shape != l_det.shape:
        raise ValueError(f"level_weights: active {tuple(m.shape)} must match losses {tuple(l_det.shape)}")
    if not bool(m.any()):
        raise ValueError("level_weights: no active level")
    mf = m.to(l_det.dtype)
    if mode == "paper":
        r = l_det.clamp_min(0)
        denom = (r * mf).sum() if eq6_sum == "active" else r.sum()
        w = mf * r / denom.clamp_min(eps)
        plus_one = torch.zeros_like(w)
        plus_one[0] = mf[0]                      # the +1 of ω_1, only while Fusion_1 is supervised
        return w + plus_one
    if mode == "uniform":
        return mf / mf.sum()
    if mode == "softmax":
        logits = (l_det / temperature).masked_fill(~m, float("-inf"))
        return torch.softmax(logits, dim=0)
    r = l_det.clamp_min(0)
    if mode == "relative":
        if reference is None:
            raise ValueError("level_weights: mode='relative' needs reference losses (one per level)")
        ref = reference.detach().to(l_det)
        if ref.shape != l_det.shape:
            raise ValueError(f"level_weights: reference {tuple(ref.shape)} must match losses "
                             f"{tuple(l_det.shape)}")
        r = r / ref.clamp_min(eps)
    w = mf * r
    total = w.sum()
    return w / total if float(total) > eps else mf / mf.sum()


# --- the composite loss (Eq. 7) -----------------------------------------------------------------------
class DIILSLoss(nn.Module):
    r"""AIDFusion's total loss, Eq. 7: ``λ1 L_rec + λ2 Σ_l ω_l m_l(e) L_ACF^l`` (or the baseline's).

    ``forward(outputs, ir, vi)`` takes the model's ``forward_all`` dict: ``"levels"`` (``[Fusion_1 ..
    Fusion_L]``, level l at ``1/2^{l-1}`` resolution), optionally ``"recon_ir"`` / ``"recon_vi"``. Level l is
    compared with level l of the max-pooled source pyramids. ``m_l(e)`` is :func:`pho_schedule` for an
    ``epochs``-long run at the epoch set by ``set_epoch`` (a :class:`PHOCallback` does it during ``fit``);
    ω is :func:`level_weights`. ``L_rec = rec(recon_ir, ir) + rec(recon_vi, vi)``
    (:func:`fusionlib.losses.reconstruction_loss`, MSE + 1 − SSIM; the form is ours).

    ``strategy="final"`` is Fig. 1 a's baseline / Table 3's "w/o DIILS": the same loss with Fusion_1 the
    only supervised level at every epoch (Eq. 6 then gives ω_1 = 2). Under the paper's PHO the first half of
    DIILS supervises exactly that, so both runs are the same computation until epoch T/2.

    Returns ``(total, terms)``; ``terms`` (detached, for logging): ``acf_l1 .. acf_lL`` (every level, also the
    inactive ones), ``corr``, ``grad``, ``int`` of Fusion_1, ``rec``, ``n_active``, ``omega_l1 ..``,
    ``corr_s`` (mean r_IR + r_VI of Fusion_1) and ``corr_guard`` (share of samples x active levels whose
    s is below the Eq. 3 guard).

    Examples:
        >>> loss = DIILSLoss(levels=2, epochs=4)
        >>> x = torch.rand(1, 1, 8, 8)
        >>> outs = {"levels": [x, torch.rand(1, 1, 4, 4)], "recon_ir": x, "recon_vi": x}
        >>> _, terms = loss(outs, x, x)
        >>> float(terms["n_active"]), float(terms["omega_l1"]), float(terms["rec"])
        (1.0, 2.0, 0.0)
    """

    def __init__(self, *, levels: int, epochs: int = 100, alpha: float = 1.0, beta: float = 5.0,
                 gamma: float = 10.0, lambda1: float = 0.5, lambda2: float = 1.0, order: str = "paper",
                 first_half: str = "final", stage_length: int | None = None, mode: str = "cumulative",
                 others: str = "all", level_weighting: str = "paper", eq6_sum: str = "active",
                 corr_form: str = "paper", corr_guard: float | None = 0.5, intensity_form: str = "paper",
                 delta: float = 1.0, std_window: int = 5, mask_mix: float = 0.5, strategy: str = "diils"
                 ) -> None:
        super().__init__()
        if strategy not in ("diils", "final"):
            raise ValueError(f"DIILSLoss: strategy must be 'diils' or 'final', got {strategy!r}")
        if level_weighting not in LEVEL_WEIGHTINGS:
            raise ValueError(f"DIILSLoss: level_weighting must be one of {LEVEL_WEIGHTINGS}, got "
                             f"{level_weighting!r}")
        if corr_form not in CORR_FORMS or intensity_form not in INT_FORMS or eq6_sum not in EQ6_SUMS:
            raise ValueError(f"DIILSLoss: corr_form in {CORR_FORMS}, intensity_form in {INT_FORMS}, eq6_sum in "
                             f"{EQ6_SUMS}; got {corr_form!r}, {intensity_form!r}, {eq6_sum!r}")
        self.schedule = dict(order=order, first_half=first_half, stage_length=stage_length, mode=mode,
                             others=others)
        pho_schedule(0, epochs, levels, **self.schedule)          # validates the schedule arguments
        self.levels, self.epochs = int(levels), int(epochs)
        self.alpha, self.beta, self.gamma, self.lambda1, self.lambda2 = alpha, beta, gamma, lambda1, lambda2
        self.level_weighting, self.eq6_sum, self.delta = level_weighting, eq6_sum, delta
        self.corr_form, self.corr_guard, self.intensity_form = corr_form, corr_guard, intensity_form
        self.std_window, self.mask_mix = std_window, mask_mix
        self.strategy = strategy
        self.epoch = 0
        # L_ACF^l when level l first joined ("relative" only); NaN until then; saved with the PHOCallback
        self.register_buffer("ref_losses", torch.full((self.levels,), float("nan")), persistent=True)

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch the next steps belong to (selects the PHO row)."""
        if epoch < 0:
            raise ValueError(f"DIILSLoss.set_epoch: epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def active(self, epoch: int | None = None) -> tuple[bool, ...]:
        """The supervised levels (index l-1 = Fusion_l) at ``epoch`` (default: the current one)."""
        if self.strategy == "final":
            return tuple(i == 0 for i in range(self.levels))
        e = self.epoch if epoch is None else epoch
        return pho_schedule(e, self.epochs, self.levels, **self.schedule)

    def _acf(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor):
        return acf_loss(fused, ir, vi, alpha=self.alpha, beta=self.beta, gamma=self.gamma, delta=self.delta,
                        corr_form=self.corr_form, corr_guard=self.corr_guard,
                        intensity_form=self.intensity_form, std_window=self.std_window, mask_mix=self.mask_mix)

    def forward(self, outputs: Mapping[str, Any], ir: torch.Tensor, vi: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        preds = outputs.get("levels") if isinstance(outputs, Mapping) else None
        if not isinstance(preds, (list, tuple)) or len(preds) != self.levels:
            got = len(preds) if isinstance(preds, (list, tuple)) else type(preds).__name__
            raise ValueError(f"DIILSLoss: outputs['levels'] must list {self.levels} predictions (Fusion_1 .. "
                             f"Fusion_L, from model.forward_all), got {got}")
        active = self.active()
        ir_p, vi_p = source_pyramid(ir, self.levels), source_pyramid(vi, self.levels)
        per_level, first_terms, guard_hits, guard_n = [], None, 0.0, 0
        for i, p in enumerate(preds):
            if p.shape[-2:] != ir_p[i].shape[-2:]:
                raise ValueError(f"DIILSLoss: level {i + 1} prediction is {tuple(p.shape)}, its target "
                                 f"{tuple(ir_p[i].shape)}; predictions must halve the size per level (ceil)")
            if active[i]:
                total_i, terms_i = self._acf(p, ir_p[i], vi_p[i])
                if self.corr_form == "paper" and self.corr_guard is not None:
                    guard_hits += float((terms_i["corr_s"] < self.corr_guard).sum())
                guard_n += int(terms_i["corr_s"].numel())
            else:                         # logged only
                with torch.no_grad():
                    total_i, terms_i = self._acf(p, ir_p[i], vi_p[i])
            per_level.append(total_i)
            if i == 0:
                first_terms = terms_i
        losses = torch.stack(per_level)
        ref = None
        if self.level_weighting == "relative":
            with torch.no_grad():
                ref_now = self.ref_losses.to(losses)
                new = torch.tensor(active, device=losses.device) & torch.isnan(ref_now)
                ref_now = torch.where(new, losses.detach(), ref_now)
                self.ref_losses = ref_now
            ref = torch.nan_to_num(ref_now, nan=1.0)
        omega = level_weights(losses, active, mode=self.level_weighting, eq6_sum=self.eq6_sum, reference=ref)
        fusion = (omega * losses).sum()
        rec = ir.new_zeros(())
        if "recon_ir" in outputs and "recon_vi" in outputs and self.lambda1:
            rec = reconstruction_loss(outputs["recon_ir"], ir) + reconstruction_loss(outputs["recon_vi"], vi)
        total = self.lambda1 * rec + self.lambda2 * fusion
        terms = {f"acf_l{i + 1}": v.detach() for i, v in enumerate(per_level)}
        assert first_terms is not None
        terms.update({k: v.detach() for k, v in first_terms.items() if k != "corr_s"})
        terms["corr_s"] = first_terms["corr_s"].mean()
        terms["corr_guard"] = torch.tensor(guard_hits / max(guard_n, 1))
        terms["rec"] = rec.detach()
        terms["n_active"] = torch.tensor(float(sum(active)))
        for i in range(self.levels):
            terms[f"omega_l{i + 1}"] = omega[i].detach()
        return total, terms

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, epochs={self.epochs}, strategy={self.strategy!r}, "
                f"schedule={self.schedule}, alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, "
                f"corr={self.corr_form!r}, int={self.intensity_form!r}, omega={self.level_weighting!r}/"
                f"{self.eq6_sum!r}, lambda1={self.lambda1}, lambda2={self.lambda2}")


class PHOCallback:
    """A ``fusionlib.train.fit`` callback that keeps a :class:`DIILSLoss` on the current epoch.

    ``fit`` counts epochs from 1 and reports completed epochs in ``on_train_start`` (0, or the resumed
    count), so the 0-based epoch about to run is ``state.epoch`` there and after each ``on_epoch_end``.
    ``records`` lists ``{"epoch" (1-based), "active": [bool per level]}`` per epoch trained.
    """

    state_key = "PHOCallback"

    def __init__(self, loss: DIILSLoss) -> None:
        if not hasattr(loss, "set_epoch"):
            raise TypeError(f"PHOCallback: the loss needs set_epoch(epoch), got {type(loss).__name__}")
        self.loss = loss
        self.records: list[dict[str, Any]] = []

    def on_train_start(self, state: Any) -> None:
        self.loss.set_epoch(int(state.epoch))

    def on_epoch_end(self, state: Any) -> None:
        self.records.append({"epoch": int(state.epoch), "active": list(self.loss.active())})
        self.loss.set_epoch(int(state.epoch))

    def state_dict(self) -> dict[str, Any]:
        return {"records": [dict(r) for r in self.records], "loss": self.loss.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.records = [dict(r) for r in state.get("records", [])]
        if "loss" in state:
            self.loss.load_state_dict(state["loss"])
