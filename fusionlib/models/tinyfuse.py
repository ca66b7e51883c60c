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

__all__ = ["TinyFuse", "TinyFuseConfig", "TinyFuseLoss", "TINYFUSE_RECIPES", "train_tinyfuse"]


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


class TinyFuseLoss(nn.Module):
    """``L_int + L_grad``: L1 to max(ir, vi) and Sobel-gradient L1 to max(|∇ir|, |∇vi|); returns (total, terms)."""

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor):
        from fusionlib.losses import gradient_max_loss, intensity_max_loss

        l_int = intensity_max_loss(fused, ir, vi)
        l_grad = gradient_max_loss(fused, ir, vi)
        return l_int + l_grad, {"int": l_int.detach(), "grad": l_grad.detach()}


from fusionlib.recipes import Recipe  # noqa: E402

TINYFUSE_RECIPES: dict[str, Recipe] = {
    "paper": Recipe(optimizer="adam", lr=3e-3, scheduler="cosine", batch_size=8, crop_size=128, epochs=30,
                    datasets=("msrs/train", "roadscene/train"), notes="ours: no paper; a few minutes on a GPU"),
    "lab": Recipe(optimizer="adam", lr=3e-3, scheduler="cosine", batch_size=8, crop_size=96, epochs=60,
                  max_steps=1500, datasets=("msrs/train", "roadscene/train"),
                  notes="ours: 1,500 steps (about 5 min on one CPU core; 400 steps left the network below "
                        "average fusion's VIF on the bundled MSRS pairs)"),
    "smoke": Recipe(optimizer="adam", lr=3e-3, scheduler="cosine", batch_size=4, crop_size=64, epochs=10,
                    max_steps=200, datasets=("msrs/train", "roadscene/train"), notes="ours: 10 x 20 CPU steps"),
}


def train_tinyfuse(model: TinyFuse, loader, *, recipe: Recipe, device="auto", seed: int = 0, out_dir=None,
                   epochs: int | None = None, callbacks=(), max_steps_per_epoch: int | None = None,
                   progress: bool = True):
    """Train TinyFuse with ``TinyFuseLoss`` and the recipe's optimiser and schedule; returns the History."""
    from fusionlib.recipes import train_with_recipe

    return train_with_recipe(model, TinyFuseLoss(), loader, recipe=recipe, device=device, seed=seed, out_dir=out_dir,
                             epochs=epochs, callbacks=callbacks, max_steps_per_epoch=max_steps_per_epoch,
                             progress=progress)
