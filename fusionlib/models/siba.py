"""SIBA: "The Source Image is the Best Attention for Infrared and Visible Image Fusion" (ICCV 2025).

Song Wang, Xie Han, Liqun Kuang, Boying Wang, Zhongyu Chen, Zherui Qiao, Fan Yang, Xiaoxia Liu,
Bingyu Zhang, Zhixun Wang. Authors' code: ``Afreshbird/SIBA`` @ 880a1dd (``models/SIBA.py``,
``base_blocks/*``, ``loss/loss.py``, ``train.py``); released weights ``checkpoint/SIBA_epoch60.pth``
(load them with ``fusionlib.checkpoints.load_siba_released``).

The idea: an infrared image already *is* an attention map. The paper's evidence (Fig. 1a, b) is Grad-CAM
of an ImageNet ResNet-50 on two *visible* photos of dogs; infrared images are "strikingly similar" to such
maps (Fig. 1c, e), hot regions playing the "important areas". So the raw source image, lifted to C channels
by a CBSM, is the **query** of a channel cross-attention whose keys and values are the other modality's
features. I-SCA (source infrared cross attention) takes the query from the infrared image and K, V from the
visible features; V-SCA mirrors it.
Each image and its negative ``1 - x`` both serve as queries, so there are four cross-attention blocks.

Figure 2, as the released code builds it (C = 48, h = 8 heads)::

    ir -> ResSE stem -> RestormerBlock -> f_ir           vi -> ResSE stem -> RestormerBlock -> f_vi
    q: cbsm_ir(ir), cbsm_irI(1 - ir), cbsm_vi(vi), cbsm_viI(1 - vi)            (B, C, H, W) each
    I-SCA: ca_ir2vi(f_vi, q_ir), ca_irI2vi(f_vi, q_irI)   V-SCA: ca_vi2ir(f_ir, q_vi), ca_viI2ir(f_ir, q_viI)
    cat[ir2vi, vi2ir, irI2vi, viI2ir] (4C) -> ResSE(4C->2C) -> ResSE(2C->C) -> ResSE(C->1, no SE) -> fused

The output ends in a PReLU, so it may leave [0, 1]; the authors' test script clamps it, we leave that to
the pipeline. Images are ``(B, 1, H, W)`` in [0, 1]; ``vi`` is the Y (BT.601 luma) channel.

Deviations from the authors' code: none in the default configuration (the released weights reproduce
the authors' outputs to < 1e-4; ``tests/test_siba.py``). Parameter *names* differ (Restormer's names, role
names); ``fusionlib.checkpoints.siba_key_map`` is the table. Switches:

- ``query_layernorm=True``: the paper's text (the CBSM query "undergoes LN" before I-SCA/V-SCA); the
  released code feeds the raw CBSM output. Adds one LayerNorm (2C parameters) per cross-attention block.
- SE bottlenecks use ``max(1, C // 16)`` units so that tiny test widths (C < 16) build.
- The ablations of the paper's Sec. 4.3, as ``SIBAConfig`` fields (``ABLATIONS`` lists the rows):
  ``sca="i_only"`` (Table 2: "utilize only I-SCA"; the two V-SCA blocks and their queries go),
  ``sca="none"`` (Table 3 "w/o I/V-SCA": "directly removing the proposed modules"),
  ``sca="restormer"`` (Table 3 "to Restormer": each SCA block becomes a RestormerBlock on the same
  features, no query), ``query="parameters" | "conv1x1" | "conv3x3"`` (Table 4: "substitute CBSM with
  Parameters, Conv1x1, and Conv3x3"). The paper does not say what a removed block leaves behind. Our default
  ``removed_sca="identity"`` passes the features the block would have read to its slot of the concat, so the
  fusion head stays as in Fig. 2 and the infrared branch still reaches the output under "I-SCA only";
  ``removed_sca="drop"`` removes the slot instead (the head's input narrows; under "I-SCA only" the
  infrared stem and Restormer block then feed nothing). No training code for the ablations was released.

``SIBA.forward_fast`` computes the same function about 1.7-2x faster on CPU, for inference
(``fusionlib/models/siba_fast.py``: channels-last, shared LayerNorm/K-V work, folded attention).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from fusionlib.layers import GDFN, SE, LayerNorm2d, ResSE, RestormerBlock, channel_attention
from fusionlib.losses import gradient_max_loss, intensity_max_loss, laplacian_select_loss
from fusionlib.models._registry import register_model
from fusionlib.recipes import Recipe

__all__ = ["ABLATIONS", "CBSM", "ParameterQuery", "SCA", "SCABlock", "SIBA", "SIBAConfig", "SIBALoss", "SIBA_RECIPES",
           "PAPER", "make_query", "quantize_output", "train_siba"]

#: Numbers the paper reports (Tab. of complexity) and what the code measures (notebooks/released_code.md §SIBA).
PAPER = {"params_M": 0.565, "flops_G_128x128": 9.207, "params_code": 565_941}


# --- CBSM: adaptive channel boosting and intelligent space mapping -----------------------------------
class CBSM(nn.Module):
    """Adaptive channel boosting and intelligent space mapping module: lifts a 1-channel image to C.

    ``act(se(conv2(act(conv1(image)))))`` with 3x3 convs (bias), SE (r = 16), and **one** PReLU used twice
    (one slope), as released. No residual. Its output is the query of I-SCA / V-SCA; hook this module to
    see the "boosted" source image.

    Args:
        dim: output channels C.
        in_channels: image channels.
        reduction: SE reduction r.

    Shape:
        image (B, 1, H, W) -> query (B, C, H, W)

    Examples:
        >>> CBSM(dim=8)(torch.rand(2, 1, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(self, *, dim: int, in_channels: int = 1, reduction: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)
        self.act = nn.PReLU()  # one slope, used twice
        self.se = SE(dim, reduction)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.conv2(self.act(self.conv1(image)))))


# --- I-SCA / V-SCA: the source image as the query --------------------------------------------------
class SCA(nn.Module):
    """Source-image cross attention: query = CBSM(image), key/value = the other modality's features.

    K and V come from ``x`` (already layer-normalised by the block) through a 1x1 conv and a depthwise
    3x3 conv (C -> 2C, split K | V). The query is used as given (the released code applies no projection).
    Then Restormer's transposed attention per head: ``softmax(q̂ k̂^T * temperature) v`` with q̂, k̂
    L2-normalised over pixels, a ``(C/h x C/h)`` map per head (global over the image, linear in H*W),
    and a 1x1 output projection.

    Args:
        dim: channels C.
        num_heads: h.
        bias: bias in the convs (False as released).

    Shape:
        x (B, C, H, W), query (B, C, H, W) -> (B, C, H, W); ``attend`` sees (B, h, C/h, C/h).

    Examples:
        >>> SCA(dim=8, num_heads=2)(torch.rand(1, 8, 6, 6), torch.rand(1, 8, 6, 6)).shape
        torch.Size([1, 8, 6, 6])
    """

    def __init__(self, *, dim: int, num_heads: int, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.kv = nn.Conv2d(dim, 2 * dim, 1, bias=bias)
        self.kv_dwconv = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim, bias=bias)
        self.attend = nn.Softmax(dim=-1)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        if query.shape != x.shape:
            raise ValueError(f"SCA: query {tuple(query.shape)} must match features {tuple(x.shape)}")
        k, v = self.kv_dwconv(self.kv(x)).chunk(2, dim=1)
        out = channel_attention(query, k, v, num_heads=self.num_heads, temperature=self.temperature,
                                attend=self.attend)
        return self.project_out(out)


class SCABlock(nn.Module):
    """I-SCA / V-SCA block (the authors' ``TransformerBlock_CA``): a Restormer block whose attention is SCA.

    ``x = x + SCA(LN(x), LN_q(query))``, then ``x = x + GDFN(LN(x))``. ``LN_q`` is the identity as
    released, a LayerNorm with ``query_layernorm=True`` (the paper's text). I-SCA and V-SCA are the same
    block; they differ only in which modality gives the query and which the features.

    Args:
        dim: channels C.
        num_heads: heads h.
        ffn_expansion_factor: GDFN width factor.
        bias: bias in the convs.
        LayerNorm_type: ``"WithBias"`` or ``"BiasFree"``.
        query_layernorm: layer-normalise the query.

    Shape:
        x (B, C, H, W) features, query (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> SCABlock(dim=8, num_heads=2)(torch.rand(1, 8, 6, 6), torch.rand(1, 8, 6, 6)).shape
        torch.Size([1, 8, 6, 6])
    """

    def __init__(self, *, dim: int, num_heads: int, ffn_expansion_factor: float = 1.0, bias: bool = False,
                 LayerNorm_type: str = "WithBias", query_layernorm: bool = False) -> None:  # noqa: N803
        super().__init__()
        self.norm1 = LayerNorm2d(dim, LayerNorm_type)
        self.norm_q = LayerNorm2d(dim, LayerNorm_type) if query_layernorm else nn.Identity()
        self.attn = SCA(dim=dim, num_heads=num_heads, bias=bias)
        self.norm2 = LayerNorm2d(dim, LayerNorm_type)
        self.ffn = GDFN(dim=dim, ffn_expansion_factor=ffn_expansion_factor, bias=bias)

    def forward(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), self.norm_q(query))
        return x + self.ffn(self.norm2(x))


# --- Full network (Fig. 2) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SIBAConfig:
    """SIBA hyper-parameters; defaults are the released model's (``models/SIBA.py``, ``args_SIBA.py``)."""

    dim: int = 48                       # authors' code: ch_mid = 48
    num_heads: int = 8                  # authors' code: 8 heads of 6 channels
    ffn_expansion_factor: float = 1.0   # authors' code (Restormer's default is 2.66)
    bias: bool = False                  # attention / GDFN convs, as Restormer
    LayerNorm_type: str = "WithBias"    # authors' code
    sa_depth: int = 1                   # Restormer blocks per modality (SA_depths = 1)
    se_reduction: int = 16              # authors' code
    query_layernorm: bool = False       # False: the code; True: the paper's "query undergoes LN"
    in_channels: int = 1                # one luminance channel per modality
    # ablations of the paper's Sec. 4.3 (the defaults are the full model of Fig. 2):
    sca: str = "both"                   # "both" | "i_only" (Tab. 2) | "none", "restormer" (Tab. 3)
    removed_sca: str = "identity"       # a removed SCA's slot: "identity" (its features) | "drop" (no slot)
    query: str = "cbsm"                 # Tab. 4: "cbsm" | "parameters" | "conv1x1" | "conv3x3"

    def __post_init__(self) -> None:
        for name, allowed in (("sca", SCA_MODES), ("removed_sca", ("identity", "drop")), ("query", QUERY_KINDS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"SIBAConfig.{name}={getattr(self, name)!r}; expected one of {allowed}")

    @property
    def is_full_model(self) -> bool:
        """True for Fig. 2's network (all four SCA blocks, CBSM queries), whatever the widths."""
        return self.sca == "both" and self.query == "cbsm"


#: ``SIBAConfig.sca``: which cross-attention slots hold a source-image cross attention.
SCA_MODES = ("both", "i_only", "none", "restormer")
#: ``SIBAConfig.query``: what lifts a source image to the C-channel query (Table 4's rows and CBSM).
QUERY_KINDS = ("cbsm", "parameters", "conv1x1", "conv3x3")
#: the four slots of the concat, in the released order: (block, features it reads, query image, is I-SCA)
SLOTS = (("ca_ir2vi", "vi", "ir", True), ("ca_vi2ir", "ir", "vi", False),
         ("ca_irI2vi", "vi", "irI", True), ("ca_viI2ir", "ir", "viI", False))
#: the paper's ablation rows (Tables 2-4) as ``SIBAConfig`` overrides; the full model is ``{}``
ABLATIONS: dict[str, dict[str, dict[str, str]]] = {
    "Table 2": {"I-SCA only": {"sca": "i_only"}},
    "Table 3": {"w/o I/V-SCA": {"sca": "none"}, "to Restormer": {"sca": "restormer"}},
    "Table 4": {"Parameters": {"query": "parameters"}, "Conv1x1": {"query": "conv1x1"},
                "Conv3x3": {"query": "conv3x3"}},
}


class ParameterQuery(nn.Module):
    """Table 4's "Parameters": the image copied to C channels, each copy scaled by a learnt weight.

    ``query[:, c] = w_c · image`` with ``w`` initialised to ones (no bias; a 1x1 conv from one channel is
    the same map plus a bias, Table 4's "Conv1x1"). No activation, no SE: the paper's point (Sec. 3.2) is
    that such a lift leaves the "multi-channel feature space ... in the initial state".

    Shape:
        image (B, 1, H, W) -> (B, C, H, W)

    Examples:
        >>> ParameterQuery(dim=4)(torch.ones(1, 1, 2, 2)).shape
        torch.Size([1, 4, 2, 2])
    """

    def __init__(self, *, dim: int, in_channels: int = 1) -> None:
        super().__init__()
        if in_channels != 1:
            raise ValueError("ParameterQuery lifts a one-channel image")
        self.weight = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.weight


def make_query(kind: str, *, dim: int, in_channels: int = 1, reduction: int = 16) -> nn.Module:
    """The module that lifts a source image to the C-channel query: CBSM (Eq. 1) or a Table 4 stand-in.

    ``"conv1x1"`` / ``"conv3x3"`` are one ``nn.Conv2d(in_channels, dim, k)`` with bias (PyTorch's default
    init), no activation: the paper names only the layer ("substitute CBSM with ... Conv1x1, and Conv3x3").
    """
    if kind == "cbsm":
        return CBSM(dim=dim, in_channels=in_channels, reduction=reduction)
    if kind == "parameters":
        return ParameterQuery(dim=dim, in_channels=in_channels)
    if kind in ("conv1x1", "conv3x3"):
        k = 1 if kind == "conv1x1" else 3
        return nn.Conv2d(in_channels, dim, k, padding=k // 2)
    raise ValueError(f"unknown query kind {kind!r}; expected one of {QUERY_KINDS}")


class SIBA(nn.Module):
    """The SIBA network: ``forward(ir, vi) -> fused``, all ``(B, 1, H, W)``; output unclamped (PReLU).

    Probe points (forward hooks): ``cbsm_{ir,irI,vi,viI}`` (the four queries),
    ``ca_*.attn.attend`` (the (B, h, C/h, C/h) attention maps), ``stem_*``, ``sa_*``, ``ca_*``, ``fuse_conv``.

    Args:
        config: a ``SIBAConfig``; keyword ``overrides`` replace its fields.

    Examples:
        >>> m = SIBA(dim=8, num_heads=2)
        >>> m(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)).shape
        torch.Size([1, 1, 16, 16])
    """

    def __init__(self, config: SIBAConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = SIBAConfig(**overrides) if config is None else dataclasses.replace(config, **overrides)
        self.config = cfg
        c, r = cfg.dim, cfg.se_reduction
        block = dict(dim=c, num_heads=cfg.num_heads, ffn_expansion_factor=cfg.ffn_expansion_factor,
                     bias=cfg.bias, LayerNorm_type=cfg.LayerNorm_type)
        # shallow features, one extractor per modality (not shared)
        self.stem_ir = ResSE(cfg.in_channels, c, reduction=r)
        self.stem_vi = ResSE(cfg.in_channels, c, reduction=r)
        self.sa_ir = nn.Sequential(*[RestormerBlock(**block) for _ in range(cfg.sa_depth)])
        self.sa_vi = nn.Sequential(*[RestormerBlock(**block) for _ in range(cfg.sa_depth)])
        # the four queries: each source and its negative 1 - x ("I" = inverted), then the four slots.
        # I-SCA: infrared queries, visible K/V.  V-SCA: visible queries, infrared K/V.
        # Ablations (Sec. 4.3): a slot without SCA is a RestormerBlock on its features ("restormer"), its
        # features unchanged ("identity"), or absent from the concat ("drop"); a slot without SCA has no query.
        has_sca = {name: cfg.sca == "both" or (cfg.sca == "i_only" and is_i) for name, _, _, is_i in SLOTS}
        query_of = {name: q for name, _, q, _ in SLOTS}
        for q in ("ir", "irI", "vi", "viI"):  # creation order as released (same initial weights per seed)
            if any(has_sca[n] for n, qq in query_of.items() if qq == q):
                setattr(self, f"cbsm_{q}", make_query(cfg.query, dim=c, in_channels=cfg.in_channels, reduction=r))
        for name in ("ca_ir2vi", "ca_irI2vi", "ca_vi2ir", "ca_viI2ir"):
            if has_sca[name]:
                setattr(self, name, SCABlock(**block, query_layernorm=cfg.query_layernorm))
            elif cfg.sca == "restormer":
                setattr(self, name, RestormerBlock(**block))
        kept = [name for name, _, _, _ in SLOTS
                if has_sca[name] or cfg.sca == "restormer" or cfg.removed_sca == "identity"]
        if not kept:  # "none" with "drop": each modality's features once, [f_vi, f_ir]
            kept = ["ca_ir2vi", "ca_vi2ir"]
        self.slots: list[str] = kept  # concat order (released: ir2vi, vi2ir, irI2vi, viI2ir)
        # fusion head
        self.fuse_conv = nn.Sequential(ResSE(len(self.slots) * c, 2 * c, reduction=r), ResSE(2 * c, c, reduction=r))
        self.out_conv = ResSE(c, cfg.in_channels, reduction=r, use_se=False)
        self.apply(_init_weights)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        _check_pair(ir, vi, self.config.in_channels)
        f_ir = self.sa_ir(self.stem_ir(ir))  # (B, C, H, W)
        f_vi = self.sa_vi(self.stem_vi(vi))
        if self.config.is_full_model:  # Fig. 2, as released
            ir2vi = self.ca_ir2vi(f_vi, self.cbsm_ir(ir))
            irI2vi = self.ca_irI2vi(f_vi, self.cbsm_irI(1 - ir))
            vi2ir = self.ca_vi2ir(f_ir, self.cbsm_vi(vi))
            viI2ir = self.ca_viI2ir(f_ir, self.cbsm_viI(1 - vi))
            f = self.fuse_conv(torch.cat([ir2vi, vi2ir, irI2vi, viI2ir], dim=1))  # (B, 4C, H, W) -> (B, C, H, W)
            return self.out_conv(f)
        return self.out_conv(self.fuse_conv(torch.cat(self._slot_outputs(ir, vi, f_ir, f_vi), dim=1)))

    def _slot_outputs(self, ir: torch.Tensor, vi: torch.Tensor, f_ir: torch.Tensor,
                      f_vi: torch.Tensor) -> list[torch.Tensor]:
        """The concat's inputs under an ablation (``self.slots``, released order), each (B, C, H, W)."""
        feats = {"ir": f_ir, "vi": f_vi}
        images = {"ir": ir, "irI": 1 - ir, "vi": vi, "viI": 1 - vi}
        out = []
        for name, feat, q, _ in SLOTS:
            if name not in self.slots:
                continue
            block = getattr(self, name, None)
            if isinstance(block, SCABlock):
                out.append(block(feats[feat], getattr(self, f"cbsm_{q}")(images[q])))
            elif block is not None:  # "to Restormer": self-attention on the same features, no query
                out.append(block(feats[feat]))
            else:  # removed ("w/o"): the features the block would have read
                out.append(feats[feat])
        return out

    def forward_fast(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """Same output as ``forward`` (< 1e-4), about 1.7-2x faster on CPU; inference only (no grad/hooks).

        Channels-last, shared LayerNorm / K-V work, folded affines; see ``fusionlib.models.siba_fast``.
        """
        from fusionlib.models.siba_fast import siba_forward_fast

        return siba_forward_fast(self, ir, vi)

    def laziness_blocks(self) -> dict[str, list[str]]:
        """Functional blocks for ``fusionlib.laziness``: block name -> parameter-name prefixes.

        Under an ablation, only the blocks and prefixes that exist ("cbsm" then holds the Table 4 stand-in).
        """
        blocks = {
            "stems": ["stem_ir.", "stem_vi."],
            "self_attention": ["sa_ir.", "sa_vi."],
            "cbsm": ["cbsm_ir.", "cbsm_irI.", "cbsm_vi.", "cbsm_viI."],
            "cross_attention": ["ca_ir2vi.", "ca_irI2vi.", "ca_vi2ir.", "ca_viI2ir."],
            "fusion_head": ["fuse_conv.", "out_conv."],
        }
        names = [n for n, _ in self.named_parameters()]
        blocks = {b: [p for p in ps if any(n.startswith(p) for n in names)] for b, ps in blocks.items()}
        return {b: ps for b, ps in blocks.items() if ps}


def _init_weights(m: nn.Module) -> None:
    # authors' init: trunc_normal(0.02) for Linear layers (the SE FCs, no bias); convs keep PyTorch's default
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _check_pair(ir: torch.Tensor, vi: torch.Tensor, channels: int) -> None:
    for name, t in (("ir", ir), ("vi", vi)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != channels:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"SIBA: {name} must be (B, {channels}, H, W), got {shape}")
    if ir.shape != vi.shape:
        raise ValueError(f"SIBA: ir {tuple(ir.shape)} and vi {tuple(vi.shape)} must have the same shape")


# --- Test-time output, as the authors' test.py writes it --------------------------------------------------
def quantize_output(fused: torch.Tensor, mode: str = "floor") -> torch.Tensor:
    """The fused image on the 8-bit grid, as a file would hold it, back in [0, 1]: ``(B, 1, H, W)`` -> same.

    ``mode="floor"``: the authors' ``test.py`` clamps to [0, 1] and saves through torchvision's
    ``ToPILImage``, which computes ``mul(255).byte()``: **truncation**, ``floor(255 f)``. ``mode="round"``:
    ``floor(255 f + 0.5)``, what an ``im2uint8`` / a rounding PNG writer (and the metric toolbox on a float
    image) does. A metric that quantises by rounding leaves either result unchanged, so this decides the
    levels the metrics see. Not reproduced here: the authors' RGB rebuild (DePF matrix) before saving and the
    toolbox's ``rgb2gray`` after reading; we quantise the Y channel directly.

    Examples:
        >>> f = torch.tensor([0.0, 0.5, 0.999, 1.2]).view(1, 1, 1, 4)
        >>> (quantize_output(f, "floor") * 255).round().flatten().tolist()
        [0.0, 127.0, 254.0, 255.0]
        >>> (quantize_output(f, "round") * 255).round().flatten().tolist()
        [0.0, 128.0, 255.0, 255.0]
    """
    f = fused.clamp(0, 1) * 255
    if mode == "floor":
        levels = torch.floor(f)
    elif mode == "round":
        levels = torch.floor(f + 0.5)
    else:
        raise ValueError(f"quantize_output: mode must be 'floor' or 'round', got {mode!r}")
    return levels / 255


# --- Loss ---------------------------------------------------------------------------------------------
class SIBALoss(nn.Module):
    """SIBA's loss ``α3·L_lap + α1·L_int + α2·L_sobel`` with α1 = 0.1, α2 = 1, α3 = 10.

    The paper's weights, identical in the authors' ``train.py``:

    - ``L_lap``: :func:`fusionlib.losses.laplacian_select_loss` (signed Laplacian of the source with the
      larger |Laplacian|, kornia 8-neighbour /16, reflect; from CHITNet);
    - ``L_int``: :func:`fusionlib.losses.intensity_max_loss`, L1(F, max(ir, vi));
    - ``L_sobel``: :func:`fusionlib.losses.gradient_max_loss`, L1(S(F), max(S(ir), S(vi))), S = |Gx| + |Gy|.

    Returns ``(total, terms)`` where ``terms`` holds the *unweighted* ``lap``, ``int``, ``sobel`` values
    (detached) for logging.

    Examples:
        >>> ir, vi = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
        >>> total, terms = SIBALoss()(torch.maximum(ir, vi), ir, vi)
        >>> sorted(terms), float(terms["int"])
        (['int', 'lap', 'sobel'], 0.0)
    """

    def __init__(self, *, w_lap: float = 10.0, w_int: float = 0.1, w_sobel: float = 1.0) -> None:
        super().__init__()
        self.w_lap, self.w_int, self.w_sobel = w_lap, w_int, w_sobel

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lap = laplacian_select_loss(fused, ir, vi)
        inten = intensity_max_loss(fused, ir, vi)
        sobel = gradient_max_loss(fused, ir, vi)
        total = self.w_lap * lap + self.w_int * inten + self.w_sobel * sobel
        return total, {"lap": lap.detach(), "int": inten.detach(), "sobel": sobel.detach()}


# --- Configs, recipes, registration ------------------------------------------------------------------
SIBA_RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        optimizer="adam", lr=1e-4, weight_decay=0.0,          # paper Sec. 4.1 and authors' train.py
        scheduler="step", step_size=25, gamma=0.5, min_lr=1e-6,  # halved every 25 epochs, floor 1e-6
        clip_grad_norm=0.01,                                  # authors' train.py only (not in the paper)
        batch_size=4, crop_size=128, crop_border=10, epochs=60,  # one random 128² crop per image per epoch
        # MSRS train (1083 pairs) + 200 RoadScene pairs (README). The bundle holds 4 MSRS training pairs:
        # each is drawn 270 times per epoch (own crop each time), so an epoch has the paper's mix of
        # scenes, 1080 MSRS : 200 RoadScene crops, 320 steps, from 4 MSRS scenes instead of 1083
        datasets=("msrs/train*270", "roadscene/train"),
        notes="Afreshbird/SIBA train.py / args_SIBA.py; the released SIBA_epoch60.pth is this run's end. "
              "Paper/code: 1,083 + 200 pairs, batch 4, 321 steps/epoch (no drop_last) x 60 = 19,260 steps; "
              "here 1,280 crops, 320 steps/epoch x 60 = 19,200"),
    "lab": Recipe(
        optimizer="adam", lr=1e-4, clip_grad_norm=0.01, batch_size=4, crop_size=128, crop_border=10,
        max_steps=500, datasets=("msrs/train*270", "roadscene/train"),
        notes="paper optimiser, crops and mix of scenes (4 MSRS pairs x 270 + RoadScene), 500 steps "
              "(2.6 % of the paper's 19,260): minutes on one GPU, about 20 min on 2 CPU cores"),
    "smoke": Recipe(
        optimizer="adam", lr=1e-4, clip_grad_norm=0.01, batch_size=2, crop_size=64, crop_border=10,
        max_steps=4, datasets=("msrs/train",),
        notes="CI: a handful of CPU steps on 64² crops (4 of the paper's 19,260 steps of 4x128²); checks the "
              "loop runs, not the result"),
}

register_model("siba", SIBA, SIBAConfig())
register_model("siba_tiny", SIBA, SIBAConfig(dim=8, num_heads=2))


def train_siba(model: SIBA, loader, *, recipe: Recipe, device="auto", seed: int = 0, out_dir=None,
               epochs: int | None = None, callbacks=(), max_steps_per_epoch: int | None = None,
               progress: bool = True):
    """Train SIBA the released way: ``SIBALoss``, Adam, the recipe's step schedule, gradient clipping.

    ``epochs`` / ``max_steps_per_epoch`` default to what the recipe's budget gives on this loader
    (:func:`fusionlib.recipes.recipe_epochs`). Returns the :class:`fusionlib.train.History`.
    """
    from fusionlib.recipes import train_with_recipe

    return train_with_recipe(model, SIBALoss(), loader, recipe=recipe, device=device, seed=seed, out_dir=out_dir,
                             epochs=epochs, callbacks=callbacks, max_steps_per_epoch=max_steps_per_epoch,
                             progress=progress)
