"""DIILS: AIDFusion's learning strategy against network laziness (AAAI'26, Sec. 3.1, Eq. 1-7).

A training strategy for any multi-level fusion network that returns one prediction per level: progressive
hierarchical optimisation (PHO, Eq. 1) decides which levels are supervised at each epoch, and the adaptive
collaborative fusion loss (L_ACF, Eq. 2-6) supervises each active level against max-pooled source pyramids,
with adaptive level weights; Eq. 7 adds a reconstruction term. No code was released
(``authors_code.md`` §1), so every constant below is our choice, exposed as an argument and listed here:

=================  ========  =====================================================================
symbol             default   why
=================  ========  =====================================================================
L (levels)         model's   4 in ``AIDFusionConfig``; the schedule works for any L
T (stage length)   E//(L+1)  ``default_stage_length``: the L progressive stages and "Others" get equal
                             epochs (100 epochs, L = 4: T = 20)
PHO mode           cumul.    stage s supervises levels L-s .. L (coarse first, finer levels join);
                             ``"single"``: only level L-s
"Others"           "all"     epochs e >= L*T: every level together (``"final"``: only Fusion_1)
α (corr, Eq. 3)    1         L_corr lies in [0, 2]; the reference scale
β (grad, Eq. 4)    10        Sobel-L1 residuals are ~0.05 on MSRS: x10 brings them to the corr scale
γ (int, Eq. 5)     5         intensity L1 residuals are ~0.1: x5 likewise
δ (soft weight)    1         given by the paper
std window         5         local standard deviation for the std masks (5x5, reflect padding)
mask mix           0.5       Eq. 5 weight = mean of the soft intensity weight and the std mask
η (Eq. 6)          "rel."    η_l ∝ L_ACF^l / L_ACF^l(ref) over the active levels, ref = the level's loss
                             when it joined (detached): the level that progresses least gets more
                             weight, whatever its scale; Σ η = 1 so the total matches single supervision
                             (``"proportional"`` η ∝ L_l lets the coarse levels, whose losses are larger,
                             dominate; ``"uniform"``, ``"softmax"`` also available)
λ1 (Eq. 7)         0.5       reconstruction (MSE + 1 - SSIM per source), ~1 at initialisation
λ2 (Eq. 7)         1         weight of the hierarchical fusion term (our reading: L = λ2·ΣηL_ACF + λ1·L_rec)
=================  ========  =====================================================================

Levels are numbered from 1 (full resolution) to L (coarsest, 1/2^{L-1}); lists are 0-based (index l-1).
Epochs are 0-based here (epoch 0 is the first); :class:`PHOCallback` translates ``fit``'s 1-based count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusionlib.losses import correlation_loss, gradient_max_loss, reconstruction_loss
from fusionlib.losses._common import check_images

__all__ = [
    "default_stage_length", "pho_schedule", "pho_table", "source_pyramid", "soft_weights", "local_std",
    "std_masks", "intensity_soft_loss", "acf_loss", "level_weights", "DIILSLoss", "PHOCallback",
]

PHO_MODES = ("cumulative", "single")
OTHERS = ("all", "final")
LEVEL_WEIGHTINGS = ("relative", "proportional", "uniform", "softmax")


# --- PHO (Eq. 1) ----------------------------------------------------------------------------------------
def default_stage_length(epochs: int, levels: int) -> int:
    """T = max(1, epochs // (L + 1)): L progressive stages plus the "Others" phase, equally long.

    Examples:
        >>> default_stage_length(100, 4), default_stage_length(5, 4), default_stage_length(2, 4)
        (20, 1, 1)
    """
    if epochs < 1 or levels < 1:
        raise ValueError(f"default_stage_length: epochs and levels must be >= 1, got {epochs}, {levels}")
    return max(1, epochs // (levels + 1))


def pho_schedule(epoch: int, stage_length: int, levels: int, *, mode: str = "cumulative",
                 others: str = "all") -> tuple[bool, ...]:
    """Which levels PHO supervises at ``epoch`` (0-based), Eq. 1 as we read it; index l-1 is level l.

    Stage ``s = epoch // T``. For ``s < L`` (the progressive stages) ``"cumulative"`` supervises levels
    ``l >= L - s`` (the coarsest first, one finer level joins every T epochs) and ``"single"`` only level
    ``L - s``. "Others" (``s >= L``): ``"all"`` levels, or only the ``"final"`` full-resolution Fusion_1.

    Examples:
        >>> [pho_schedule(e, 1, 3) for e in range(4)]
        [(False, False, True), (False, True, True), (True, True, True), (True, True, True)]
        >>> [pho_schedule(e, 1, 3, mode="single", others="final") for e in range(4)]
        [(False, False, True), (False, True, False), (True, False, False), (True, False, False)]
    """
    if mode not in PHO_MODES:
        raise ValueError(f"pho_schedule: mode must be one of {PHO_MODES}, got {mode!r}")
    if others not in OTHERS:
        raise ValueError(f"pho_schedule: others must be one of {OTHERS}, got {others!r}")
    if stage_length < 1 or levels < 1 or epoch < 0:
        raise ValueError(f"pho_schedule: need epoch >= 0, stage_length >= 1, levels >= 1; got {epoch}, "
                         f"{stage_length}, {levels}")
    s = epoch // stage_length
    if s >= levels:                      # "Others"
        return tuple(True for _ in range(levels)) if others == "all" else tuple(i == 0 for i in range(levels))
    first = levels - s                   # 1-based level that joins at stage s
    if mode == "cumulative":
        return tuple(level >= first for level in range(1, levels + 1))
    return tuple(level == first for level in range(1, levels + 1))


def pho_table(epochs: int, stage_length: int, levels: int, **kw: Any) -> torch.Tensor:
    """``(epochs, L)`` bool table of :func:`pho_schedule` (row = epoch, column = level 1..L), for plotting."""
    rows = [pho_schedule(e, stage_length, levels, **kw) for e in range(epochs)]
    return torch.tensor(rows, dtype=torch.bool)


# --- targets --------------------------------------------------------------------------------------------
def source_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Max-pooled pyramid ``[x, pool(x), pool(pool(x)), ...]`` (L entries), 2x2 max pooling, ceil mode.

    Max pooling keeps small bright targets (hot pedestrians) that averaging would dim; ceil mode gives
    ``ceil(H/2)``, the size of a stride-2 3x3 conv with padding 1, so the targets match the predictions.

    Examples:
        >>> [tuple(t.shape[-2:]) for t in source_pyramid(torch.rand(1, 1, 9, 8), 3)]
        [(9, 8), (5, 4), (3, 2)]
    """
    out = [x]
    for _ in range(levels - 1):
        out.append(F.max_pool2d(out[-1], 2, 2, ceil_mode=True))
    return out


def soft_weights(ir: torch.Tensor, vi: torch.Tensor, delta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Pixel-wise soft weights of Eq. 5: ``w_ir = e^{ir/δ} / (e^{ir/δ} + e^{vi/δ})``, ``w_vi = 1 - w_ir``.

    The brighter source weighs more; δ = 1 (the paper's value) keeps the weights soft (in [0.27, 0.73] for
    images in [0, 1]).

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
    """Std masks of Eq. 5: ``M_ir = 1[σ_ir >= σ_vi]``, ``M_vi = 1 - M_ir`` (σ = ``local_std``): the source
    with more local structure wins the pixel. Not differentiable (the sources carry no gradient)."""
    m_ir = (local_std(ir, window) >= local_std(vi, window)).to(ir.dtype)
    return m_ir, 1.0 - m_ir


def intensity_soft_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, delta: float = 1.0,
                        window: int = 5, mask_mix: float = 0.5, reduction: str = "mean") -> torch.Tensor:
    r"""L_int of Eq. 5 (our form): ``mean(W_ir |F - I_ir| + W_vi |F - I_vi|)``,
    ``W_ir = (1 - μ) w_ir + μ M_ir``, ``W_vi = 1 - W_ir``.

    ``w`` are the :func:`soft_weights` (δ), ``M`` the :func:`std_masks`, μ = ``mask_mix`` (0.5). The two
    weights sum to one at every pixel, so every pixel is pulled towards a source-dependent blend.

    Args:
        fused, ir, vi: ``(B, C, H, W)`` in [0, 1].
        reduction: ``"mean"`` or ``"none"`` (the weighted per-pixel map).

    Examples:
        >>> ir, vi = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
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


def acf_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, *, alpha: float = 1.0,
             beta: float = 10.0, gamma: float = 5.0, delta: float = 1.0, std_window: int = 5,
             mask_mix: float = 0.5) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""L_ACF of one level, Eq. 2: ``α L_corr + β L_grad + γ L_int``.

    - ``L_corr`` (Eq. 3): :func:`fusionlib.losses.correlation_loss`, ``1 - (r(F, ir) + r(F, vi)) / 2``;
    - ``L_grad`` (Eq. 4): :func:`fusionlib.losses.gradient_max_loss`, ``‖S(F) - max(S(ir), S(vi))‖_1``;
    - ``L_int`` (Eq. 5): :func:`intensity_soft_loss`.

    Returns ``(total, {"corr", "grad", "int"})`` with the unweighted terms (kept in the graph).

    Examples:
        >>> x = torch.rand(2, 1, 8, 8)
        >>> total, terms = acf_loss(x, x, x)
        >>> round(float(total), 6), sorted(terms)
        (0.0, ['corr', 'grad', 'int'])
    """
    corr = correlation_loss(fused, ir, vi)
    grad = gradient_max_loss(fused, ir, vi)
    inten = intensity_soft_loss(fused, ir, vi, delta=delta, window=std_window, mask_mix=mask_mix)
    return alpha * corr + beta * grad + gamma * inten, {"corr": corr, "grad": grad, "int": inten}


def level_weights(losses: torch.Tensor, active: Sequence[bool] | torch.Tensor, *, mode: str = "relative",
                  reference: torch.Tensor | None = None, temperature: float = 1.0, eps: float = 1e-12
                  ) -> torch.Tensor:
    r"""Adaptive level weights η of Eq. 6 over the active levels (inactive levels get 0); they sum to 1.

    ``"relative"`` (default, our choice): ``η_l = m_l r_l / Σ_j m_j r_j`` with ``r_l = L_l / L_l^ref``, the
    level's loss relative to ``reference`` (its loss when it joined): the level that has progressed least
    weighs most, independent of the levels' different scales. ``"proportional"``: ``r_l = L_l``;
    ``"uniform"``: ``m_l / Σ m_j``; ``"softmax"``: softmax of ``L_l / temperature`` over the active levels.
    The losses are detached: η steers the gradient, it is not optimised.

    Examples:
        >>> level_weights(torch.tensor([1.0, 3.0, 4.0]), [False, True, True], mode="proportional")
        tensor([0.0000, 0.4286, 0.5714])
        >>> ref = torch.tensor([2.0, 3.0, 8.0])
        >>> level_weights(torch.tensor([1.0, 3.0, 4.0]), [True, True, True], reference=ref)
        tensor([0.2500, 0.5000, 0.2500])
    """
    if mode not in LEVEL_WEIGHTINGS:
        raise ValueError(f"level_weights: mode must be one of {LEVEL_WEIGHTINGS}, got {mode!r}")
    l_det = losses.detach()
    m = torch.as_tensor(active, dtype=torch.bool, device=l_det.device)
    if m.shape != l_det.shape:
        raise ValueError(f"level_weights: active {tuple(m.shape)} must match losses {tuple(l_det.shape)}")
    if not bool(m.any()):
        raise ValueError("level_weights: no active level")
    mf = m.to(l_det.dtype)
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
    r"""AIDFusion's total loss, Eq. 7: ``λ2 Σ_l η_l m_l(e) L_ACF^l + λ1 L_rec`` (or the baseline's).

    ``forward(outputs, ir, vi)`` takes the model's ``forward_all`` dict: ``"levels"`` (``[Fusion_1 ..
    Fusion_L]``, level l at ``1/2^{l-1}`` resolution), optionally ``"recon_ir"`` / ``"recon_vi"``. Level l is
    compared with level l of the max-pooled source pyramids. ``m_l(e)`` is :func:`pho_schedule` at the epoch
    set by ``set_epoch`` (a :class:`PHOCallback` does it during ``fit``); η is :func:`level_weights`.
    ``L_rec = rec(recon_ir, ir) + rec(recon_vi, vi)`` with :func:`fusionlib.losses.reconstruction_loss`
    (MSE + 1 - SSIM).

    ``strategy="final"`` is the baseline of Fig. 1 a / Table 3 "w/o DIILS": ``λ2 L_ACF(Fusion_1) + λ1 L_rec``
    every epoch (no schedule, no coarser levels).

    Returns ``(total, terms)``; ``terms`` (detached, for logging): ``acf_l1 .. acf_lL`` (every level, also the
    inactive ones), ``corr``, ``grad``, ``int`` of Fusion_1, ``rec``, ``n_active``.

    Examples:
        >>> loss = DIILSLoss(levels=2, stage_length=1)
        >>> x = torch.rand(1, 1, 8, 8)
        >>> outs = {"levels": [x, torch.rand(1, 1, 4, 4)], "recon_ir": x, "recon_vi": x}
        >>> _, terms = loss(outs, x, x)
        >>> float(terms["n_active"]), float(terms["rec"])
        (1.0, 0.0)
    """

    def __init__(self, *, levels: int, alpha: float = 1.0, beta: float = 10.0, gamma: float = 5.0,
                 lambda1: float = 0.5, lambda2: float = 1.0, stage_length: int = 20, mode: str = "cumulative",
                 others: str = "all", level_weighting: str = "relative", delta: float = 1.0,
                 std_window: int = 5, mask_mix: float = 0.5, strategy: str = "diils") -> None:
        super().__init__()
        if strategy not in ("diils", "final"):
            raise ValueError(f"DIILSLoss: strategy must be 'diils' or 'final', got {strategy!r}")
        if level_weighting not in LEVEL_WEIGHTINGS:
            raise ValueError(f"DIILSLoss: level_weighting must be one of {LEVEL_WEIGHTINGS}, got "
                             f"{level_weighting!r}")
        pho_schedule(0, stage_length, levels, mode=mode, others=others)   # validates the schedule arguments
        self.levels, self.stage_length, self.mode, self.others = int(levels), int(stage_length), mode, others
        self.alpha, self.beta, self.gamma, self.lambda1, self.lambda2 = alpha, beta, gamma, lambda1, lambda2
        self.level_weighting, self.delta = level_weighting, delta
        self.std_window, self.mask_mix = std_window, mask_mix
        self.strategy = strategy
        self.epoch = 0
        # L_ACF^l when level l first joined (Eq. 6, "relative"); NaN until then; saved with the PHOCallback
        self.register_buffer("ref_losses", torch.full((self.levels,), float("nan")), persistent=True)

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch the next steps belong to (selects the PHO stage)."""
        if epoch < 0:
            raise ValueError(f"DIILSLoss.set_epoch: epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def active(self, epoch: int | None = None) -> tuple[bool, ...]:
        """The supervised levels (index l-1 = level l) at ``epoch`` (default: the current one)."""
        if self.strategy == "final":
            return tuple(i == 0 for i in range(self.levels))
        e = self.epoch if epoch is None else epoch
        return pho_schedule(e, self.stage_length, self.levels, mode=self.mode, others=self.others)

    def _acf(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor):
        return acf_loss(fused, ir, vi, alpha=self.alpha, beta=self.beta, gamma=self.gamma, delta=self.delta,
                        std_window=self.std_window, mask_mix=self.mask_mix)

    def forward(self, outputs: Mapping[str, Any], ir: torch.Tensor, vi: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        preds = outputs.get("levels") if isinstance(outputs, Mapping) else None
        if not isinstance(preds, (list, tuple)) or len(preds) != self.levels:
            got = len(preds) if isinstance(preds, (list, tuple)) else type(preds).__name__
            raise ValueError(f"DIILSLoss: outputs['levels'] must list {self.levels} predictions (Fusion_1 .. "
                             f"Fusion_L, from model.forward_all), got {got}")
        active = self.active()
        ir_p, vi_p = source_pyramid(ir, self.levels), source_pyramid(vi, self.levels)
        per_level, first_terms = [], None
        for i, p in enumerate(preds):
            if p.shape[-2:] != ir_p[i].shape[-2:]:
                raise ValueError(f"DIILSLoss: level {i + 1} prediction is {tuple(p.shape)}, its target "
                                 f"{tuple(ir_p[i].shape)}; predictions must halve the size per level (ceil)")
            if active[i]:
                total_i, terms_i = self._acf(p, ir_p[i], vi_p[i])
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
        eta = level_weights(losses, active, mode=self.level_weighting, reference=ref)
        fusion = (eta * losses).sum()
        rec = ir.new_zeros(())
        if "recon_ir" in outputs and "recon_vi" in outputs and self.lambda1:
            rec = reconstruction_loss(outputs["recon_ir"], ir) + reconstruction_loss(outputs["recon_vi"], vi)
        total = self.lambda2 * fusion + self.lambda1 * rec
        terms = {f"acf_l{i + 1}": v.detach() for i, v in enumerate(per_level)}
        assert first_terms is not None
        terms.update({k: v.detach() for k, v in first_terms.items()})
        terms["rec"] = rec.detach()
        terms["n_active"] = torch.tensor(float(sum(active)))
        for i in range(self.levels):
            terms[f"eta_l{i + 1}"] = eta[i].detach()
        return total, terms

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, strategy={self.strategy!r}, T={self.stage_length}, "
                f"mode={self.mode!r}, others={self.others!r}, alpha={self.alpha}, beta={self.beta}, "
                f"gamma={self.gamma}, "
                f"lambda1={self.lambda1}, lambda2={self.lambda2}, eta={self.level_weighting!r}")


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
