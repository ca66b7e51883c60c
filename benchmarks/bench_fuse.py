"""Is the fuse command the slow part? Its wall time over the network's own forward time, one run.

    python benchmarks/bench_fuse.py [--method rpfnet] [--dataset msrs] [--threads 2] [--device cpu] [--limit N]

1. The network alone: every pair of the bundled test set is read into memory first, then
   ``Fuser.forward_only`` (inference mode, no padding, no colour, no I/O) is timed over all pairs.
2. The command: ``python -m fusionlib.fuse`` as a user runs it (``fusionlib.fuse.main``) into a fresh
   folder: reading, Y/CbCr, padding, the same network, colour back, PNG writing.

Prints ``command / network``; the target (issue #10) is below 2.0, i.e. I/O + colour + padding under
100 % of the network's time. Weights: the converted released RPFNet from ``../shared/golden`` when
present (time does not depend on the values), else a seeded random initialisation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusionlib.data import bundled, read_image, split_luma  # noqa: E402
from fusionlib.fuse import main as fuse_main  # noqa: E402
from fusionlib.methods import Fuser, get_method  # noqa: E402
from fusionlib.models import create_model  # noqa: E402

RELEASED = {"rpfnet": REPO.parent / "shared/golden/rpfnet/rpfnet_state_dict.pt",
            "siba": REPO.parent / "shared/golden/siba/SIBA_epoch60.pth"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="rpfnet")
    ap.add_argument("--dataset", default="msrs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=int, default=None, help="first N pairs only")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = get_method(a.method)
    tmp = Path(tempfile.mkdtemp(prefix="bench_fuse_"))
    weights = None
    if m.needs_weights:
        weights = RELEASED.get(a.method)
        if weights is None or not weights.is_file():
            torch.manual_seed(0)
            weights = tmp / "random.pt"
            torch.save(create_model(m.model).state_dict(), weights)
            print(f"weights: seeded random initialisation ({weights})")
        else:
            print(f"weights: {weights}")
    ds = bundled(a.dataset, "test")
    pairs = ds.pairs[: a.limit] if a.limit else ds.pairs
    ir_dir, vi_dir = tmp / "ir", tmp / "vi"
    ir_dir.mkdir()
    vi_dir.mkdir()
    for p in pairs:  # a folder holding exactly the timed pairs (links, no copies)
        (ir_dir / p.a.name).symlink_to(p.a.resolve())
        (vi_dir / p.b.name).symlink_to(p.b.resolve())
    fuser = Fuser(a.method, weights, device=a.device)
    tensors = []
    for p in pairs:
        y, _ = split_luma(read_image(p.b, "rgb"))
        tensors.append((read_image(p.a, "gray")[None].to(a.device), y[None].to(a.device)))
    fuser.forward_only(*tensors[0])  # warm-up, not timed (first-call allocations)
    sync = torch.cuda.synchronize if fuser.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for ir, vi in tensors:
        fuser.forward_only(ir, vi)
    sync()
    network = time.perf_counter() - t0
    t0 = time.perf_counter()
    rc = fuse_main(["--method", a.method, "--ir", str(ir_dir), "--vi", str(vi_dir), "--out", str(tmp / "out"),
                    "--device", a.device, "--quiet", *(["--weights", str(weights)] if weights else [])])
    command = time.perf_counter() - t0
    if rc:
        print("fuse command failed")
        return rc
    h, w = tensors[0][0].shape[-2:]
    print(f"{m.title} on {len(pairs)} {a.dataset} test pairs ({h}x{w}), {a.device}, {a.threads} threads:")
    print(f"  network alone   {network:8.2f} s  ({network / len(pairs):.2f} s per pair)")
    print(f"  fuse command    {command:8.2f} s  (includes loading the weights)")
    print(f"  ratio command / network = {command / network:.2f}  (target < 2.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
