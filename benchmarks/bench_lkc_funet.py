"""Time LKC-FUNet's forward at 256x256 on CPU (2 threads), with its FLOPs.

    python benchmarks/bench_lkc_funet.py [--threads 2] [--repeats 2] [--size 256 256]

Our ``LKCFUNet`` performs the authors' forward operation for operation (the same dense 15/11/5 convs,
GroupNorms, RepLK blocks and MPAFMs; the golden test checks the outputs to 1e-4), in the released
variant (BN InitBlock, ``lkc_funet_code``). Side by side with the authors' code (2 threads, interleaved in
one process, same inputs; issue #23) both took about 32 s at 256x256 (authors / ours = 0.99): our path has
no speed-up over theirs yet. Stored times of the authors' code from other runs (``reference/authors_code.md``
§3: 43 s; ``golden/perf.json``: 19.1 s at 128x128 under load) are printed with their provenance only and
never divided into a ratio with this run. Also prints FLOPs at the size (FlopCounterMode on the meta
device: GFLOPs = 2 x GMAC; the paper's "4050 G" at 256² is 2 x MAC).
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

# Authors' code, 2 threads (seconds), measured in other runs: printed with provenance, never divided.
AUTHORS_S = {(256, 256): {"side by side with ours, interleaved in one process (issue #23)": 31.72,
                          "reference/authors_code.md §3 (earlier study)": 43.0},
             (128, 128): {"golden/perf.json (machine under load)": 19.1}}


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
    refs = AUTHORS_S.get((h, w), {})
    if refs:
        print("authors' code, same size and threads, measured in OTHER runs (provenance only, no ratio with this run):")
        for name, s in refs.items():
            print(f"  {s:6.2f} s  {name}")
    return {"size": [h, w], "median_s": med, "runs_s": runs, "cpu_s": cpu, "authors_s_other_runs": refs, **fl}


if __name__ == "__main__":
    main()
