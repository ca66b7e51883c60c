"""SR3's denoising U-Net (Saharia et al. 2021), the diffusion backbone DMNet takes its features from.

DMNet (``config/diffusion.json``, SR3 ``unet.py`` @ 16cbcb2; ``notebooks/released_code.md`` §DMNet) uses it with
2 input and 2 output channels (``[VIS, IR]``), inner width 128, channel multipliers 1-2-4-8-8, two
residual blocks per level, GroupNorm(32) + Swish, dropout 0.2, self-attention at the 16-pixel level
(nominal image size 128: the fourth level, 1024 channels) and noise-level conditioning. That is
391,045,762 parameters.

Layout (``L`` levels, ``c_l = inner * mult_l``; every ``ResBlock`` gets the noise embedding)::

    γ (B,) -> NoiseLevelEncoding (sin/cos of γ) -> Linear(C, 4C) -> Swish -> Linear(4C, C)    emb (B, C)
    down:  conv3x3(in -> C); per level: res_blocks x ResBlock(+attn); Downsample (not after the last)
    mid:   ResBlock + attn, ResBlock
    up:    per level (deepest first): (res_blocks + 1) x ResBlock(cat[x, skip]) (+attn); Upsample
    out:   GroupNorm -> Swish -> conv3x3(C -> out)

The up path's ``ResBlock`` outputs are what DMNet's fusion reads ("decoder features"):
``SR3UNet.decoder_features`` returns them with their level, without running the output head.
Inputs must have H and W divisible by ``2 ** (L - 1)`` (16 for five levels): pad first.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["SR3Config", "SR3UNet", "NoiseLevelEncoding", "FeatureWiseAffine", "ConvBlock", "ResBlock",
           "SelfAttention", "ResBlockWithAttn", "Downsample", "Upsample"]


@dataclass(frozen=True)
class SR3Config:
    """SR3 U-Net hyper-parameters; defaults are DMNet's ``config/diffusion.json``."""

    in_channels: int = 2                           # [VIS, IR]
    out_channels: int = 2                          # predicted noise for both channels
    inner_channel: int = 128
    channel_mults: tuple[int, ...] = (1, 2, 4, 8, 8)
    res_blocks: int = 2
    attn_res: tuple[int, ...] = (16,)              # resolutions (of the nominal image) with self-attention
    image_size: int = 128                          # nominal size that fixes the attention levels
    norm_groups: int = 32
    dropout: float = 0.2


class NoiseLevelEncoding(nn.Module):
    """Sinusoidal encoding of the continuous noise level γ (SR3 ``PositionalEncoding``).

    ``e = [sin(γ ω_k), cos(γ ω_k)]``, ``ω_k = 10000^(−k / (C/2))``, ``k = 0 .. C/2 − 1``.

    Shape:
        γ (B,) -> (B, C)

    Examples:
        >>> NoiseLevelEncoding(8)(torch.tensor([0.0, 1.0])).shape
        torch.Size([2, 8])
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"NoiseLevelEncoding: dim must be even, got {dim}")
        self.dim = dim

    def forward(self, gamma: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        k = torch.arange(half, dtype=gamma.dtype, device=gamma.device) / half
        arg = gamma.reshape(-1, 1) * torch.exp(-math.log(1e4) * k)[None]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class FeatureWiseAffine(nn.Module):
    """Adds a per-channel offset from the noise embedding: ``x + Linear(emb)`` (SR3, no affine level).

    Shape:
        x (B, C_out, H, W), emb (B, C_emb) -> (B, C_out, H, W)
    """

    def __init__(self, emb_dim: int, channels: int) -> None:
        super().__init__()
        self.noise_func = nn.Linear(emb_dim, channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return x + self.noise_func(emb)[:, :, None, None]


class ConvBlock(nn.Sequential):
    """GroupNorm -> Swish -> (Dropout) -> conv3x3 (SR3 ``Block``)."""

    def __init__(self, dim: int, dim_out: int, *, groups: int, dropout: float = 0.0) -> None:
        super().__init__(nn.GroupNorm(groups, dim), nn.SiLU(),
                         nn.Dropout(dropout) if dropout else nn.Identity(),
                         nn.Conv2d(dim, dim_out, 3, padding=1))


class ResBlock(nn.Module):
    """``h = block2(block1(x) + Linear(emb)) + res_conv(x)``; dropout in ``block2`` only (SR3's
    ``ResnetBlock``).

    Shape:
        x (B, C_in, H, W), emb (B, C_emb) -> (B, C_out, H, W)
    """

    def __init__(self, dim: int, dim_out: int, *, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.noise_func = FeatureWiseAffine(emb_dim, dim_out)
        self.block1 = ConvBlock(dim, dim_out, groups=groups)
        self.block2 = ConvBlock(dim_out, dim_out, groups=groups, dropout=dropout)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.noise_func(self.block1(x), emb)
        return self.block2(h) + self.res_conv(x)


class SelfAttention(nn.Module):
    """Single-head spatial self-attention with a residual (SR3 ``SelfAttention``, ``n_head=1``).

    ``x + out(softmax(q kᵀ / √C) v)`` over all H·W positions, q, k, v from one bias-free 1x1 conv of
    ``GroupNorm(x)``. The softmax is the submodule ``attend`` (a hook point, ``(B, HW, HW)``).

    Shape:
        (B, C, H, W) -> (B, C, H, W)
    """

    def __init__(self, channels: int, *, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)
        self.attend = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)
        q, k, v = (rearrange(t, "b c h w -> b (h w) c") for t in (q, k, v))
        a = self.attend(q @ k.transpose(-2, -1) / math.sqrt(c))       # (B, HW, HW)
        y = rearrange(a @ v, "b (h w) c -> b c h w", h=h, w=w)
        return x + self.out(y)


class ResBlockWithAttn(nn.Module):
    """``ResBlock`` then (optionally) ``SelfAttention`` (SR3 ``ResnetBlocWithAttn``)."""

    def __init__(self, dim: int, dim_out: int, *, emb_dim: int, groups: int, dropout: float,
                 with_attn: bool) -> None:
        super().__init__()
        self.res_block = ResBlock(dim, dim_out, emb_dim=emb_dim, groups=groups, dropout=dropout)
        self.attn = SelfAttention(dim_out, groups=groups) if with_attn else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res_block(x, emb)
        return self.attn(x) if self.attn is not None else x


class Downsample(nn.Module):
    """conv3x3 with stride 2 (halves H and W)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then conv3x3."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class SR3UNet(nn.Module):
    """SR3's noise-conditioned U-Net: ``forward(x_t, γ) -> ε̂``.

    Args:
        config: an ``SR3Config``; keyword ``overrides`` replace its fields.

    Attributes:
        up_levels: the level (0 = full resolution) of each ``ResBlockWithAttn`` in ``ups``, in order.
        level_channels: channels of each level's features.

    Shape:
        x_t (B, C_in, H, W), γ (B,) -> (B, C_out, H, W); H, W divisible by ``2 ** (levels − 1)``.

    Examples:
        >>> net = SR3UNet(inner_channel=8, channel_mults=(1, 2), norm_groups=4, res_blocks=1, attn_res=(64,),
        ...               image_size=128)
        >>> net(torch.rand(2, 2, 16, 16), torch.rand(2)).shape
        torch.Size([2, 2, 16, 16])
        >>> [(lvl, f.shape[1]) for lvl, f in net.decoder_features(torch.rand(1, 2, 16, 16), torch.rand(1))]
        [(1, 16), (1, 16), (0, 8), (0, 8)]
    """

    def __init__(self, config: SR3Config | None = None, **overrides) -> None:
        super().__init__()
        cfg = SR3Config(**overrides) if config is None else dataclasses.replace(config, **overrides)
        self.config = cfg
        c0, groups, mults = cfg.inner_channel, cfg.norm_groups, tuple(cfg.channel_mults)
        if any((c0 * m) % groups for m in mults):
            widths = [c0 * m for m in mults]
            raise ValueError(f"SR3UNet: every level width inner_channel*mult = {widths} must "
                             f"divide by norm_groups={groups}")
        emb = c0
        self.noise_level_mlp = nn.Sequential(NoiseLevelEncoding(c0), nn.Linear(c0, 4 * c0), nn.SiLU(),
                                             nn.Linear(4 * c0, c0))
        blk = dict(emb_dim=emb, groups=groups, dropout=cfg.dropout)
        n = len(mults)
        res = cfg.image_size
        pre = c0
        skips = [pre]
        downs: list[nn.Module] = [nn.Conv2d(cfg.in_channels, c0, 3, padding=1)]
        for lvl, m in enumerate(mults):
            out = c0 * m
            for _ in range(cfg.res_blocks):
                downs.append(ResBlockWithAttn(pre, out, with_attn=res in cfg.attn_res, **blk))
                skips.append(out)
                pre = out
            if lvl != n - 1:
                downs.append(Downsample(pre))
                skips.append(pre)
                res //= 2
        self.downs = nn.ModuleList(downs)
        self.mid = nn.ModuleList([ResBlockWithAttn(pre, pre, with_attn=True, **blk),
                                  ResBlockWithAttn(pre, pre, with_attn=False, **blk)])
        ups: list[nn.Module] = []
        self.up_levels: list[int] = []
        for lvl in reversed(range(n)):
            out = c0 * mults[lvl]
            for _ in range(cfg.res_blocks + 1):
                ups.append(ResBlockWithAttn(pre + skips.pop(), out, with_attn=res in cfg.attn_res, **blk))
                self.up_levels.append(lvl)
                pre = out
            if lvl != 0:
                ups.append(Upsample(pre))
                res *= 2
        self.ups = nn.ModuleList(ups)
        self.final_conv = ConvBlock(pre, cfg.out_channels, groups=groups)
        self.level_channels = [c0 * m for m in mults]
        self.multiple = 2 ** (n - 1)

    def _check(self, x: torch.Tensor, gamma: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"SR3UNet: x must be (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % self.multiple or x.shape[-1] % self.multiple:
            raise ValueError(f"SR3UNet: H and W must be divisible by {self.multiple}, "
                             f"got {tuple(x.shape[-2:])} (pad the input first)")
        if gamma.reshape(-1).shape[0] != x.shape[0]:
            raise ValueError(f"SR3UNet: need one noise level per sample, got γ of shape {tuple(gamma.shape)} "
                             f"for a batch of {x.shape[0]}")

    def _run(self, x: torch.Tensor, gamma: torch.Tensor, *, head: bool
             ) -> tuple[torch.Tensor | None, list[tuple[int, torch.Tensor]]]:
        self._check(x, gamma)
        emb = self.noise_level_mlp(gamma.reshape(-1).to(x.dtype))
        skips = []
        for layer in self.downs:
            x = layer(x, emb) if isinstance(layer, ResBlockWithAttn) else layer(x)
            skips.append(x)
        for layer in self.mid:
            x = layer(x, emb)
        feats: list[tuple[int, torch.Tensor]] = []
        i = 0
        for layer in self.ups:
            if isinstance(layer, ResBlockWithAttn):
                x = layer(torch.cat([x, skips.pop()], dim=1), emb)
                feats.append((self.up_levels[i], x))
                i += 1
            else:
                x = layer(x)
        return (self.final_conv(x) if head else None), feats

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """Predicted noise ``ε̂(x_t, γ)``, ``(B, C_out, H, W)``."""
        return self._run(x, gamma, head=True)[0]

    def decoder_features(self, x: torch.Tensor, gamma: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """The up path's ``ResBlockWithAttn`` outputs as ``[(level, (B, c_level, H/2^level, W/2^level))]``,
        deepest first (``levels * (res_blocks + 1)`` entries; 15 for DMNet). The output head is skipped."""
        return self._run(x, gamma, head=False)[1]
