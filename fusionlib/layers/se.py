"""Squeeze-and-excitation (Hu et al., CVPR 2018) and the SE-ResNet block SIBA builds on.

``SE``: global average pool -> FC (C -> C/r, no bias) -> ReLU -> FC (C/r -> C, no bias) -> sigmoid,
and the input is rescaled channel-wise.

``ResSE`` (SIBA's ``Res_SE``): conv3x3 -> PReLU -> conv3x3 -> SE -> + shortcut -> PReLU. The two
activations are **one** ``nn.PReLU()`` module applied twice, so they share a single slope (as in the
authors' code, and the released checkpoint has one ``act.weight`` per block).
"""

from __future__ import annotations

import torch
from einops import reduce
from torch import nn

__all__ = ["SE", "ResSE"]


class SE(nn.Module):
    """Squeeze-and-excitation channel gate ``x * sigmoid(W2 relu(W1 avgpool(x)))``.

    Args:
        channels: C.
        reduction: r; the bottleneck has ``max(1, C // r)`` units (the ``max`` only matters for tiny C).

    Shape:
        (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> SE(32)(torch.rand(2, 32, 8, 8)).shape
        torch.Size([2, 32, 8, 8])
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(reduce(x, "b c h w -> b c", "mean"))  # (B, C)
        return x * gate[:, :, None, None]


class ResSE(nn.Module):
    """SE-ResNet basic block with a single shared PReLU (SIBA's ``Res_SE``).

    ``act(se(conv2(act(conv1(x)))) + shortcut(x))``; the shortcut is a 1x1 conv (with bias) when the
    channel count changes, else the identity. Convs are 3x3, zero padding, with bias.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        reduction: SE reduction r.
        use_se: False drops the SE gate (SIBA's last block, 48 -> 1).

    Shape:
        (B, C_in, H, W) -> (B, C_out, H, W)

    Examples:
        >>> ResSE(1, 16)(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, *, reduction: int = 16,
                 use_se: bool = True) -> None:
        super().__init__()
        same = in_channels == out_channels
        self.res_conv = nn.Identity() if same else nn.Conv2d(in_channels, out_channels, 1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.act = nn.PReLU()  # one slope, used twice
        self.se = SE(out_channels, reduction) if use_se else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.conv2(self.act(self.conv1(x))))
        return self.act(y + self.res_conv(x))
