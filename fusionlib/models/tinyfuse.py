"""TinyFuse: the small CNN fusion network of ``00_foundations`` (ours, not a paper's).

Two modality encoders, a fusion layer, a decoder, a sigmoid head: the four functional
blocks whose weight updates the laziness tracker follows. about 13 k parameters at width 16,
so it trains in seconds on a CPU and still shows the shape of the laziness curves.

    ir (B,1,H,W) -> enc_ir -> (B,C,H,W) \
                                           cat -> fuse (B,C,H,W) -> decoder -> head -> (B,1,H,W)
    vi (B,1,H,W) -> enc_vi -> (B,C,H,W) /
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TinyFuse", "TinyFuseConfig"]


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="reflect"), nn.LeakyReLU(0.1))


@dataclass(frozen=True)
class TinyFuseConfig:
    width: int = 16  # channels of every hidden layer
    depth: int = 2  # conv blocks per encoder


class TinyFuse(nn.Module):
    """A 4-block CNN: ``forward(ir, vi) -> fused`` with all tensors ``(B, 1, H, W)`` in [0, 1].

    Examples:
        >>> TinyFuse()(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(self, config: TinyFuseConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = config or TinyFuseConfig(**overrides)
        c = cfg.width
        self.config = cfg
        self.enc_ir = nn.Sequential(*[_conv_block(1 if i == 0 else c, c) for i in range(cfg.depth)])
        self.enc_vi = nn.Sequential(*[_conv_block(1 if i == 0 else c, c) for i in range(cfg.depth)])
        self.fuse = _conv_block(2 * c, c)
        self.decoder = nn.Sequential(_conv_block(c, c), _conv_block(c, c // 2))
        self.head = nn.Conv2d(c // 2, 1, 3, padding=1, padding_mode="reflect")

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        f = self.fuse(torch.cat([self.enc_ir(ir), self.enc_vi(vi)], dim=1))
        return torch.sigmoid(self.head(self.decoder(f)))

    def laziness_blocks(self) -> dict[str, list[str]]:
        """Functional blocks for ``fusionlib.laziness`` (AIDFusion Fig. 1's grouping)."""
        return {"encoder": ["enc_ir.", "enc_vi."], "fusion": ["fuse."], "decoder": ["decoder."],
                "prediction": ["head."]}


from fusionlib.models._registry import register_model  # noqa: E402  (registration after the class)

register_model("tinyfuse", TinyFuse, TinyFuseConfig())
register_model("tinyfuse_tiny", TinyFuse, TinyFuseConfig(width=4, depth=1))
