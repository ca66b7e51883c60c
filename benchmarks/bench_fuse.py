"""The fuse command's paths against each other, and against the network's own forward, in one run.

    python benchmarks/bench_fuse.py [--method siba] [--dataset msrs] [--threads 2] [--limit N]

Every time below is measured in this run, on this machine, with the same pairs:

1. **network alone**: every pair is read into memory first, then the fast inference path
   (``Fuser(path="fast").forward_only``: inference mode, no padding, no colour, no I/O) is timed.
2. **fuse, fast path**: ``python -m fusionlib.fuse`` as a user runs it today (a fresh process, the fast
   path, freed memory kept for reuse; ``fusionlib.allocator``).
3. **fuse, readable path, as before**: the same command with ``--path readable`` and
   ``FUSIONLIB_KEEP_FREED_MEMORY=0``, which is what the command did before it took the fast path.

Prints the command's time per image over the network's own (I/O, colour, padding and loading cost),
the fast command's speed-up over the old one (target ≥ 1.6 for SIBA on the 22 MSRS pairs, issue #25),
and the largest grey-level difference between the two commands' PNGs (target ≤ 1). Weights: the released
ones from ``../shared/golden`` when present (time does not depend on the values), else a seeded random
initialisation.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusionlib.allocator import keep_freed_memory  # noqa: E402
from fusionlib.data import bundled, read_image, split_luma  # noqa: E402
from fusionlib.methods import Fuser, get_method  # noqa: E402
from fusionlib.models import create_model  # noqa: E402

RELEASED = {"rpfnet": REPO.parent / "shared/golden/rpfnet/rpfnet_state_dict.pt",
            "siba": REPO.parent / "shared/golden/siba/SIBA_epoch60.pth"}


def _command(args: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Run the fuse command in a fresh process: (wall, user, system) seconds."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fusionlib.fuse", *args], check=True, env=env, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="siba")
    ap.add_argument("--dataset", default="msrs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N pairs only")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as the command does
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

    fuser = Fuser(a.method, weights, path="fast")
    tensors = []
    for p in pairs:
        y, _ = split_luma(read_image(p.b, "rgb"))
        tensors.append((read_image(p.a, "gray")[None], y[None]))
    fuser.forward_only(*tensors[0])  # warm-up, not timed (first-call allocations)
    t0 = time.perf_counter()
    for ir, vi in tensors:
        fuser.forward_only(ir, vi)
    network = time.perf_counter() - t0

    common = ["--method", a.method, "--ir", str(ir_dir), "--vi", str(vi_dir), "--device", "cpu", "--quiet",
              *(["--weights", str(weights)] if weights else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    fast = _command([*common, "--out", str(tmp / "fast")], env)
    old = _command([*common, "--out", str(tmp / "readable"), "--path", "readable"],
                   {**env, "FUSIONLIB_KEEP_FREED_MEMORY": "0"})
    worst = 0
    for p in sorted((tmp / "fast").glob("*.png")):
        x = np.asarray(Image.open(p), dtype=np.int16)
        y = np.asarray(Image.open(tmp / "readable" / p.name), dtype=np.int16)
        worst = max(worst, int(np.abs(x - y).max()))

    n = len(pairs)
    h, w = tensors[0][0].shape[-2:]
    print(f"{m.title} on {n} {a.dataset} test pairs ({h}x{w}), cpu, {a.threads} threads, one run:")
    print(f"  network alone, {fuser.path:<28} {network:8.2f} s  ({network / n:.2f} s per pair)")
    for label, (wall, user, sys_) in (("fuse, fast path (today)", fast), ("fuse, readable path, as before", old)):
        print(f"  {label:<43} {wall:8.2f} s  ({wall / n:.2f} s per pair; user {user:.1f} s, system {sys_:.1f} s)")
    print(f"  command / network (fast path)       = {fast[0] / network:.2f}  (loading the weights included)")
    print(f"  speed-up of the command, old / today = {old[0] / fast[0]:.2f}x  (target >= 1.6 for SIBA)")
    print(f"  largest PNG difference between the two commands = {worst} grey level(s)  (target <= 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
