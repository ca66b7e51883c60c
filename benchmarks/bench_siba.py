"""Time SIBA's forward at 480x640 on CPU: our readable path against our fast path, in one run.

    python benchmarks/bench_siba.py [--threads 2] [--repeats 3] [--size 480 640] [--weights PATH]

Both paths are timed alternately in this run on this machine, and their ratio is the benchmark. The
readable ``SIBA.forward`` performs the authors' forward operation for operation, but it is **not** a
stand-in for the authors' code's time: run side by side with it (2 threads, interleaved, same inputs; issue
#23) the authors' code took 13.63 s, our readable path 10.88 s and ``forward_fast`` 6.12 s. Times of the
authors' code stored from other runs are printed with their provenance and never divided into a ratio
with this run's times. Inputs are the golden 00004N pair when ``../shared`` is present (then the outputs
are also checked against the golden output), else seeded random images (time does not depend on the values). Batch 1, ``torch.inference_mode``, float32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusionlib.checkpoints import load_siba_released  # noqa: E402
from fusionlib.models import create_model  # noqa: E402

# Authors' code, 1x1x480x640, 2 threads, no_grad (seconds), measured in other runs: printed, never divided.
AUTHORS_S = {
    "side by side with ours, interleaved in one process (issue #23, 2-core CPU box)": 13.63,
    "notebooks/released_code.md §SIBA (earlier study)": 13.6,
    "golden/perf.json earlier_run (machine under load)": 20.37,
    "golden/perf.json median (load avg 2-4)": 24.72,
}


def _shared() -> Path | None:
    env = os.environ.get("FUSIONLIB_SHARED")
    p = Path(env) if env else REPO.parent / "shared"
    return p if p.is_dir() else None


def _time(fn, *args) -> tuple[float, float, torch.Tensor]:
    """Wall seconds, process CPU seconds (all threads; less sensitive to other load), output."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0, out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--weights", type=Path, default=None, help="SIBA_epoch60.pth (default: the golden copy)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    shared = _shared()
    weights = args.weights or (shared / "golden/siba/SIBA_epoch60.pth" if shared else None)
    model = load_siba_released(weights) if weights and weights.is_file() else create_model("siba").eval()
    h, w = args.size
    golden = shared / "golden/siba/full" if shared else None
    ref_out = None
    if golden is not None and (h, w) == (480, 640) and weights is not None:
        ir = torch.from_numpy(np.load(golden / "msrs_00004N_ir.npy"))
        vi = torch.from_numpy(np.load(golden / "msrs_00004N_vi_y.npy"))
        ref_out = torch.from_numpy(np.load(golden / "msrs_00004N_out_raw.npy"))
    else:
        g = torch.Generator().manual_seed(0)
        ir, vi = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)

    print(f"SIBA forward, 1x1x{h}x{w}, float32, CPU, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    used = weights if weights and weights.is_file() else "random init"
    print(f"weights: {used}; load avg {os.getloadavg()}")
    times: dict[str, list[float]] = {"readable": [], "fast": []}
    cpu: dict[str, list[float]] = {"readable": [], "fast": []}
    paths = {"readable": model, "fast": model.forward_fast}
    with torch.inference_mode():
        out_r = _time(model, ir, vi)[2]  # warm-up (oneDNN primitive creation)
        out_f = _time(model.forward_fast, ir, vi)[2]
        for _ in range(args.repeats):  # alternate, so that load changes hit both alike
            for k, fn in paths.items():
                wall, proc, _ = _time(fn, ir, vi)
                times[k].append(wall)
                cpu[k].append(proc)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}  # least disturbed by other load
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    for k, v in times.items():
        print(f"  ours {k:9s} median {med[k]:6.2f} s, min {best[k]:6.2f} s wall "
              f"({med_cpu[k]:6.2f} s CPU)   runs {', '.join(f'{t:.2f}' for t in v)}")
    print(f"  fast / readable speed-up: {med['readable'] / med['fast']:.2f}x median wall, "
          f"{best['readable'] / best['fast']:.2f}x min wall, {med_cpu['readable'] / med_cpu['fast']:.2f}x CPU time")
    print(f"  max |fast - readable| = {(out_f - out_r).abs().max().item():.2e}")
    if ref_out is not None:
        print(f"  max |readable - golden| = {(out_r - ref_out).abs().max().item():.2e}, "
              f"max |fast - golden| = {(out_f - ref_out).abs().max().item():.2e}")
    if (h, w) == (480, 640):
        print("authors' code, same size and threads, measured in OTHER runs (provenance only, no ratio with this run):")
        for name, s in AUTHORS_S.items():
            print(f"  {s:6.2f} s  {name}")
    print(f"load avg after {os.getloadavg()}")
    return {"median_s": med, "min_s": best, "runs_s": times, "median_cpu_s": med_cpu}


if __name__ == "__main__":
    main()
