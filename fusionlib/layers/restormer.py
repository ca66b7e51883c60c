"""Restormer's transformer block (Zamir et al., "Restormer", CVPR 2022), written once for every paper.

- ``MDTA`` (multi-Dconv head transposed attention, Sec. 3.1): q, k, v from a 1x1 conv then a depthwise
  3x3 conv; attention across *channels* (a (C/h x C/h) map per head, so the cost is linear in pixels):
  ``softmax(norm(q) norm(k)^T * temperature) v``, with q, k L2-normalised along the pixel axis.
- ``GDFN`` (gated-Dconv feed-forward network, Sec. 3.2): ``project_out(gelu(x1) * x2)`` where
  ``x1, x2`` are the two halves of ``dwconv(project_in(x))``.
- ``RestormerBlock``: ``x + MDTA(LN(x))``, then ``x + GDFN(LN(x))``.

Constructor arguments keep Restormer's names (``dim, num_heads, ffn_expansion_factor, bias,
LayerNorm_type``), and so do the parameter names (``qkv``, ``qkv_dwconv``, ``temperature``,
``project_out``, ``project_in``, ``dwconv``, ``norm1/attn/norm2/ffn``), so released Restormer-family
weights map over by name. The softmax is the named submodule ``attend`` for forward hooks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from fusionlib.layers.norm import LayerNorm2d

__all__ = ["channel_attention", "MDTA", "GDFN", "RestormerBlock"]


def channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_heads: int,
                      temperature: torch.Tensor, attend: nn.Module) -> torch.Tensor:
    """Transposed (channel) attention of Restormer Eq. 2, shared by MDTA and cross-attention variants.

    Args:
        q, k, v: ``(B, C, H, W)`` each; C must divide by ``num_heads``.
        num_heads: h.
        temperature: learnable scale, ``(h, 1, 1)``.
        attend: the softmax module (a hook point); applied over the last axis.

    Returns:
        ``(B, C, H, W)``: per head, ``softmax(q̂ k̂^T * temperature) @ v`` with q̂, k̂ L2-normalised
        over the H*W pixels; the map is ``(B, h, C/h, C/h)``.
    """
    h, w = q.shape[-2:]
    q, k, v = (rearrange(t, "b (head c) h w -> b head c (h w)", head=num_heads) for t in (q, k, v))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = attend((q @ k.transpose(-2, -1)) * temperature)  # (B, head, C/head, C/head)
    return rearrange(attn @ v, "b head c (h w) -> b (head c) h w", h=h, w=w)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention (Restormer Sec. 3.1, Eq. 1-2).

    Args:
        dim: channels C.
        num_heads: heads h (C/h channels each).
        bias: bias in the convs.

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> MDTA(dim=8, num_heads=2)(torch.rand(1, 8, 6, 6)).shape
        torch.Size([1, 8, 6, 6])
    """

    def __init__(self, *, dim: int, num_heads: int, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim, bias=bias)
        self.attend = nn.Softmax(dim=-1)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        out = channel_attention(q, k, v, num_heads=self.num_heads, temperature=self.temperature,
                                attend=self.attend)
        return self.project_out(out)


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network (Restormer Sec. 3.2, Eq. 3).

    Args:
        dim: channels C.
        ffn_expansion_factor: hidden width ``int(C * factor)``; each gate half has that many channels.
        bias: bias in the convs.

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> GDFN(dim=8, ffn_expansion_factor=2.0)(torch.rand(1, 8, 6, 6)).shape
        torch.Size([1, 8, 6, 6])
    """

    def __init__(self, *, dim: int, ffn_expansion_factor: float = 2.66, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class RestormerBlock(nn.Module):
    """Restormer transformer block: ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))`` (Restormer Fig. 2).

    Args:
        dim: channels C.
        num_heads: MDTA heads.
        ffn_expansion_factor: GDFN width factor.
        bias: bias in the convs.
        LayerNorm_type: ``"WithBias"`` or ``"BiasFree"``.

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> RestormerBlock(dim=8, num_heads=2)(torch.rand(1, 8, 6, 6)).shape
        torch.Size([1, 8, 6, 6])
    """

    def __init__(self, *, dim: int, num_heads: int, ffn_expansion_factor: float = 2.66, bias: bool = False,
                 LayerNorm_type: str = "WithBias") -> None:  # noqa: N803
        super().__init__()
        self.norm1 = LayerNorm2d(dim, LayerNorm_type)
        self.attn = MDTA(dim=dim, num_heads=num_heads, bias=bias)
        self.norm2 = LayerNorm2d(dim, LayerNorm_type)
        self.ffn = GDFN(dim=dim, ffn_expansion_factor=ffn_expansion_factor, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))
