"""Time LKC-FUNet's forward at 256x256 on CPU against the authors' 43 s (2 threads).

    python benchmarks/bench_lkc_funet.py [--threads 2] [--repeats 2] [--size 256 256]

Our ``LKCFUNet`` performs the authors' forward operation for operation (the same dense 15/11/5 convs,
GroupNorms, RepLK blocks and MPAFMs; the golden test checks the outputs to 1e-4), in the released
variant (BN InitBlock, ``lkc_funet_code``). The authors' time is from ``reference/authors_code.md`` §3
(43 s at 256², 2 CPU threads, torch 2.13) and ``golden/perf.json`` (19.1 s at 128², contended machine),
measured on another day on a 2-vCPU machine, so the ratio is indicative. Also prints FLOPs at the size
(FlopCounterMode on the meta device: GFLOPs = 2 x GMAC; the paper's "4050 G" at 256² is 2 x MAC).
Batch 1, ``torch.inference_mode``, float32, eval mode, seeded random inputs.
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
from fusionlib.profiling import count_flops  # noqa: E402

AUTHORS_S = {(256, 256): 43.0, (128, 128): 19.1}  # authors_code.md §3 / golden perf.json (contended)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
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
    runs, cpu = [], []
    with torch.inference_mode():
        model(ir[..., :64, :64], vi[..., :64, :64])  # warm-up (allocator, oneDNN primitives)
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            model(ir, vi)
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    med = statistics.median(runs)
    print(f"ours: median {med:.1f} s over {args.repeats} runs {[round(r, 1) for r in runs]} "
          f"({torch.get_num_threads()} threads, torch {torch.__version__}); process CPU time {statistics.median(cpu):.1f} s "
          f"(all threads; ~{statistics.median(cpu) / args.threads:.1f} s of wall time on {args.threads} idle cores); "
          f"load average {os.getloadavg()[0]:.1f}")
    ref = AUTHORS_S.get((h, w))
    ratio = None
    if ref is not None:
        ratio = med / ref
        print(f"authors' code: {ref:.1f} s -> ratio ours / authors = {ratio:.2f} "
              f"({'faster' if ratio < 1 else 'slower'}; measured on different days, see docstring)")
    else:
        print("no authors' time recorded at this size (256x256 and 128x128 are)")
    return {"size": [h, w], "median_s": med, "runs_s": runs, "cpu_s": cpu, "authors_s": ref, "ratio": ratio, **fl}


if __name__ == "__main__":
    main()
