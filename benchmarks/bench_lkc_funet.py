"""Time LKC-FUNet's readable forward and its fast path at 256x256 on CPU (2 threads), in one run, with FLOPs.

    python benchmarks/bench_lkc_funet.py [--threads 2] [--repeats 3] [--size 256 256]

Our ``LKCFUNet`` performs the authors' forward operation for operation (the same dense 15/11/5 convs,
GroupNorms, RepLK blocks and MPAFMs; the golden test checks the outputs to 1e-4), in the released
variant (BN InitBlock, ``lkc_funet_code``). ``lkc_forward_fast`` (``fusionlib/models/lkc_funet_fast.py``)
computes the same function with FFT-tiled dense large-kernel convolutions and channels-last depthwise
convolutions. The two paths run interleaved in this process on the same inputs (readable, fast, readable,
fast, ...); the script prints the min and median of each, their ratio (min / min) and the largest output
difference. The machine load (``os.getloadavg``) is printed before and after: on a shared machine only
same-run ratios mean anything.

Side by side with the authors' code (2 threads, interleaved in one process, same inputs; issue #23) our
readable path and theirs both took about 32 s at 256x256 (authors / ours = 0.99). Stored times of the
authors' code from other runs (``notebooks/released_code.md`` §LKC-FUNet: 43 s; ``golden/perf.json``: 19.1 s at
128x128 under load) are printed with their provenance only and never divided into a ratio with this run.
Also prints FLOPs at the size (FlopCounterMode on the meta device: GFLOPs = 2 x GMAC; the paper's "4050 G"
at 256² is 2 x MAC). Batch 1, ``torch.inference_mode``, float32, eval mode, seeded random init and inputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusionlib.models.lkc_funet import LKCFUNet  # noqa: E402
from fusionlib.models.lkc_funet_fast import lkc_forward_fast  # noqa: E402
from fusionlib.profiling import count_flops  # noqa: E402

# Authors' code, 2 threads (seconds), measured in other runs: printed with provenance, never divided.
AUTHORS_S = {(256, 256): {"side by side with our readable path, interleaved in one process (issue #23)":
                          31.72,
                          "notebooks/released_code.md §LKC-FUNet (earlier study)": 43.0},
             (128, 128): {"golden/perf.json (machine under load)": 19.1}}


def _timed(fn, *args) -> tuple[torch.Tensor, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = args.size
    with torch.device("meta"):
        meta = LKCFUNet(init_norm="bn")
    fl = count_flops(meta, torch.Size([1, 1, h, w]), torch.Size([1, 1, h, w]), meta=True)
    print(f"LKC-FUNet (released variant) at {h}x{w}: {fl['gflops']:.1f} GFLOPs = {fl['gmac']:.1f} GMAC "
          f"(paper: 4050 G at 256x256)")
    torch.manual_seed(0)
    model = LKCFUNet(init_norm="bn").eval()
    g = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    paths = {"readable": model, "fast": lambda a, b: lkc_forward_fast(model, a, b)}
    wall: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    outs: dict[str, torch.Tensor] = {}
    load0 = os.getloadavg()
    with torch.inference_mode():
        for fn in paths.values():  # warm-up (allocator, oneDNN primitives, DFT matrices)
            fn(ir[..., :64, :64], vi[..., :64, :64])
        for r in range(args.repeats):
            order = list(paths) if r % 2 == 0 else list(reversed(paths))
            for name in order:
                outs[name], t, c = _timed(paths[name], ir, vi)
                wall[name].append(t)
                cpu[name].append(c)
    load1 = os.getloadavg()
    diff = float((outs["readable"] - outs["fast"]).abs().max())
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, {args.repeats} interleaved runs "
          f"each; "
          f"load average (1, 5, 15 min) before {tuple(round(x, 1) for x in load0)}, "
          f"after {tuple(round(x, 1) for x in load1)} on {os.cpu_count()} CPUs")
    for name in paths:
        print(f"  {name:8s}: min {min(wall[name]):6.2f} s, median {statistics.median(wall[name]):6.2f} s "
              f"{[round(x, 2) for x in wall[name]]}; process CPU time min {min(cpu[name]):6.2f} s")
    ratio = min(wall["readable"]) / min(wall["fast"])
    cpu_ratio = min(cpu["readable"]) / min(cpu["fast"])
    print(f"fast vs readable, same run: {ratio:.2f}x (wall, min / min); {cpu_ratio:.2f}x (process CPU time); "
          f"max |readable - fast| = {diff:.2e}")
    refs = AUTHORS_S.get((h, w), {})
    if refs:
        print("authors' code, same size and threads, measured in OTHER runs "
              "(provenance only, no ratio with this run):")
        for name, s in refs.items():
            print(f"  {s:6.2f} s  {name}")
    return {"size": [h, w], "wall_s": wall, "cpu_s": cpu, "ratio": ratio, "cpu_ratio": cpu_ratio,
            "max_abs_diff": diff, "load_before": load0, "load_after": load1, "authors_s_other_runs": refs,
            **fl}


if __name__ == "__main__":
    main()
