"""Layer normalisation over the channel axis of ``(B, C, H, W)`` feature maps (Restormer's LayerNorm).

Restormer (Zamir et al., CVPR 2022) normalises every pixel's C-vector on its own; two flavours:

- ``"WithBias"``: ``(x - mean) / sqrt(var + eps) * weight + bias`` (what SIBA and CDDFuse use);
- ``"BiasFree"``: ``x / sqrt(var + eps) * weight`` (the variance still about the mean, no centring).

``var`` is the population variance (``unbiased=False``), ``eps = 1e-5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LayerNorm2d", "LAYERNORM_TYPES"]

LAYERNORM_TYPES = ("WithBias", "BiasFree")


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at each pixel, Restormer convention.

    Args:
        dim: channels C.
        LayerNorm_type: ``"WithBias"`` or ``"BiasFree"`` (Restormer's argument name and values).
        eps: added to the variance.

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> y = LayerNorm2d(4)(torch.randn(2, 4, 5, 5))
        >>> y.shape, bool(y.mean(1).abs().max() < 1e-5)
        (torch.Size([2, 4, 5, 5]), True)
    """

    def __init__(self, dim: int, LayerNorm_type: str = "WithBias", eps: float = 1e-5) -> None:  # noqa: N803
        super().__init__()
        if LayerNorm_type not in LAYERNORM_TYPES:
            raise ValueError(f"LayerNorm_type must be one of {LAYERNORM_TYPES}, got {LayerNorm_type!r}")
        self.dim, self.eps, self.bias_free = dim, eps, LayerNorm_type == "BiasFree"
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = None if self.bias_free else nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.dim:
            raise ValueError(f"LayerNorm2d({self.dim}) expects (B, {self.dim}, H, W), got {tuple(x.shape)}")
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C): normalise the last axis
        if self.bias_free:
            var = x.var(-1, keepdim=True, unbiased=False)
            y = x * torch.rsqrt(var + self.eps) * self.weight
        else:
            y = F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.dim}, LayerNorm_type={'BiasFree' if self.bias_free else 'WithBias'}, eps={self.eps}"
