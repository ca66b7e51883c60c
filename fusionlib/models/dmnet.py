"""DMNet: a dense multiscale feature-extraction network with two-stage training (IEEE TMM).

Paper: *DMNet: A Dense Multiscale Feature Extraction Network With Two-Stage Training for Infrared-Visible
Image Fusion*. Authors' code: ``Pancy9476/DMNet``, partial (``notebooks/released_code.md`` §DMNet):
``DMNet/models/net.py`` @ e0eac99 (encoder/decoder, CDDFuse's blocks), SR3 ``unet.py`` / ``diffusion.py`` and ``tes_fusion.py`` @
16cbcb2 (inference). There is **no training script and no loss code**, and the released inference builds
some modules afresh (untrained) on every call. This file is a re-implementation that trains every module it
uses. Defaults follow the released code where the released inference runs it, the paper where no code was
released (stage I); ``reading="paper"`` selects every reading of the paper's text (``PAPER_READING``).

Figure (as built by default, C = 64)::

    x (ir or vi) -> conv3x3 1->C -> DTB -> DIB -> f_x                     (one encoder, shared by IR and VI)
    x0 = [2 vi - 1, 2 ir - 1] (B, 2, H, W)
    for t in (5, 50, 100):  γ ~ U(√ᾱ_{t-1}, √ᾱ_t),  x_t = γ x0 + √(1-γ²) ε
        15 decoder features of SR3UNet(x_t, γ) -> per level ConvTranspose(k = s = 2^level) -> IN -> GELU
        -> CSAB, summed and scaled by 1/75                                  -> a_t (B, C, H, W)
    av = mean_t a_t
    fused feature = CSAB(f_vi) + CSAB(f_ir) + av
    fused = sigmoid(conv3x3(C->1)(LeakyReLU(conv3x3(C->C/2)(RestormerBlock(feature)))) + vi)

Paper vs released code, each a config field (paper reading in brackets; the paper's OCR text lost the
equations' symbols, so each is read from the prose around its number):

- **DTB** ``dtb_mode``: ``"parallel"`` (code): five branches of depths 1-5 (15 Restormer blocks) read the
  embedding, averaged. [``"dense"``: "five transformer layers" in cascade, output α Σ of the five
  outputs, α = 1/5, §III-B.] ``"serial"``: the 15 blocks in series (neither; kept for comparison).
- **DIB** ``dib_mode``: ``"shared"`` (code): the 3-layer INN applied 3x with shared weights, averaged.
  [``"dense"``: "three INN layers" in cascade, output β Σ, β = 1/3; the β-sum is not invertible, the
  cascade is.] ``"cascade"``: the layers once, exactly invertible.
- **Stage I** ``reconstruct_csab``: [True, default: Î = DE(A(D(B(I)))), Eq. 11; no released code.]
  False: CDDFuse's ``DE(D(B(I)))``.
- **Diffusion input** ``diffusion_input``: ``"images"`` (ours, default): ``[VIS, IR]`` in both stages, what
  the denoiser is trained on; ``"branch_mix"``: the released average with five learned
  ``[conv1x1(v_k), conv1x1(i_k)]`` DTB-branch pairs (the code's conv is fresh and untrained per image).
  [``"dtb_conv"``: Eq. 9, stage II feeds ``Conv(C(Φ_I^B, Φ_V^B))``; stage I the images.]
- **Diffusion-feature fusion** ``feature_fusion``: ``"upskip"`` (code's ``upSkip``, **learned** here; the code
  instantiates it with random weights inside every forward). [``"conv"``: "one convolutional layer" over
  the five stages' outputs, §III-C.]
- **Latent CSAB** ``latent_csab``: False (code). [True: A(Φ^L), Eq. 10.] The top-level CSAB is learned here
  (the code's is built at script start and never loaded).
- **Ablations** ``ablate`` (Table V): ``"dtb"``, ``"dib"``, ``"dm"`` replaced by a conv layer, ``"csab"``
  removed. "w/o TST" is a schedule: ``train_dmnet(..., epochs=(0, E))``. Table VI: ``DMNetRecipe.grad_operator``.

Other departures from the released inference:

- Noise at inference is drawn from a seeded generator (``feature_seed``) so that ``eval()`` outputs are
  reproducible; the code draws unseeded noise. In ``train()`` mode the global RNG is used.
- ``feature_grad=True``: the fusion loss back-propagates into the denoiser (every module used is trained
  end to end); ``False`` detaches its features (the denoiser then learns from the noise loss only).
- Only the used part of the decoder is built (63,976 parameters); the code also builds four unused
  Restormer blocks and ``reduce_channel`` (641,776 parameters).
- Inputs whose size is not a multiple of 16 are replicate-padded for the U-Net and cropped back.
- The decoder adds a residual base (CDDFuse / the released code, not the paper): the source in stage I,
  the visible image in stage II (as released), which biases the fusion towards VI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusionlib.diffusion import NoiseSchedule, diffusion_training_loss, q_sample, randn
from fusionlib.layers import RestormerBlock
from fusionlib.losses.dmnet import GRAD_OPERATORS, dmnet_stage1_loss, dmnet_stage2_loss
from fusionlib.models._registry import register_model
from fusionlib.models.sr3 import SR3Config, SR3UNet
from fusionlib.recipes import Recipe

__all__ = ["InvertedResidual", "AffineCoupling", "DTB", "DIB", "DMNetEncoder", "CSAB", "FeatureProjection",
           "ConvFeatureFusion", "DMNetDecoder", "DMNetConfig", "DMNet", "PAPER_READING", "ABLATIONS", "DMNetRecipe", "DMNET_RECIPES", "DMNetStep", "StageSwitch",
           "stage_epochs", "train_dmnet", "parameter_breakdown", "PAPER"]

#: What the paper reports and what the released code measures (``notebooks/released_code.md`` §DMNet).
PAPER = {
    "params_M": 386.358,                 # paper's table; not reproducible from the code
    "params_unet_code": 391_045_762,     # SR3 U-Net of config/diffusion.json ("391.05 M")
    "params_encoder_code": 733_944,
    "params_decoder_built_code": 705_752,
    "params_decoder_used_code": 63_976,
    "params_csab_code": 2_147,
    "params_persistent_code_M": 392.49,  # U-Net + encoder + decoder (built) + CBAM
    "params_with_upskip_code_M": 414.06,  # + the per-call upSkip projection
    "gflops_unet_per_t_128": 367.5,      # at 128x128 per time step (x3 per image); 2 FLOPs per MAC
    "gflops_encoder_128": 28.0,          # per modality (x2)
    "gflops_decoder_128": 2.1,
    "timesteps": (5, 50, 100),
}


# --- DIB: the affine-coupling invertible layer ------------------------------------------------------
class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck without the skip (CDDFuse ``InvertedResidualBlock``): 1x1 expand, ReLU6,
    reflect-padded depthwise 3x3, ReLU6, 1x1 project; no bias.

    Shape:
        (B, C_in, H, W) -> (B, C_out, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, expand: int = 2) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False), nn.ReLU6(),
            nn.ReflectionPad2d(1), nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False), nn.ReLU6(),
            nn.Conv2d(hidden, out_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AffineCoupling(nn.Module):
    """One invertible layer of the DIB (CDDFuse's INN node): a 1x1 "shuffle" conv, then two couplings.

    Forward, with ``[z1, z2] = split(W x + b)`` into two halves of C/2 channels:

        z2' = z2 + φ(z1)                       (additive coupling)
        z1' = z1 ⊙ exp(ρ(z2')) + η(z2')        (affine coupling)
        y   = [z1', z2']

    φ, ρ, η are ``InvertedResidual`` blocks (C/2 -> C/2). Inverse (exact, every step is solvable):

        z1 = (z1' − η(z2')) ⊙ exp(−ρ(z2')),   z2 = z2' − φ(z1),   x = W⁻¹ ([z1, z2] − b)

    Args:
        channels: C (even).
        expand: width factor of the three bottlenecks.

    Shape:
        (B, C, H, W) -> (B, C, H, W), both ways.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> layer, x = AffineCoupling(8), torch.randn(2, 8, 6, 6)
        >>> bool(torch.allclose(layer.inverse(layer(x)), x, atol=1e-4))   # float32 rounding only
        True
    """

    def __init__(self, channels: int, expand: int = 2) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"AffineCoupling: channels must be even, got {channels}")
        half = channels // 2
        self.shuffle = nn.Conv2d(channels, channels, 1, bias=True)
        self.phi = InvertedResidual(half, half, expand)
        self.rho = InvertedResidual(half, half, expand)
        self.eta = InvertedResidual(half, half, expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.shuffle(x).chunk(2, dim=1)
        z2 = z2 + self.phi(z1)
        z1 = z1 * torch.exp(self.rho(z2)) + self.eta(z2)
        return torch.cat([z1, z2], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        z1, z2 = y.chunk(2, dim=1)
        z1 = (z1 - self.eta(z2)) * torch.exp(-self.rho(z2))
        z2 = z2 - self.phi(z1)
        w = self.shuffle.weight[:, :, 0, 0].double()
        z = torch.cat([z1, z2], dim=1).double() - self.shuffle.bias.double()[None, :, None, None]
        x = torch.einsum("oc,bchw->bohw", torch.linalg.inv(w), z)
        return x.to(y.dtype)


class DIB(nn.Module):
    """Dense invertible block: ``num_layers`` ``AffineCoupling`` layers ``L_1 .. L_n``; ``g = L_n ∘ .. ∘ L_1``.

    Modes (the paper, §III-B: "the DIB has three INN layers where each layer's output cascade is used as
    the input to the next layer ... [β is a] tuning parameter ... set to ... 1/3"; Eq. 2, Φ^D = D(Φ^B)):

    - ``"shared"`` (released code, default): ``g`` applied ``repeats`` times with the same weights,
      ``y_k = g(y_{k−1})``, output ``(y_1 + .. + y_r) / r``. Not invertible.
    - ``"dense"`` (the paper's text, our reading of the dense weight): the layers once in cascade,
      ``s_k = L_k(s_{k−1})``, output ``β (s_1 + .. + s_n)`` with ``β = beta`` (1/3). **β breaks exact
      invertibility**: a weighted sum of the intermediate states has no closed-form inverse; the cascade
      itself still inverts (``inverse_stack(s_n) = x``), which is what the paper's "lossless" refers to.
    - ``"cascade"``: ``g(x)`` alone, no β; exactly invertible (``inverse``).

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> DIB(8, mode="dense")(torch.rand(1, 8, 6, 6)).shape
        torch.Size([1, 8, 6, 6])
    """

    MODES = ("shared", "dense", "cascade")

    def __init__(self, channels: int, *, num_layers: int = 3, mode: str = "shared", repeats: int = 3,
                 expand: int = 2, beta: float = 1 / 3) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"DIB: mode must be 'shared' (code), 'dense' (paper) or 'cascade', got {mode!r}")
        self.mode, self.repeats, self.beta = mode, int(repeats), float(beta)
        self.layers = nn.ModuleList([AffineCoupling(channels, expand) for _ in range(num_layers)])

    def states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The cascade's intermediate outputs ``[s_1, .., s_n]``, ``s_k = L_k(s_{k−1})``, ``s_0 = x``."""
        out = []
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out

    def stack(self, x: torch.Tensor) -> torch.Tensor:
        """The layer stack once: ``g(x)``."""
        return self.states(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "cascade":
            return self.stack(x)
        if self.mode == "dense":
            return self.beta * torch.stack(self.states(x)).sum(0)
        outs = []
        for _ in range(self.repeats):
            x = self.stack(x)
            outs.append(x)
        return torch.stack(outs).mean(0)

    def inverse_stack(self, y: torch.Tensor) -> torch.Tensor:
        """``g⁻¹(y)`` in every mode (the cascade of the layers' exact inverses)."""
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``g⁻¹(y)``; only ``mode="cascade"`` is invertible as a block (the others sum or average states)."""
        if self.mode != "cascade":
            raise ValueError(f"DIB.inverse: mode={self.mode!r} sums or averages several states and is not "
                             "invertible; use mode='cascade' or invert the cascade with DIB.inverse_stack")
        return self.inverse_stack(y)


# --- DTB: the dense transformer block ----------------------------------------------------------------
class DTB(nn.Module):
    """Dense transformer block built from Restormer blocks.

    Modes (the paper, §III-B: "the DTB contains five transformer layers ... where each layer's output
    cascade is used as the input to the next layer ... [α is a] tuning parameter ... set to 1/5"; Eq. 1,
    Φ^B = B(I)):

    - ``"parallel"`` (released code, default): groups of depths ``depths`` (1, 2, 3, 4, 5; 15 blocks)
      all read ``x``; output ``(B_1(x) + .. + B_5(x)) / 5``.
    - ``"dense"`` (the paper's text, our reading of the dense weight): ``len(depths)`` **single** blocks in
      cascade, ``s_k = T_k(s_{k−1})``, output ``α (s_1 + .. + s_5)`` with ``α = alpha`` (1/5).
    - ``"serial"``: the released groups one after another, ``B_5(..B_1(x))`` (15 blocks, no α); neither
      the code nor the paper, kept for comparison (it was this module's earlier "paper" switch).

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> DTB(dim=8, num_heads=2, depths=(1, 2))(torch.rand(1, 8, 6, 6)).shape
        torch.Size([1, 8, 6, 6])
        >>> [len(b) for b in DTB(dim=8, num_heads=2, mode="dense").branches]
        [1, 1, 1, 1, 1]
    """

    MODES = ("parallel", "dense", "serial")

    def __init__(self, *, dim: int, num_heads: int, depths: Sequence[int] = (1, 2, 3, 4, 5),
                 ffn_expansion_factor: float = 2.0, bias: bool = False,
                 LayerNorm_type: str = "WithBias", mode: str = "parallel",  # noqa: N803
                 alpha: float = 1 / 5) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"DTB: mode must be 'parallel' (code), 'dense' (paper) or 'serial', got {mode!r}")
        self.mode, self.alpha = mode, float(alpha)
        blk = dict(dim=dim, num_heads=num_heads, ffn_expansion_factor=ffn_expansion_factor, bias=bias,
                   LayerNorm_type=LayerNorm_type)
        sizes = [1] * len(depths) if mode == "dense" else list(depths)
        self.branches = nn.ModuleList([nn.Sequential(*[RestormerBlock(**blk) for _ in range(d)])
                                       for d in sizes])

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each group's output (parallel: all from ``x``; dense and serial: each from the previous one)."""
        outs = []
        for branch in self.branches:
            y = branch(x)
            outs.append(y)
            if self.mode != "parallel":
                x = y
        return outs

    def combine(self, outs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The block output from ``forward_branches``: mean (parallel), ``α Σ`` (dense), last (serial)."""
        if self.mode == "serial":
            return outs[-1]
        if self.mode == "dense":
            return self.alpha * torch.stack(list(outs)).sum(0)
        return torch.stack(list(outs)).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.forward_branches(x))


class DMNetEncoder(nn.Module):
    """``f = DIB(DTB(conv3x3(x)))``; one instance encodes both modalities (shared weights, as released).

    ``use_dtb=False`` / ``use_dib=False`` replace that block by one conv3x3 C->C (Table V's "w/o DTB",
    "w/o DIB": "other complex modules ... are replaced by simple convolutional layers", §IV-D).

    Shape:
        (B, 1, H, W) -> (B, C, H, W)
    """

    def __init__(self, *, in_channels: int = 1, dim: int = 64, num_heads: int = 8,
                 ffn_expansion_factor: float = 2.0, bias: bool = False,
                 LayerNorm_type: str = "WithBias",  # noqa: N803
                 dtb_depths: Sequence[int] = (1, 2, 3, 4, 5), dtb_mode: str = "parallel", dib_layers: int = 3,
                 dib_mode: str = "shared", dib_repeats: int = 3, inn_expand: int = 2, dtb_alpha: float = 1 / 5,
                 dib_beta: float = 1 / 3, use_dtb: bool = True, use_dib: bool = True) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)
        if use_dtb:
            self.dtb = DTB(dim=dim, num_heads=num_heads, depths=dtb_depths,
                           ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type,
                           mode=dtb_mode, alpha=dtb_alpha)
        else:
            self.dtb = nn.Conv2d(dim, dim, 3, padding=1)
        if use_dib:
            self.dib = DIB(dim, num_layers=dib_layers, mode=dib_mode, repeats=dib_repeats, expand=inn_expand,
                           beta=dib_beta)
        else:
            self.dib = nn.Conv2d(dim, dim, 3, padding=1)

    def basic(self, x: torch.Tensor) -> torch.Tensor:
        """The global basic features ``Φ^B = B(conv3x3(x))`` (Eq. 1), ``(B, C, H, W)``."""
        return self.dtb(self.embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dib(self.basic(x))

    def forward_with_branches(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(f, [DTB group outputs])``, the encoder's two returns in the released code."""
        if not isinstance(self.dtb, DTB):
            raise ValueError("DMNetEncoder.forward_with_branches: the DTB is ablated (use_dtb=False)")
        outs = self.dtb.forward_branches(self.embed(x))
        return self.dib(self.dtb.combine(outs)), outs


# --- CSAB ---------------------------------------------------------------------------------------------
class CSAB(nn.Module):
    """Channel and spatial attention block (the code's ``CBAM``), with max and "mix" pooling.

    Channel attention (``mix = ½ avg + ½ max``, one shared MLP ``C -> C/r -> C``, ReLU, no bias):

        M_c = σ(MLP(maxpool(x)) + MLP(½ avgpool(x) + ½ maxpool(x)))      (B, C, 1, 1);   x' = M_c ⊙ x

    Spatial attention over the channel axis of ``x'`` (a 7x7 conv with bias on two maps):

        M_s = σ(conv7x7([max_c x', ½ mean_c x' + ½ max_c x']))          (B, 1, H, W);   y = M_s ⊙ x'

    The two sigmoids are the submodules ``channel_gate`` and ``spatial_gate`` (hook points: Fig. 11).

    Args:
        channels: C.
        reduction: r.
        kernel_size: spatial kernel.

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> CSAB(8)(torch.rand(2, 8, 10, 10)).shape
        torch.Size([2, 8, 10, 10])
    """

    def __init__(self, channels: int, reduction: int = 4, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(hidden, channels, 1, bias=False))
        self.channel_gate = nn.Sigmoid()
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        self.spatial_gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mx = x.amax(dim=(2, 3), keepdim=True)
        mix = 0.5 * x.mean(dim=(2, 3), keepdim=True) + 0.5 * mx
        x = x * self.channel_gate(self.mlp(mx) + self.mlp(mix))
        mx_c = x.amax(dim=1, keepdim=True)
        mix_c = 0.5 * x.mean(dim=1, keepdim=True) + 0.5 * mx_c
        return x * self.spatial_gate(self.spatial(torch.cat([mx_c, mix_c], dim=1)))


# --- diffusion features -> encoder width ------------------------------------------------------------
class FeatureProjection(nn.Module):
    """Brings the U-Net's decoder features to the encoder's width at full resolution (the code's ``upSkip``).

    Per U-Net level ``l`` (channels ``c_l``, resolution ``H / 2^l``) one head
    ``ConvTranspose2d(c_l, C, k = s = 2^l) -> InstanceNorm -> GELU -> CSAB`` serves that level's
    features; all projections are summed and multiplied by ``scale`` (1/75 as released).

    Shape:
        [(level, (B, c_level, H/2^level, W/2^level)), ...] -> (B, C, H, W)
    """

    def __init__(self, level_channels: Sequence[int], dim: int, *, scale: float = 1 / 75,
                 csab_reduction: int = 4, csab: bool = True) -> None:
        super().__init__()
        self.scale = float(scale)
        self.levels = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(c, dim, 2 ** lvl, stride=2 ** lvl), nn.InstanceNorm2d(dim),
                          nn.GELU(), CSAB(dim, csab_reduction) if csab else nn.Identity())
            for lvl, c in enumerate(level_channels)])

    def forward(self, feats: Sequence[tuple[int, torch.Tensor]]) -> torch.Tensor:
        out = None
        for lvl, f in feats:
            y = self.levels[lvl](f)
            out = y if out is None else out + y
        if out is None:
            raise ValueError("FeatureProjection: no features given")
        return out * self.scale


class ConvFeatureFusion(nn.Module):
    """The paper's fusion of the diffusion features (§III-C): "We use one convolutional layer to fuse the
    multichannel diffusion features generated by the five stages of the denoising network".

    Our reading: each up-path stage's output (its last ResBlock, one map per level) is resized to full
    resolution (bilinear, no parameters), the five are concatenated (``Σ c_l`` channels) and **one**
    1x1 conv maps them to C. The kernel size and the resizing are not given in the paper.

    Shape:
        [(level, (B, c_level, H/2^level, W/2^level)), ...] -> (B, C, H, W)
    """

    def __init__(self, level_channels: Sequence[int], dim: int) -> None:
        super().__init__()
        self.level_channels = list(level_channels)
        self.conv = nn.Conv2d(sum(self.level_channels), dim, 1)

    def forward(self, feats: Sequence[tuple[int, torch.Tensor]]) -> torch.Tensor:
        last: dict[int, torch.Tensor] = {}
        for lvl, f in feats:                      # deepest first; a level's last entry is the stage output
            last[lvl] = f
        if sorted(last) != list(range(len(self.level_channels))):
            raise ValueError(f"ConvFeatureFusion: need one feature per level 0..{len(self.level_channels) - 1}, "
                             f"got levels {sorted(last)}")
        size = last[0].shape[-2:]
        maps = [last[0]] + [F.interpolate(last[lvl], size=size, mode="bilinear", align_corners=False)
                            for lvl in range(1, len(self.level_channels))]
        return self.conv(torch.cat(maps, dim=1))


# --- decoder ------------------------------------------------------------------------------------------
class DMNetDecoder(nn.Module):
    """``σ(conv3x3(C/2 -> 1)(LeakyReLU(conv3x3(C -> C/2)(RestormerBlock(f)))) + base)``, no bias (the used
    part of the released ``Restormer_Decoder``).

    Shape:
        base (B, 1, H, W), f (B, C, H, W) -> (B, 1, H, W) in (0, 1)
    """

    def __init__(self, *, dim: int = 64, out_channels: int = 1, num_heads: int = 8,
                 ffn_expansion_factor: float = 2.0, bias: bool = False,
                 LayerNorm_type: str = "WithBias") -> None:  # noqa: N803
        super().__init__()
        self.block = RestormerBlock(dim=dim, num_heads=num_heads, ffn_expansion_factor=ffn_expansion_factor,
                                    bias=bias, LayerNorm_type=LayerNorm_type)
        self.output = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=bias), nn.LeakyReLU(),
                                    nn.Conv2d(dim // 2, out_channels, 3, padding=1, bias=bias))

    def forward(self, base: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.output(self.block(f)) + base)


# --- the network --------------------------------------------------------------------------------------
#: The paper's readings (``DMNetConfig(reading="paper")`` applies them to every field left at the code's value).
PAPER_READING: dict[str, Any] = {
    "dtb_mode": "dense",             # §III-B: five transformer layers in cascade, α = 1/5
    "dib_mode": "dense",             # §III-B: three INN layers in cascade, β = 1/3
    "diffusion_input": "dtb_conv",   # Eq. 9: stage II feeds L(Conv(C(Φ_I^B, Φ_V^B)))
    "latent_csab": True,             # Eq. 10: A(Φ^L)
    "feature_fusion": "conv",        # §III-C: "one convolutional layer" fuses the five stages' features
    "reconstruct_csab": True,        # Eq. 11: Î = DE(A(Φ^D)) (already the default: no released code)
}
#: Table V's module ablations: ``"dtb"``, ``"dib"``, ``"dm"`` -> a conv layer, ``"csab"`` -> removed.
ABLATIONS = ("dtb", "dib", "dm", "csab")


@dataclass(frozen=True)
class DMNetConfig:
    """DMNet hyper-parameters; defaults are the released code's (``net.py``, ``config/diffusion.json``)
    where the released inference runs them, the paper's where no code was released (stage I).

    ``reading="paper"`` turns every field of ``PAPER_READING`` that is still at the code's value into the
    paper's (an explicit non-default choice wins); ``ablate`` removes modules as in Table V.
    """

    in_channels: int = 1
    dim: int = 64                               # embedding width
    num_heads: int = 8
    ffn_expansion_factor: float = 2.0
    bias: bool = False
    LayerNorm_type: str = "WithBias"
    reading: str = "code"                       # "code" | "paper" (see PAPER_READING)
    dtb_depths: tuple[int, ...] = (1, 2, 3, 4, 5)
    dtb_mode: str = "parallel"                  # code; "dense": the paper (5 layers, α); "serial": neither
    dtb_alpha: float = 1 / 5                    # α of the dense DTB (paper)
    dib_layers: int = 3
    dib_mode: str = "shared"                    # code (x3 shared, averaged); "dense": the paper (β); "cascade"
    dib_repeats: int = 3
    dib_beta: float = 1 / 3                     # β of the dense DIB (paper)
    inn_expand: int = 2
    csab_reduction: int = 4
    reconstruct_csab: bool = True               # stage I through CSAB (Eq. 11); False: CDDFuse's stage I
    latent_csab: bool = False                   # code: av added as is; True: A(av) (Eq. 10)
    feature_fusion: str = "upskip"              # code's upSkip (learned); "conv": the paper's one conv
    ablate: tuple[str, ...] = ()                # Table V: subset of ABLATIONS
    # denoiser (SR3, config/diffusion.json)
    denoiser_inner: int = 128
    denoiser_mults: tuple[int, ...] = (1, 2, 4, 8, 8)
    denoiser_res_blocks: int = 2
    denoiser_groups: int = 32
    denoiser_dropout: float = 0.2
    denoiser_attn_res: tuple[int, ...] = (16,)
    denoiser_image_size: int = 128
    num_steps: int = 2000
    beta_start: float = 1e-6
    beta_end: float = 1e-2
    # feature extraction (tes_fusion.py)
    timesteps: tuple[int, ...] = (5, 50, 100)
    feature_scale: float = 1 / 75               # code: sum of the 15 projections / 75
    feature_gamma: str = "sample"               # "sample": U(√ᾱ_{t-1}, √ᾱ_t) as released; "fixed": √ᾱ_t
    feature_seed: int = 0                       # eval-mode noise seed (the code draws unseeded noise)
    feature_grad: bool = True                   # fusion loss reaches the denoiser
    diffusion_input: str = "images"             # "images": [VI, IR]; "branch_mix": the code's average;
    #                                             "dtb_conv": Eq. 9 (stage II), images in stage I
    diffusion_loss_reduction: str = "mean"      # SR3 sums; "mean" keeps λ_d comparable to the other terms

    def resolved(self) -> DMNetConfig:
        """This config with ``reading`` applied (``PAPER_READING`` for fields still at the code default).

        Examples:
            >>> DMNetConfig(reading="paper").resolved().dtb_mode
            'dense'
            >>> DMNetConfig(reading="paper", dtb_mode="serial").resolved().dtb_mode
            'serial'
        """
        if self.reading == "code":
            return self
        if self.reading != "paper":
            raise ValueError(f"DMNetConfig.reading must be 'code' or 'paper', got {self.reading!r}")
        code = DMNetConfig()
        changes = {k: v for k, v in PAPER_READING.items() if getattr(self, k) == getattr(code, k)}
        return dataclasses.replace(self, **changes)


class DMNet(nn.Module):
    """DMNet: ``forward(ir, vi) -> fused`` ``(B, 1, H, W)`` in (0, 1).

    Other entry points: ``encode(x)``, ``reconstruct(x)`` (stage I), ``diffusion_input(ir, vi, stage)``,
    ``diffusion_loss(ir, vi, stage=)``, ``diffusion_features(ir, vi)``, ``fusion_feature(ir, vi)``.

    Args:
        config: a ``DMNetConfig``; keyword ``overrides`` replace its fields (``reading="paper"`` selects
            the paper's readings, ``PAPER_READING``).

    Examples:
        >>> m = DMNet(dim=8, num_heads=2, denoiser_inner=8, denoiser_groups=4).eval()
        >>> m(torch.rand(1, 1, 20, 24), torch.rand(1, 1, 20, 24)).shape
        torch.Size([1, 1, 20, 24])
    """

    def __init__(self, config: DMNetConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = DMNetConfig(**overrides) if config is None else dataclasses.replace(config, **overrides)
        cfg = cfg.resolved()
        for name, value, allowed in (("feature_gamma", cfg.feature_gamma, ("sample", "fixed")),
                                     ("diffusion_input", cfg.diffusion_input,
                                      ("images", "branch_mix", "dtb_conv")),
                                     ("feature_fusion", cfg.feature_fusion, ("upskip", "conv")),
                                     ("diffusion_loss_reduction", cfg.diffusion_loss_reduction,
                                      ("mean", "sum"))):
            if value not in allowed:
                raise ValueError(f"DMNetConfig.{name} must be one of {allowed}, got {value!r}")
        bad = sorted(set(cfg.ablate) - set(ABLATIONS))
        if bad:
            raise ValueError(f"DMNetConfig.ablate: unknown module(s) {bad}; choose from {ABLATIONS}")
        if not cfg.timesteps:
            raise ValueError("DMNetConfig.timesteps must name at least one diffusion step")
        if "dtb" in cfg.ablate and cfg.diffusion_input == "branch_mix":
            raise ValueError("DMNetConfig: diffusion_input='branch_mix' needs the DTB's branches (ablate 'dtb')")
        cfg = dataclasses.replace(cfg, ablate=tuple(sorted(set(cfg.ablate))))
        self.config = cfg
        blk = dict(num_heads=cfg.num_heads, ffn_expansion_factor=cfg.ffn_expansion_factor, bias=cfg.bias,
                   LayerNorm_type=cfg.LayerNorm_type)
        self.encoder = DMNetEncoder(in_channels=cfg.in_channels, dim=cfg.dim, dtb_depths=cfg.dtb_depths,
                                    dtb_mode=cfg.dtb_mode, dib_layers=cfg.dib_layers, dib_mode=cfg.dib_mode,
                                    dib_repeats=cfg.dib_repeats, inn_expand=cfg.inn_expand,
                                    dtb_alpha=cfg.dtb_alpha, dib_beta=cfg.dib_beta,
                                    use_dtb="dtb" not in cfg.ablate, use_dib="dib" not in cfg.ablate, **blk)
        self.csab = nn.Identity() if "csab" in cfg.ablate else CSAB(cfg.dim, cfg.csab_reduction)
        if "dm" in cfg.ablate:
            # Table V "w/o DM": "complex modules (e.g., the diffusion module) are replaced by simple
            # convolutional layers" (§IV-D): one conv3x3 from the diffusion input (2 channels) to C
            self.dm_conv = nn.Conv2d(2 * cfg.in_channels, cfg.dim, 3, padding=1)
        else:
            self.denoiser = SR3UNet(SR3Config(
                in_channels=2 * cfg.in_channels, out_channels=2 * cfg.in_channels,
                inner_channel=cfg.denoiser_inner,
                channel_mults=tuple(cfg.denoiser_mults), res_blocks=cfg.denoiser_res_blocks,
                attn_res=tuple(cfg.denoiser_attn_res), image_size=cfg.denoiser_image_size,
                norm_groups=cfg.denoiser_groups, dropout=cfg.denoiser_dropout))
            if cfg.feature_fusion == "upskip":
                self.features = FeatureProjection(self.denoiser.level_channels, cfg.dim, scale=cfg.feature_scale,
                                                  csab_reduction=cfg.csab_reduction, csab="csab" not in cfg.ablate)
            else:
                self.features = ConvFeatureFusion(self.denoiser.level_channels, cfg.dim)
        if cfg.diffusion_input == "branch_mix":
            self.branch_to_image = nn.Conv2d(cfg.dim, 1, 1)
        elif cfg.diffusion_input == "dtb_conv":
            # Eq. 9: Conv(C(Φ_I^B, Φ_V^B)), 2C -> 2 channels ("the input dimensions in the second stage are the
            # same as in the first"); 1x1 as the released code's branch convs (the paper gives no kernel size)
            self.dtb_to_image = nn.Conv2d(2 * cfg.dim, 2 * cfg.in_channels, 1)
        self.decoder = DMNetDecoder(dim=cfg.dim, out_channels=cfg.in_channels, **blk)
        self.schedule = NoiseSchedule(cfg.num_steps, cfg.beta_start, cfg.beta_end)

    @property
    def has_denoiser(self) -> bool:
        """False under Table V's "w/o DM" ablation (the DM is a conv layer, there is no noise loss)."""
        return "dm" not in self.config.ablate

    # ---- encoder / decoder
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features ``Φ^D = D(B(x))`` ``(B, C, H, W)`` of one source (Eqs. 1-2)."""
        return self.encoder(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Stage I: ``DE(x, A(Φ^D))`` with ``reconstruct_csab`` (Eq. 11, "finally the reconstructed important
        features ... are obtained by the CSAB", §III-E), else ``DE(x, Φ^D)`` (CDDFuse's stage I). The
        decoder's residual base is the source itself (CDDFuse; not in the paper)."""
        _check_image(x, "x", self.config.in_channels)
        f = self.encoder(x)
        return self.decoder(x, self.csab(f) if self.config.reconstruct_csab else f)

    # ---- diffusion
    def diffusion_input(self, ir: torch.Tensor, vi: torch.Tensor, stage: int = 2, *,
                        basic: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``x0`` of the diffusion, ``(B, 2, H, W)``: ``[2 vi − 1, 2 ir − 1]`` (``"images"``, and stage I of
        ``"dtb_conv"``); its average with the five ``[conv1x1(v_k), conv1x1(i_k)]`` DTB-branch pairs
        (``"branch_mix"``); in stage II of ``"dtb_conv"``, ``Conv(C(Φ_I^B, Φ_V^B))`` (Eq. 9), where ``basic``
        may pass ``(Φ_I^B, Φ_V^B)`` already computed."""
        x0 = torch.cat([vi, ir], dim=1) * 2 - 1
        mode = self.config.diffusion_input
        if mode == "images" or (mode == "dtb_conv" and stage == 1):
            return x0
        if mode == "dtb_conv":
            b_ir, b_vi = basic if basic is not None else (self.encoder.basic(ir), self.encoder.basic(vi))
            return self.dtb_to_image(torch.cat([b_ir, b_vi], dim=1))
        _, bv = self.encoder.forward_with_branches(vi)
        _, bi = self.encoder.forward_with_branches(ir)
        pairs = [x0] + [torch.cat([self.branch_to_image(v), self.branch_to_image(i)], dim=1)
                        for v, i in zip(bv, bi)]
        return torch.stack(pairs).mean(0)

    def pad_for_denoiser(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad H and W (bottom, right) to multiples of the U-Net's ``2 ** (levels - 1)``."""
        if not self.has_denoiser:
            return x
        m = self.denoiser.multiple
        ph, pw = (-x.shape[-2]) % m, (-x.shape[-1]) % m
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def diffusion_loss(self, ir: torch.Tensor, vi: torch.Tensor, *, stage: int = 2,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """SR3's noise-prediction loss (Eq. 17) on ``x0 = diffusion_input(ir, vi, stage)`` (random t, γ, ε);
        a zero tensor under "w/o DM"."""
        if not self.has_denoiser:
            return ir.new_zeros(())
        x0 = self.pad_for_denoiser(self.diffusion_input(ir, vi, stage))
        return diffusion_training_loss(self.denoiser, x0, self.schedule, generator=generator,
                                       reduction=self.config.diffusion_loss_reduction)

    def noisy_input(self, x0: torch.Tensor, t: int, *, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_t, γ)`` for step ``t`` with the feature extraction's γ rule and noise."""
        fixed = self.config.feature_gamma == "fixed"
        gamma = self.schedule.sample_gamma(t, x0, generator=generator, fixed=fixed)
        return q_sample(x0, gamma, randn(tuple(x0.shape), x0, generator)), gamma

    def diffusion_features(self, ir: torch.Tensor, vi: torch.Tensor, *,
                           generator: torch.Generator | None = None, per_step: bool = False,
                           basic: tuple[torch.Tensor, torch.Tensor] | None = None
                           ) -> torch.Tensor | dict[int, torch.Tensor]:
        """``av = mean_t features(U-Net decoder features of x_t)`` for t in ``config.timesteps`` (stage-II
        input); under "w/o DM" ``conv3x3(x0)`` (``per_step`` then gives it under the key 0).

        Noise: ``generator`` when given; else in ``eval()`` a CPU generator seeded with
        ``config.feature_seed`` (reproducible inference), in ``train()`` the global RNG.

        Returns:
            ``(B, C, H, W)``, or with ``per_step=True`` ``{t: (B, C, H, W)}`` before the average.
        """
        _check_pair(ir, vi, self.config.in_channels)
        if not self.has_denoiser:
            out0 = self.dm_conv(self.diffusion_input(ir, vi, 2, basic=basic))
            return {0: out0} if per_step else out0
        if generator is None and not self.training:
            generator = torch.Generator().manual_seed(self.config.feature_seed)
        h, w = ir.shape[-2:]
        x0 = self.pad_for_denoiser(self.diffusion_input(ir, vi, 2, basic=basic))
        out: dict[int, torch.Tensor] = {}
        for t in self.config.timesteps:
            xt, gamma = self.noisy_input(x0, t, generator=generator)
            feats = self.denoiser.decoder_features(xt, gamma)
            if not self.config.feature_grad:
                feats = [(lvl, f.detach()) for lvl, f in feats]
            out[t] = self.features(feats)[..., :h, :w]
        if per_step:
            return out
        return torch.stack(list(out.values())).mean(0)

    # ---- fusion
    def fusion_feature(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        """The fusion path's intermediates (Eqs. 1, 2, 9, 10), each ``(B, C, H, W)``: ``f_ir``, ``f_vi``
        (encoder, Φ^D), ``a_ir``, ``a_vi`` (after CSAB), ``av`` (diffusion features, Φ^L), ``a_l`` (A(av) with
        ``latent_csab``, else av) and ``fused_feature = a_vi + a_ir + a_l`` (the decoder input of Eq. 12)."""
        _check_pair(ir, vi, self.config.in_channels)
        b_ir, b_vi = self.encoder.basic(ir), self.encoder.basic(vi)
        f_ir, f_vi = self.encoder.dib(b_ir), self.encoder.dib(b_vi)
        a_ir, a_vi = self.csab(f_ir), self.csab(f_vi)
        av = self.diffusion_features(ir, vi, basic=(b_ir, b_vi))
        a_l = self.csab(av) if self.config.latent_csab else av
        return {"f_ir": f_ir, "f_vi": f_vi, "a_ir": a_ir, "a_vi": a_vi, "av": av, "a_l": a_l,
                "fused_feature": a_vi + a_ir + a_l}

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return self.decoder(vi, self.fusion_feature(ir, vi)["fused_feature"])

    def laziness_blocks(self) -> dict[str, list[str]]:
        """Functional blocks for ``fusionlib.laziness``: block name -> parameter-name prefixes."""
        extra = {"branch_mix": ["branch_to_image."], "dtb_conv": ["dtb_to_image."]}
        proj = (["features."] if self.has_denoiser else ["dm_conv."]) + extra.get(self.config.diffusion_input, [])
        blocks = {"embed+DTB": ["encoder.embed.", "encoder.dtb."], "DIB": ["encoder.dib."]}
        if "csab" not in self.config.ablate:
            blocks["CSAB"] = ["csab."]
        if self.has_denoiser:
            blocks["denoiser down+mid"] = ["denoiser.noise_level_mlp.", "denoiser.downs.", "denoiser.mid."]
            blocks["denoiser up+head"] = ["denoiser.ups.", "denoiser.final_conv."]
        blocks["feature projection" if self.has_denoiser else "DM conv"] = proj
        blocks["decoder"] = ["decoder."]
        return blocks


def _check_image(x: torch.Tensor, name: str, channels: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"DMNet: {name} must be (B, {channels}, H, W), got {shape}")


def _check_pair(ir: torch.Tensor, vi: torch.Tensor, channels: int) -> None:
    _check_image(ir, "ir", channels)
    _check_image(vi, "vi", channels)
    if ir.shape != vi.shape:
        raise ValueError(f"DMNet: ir {tuple(ir.shape)} and vi {tuple(vi.shape)} must have the same shape")


def parameter_breakdown(config: DMNetConfig | None = None, **overrides: Any) -> dict[str, int]:
    """Parameters per part of a DMNet built on the meta device (no memory): encoder, CSAB, denoiser,
    feature projection, decoder, total.

    Examples:
        >>> parameter_breakdown(dim=8, num_heads=2, denoiser_inner=8, denoiser_groups=4)["total"] > 0
        True
    """
    with torch.device("meta"):
        m = DMNet(config, **overrides)
    parts = {name: sum(p.numel() for p in child.parameters()) for name, child in m.named_children()}
    parts["total"] = sum(p.numel() for p in m.parameters())
    return parts


# --- two-stage training -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DMNetRecipe(Recipe):
    """A ``Recipe`` with DMNet's two stages: ``stage1_epochs`` of reconstruction, then ``stage2_epochs``
    of fusion (``epochs`` is their sum), one Adam throughout; ``steps_per_epoch`` caps each epoch."""

    stage1_epochs: int = 15
    stage2_epochs: int = 30
    steps_per_epoch: int | None = None
    model: str = "dmnet"                        # registered model the recipe trains
    w_diff: float = 1.0                         # λ_d (both stages)
    w_int: float = 1.0                          # α_int (stage II)
    w_grad: float = 10.0                        # α_grad (stage II)
    ssim_weight: float = 1.0                    # weight of 1 − SSIM in L_rec (stage I)
    grad_operator: str = "sobel"                # ∇ of L_grad (Eq. 19: Sobel); Table VI: canny, log, roberts

    def __post_init__(self) -> None:
        if self.grad_operator not in GRAD_OPERATORS:
            raise ValueError(f"DMNetRecipe: grad_operator must be one of {GRAD_OPERATORS}, got "
                             f"{self.grad_operator!r}")
        if self.stage1_epochs < 0 or self.stage2_epochs < 0 or self.stage1_epochs + self.stage2_epochs < 1:
            raise ValueError(f"DMNetRecipe: stage epochs must be >= 0 with a positive sum, got "
                             f"{self.stage1_epochs} + {self.stage2_epochs}")
        if self.epochs != self.stage1_epochs + self.stage2_epochs:
            raise ValueError(f"DMNetRecipe: epochs={self.epochs} must equal stage1_epochs + stage2_epochs = "
                             f"{self.stage1_epochs + self.stage2_epochs}")
        super().__post_init__()


DMNET_RECIPES: dict[str, DMNetRecipe] = {
    "paper": DMNetRecipe(
        optimizer="adam", lr=1e-4, batch_size=4, crop_size=128, epochs=45, stage1_epochs=15, stage2_epochs=30,
        datasets=("msrs/train",),
        notes="paper: stage I 15 epochs, stage II 30, Adam 1e-4, 128x128 crops, MSRS-train (1,083 pairs); "
              "batch size and loss weights are not published (ours: batch 4, λ_d=1, α_int=1, α_grad=10)"),
    "lab": DMNetRecipe(
        optimizer="adam", lr=1e-4, batch_size=4, crop_size=128, epochs=6, stage1_epochs=2, stage2_epochs=4,
        steps_per_epoch=25, datasets=("msrs/train", "roadscene/train"),
        notes="paper optimiser and crops, the full 391 M denoiser, 2 + 4 short epochs on the bundled pairs "
              "(GPU)"),
    "cpu": DMNetRecipe(
        optimizer="adam", lr=1e-3, batch_size=4, crop_size=64, epochs=10, stage1_epochs=2, stage2_epochs=8,
        steps_per_epoch=40, model="dmnet_narrow", datasets=("msrs/train*25", "roadscene/train"),
        notes="the shipped CPU network (weights/dmnet.pt): NARROW dmnet_narrow (dim 16, 2 heads, denoiser "
              "inner 8, GN(4); 1.9 M parameters), 2 + 8 epochs of 40 steps on 64² crops of the bundled pairs "
              "at lr 1e-3 (the paper: 1e-4; 2 + 4 epochs at 1e-4 left a grey, striped image); ours"),
    "smoke": DMNetRecipe(
        optimizer="adam", lr=1e-4, batch_size=2, crop_size=48, epochs=4, stage1_epochs=2, stage2_epochs=2,
        steps_per_epoch=2, model="dmnet_tiny", datasets=("msrs/train", "roadscene/train"),
        notes="CI: NARROW denoiser and encoder (dmnet_tiny), 2 + 2 epochs of 2 CPU steps on 48² crops; "
              "checks that both stages and the feature extraction run, not the result"),
}


def stage_epochs(recipe: DMNetRecipe, epochs: int | Sequence[int] | None = None) -> tuple[int, int]:
    """``(stage I epochs, stage II epochs)``: the recipe's, or ``epochs`` = a pair, or a total split in the
    recipe's proportion (each stage keeps at least one epoch when both have some).

    Examples:
        >>> stage_epochs(DMNET_RECIPES["paper"]), stage_epochs(DMNET_RECIPES["paper"], 6)
        ((15, 30), (2, 4))
    """
    if epochs is None:
        return recipe.stage1_epochs, recipe.stage2_epochs
    if isinstance(epochs, Sequence):
        if len(epochs) != 2 or any(int(e) < 0 for e in epochs) or sum(epochs) < 1:
            raise ValueError(f"stage_epochs: epochs must be (stage I, stage II) >= 0 with a positive sum, "
                             f"got {epochs}")
        return int(epochs[0]), int(epochs[1])
    total = int(epochs)
    if total < 1:
        raise ValueError(f"stage_epochs: epochs must be >= 1, got {epochs}")
    e1 = round(total * recipe.stage1_epochs / (recipe.stage1_epochs + recipe.stage2_epochs))
    if recipe.stage1_epochs and recipe.stage2_epochs and total >= 2:
        e1 = min(max(e1, 1), total - 1)
    return e1, total - e1


class DMNetStep:
    """The training step of both stages: ``step(model, batch) -> (loss, terms)``; ``stage`` is 1 or 2.

    Stage I: ``dmnet_stage1_loss(reconstruct(ir), reconstruct(vi), ir, vi, diffusion_loss(ir, vi, stage=1))``.
    Stage II: ``dmnet_stage2_loss(model(ir, vi), ir, vi, diffusion_loss(ir, vi, stage=2))``.
    The logged term ``stage`` says which one ran.
    """

    def __init__(self, recipe: DMNetRecipe, stage: int = 1) -> None:
        self.recipe, self.stage = recipe, stage

    def __call__(self, model: nn.Module, batch: Mapping[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, dict[str, Any]]:
        from fusionlib.train import unwrap_model

        ir, vi = batch["ir"], batch["vi"]
        net = unwrap_model(model)
        diff = net.diffusion_loss(ir, vi, stage=self.stage)
        r = self.recipe
        if self.stage == 1:
            loss, terms = dmnet_stage1_loss(net.reconstruct(ir), net.reconstruct(vi), ir, vi, diff,
                                            w_diff=r.w_diff, ssim_weight=r.ssim_weight)
        else:
            loss, terms = dmnet_stage2_loss(model(ir, vi), ir, vi, diff, w_int=r.w_int, w_grad=r.w_grad,
                                            w_diff=r.w_diff, grad_operator=r.grad_operator)
        return loss, {**terms, "stage": float(self.stage)}


class StageSwitch:
    """``fit`` callback: puts ``step`` in stage I for epochs ``1 .. stage1_epochs``, stage II after (resumes
    into the right stage). ``boundary`` = ``stage1_epochs + 0.5``, where the curves mark the switch."""

    def __init__(self, step: DMNetStep, stage1_epochs: int) -> None:
        self.step, self.stage1_epochs = step, int(stage1_epochs)
        self.boundary = self.stage1_epochs + 0.5

    def _set(self, next_epoch: int) -> None:
        self.step.stage = 1 if next_epoch <= self.stage1_epochs else 2

    def on_train_start(self, state: Any) -> None:
        self._set(state.epoch + 1)

    def on_epoch_end(self, state: Any) -> None:
        self._set(state.epoch + 1)


def train_dmnet(model: DMNet, loader: Any, *, recipe: DMNetRecipe, device: str | torch.device = "auto",
                seed: int = 0, out_dir: str | Path | None = None, epochs: int | Sequence[int] | None = None,
                callbacks: Sequence[Any] = (), max_steps_per_epoch: int | None = None, progress: bool = True,
                bf16: bool = False):
    """Both stages in one ``fusionlib.train.fit`` run (one Adam, epochs numbered 1 .. E1 + E2), so that a
    ``LazinessTracker`` in ``callbacks`` follows the weights across the stage boundary.

    Args:
        model: a ``DMNet``.
        loader: batches ``{"ir", "vi"}`` of ``(B, 1, h, w)`` crops (``fusionlib.train.make_loader``).
        recipe: a ``DMNetRecipe`` (``DMNET_RECIPES[profile]``).
        device, seed, out_dir, callbacks, progress, bf16: as ``fit``.
        epochs: ``None`` (the recipe's), a pair ``(E1, E2)`` or a total split as the recipe's.
        max_steps_per_epoch: default ``recipe.steps_per_epoch``.

    Returns:
        the ``History``; its epoch records carry ``stage`` (1.0 or 2.0). The stage boundary is
        ``stage_epochs(recipe, epochs)[0] + 0.5``.
    """
    from fusionlib.train import fit

    if not isinstance(recipe, DMNetRecipe):
        raise TypeError(f"train_dmnet: recipe must be a DMNetRecipe (DMNET_RECIPES[...]), "
                        f"got {type(recipe).__name__}")
    e1, e2 = stage_epochs(recipe, epochs)
    step = DMNetStep(recipe, stage=1 if e1 else 2)
    switch = StageSwitch(step, e1)
    wd = recipe.weight_decay
    if recipe.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=wd)
    elif recipe.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=wd)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=wd)
    sched = None
    if recipe.scheduler != "none":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, recipe.lr_lambda(e1 + e2))
    steps = max_steps_per_epoch if max_steps_per_epoch is not None else recipe.steps_per_epoch
    return fit(model, step, loader, epochs=e1 + e2, optimizer=opt, scheduler=sched, device=device, seed=seed,
               out_dir=out_dir, clip_grad_norm=recipe.clip_grad_norm, bf16=bf16,
               callbacks=[switch, *callbacks], max_steps_per_epoch=steps, progress=progress,
               run={"recipe": recipe, "stage_epochs": [e1, e2]})


register_model("dmnet", DMNet, DMNetConfig())
# narrow: the network shipped in weights/ (trained on a CPU by DMNET_RECIPES["cpu"]); same modules, fewer channels
register_model("dmnet_narrow", DMNet, DMNetConfig(dim=16, num_heads=2, denoiser_inner=8, denoiser_groups=4))
register_model("dmnet_tiny", DMNet, DMNetConfig(dim=8, num_heads=2, denoiser_inner=8, denoiser_groups=4))
