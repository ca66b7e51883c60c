"""AIDFusion (AAAI'26): multi-level fusion network with MMFM (MPSA + MSRT) and a FAConv decoder.

Yufeng Chen et al. *Revisiting Network Inertia: Dynamic Inertia Inhibition Coupled Multidimensional
Periodicity for Infrared and Visible Image Fusion* (AAAI 2026). **No code was released**: the repository
named in the paper (``YufengChen1113/AIDFusion``) does not exist publicly
(``notebooks/released_code.md`` §AIDFusion), so the paper's text and equations are the specification. Every number the paper does not give (L, widths, kernel
sizes other than the printed ones, the SE/CE blocks, the number of rounds) is a field of ``AIDFusionConfig``
marked "ours". The learning strategy (DIILS: PHO and L_ACF) lives in :mod:`fusionlib.diils`.

The network, as we read Fig. 3 (a) and the "Overall framework" text (L = 4 levels)::

    vi -> Encoder_vi (ResNet basic block per level, stride 2 between levels) -> VIE_1 .. VIE_L
    ir -> Encoder_ir                                                         -> IRE_1 .. IRE_L
    l = L .. 1 (coarse to fine):
        FF_l     = MMFM_l(VIE_l, IRE_l, up De_{l+1}, up Fusion_{l+1})   (at l = L only VIE_L, IRE_L)
        De_l     = Decoder_l(FF_l) = FF_l + FAConv(FF_l)
        Fusion_l = Sigmoid(Conv3x3(De_l))        (Prediction, at 1/2^{l-1} resolution)
    fused = Fusion_1;  reconstructions: Sigmoid(Conv3x3(VIE_1)), Sigmoid(Conv3x3(IRE_1))

Blocks (paper equation numbers):

- **MMFM** (text under Fig. 3 (b)): (1) cross-modal interaction: the sum and the channel splice of VIE_l,
  IRE_l and up-sampled Fusion_{l+1}, then rounds of spatial extraction (SE), channel extraction (CE) and
  MPSA; (2) self-enhancement: MSRT on VIE_l and on IRE_l; (3) full fusion of both with De_{l+1} and
  Fusion_{l+1} into FF_l.
- **MPSA** (Multi-perspective Sparse Attention, Eqs. 8-9): HW, HC, WC perspectives; MP and AP, 3x3 conv,
  strip-7 conv, 1x1 conv, sigmoid, times the input; entropy weights (Eq. 9).
- **MSRT** (Multi-scale Recurrent Transformer, Eq. 10): 4 channel groups; MP + AP to P x P tokens, LN, GELU,
  linear Q, K; V = linear of the group; ``X' = V Softmax(Qᵀ K)`` (C/4 x C/4); groups recur.
- **FAConv** (Fourier Analysis Convolution, Eq. 11): ``[cos X1, sin X1, GELU X2]``.

Switches for Table 3: ``use_mmfm=False`` ("w/o MMFM": FF_l is a 1x1 conv of the same inputs),
``use_faconv=False`` ("w/o FAConv": 3x3 conv + GELU); "w/o DIILS" is ``train_aidfusion(strategy="final")``.

Images are ``(B, 1, H, W)`` in [0, 1] (``vi`` = the visible Y channel). ``forward(ir, vi)`` returns the final
fused image; ``forward_all`` returns every output DIILS supervises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from fusionlib.models._registry import register_model
from fusionlib.recipes import Recipe

__all__ = [
    "PerspectiveGate", "MPSA", "entropy_weights", "map_entropy", "MSRT", "FAConv", "ConvGELU", "MMFM",
    "ExtractionRound", "ResBlock", "Encoder", "DecoderStage", "AIDFusion", "AIDFusionConfig", "AID_RECIPES",
    "PAPER", "SGD_MOMENTUM", "train_aidfusion", "resize_pair", "EpochMetrics",
]

#: What the paper reports (Table 1 cost columns at 352 x 352; FLOPs convention unstated).
PAPER = {"params_M": 0.247, "flops_G_352": 1.85, "memory_GB_352": 0.83, "input": (352, 352)}

# --- MPSA: Multi-perspective Sparse Attention (Eqs. 8-9) --------------------------------------------
class PerspectiveGate(nn.Module):
    """The conv stack of one MPSA perspective: [max, mean] -> 3x3 -> strip 1xk, kx1 -> 1x1 -> sigmoid.

    ``a = conv3(p)``; ``a = a + strip_v(strip_h(a))`` (depthwise strips, k = 7, long-range context along
    each axis of the perspective); ``map = sigmoid(proj(GELU(a)))``. ``hidden`` channels are ours (the paper
    gives the kernel sizes only). The sigmoid is the probe point ``attend``.

    Shape:
        pooled (B, 2, X, Y) -> map (B, 1, X, Y)

    Examples:
        >>> PerspectiveGate(hidden=4)(torch.rand(2, 2, 6, 9)).shape
        torch.Size([2, 1, 6, 9])
    """

    def __init__(self, *, hidden: int = 4, strip: int = 7) -> None:
        super().__init__()
        if strip % 2 != 1:
            raise ValueError(f"PerspectiveGate: strip kernel must be odd, got {strip}")
        self.conv3 = nn.Conv2d(2, hidden, 3, padding=1)
        self.strip_h = nn.Conv2d(hidden, hidden, (1, strip), padding=(0, strip // 2), groups=hidden)
        self.strip_v = nn.Conv2d(hidden, hidden, (strip, 1), padding=(strip // 2, 0), groups=hidden)
        self.proj = nn.Conv2d(hidden, 1, 1)
        self.act = nn.GELU()
        self.attend = nn.Sigmoid()

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        a = self.conv3(pooled)
        a = a + self.strip_v(self.strip_h(a))
        return self.attend(self.proj(self.act(a)))


def map_entropy(a: torch.Tensor, mode: str = "positions", eps: float = 1e-12) -> torch.Tensor:
    r"""Normalised entropy of a map per sample, in [0, 1]: Entropy(·) of Eq. 9 (both readings are ours).

    ``"positions"`` (default): the map as a distribution over its positions, ``p = a / Σ a``,
    ``E = −Σ p log p / log N`` (N positions), so maps of different sizes (HW, HC, WC) compare. A sigmoid map
    is far from peaked, so E stays near 1 unless the map concentrates on few positions.
    ``"binary"``: the mean binary entropy of the sigmoid values, ``mean(−a log a − (1−a) log(1−a)) / log 2``:
    how undecided the map is (1 at a = 0.5 everywhere, 0 for a hard 0/1 mask).

    Shape:
        (B, ...) -> (B,)

    Examples:
        >>> map_entropy(torch.ones(1, 1, 4, 4))   # uniform: maximal
        tensor([1.])
        >>> map_entropy(torch.full((1, 1, 4, 4), 0.5), mode="binary")
        tensor([1.])
    """
    if mode not in ("positions", "binary"):
        raise ValueError(f"map_entropy: mode must be 'positions' or 'binary', got {mode!r}")
    flat = a.flatten(1)
    if mode == "binary":
        q = flat.clamp(0, 1)
        return -(torch.special.xlogy(q, q) + torch.special.xlogy(1 - q, 1 - q)).mean(1) / math.log(2)
    n = flat.shape[1]
    if n < 2:
        return torch.ones(flat.shape[0], dtype=flat.dtype, device=flat.device)
    p = flat / flat.sum(1, keepdim=True).clamp_min(eps)
    return -(p * p.clamp_min(eps).log()).sum(1) / math.log(n)


def entropy_weights(entropies: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    r"""MPSA's perspective weights, Eq. 9: ``ω_i = 1 − Σ_{j≠i} Ê_j`` with ``Ê_i = E_i / Σ_j E_j``.

    With the entropies normalised to sum to one the weights sum to one (and ω_i = Ê_i): the perspective with
    the *higher* entropy weighs more. That follows the printed equation; the paper's prose says the opposite
    ("MPSA gives less weight to viewpoint maps with higher entropy"), a contradiction the notebook leaves as
    a reading-group question. Normalising first is our reading; without it ω could be negative. Entropy is
    taken of the sigmoid maps A_i (ours; the paper: of the perspective outputs X_i).

    Shape:
        (B, n) -> (B, n), rows sum to 1

    Examples:
        >>> entropy_weights(torch.tensor([[0.5, 0.25, 0.25]]))
        tensor([[0.5000, 0.2500, 0.2500]])
    """
    e_hat = entropies / entropies.sum(-1, keepdim=True).clamp_min(eps)
    others = e_hat.sum(-1, keepdim=True) - e_hat          # Σ_{j≠i} Ê_j
    return 1.0 - others


class MPSA(nn.Module):
    """Multi-perspective Sparse Attention: HW, HC and WC maps (Eq. 8), entropy-weighted (Eq. 9).

    For ``x`` (B, C, H, W):

    - HW: pool max and mean over C -> (B, 2, H, W) -> gate -> ``A_hw`` (B, 1, H, W);
    - HC: pool over W -> (B, 2, C, H) -> gate -> ``A_hc``, broadcast as (B, C, H, 1);
    - WC: pool over H -> (B, 2, C, W) -> gate -> ``A_wc``, broadcast as (B, C, 1, W);
    - ``ω = entropy_weights([E(A_hw), E(A_hc), E(A_wc)])`` (``map_entropy``, Eq. 9);
    - output ``x ⊙ (ω_hw A_hw + ω_hc A_hc + ω_wc A_wc)``.

    ``entropy_weighting=False`` uses ω = 1/3 each (a triplet-attention-like mean); ``entropy`` selects the
    reading of Entropy(·) in Eq. 9 (:func:`map_entropy`). Probe points:
    ``hw.attend``, ``hc.attend``, ``wc.attend`` (maps in their own layout) and ``weigh`` (ω, (B, 3)).

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> MPSA(hidden=2)(torch.rand(2, 8, 6, 5)).shape
        torch.Size([2, 8, 6, 5])
    """

    def __init__(self, *, hidden: int = 4, strip: int = 7, entropy_weighting: bool = True,
                 entropy: str = "positions") -> None:
        super().__init__()
        map_entropy(torch.ones(1, 2), mode=entropy)            # validates the mode
        self.hw = PerspectiveGate(hidden=hidden, strip=strip)
        self.hc = PerspectiveGate(hidden=hidden, strip=strip)
        self.wc = PerspectiveGate(hidden=hidden, strip=strip)
        self.entropy_weighting, self.entropy = entropy_weighting, entropy
        self.weigh = nn.Identity()

    @staticmethod
    def _pool(t: torch.Tensor) -> torch.Tensor:
        # max and mean over dim 1 -> (B, 2, X, Y)
        return torch.cat([t.amax(1, keepdim=True), t.mean(1, keepdim=True)], dim=1)

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three sigmoid maps, already laid out to broadcast on x: (B,1,H,W), (B,C,H,1), (B,C,1,W)."""
        a_hw = self.hw(self._pool(x))                                          # (B, 1, H, W)
        a_hc = self.hc(self._pool(rearrange(x, "b c h w -> b w c h")))         # (B, 1, C, H)
        a_wc = self.wc(self._pool(rearrange(x, "b c h w -> b h c w")))         # (B, 1, C, W)
        return a_hw, rearrange(a_hc, "b 1 c h -> b c h 1"), rearrange(a_wc, "b 1 c w -> b c 1 w")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_hw, a_hc, a_wc = self.maps(x)
        if self.entropy_weighting:
            ent = torch.stack([map_entropy(a, self.entropy) for a in (a_hw, a_hc, a_wc)], dim=-1)   # (B, 3)
            w = entropy_weights(ent)
        else:
            w = x.new_full((x.shape[0], 3), 1.0 / 3.0)
        w = self.weigh(w)
        wb = w[:, :, None, None, None]                                              # (B, 3, 1, 1, 1)
        return x * (wb[:, 0] * a_hw + wb[:, 1] * a_hc + wb[:, 2] * a_wc)


# --- MSRT: Multi-scale Recurrent Transformer (Eq. 10) --------------------------------------------------
class MSRT(nn.Module):
    r"""Multi-scale Recurrent Transformer attention, Eq. 10 as printed.

    ``X`` is split into four groups ``X_s`` of C/4 channels; ``X_1 = X_s``, ``X_i = X_s + X'_{i−1}``;

    - ``Q_i, K_i = LP(GELU(LN(MP(X_i) + AP(X_i))))``: max and average pooling to P_i x P_i tokens
      ("HW becomes P²"), LayerNorm over the channels, GELU, one linear layer giving Q and K;
    - ``V_i = LP(X_i)`` on the full-resolution tokens;
    - ``X'_i = V_i Softmax(Q_iᵀ K_i)``: the attention is C/4 x C/4 (Q transposed), softmax over its last
      axis; ``Y = Conv1x1(concat(X'_1..X'_4))``.

    Ours: the token sides ``tokens`` = (16, 8, 4, 2) (the paper: "different P"), capped at the map size;
    ``scale=True`` divides Qᵀ K by √(P²), the number of tokens summed (the printed Softmax has no scale;
    unscaled logits over 256 tokens saturate the softmax). The Transformer wrapper of Fig. 4 (b) is not in
    the text; :class:`MMFM` adds MSRT as a residual. Probe points ``attend.0 .. attend.3``: (B, C/4, C/4).

    Shape:
        (B, C, H, W) -> (B, C, H, W), C divisible by 4

    Examples:
        >>> MSRT(channels=8)(torch.rand(2, 8, 16, 12)).shape
        torch.Size([2, 8, 16, 12])
    """

    def __init__(self, *, channels: int, tokens: Sequence[int] = (16, 8, 4, 2), scale: bool = True) -> None:
        super().__init__()
        if channels % 4:
            raise ValueError(f"MSRT: channels must be divisible by 4 (4-way split), got {channels}")
        if len(tokens) != 4 or any(int(p) < 1 for p in tokens):
            raise ValueError(f"MSRT: tokens must be 4 positive token sides P, got {tokens!r}")
        c4 = channels // 4
        self.tokens, self.scale = tuple(int(p) for p in tokens), bool(scale)
        self.norm = nn.ModuleList(nn.LayerNorm(c4) for _ in range(4))
        self.act = nn.GELU()
        self.qk = nn.ModuleList(nn.Linear(c4, 2 * c4) for _ in range(4))     # LP -> Q, K
        self.v = nn.ModuleList(nn.Linear(c4, c4) for _ in range(4))          # LP -> V
        self.attend = nn.ModuleList(nn.Softmax(dim=-1) for _ in range(4))
        self.proj = nn.Conv2d(channels, channels, 1)

    def _group(self, k: int, xk: torch.Tensor) -> torch.Tensor:
        h, w = xk.shape[-2:]
        size = (min(self.tokens[k], h), min(self.tokens[k], w))
        t = F.adaptive_max_pool2d(xk, size) + F.adaptive_avg_pool2d(xk, size)    # MP + AP, (B, C/4, P, P)
        t = rearrange(t, "b c h w -> b (h w) c")
        q, kk = self.qk[k](self.act(self.norm[k](t))).chunk(2, dim=-1)           # (B, P², C/4) each
        logits = q.transpose(-2, -1) @ kk                                        # Qᵀ K: (B, C/4, C/4)
        if self.scale:
            logits = logits / math.sqrt(t.shape[1])
        attn = self.attend[k](logits)
        v = self.v[k](rearrange(xk, "b c h w -> b (h w) c"))                     # (B, HW, C/4)
        return rearrange(v @ attn, "b (h w) c -> b c h w", h=h, w=w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.chunk(4, dim=1)
        outs: list[torch.Tensor] = []
        for k, xk in enumerate(groups):
            xk = xk if k == 0 else xk + outs[-1]          # Eq. 10: X_i = X_s + X'_{i-1}
            outs.append(self._group(k, xk))
        return self.proj(torch.cat(outs, dim=1))


# --- FAConv (Eq. 11) -----------------------------------------------------------------------------------
class FAConv(nn.Module):
    """Fourier Analysis Convolution (Eq. 11): ``[cos(z_p), sin(z_p), GELU(z_g)]``, ``[z_p, z_g] = Conv3x3(x)``.

    One 3x3 conv maps C -> C/4 + C/2 channels; the C/4 "periodic" channels ``z_p`` pass through both cos
    and sin (C/2 channels, Fourier features of the conv response), the other C/2 through GELU; the three
    parts are concatenated to C channels. ``periodic`` = C/4 is the paper's split (our reading of "C/4
    through cos and sin"); probe points ``cos``, ``sin``, ``gelu`` (identities on the three parts).

    Shape:
        (B, C, H, W) -> (B, C, H, W), C divisible by 4

    Examples:
        >>> FAConv(channels=8)(torch.rand(1, 8, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    def __init__(self, *, channels: int, periodic_fraction: float = 0.25) -> None:
        super().__init__()
        p = int(round(channels * periodic_fraction))
        if p < 1 or channels - 2 * p < 1:
            raise ValueError(f"FAConv: channels={channels} with periodic_fraction={periodic_fraction} leaves "
                             f"no periodic or no GELU channels")
        self.split = (p, channels - 2 * p)       # (C/4, C/2) by default
        self.conv = nn.Conv2d(channels, sum(self.split), 3, padding=1)
        self.act = nn.GELU()
        self.cos, self.sin, self.gelu = nn.Identity(), nn.Identity(), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z_p, z_g = self.conv(x).split(self.split, dim=1)
        parts = [self.cos(torch.cos(z_p)), self.sin(torch.sin(z_p)), self.gelu(self.act(z_g))]
        return torch.cat(parts, dim=1)


class ConvGELU(nn.Module):
    """The "w/o FAConv" replacement: Conv3x3 (C -> C) + GELU. ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


# --- MMFM: Multi-dimensional Modulation Fusion Module (Fig. 3 (b)) ---------------------------------------
class ExtractionRound(nn.Module):
    """One round of MMFM's interaction: SE, CE, MPSA, each residual.

    The paper names "spatial extraction (SE), channel extraction (CE) and the MPSA" without their layers;
    ours: SE = depthwise 3x3 conv + GELU, CE = 1x1 conv + GELU. ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, channels: int, *, hidden: int = 4, strip: int = 7, entropy_weighting: bool = True,
                 entropy: str = "positions") -> None:
        super().__init__()
        self.se = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.GELU())
        self.ce = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.GELU())
        self.mpsa = MPSA(hidden=hidden, strip=strip, entropy_weighting=entropy_weighting, entropy=entropy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.se(x)
        x = x + self.ce(x)
        return x + self.mpsa(x)


class MMFM(nn.Module):
    r"""MMFM of level l, the three parts of the text under Fig. 3 (b).

    (1) **Cross-modal interaction**: "summing and channel splicing operations are performed on VI_enl,
    IR_enl, and the up-sampled Fusion_{l+1}": ``s = VIE + IRE + up F`` (F broadcast over C) and
    ``c = Conv1x1([VIE, IRE, up F])`` (2C+1 -> C); "the two outputs are subsequently fed into SE, CE and the
    MPSA ... many times": ``x = Conv1x1([s, c])`` (2C -> C), then ``rounds`` :class:`ExtractionRound`.
    (2) **Self-enhancement**: "VI_enl, IR_enl complete further feature enhancement through the designed
    MSRT": ``e_vi = VIE + MSRT_vi(VIE)``, ``e_ir = IRE + MSRT_ir(IRE)`` (one MSRT per modality).
    (3) **Full fusion**: "fused and supplemented with De_{l+1} and Fusion_{l+1}":
    ``FF = Conv1x1([x, e_vi, e_ir, up De_{l+1}, up F])``. At l = L there is no De_{l+1}, Fusion_{l+1}.

    Ours: the 1x1 convs that bring concatenations back to C, the residuals, ``rounds`` = 2 for "many
    times", separate MSRT weights per modality. ``use_attention=False`` ("w/o MMFM", Table 3):
    ``FF = Conv1x1([VIE, IRE, up De_{l+1}, up F])`` only.

    Shape:
        vie, ire (B, C, H, W); de (B, C', H', W') and pred (B, 1, H', W') or None -> (B, C, H, W)

    Examples:
        >>> MMFM(channels=8, coarser=None)(torch.rand(1, 8, 8, 8), torch.rand(1, 8, 8, 8)).shape
        torch.Size([1, 8, 8, 8])
    """

    def __init__(self, *, channels: int, coarser: int | None, hidden: int = 4, strip: int = 7,
                 tokens: Sequence[int] = (16, 8, 4, 2), msrt_scale: bool = True, rounds: int = 2,
                 entropy_weighting: bool = True, entropy: str = "positions", use_attention: bool = True
                 ) -> None:
        super().__init__()
        c = channels
        self.has_coarser = coarser is not None
        n_pred = 1 if self.has_coarser else 0
        n_de = int(coarser) if self.has_coarser else 0
        self.use_attention = use_attention
        if use_attention:
            self.splice = nn.Conv2d(2 * c + n_pred, c, 1)
            self.merge = nn.Conv2d(2 * c, c, 1)
            self.rounds = nn.ModuleList(ExtractionRound(c, hidden=hidden, strip=strip,
                                                        entropy_weighting=entropy_weighting, entropy=entropy)
                                        for _ in range(rounds))
            self.msrt_vi = MSRT(channels=c, tokens=tokens, scale=msrt_scale)
            self.msrt_ir = MSRT(channels=c, tokens=tokens, scale=msrt_scale)
            self.fuse = nn.Conv2d(3 * c + n_de + n_pred, c, 1)
        else:
            self.fuse = nn.Conv2d(2 * c + n_de + n_pred, c, 1)

    def forward(self, vie: torch.Tensor, ire: torch.Tensor, de: torch.Tensor | None = None,
                pred: torch.Tensor | None = None) -> torch.Tensor:
        if self.has_coarser != (de is not None and pred is not None):
            raise ValueError("MMFM: De_{l+1} and Fusion_{l+1} are given exactly when the level has a coarser one")
        extra: list[torch.Tensor] = []
        if de is not None and pred is not None:
            size = vie.shape[-2:]
            de = F.interpolate(de, size=size, mode="bilinear", align_corners=False)
            pred = F.interpolate(pred, size=size, mode="bilinear", align_corners=False)
            extra = [de, pred]
        if not self.use_attention:
            return self.fuse(torch.cat([vie, ire, *extra], dim=1))
        up_f = extra[1:]                                           # [up Fusion_{l+1}] or []
        s = vie + ire + (up_f[0] if up_f else 0.0)                 # summing
        c = self.splice(torch.cat([vie, ire, *up_f], dim=1))       # channel splicing
        x = self.merge(torch.cat([s, c], dim=1))
        for r in self.rounds:                                      # SE, CE, MPSA "many times"
            x = r(x)
        e_vi = vie + self.msrt_vi(vie)                             # self-enhancement
        e_ir = ire + self.msrt_ir(ire)
        return self.fuse(torch.cat([x, e_vi, e_ir, *extra], dim=1))   # full fusion -> FF_l


# --- encoder ---------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """ResNet basic block: ``ReLU(BN(conv3(ReLU(BN(conv3_s(x))))) + skip(x))``; skip = 1x1 conv + BN when the
    shape changes. ``(B, Cin, H, W) -> (B, Cout, H/s, W/s)``.

    Examples:
        >>> ResBlock(1, 4, stride=2)(torch.rand(1, 1, 8, 8)).shape
        torch.Size([1, 4, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + self.skip(x))


class Encoder(nn.Module):
    """One modality's ResNet-style encoder: level 1 at full resolution, each next level a stride-2 block.

    Shape:
        (B, 1, H, W) -> [(B, C_1, H, W), (B, C_2, H/2, W/2), ..., (B, C_L, H/2^{L-1}, W/2^{L-1})]

    Examples:
        >>> [tuple(f.shape) for f in Encoder((4, 8))(torch.rand(1, 1, 8, 8))]
        [(1, 4, 8, 8), (1, 8, 4, 4)]
    """

    def __init__(self, channels: Sequence[int], in_channels: int = 1) -> None:
        super().__init__()
        chans = [in_channels, *channels]
        self.levels = nn.ModuleList(ResBlock(chans[i], chans[i + 1], stride=1 if i == 0 else 2)
                                    for i in range(len(channels)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.levels:
            x = block(x)
            feats.append(x)
        return feats


# --- decoder ---------------------------------------------------------------------------------------------
class DecoderStage(nn.Module):
    """Decoder of level l (Fig. 3 (c)): ``De_l = FF_l + FAConv(FF_l)``.

    The paper puts FAConv in the decoder and draws the layout in a figure only; the residual is ours.
    ``use_faconv=False`` ("w/o FAConv") uses :class:`ConvGELU` instead. ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, channels: int, *, use_faconv: bool = True, periodic_fraction: float = 0.25) -> None:
        super().__init__()
        self.body: nn.Module = (FAConv(channels=channels, periodic_fraction=periodic_fraction) if use_faconv
                                else ConvGELU(channels=channels))

    def forward(self, ff: torch.Tensor) -> torch.Tensor:
        return ff + self.body(ff)


# --- the network ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AIDFusionConfig:
    """AIDFusion hyper-parameters. The paper gives L and no widths: every number below is ours unless marked."""

    channels: tuple[int, ...] = (12, 16, 36, 56)  # ours: L = 4; widths chosen to land near 0.247 M params
    in_channels: int = 1                         # one luminance channel per modality
    mpsa_hidden: int = 4                         # ours: channels inside each MPSA perspective gate
    strip: int = 7                               # paper: strip convolution with kernel 7
    msrt_tokens: tuple[int, int, int, int] = (16, 8, 4, 2)  # ours: token side P_i of MSRT group i
    msrt_scale: bool = True                      # ours: Qᵀ K / √(P²); False: the printed unscaled Softmax
    mmfm_rounds: int = 2                         # ours: "many times" = 2 rounds of SE, CE, MPSA
    entropy_weighting: bool = True               # paper Eq. 9; False: mean of the three perspectives
    mpsa_entropy: str = "positions"              # ours: Entropy() over map positions; or "binary" (map_entropy)
    periodic_fraction: float = 0.25              # paper: C/4 through cos and sin, C/2 through GELU
    use_mmfm: bool = True                        # False: ablation "w/o MMFM" (1x1 conv of the same inputs)
    use_faconv: bool = True                      # False: ablation "w/o FAConv" (3x3 conv + GELU)
    reconstruction: bool = True                  # reconstructed VI, IR for L_Reconstruct (Eq. 7)

    def __post_init__(self) -> None:
        if len(self.channels) < 1 or any(c % 4 for c in self.channels):
            raise ValueError(f"AIDFusionConfig.channels must be a non-empty tuple of multiples of 4 "
                             f"(MSRT and FAConv split C in quarters), got {self.channels!r}")

    @property
    def levels(self) -> int:
        return len(self.channels)


class AIDFusion(nn.Module):
    """AIDFusion: ``forward(ir, vi) -> fused`` ``(B, 1, H, W)`` in (0, 1); ``forward_all`` for training.

    Probe points: ``mmfm.{l}.rounds.{r}.mpsa.{hw,hc,wc}.attend`` (perspective maps),
    ``mmfm.{l}.rounds.{r}.mpsa.weigh`` (entropy weights), ``mmfm.{l}.msrt_{vi,ir}.attend.{k}`` (C/4 x C/4
    attention of group k), ``dec.{l}.body.{cos,sin,gelu}`` (FAConv parts), ``heads.{l}`` (per-level
    predictions before the sigmoid). Index ``l`` is 0-based (Fusion_1 = index 0, full resolution).

    Args:
        config: an ``AIDFusionConfig``; keyword ``overrides`` replace its fields.

    Examples:
        >>> m = AIDFusion(channels=(4, 8), mpsa_hidden=2)
        >>> m(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)).shape
        torch.Size([1, 1, 16, 16])
        >>> out = m.forward_all(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
        >>> [tuple(p.shape) for p in out["levels"]]
        [(1, 1, 16, 16), (1, 1, 8, 8)]
    """

    def __init__(self, config: AIDFusionConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = AIDFusionConfig(**overrides) if config is None else dataclasses.replace(config, **overrides)
        self.config = cfg
        ch = cfg.channels
        self.enc_ir = Encoder(ch, cfg.in_channels)
        self.enc_vi = Encoder(ch, cfg.in_channels)
        self.mmfm = nn.ModuleList(
            MMFM(channels=c, coarser=ch[i + 1] if i + 1 < len(ch) else None, hidden=cfg.mpsa_hidden,
                 strip=cfg.strip, tokens=cfg.msrt_tokens, msrt_scale=cfg.msrt_scale, rounds=cfg.mmfm_rounds,
                 entropy_weighting=cfg.entropy_weighting, entropy=cfg.mpsa_entropy, use_attention=cfg.use_mmfm)
            for i, c in enumerate(ch))
        self.dec = nn.ModuleList(DecoderStage(c, use_faconv=cfg.use_faconv, periodic_fraction=cfg.periodic_fraction)
                                 for c in ch)
        self.heads = nn.ModuleList(nn.Conv2d(c, cfg.in_channels, 3, padding=1) for c in ch)
        if cfg.reconstruction:
            self.recon_ir = nn.Conv2d(ch[0], cfg.in_channels, 3, padding=1)
            self.recon_vi = nn.Conv2d(ch[0], cfg.in_channels, 3, padding=1)

    @property
    def levels(self) -> int:
        return self.config.levels

    def _run(self, ir: torch.Tensor, vi: torch.Tensor, reconstruct: bool) -> dict[str, Any]:
        _check_pair(ir, vi, self.config.in_channels)
        f_ir, f_vi = self.enc_ir(ir), self.enc_vi(vi)
        preds: list[torch.Tensor | None] = [None] * self.levels
        d = p = None
        for i in reversed(range(self.levels)):             # coarse to fine: l = L .. 1
            ff = self.mmfm[i](f_vi[i], f_ir[i], d, p)      # FF_l from VIE_l, IRE_l, De_{l+1}, Fusion_{l+1}
            d = self.dec[i](ff)                            # De_l
            p = torch.sigmoid(self.heads[i](d))            # Fusion_l
            preds[i] = p
        out: dict[str, Any] = {"fused": preds[0], "levels": preds}
        if reconstruct and self.config.reconstruction:
            out["recon_ir"] = torch.sigmoid(self.recon_ir(f_ir[0]))
            out["recon_vi"] = torch.sigmoid(self.recon_vi(f_vi[0]))
        return out

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return self._run(ir, vi, reconstruct=False)["fused"]

    def forward_all(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, Any]:
        """Every output DIILS supervises: ``{"fused", "levels", "recon_ir", "recon_vi"}``.

        ``levels`` is ``[Fusion_1 .. Fusion_L]``, ``levels[l-1]`` of shape
        ``(B, 1, H / 2^{l-1}, W / 2^{l-1})``;
        ``fused is levels[0]``.
        """
        return self._run(ir, vi, reconstruct=True)

    def laziness_blocks(self) -> dict[str, list[str]]:
        """Functional blocks of Fig. 1: encoder, fusion (MMFM), decoder, prediction (heads + recon)."""
        pred = ["heads."] + (["recon_ir.", "recon_vi."] if self.config.reconstruction else [])
        return {"encoder": ["enc_ir.", "enc_vi."], "fusion": ["mmfm."], "decoder": ["dec."],
                "prediction": pred}


def _check_pair(ir: torch.Tensor, vi: torch.Tensor, channels: int) -> None:
    for name, t in (("ir", ir), ("vi", vi)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != channels:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"AIDFusion: {name} must be (B, {channels}, H, W), got {shape}")
    if ir.shape != vi.shape:
        raise ValueError(f"AIDFusion: ir {tuple(ir.shape)} and vi {tuple(vi.shape)} must have the same shape")


# --- recipes and training --------------------------------------------------------------------------------
#: SGD momentum: the paper says "SGD, lr 1e-3" only; 0.9 is our choice (plain SGD at 1e-3 barely moves).
SGD_MOMENTUM = 0.9

AID_RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        optimizer="sgd", lr=1e-3, weight_decay=0.0,           # paper Sec. 4.1 (weight decay not given: 0)
        batch_size=12, crop_size=352, epochs=100,             # batch 12, 100 epochs, MSRS resized to 352²
        datasets=("msrs/train",),
        notes="AIDFusion, Implementation details: SGD lr 0.001, 100 epochs, batch 12, MSRS train resized "
              "(not cropped) to 352x352 (resize_pair); momentum 0.9 ours"),
    "lab": Recipe(
        optimizer="sgd", lr=1e-3, batch_size=12, crop_size=160, epochs=20,
        datasets=("msrs/train*50", "roadscene/train"),
        notes="one GPU, minutes (about an hour on one CPU core): the paper's optimiser on random 160² crops, "
              "20 epochs of 34 steps (Eq. 1: Fusion_1 alone for epochs 1-10, all four levels from epoch 15); "
              "the 4 bundled MSRS training pairs repeated 50 times, so MSRS (the paper's only training set) is "
              "half of each epoch beside the 200 RoadScene pairs (ours: with each MSRS pair once, 2 % of the "
              "crops, the network came out too dark on MSRS night scenes)"),
    "smoke": Recipe(
        optimizer="sgd", lr=1e-3, batch_size=4, crop_size=64, epochs=10,
        datasets=("msrs/train", "roadscene/train"),
        notes="CI on a CPU: the paper's optimiser, 10 short epochs on 64² crops (Eq. 1: Fusion_1 alone for "
              "epochs 1-5, then Fusion_1-2, Fusion_1-3, and all four levels for epochs 8-10); "
              "checks the loop and draws real laziness points, learns little"),
}


def resize_pair(size: int | tuple[int, int]) -> Callable[[dict], dict]:
    """A dataset ``transform`` resizing ``ir``/``vi`` (and ``vi_cbcr``) to ``size`` (the paper's 352 x 352).

    Bilinear with antialiasing; use as ``data.bundled("msrs", "train", transform=resize_pair(352))``.
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)

    def transform(sample: dict) -> dict:
        out = dict(sample)
        for key in ("ir", "vi", "vi_cbcr"):
            t = out.get(key)
            if isinstance(t, torch.Tensor) and t.ndim == 3:
                out[key] = F.interpolate(t[None], size=hw, mode="bilinear", align_corners=False,
                                         antialias=True)[0].clamp(0, 1)
        return out

    return transform


def train_aidfusion(
    model: AIDFusion,
    loader: Any,
    *,
    recipe: Recipe,
    device: str | torch.device = "auto",
    seed: int = 0,
    out_dir: str | None = None,
    epochs: int | None = None,
    callbacks: Sequence[Any] = (),
    max_steps_per_epoch: int | None = None,
    progress: bool = True,
    strategy: str = "diils",
    loss: Any = None,
    momentum: float | None = None,
):
    """Train AIDFusion with DIILS (``strategy="diils"``) or one final supervision (``"final"``, the baseline).

    SGD (``recipe.lr``, ``momentum`` (default ``recipe.momentum`` when the recipe has one, else
    ``SGD_MOMENTUM``), ``recipe.weight_decay``) through :func:`fusionlib.train.fit`; the loss is
    ``loss`` or a default :class:`fusionlib.diils.DIILSLoss` for ``model.levels`` with the given strategy and
    T = the run's epochs (Eq. 1's "all epochs"). A
    :class:`fusionlib.diils.PHOCallback` tells the loss the epoch, so the PHO schedule (Eq. 1) follows
    training and resume.

    Returns:
        ``fusionlib.train.History``; per-epoch records hold the loss terms (``acf_l1`` ..., ``omega_l1`` ...,
        ``rec``, ``corr_s``, ``corr_guard``) and ``n_active`` (how many levels Eq. 1 supervised).
    """
    from fusionlib.diils import DIILSLoss, PHOCallback
    from fusionlib.train import fit

    if recipe.optimizer != "sgd":
        raise ValueError(f"train_aidfusion: the paper trains with SGD; recipe.optimizer is "
                         f"{recipe.optimizer!r}")
    if strategy not in ("diils", "final"):
        raise ValueError(f"train_aidfusion: strategy must be 'diils' or 'final', got {strategy!r}")
    n_epochs = int(epochs if epochs is not None else (recipe.epochs or 1))
    if loss is None:
        loss = DIILSLoss(levels=model.levels, strategy=strategy, epochs=n_epochs)
    elif getattr(loss, "levels", model.levels) != model.levels:
        raise ValueError(f"train_aidfusion: loss.levels={loss.levels} but the model has {model.levels} "
                         f"levels")
    if momentum is None:
        momentum = float(getattr(recipe, "momentum", SGD_MOMENTUM))
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=momentum,
                          weight_decay=recipe.weight_decay)

    def step(net: nn.Module, batch: dict) -> Any:
        ir, vi = batch["ir"], batch["vi"]
        outputs = _unwrap(net).forward_all(ir, vi)   # DDP: forward_all bypasses the wrapper (single process)
        return loss(outputs, ir, vi)

    return fit(model, step, loader, epochs=n_epochs, optimizer=opt, device=device, seed=seed, out_dir=out_dir,
               clip_grad_norm=recipe.clip_grad_norm, callbacks=[PHOCallback(loss), *callbacks],
               max_steps_per_epoch=max_steps_per_epoch, progress=progress,
               run={"recipe": recipe, "strategy": strategy})


class EpochMetrics:
    """A ``fit`` callback: fusion metrics of the model on fixed pairs after every epoch (AIDFusion Fig. 1 c).

    Args:
        pairs: ``[(ir, vi), ...]`` of ``(1, 1, H, W)`` tensors (kept on the CPU, moved to the model's device).
        preset: a ``fusionlib.metrics`` preset name.
        metrics: metric names of that preset.

    ``records``: one dict per epoch, ``{"epoch", <metric>: mean over the pairs}``. The model runs in eval
    mode under ``no_grad`` and is put back in train mode.
    """

    def __init__(self, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], *, preset: str = "cddfuse",
                 metrics: Sequence[str] = ("EN", "SD", "CC", "SCD", "SSIM")) -> None:
        if not pairs:
            raise ValueError("EpochMetrics: give at least one (ir, vi) pair")
        self.pairs, self.preset, self.metrics = list(pairs), preset, list(metrics)
        self.records: list[dict[str, float]] = []

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean of each metric over the pairs, for ``model`` as it is now."""
        from fusionlib import metrics as fm

        dev = next(model.parameters()).device
        was_training = model.training
        model.eval()
        sums = dict.fromkeys(self.metrics, 0.0)
        with torch.no_grad():
            for ir, vi in self.pairs:
                fused = model(ir.to(dev), vi.to(dev)).clamp(0, 1).cpu()
                vals = fm.evaluate(fused, ir, vi, self.preset, self.metrics)
                for k in self.metrics:
                    sums[k] += float(vals[k])
        model.train(was_training)
        return {k: v / len(self.pairs) for k, v in sums.items()}

    def on_train_start(self, state: Any) -> None:
        if not self.records:
            self.records.append({"epoch": int(state.epoch), **self.evaluate(_unwrap(state.model))})

    def on_epoch_end(self, state: Any) -> None:
        self.records.append({"epoch": int(state.epoch), **self.evaluate(_unwrap(state.model))})

    def state_dict(self) -> dict[str, Any]:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state: Any) -> None:
        self.records = [dict(r) for r in state.get("records", [])]


def _unwrap(net: nn.Module) -> nn.Module:
    from fusionlib.train import unwrap_model

    return unwrap_model(net)


register_model("aidfusion", AIDFusion, AIDFusionConfig())
register_model("aidfusion_tiny", AIDFusion, AIDFusionConfig(channels=(4, 8), mpsa_hidden=2))
