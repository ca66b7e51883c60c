"""A deterministic tiny fusion problem, trained under torchrun by ``test_ddp_matches_single_process``.

``python -m torch.distributed.run --nproc_per_node=2 tests/_ddp_worker.py OUT_DIR`` trains with a
per-process batch of ``PER_RANK_BATCH`` and writes ``OUT_DIR/final_rank{r}.pt``. The test imports
``build`` and ``train`` to run the same problem in one process with the global batch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from fusionlib.train import fit, loss_step, make_loader

PER_RANK_BATCH = 2
EPOCHS = 2
N_SAMPLES = 16


class TinyFusion(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(2, 4, 3, padding=1)
        self.dec = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.tanh(self.enc(torch.cat([ir, vi], dim=1))))


class FixedPairs(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.ir = torch.rand(N_SAMPLES, 1, 8, 8, generator=g)
        self.vi = torch.rand(N_SAMPLES, 1, 8, 8, generator=g)

    def __len__(self) -> int:
        return N_SAMPLES

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"ir": self.ir[i], "vi": self.vi[i]}


def criterion(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    return (fused - torch.maximum(ir, vi)).pow(2).mean()


def build() -> tuple[nn.Module, torch.utils.data.Dataset]:
    torch.manual_seed(0)
    return TinyFusion(), FixedPairs()


def train(out_dir: str | os.PathLike, batch_size: int, world_size: int | None = None,
          rank: int | None = None) -> tuple[nn.Module, object]:
    model, ds = build()
    loader = make_loader(ds, batch_size, shuffle=True, seed=3, world_size=world_size, rank=rank)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = fit(model, loss_step(criterion), loader, epochs=EPOCHS, optimizer=opt, device="cpu",
                  out_dir=out_dir, progress=False)
    return model, history


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    model, history = train(out, PER_RANK_BATCH)
    rank = int(os.environ["RANK"])
    torch.save({"model": model.state_dict(), "losses": [r["loss"] for r in history.epochs]},
               out / f"final_rank{rank}.pt")
