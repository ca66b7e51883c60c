"""Time fusionlib.metrics on one 640x480 pair, per metric and in total, against the toolboxes' times.

    python benchmarks/bench_metrics.py [--threads 2] [--repeats 7] [--presets tang cddfuse] [--with-slow]

Per metric: our time (median and min of ``--repeats`` calls after a warm-up; each call gets a
fresh evaluation context, so nothing is shared between metrics), the toolboxes' wall time for the
same metric on the same image (``../shared/metric_ref/timings.json``: tag msrs_00004N, rule
"max"; the CDDFuse Python evaluator with its pinned libraries, and Tang's MATLAB toolbox run in
GNU Octave), and the ratios. Then whole ``evaluate()`` calls (metrics sharing intermediates).
The reference times were taken on a busy 2-core machine and this machine is shared as well:
compare ratios, not absolute times, and rerun when the load average is high.

Without ``../shared`` the inputs are seeded random images of the same size and only our times are
printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fusionlib.metrics import evaluate, list_metrics  # noqa: E402
from fusionlib.metrics._common import to_levels  # noqa: E402
from fusionlib.metrics.presets import Ctx, get_preset  # noqa: E402

TAG, RULE = "msrs_00004N", "max"
# toolbox key in timings.json per preset, and the toolbox's name for our metric where it differs
REF_KEYS = {"tang": ["tang_octave"], "cddfuse": ["cddfuse_pinned_py38"], "lkc": ["cddfuse_pinned_py38"]}
SLOW = ("FMI_dct", "FMI_w")
REF_NAMES = {"cddfuse": {"VIF": "VIFF"}, "lkc": {"VIF": "VIFF", "SSIM": "SSIM_dr255"}}


def _shared() -> Path | None:
    env = os.environ.get("FUSIONLIB_SHARED")
    p = Path(env) if env else REPO.parent / "shared"
    return p if (p / "metric_ref").is_dir() else None


def _inputs(shared: Path | None) -> tuple[torch.Tensor, ...]:
    if shared is not None:
        from PIL import Image

        d = shared / "metric_ref" / "images"
        def read(k: str) -> torch.Tensor:
            return torch.from_numpy(np.array(Image.open(d / f"{TAG}_{k}.png")))[None, None]

        return read("max"), read("A"), read("B")
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (1, 1, 480, 640), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 256, (1, 1, 480, 640), generator=g, dtype=torch.uint8)
    return torch.maximum(a, b), a, b


def _time(fn, repeats: int) -> tuple[float, float]:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--presets", nargs="+", default=["cddfuse", "tang"])
    ap.add_argument("--with-slow", action="store_true", help="also time FMI_dct and FMI_w (seconds each)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    shared = _shared()
    timings = json.loads((shared / "metric_ref" / "timings.json").read_text()) if shared else None
    fused, a, b = _inputs(shared)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    src = f"metric_ref {TAG} {RULE}" if shared else "random images; no ../shared: our times only"
    print(f"fusionlib.metrics on one {fused.shape[-1]}x{fused.shape[-2]} pair ({src}); "
          f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
          f"load average {load:.2f}")
    f_, a_, b_ = (to_levels(x, n) for x, n in ((fused, "fused"), (a, "a"), (b, "b")))
    for preset in args.presets:
        p = get_preset(preset)
        names = [m for m in list_metrics(preset) if args.with_slow or m not in SLOW]
        refs = [k for k in REF_KEYS.get(preset, []) if timings and k in timings]
        head = f"\n[{preset}]\n  {'metric':<14} {'ours med':>9} {'ours min':>9}"
        for k in refs:
            head += f"   {k + ' wall / cpu (s)':>36} {'ratio':>7}"
        print(head)
        tot_ours, tot_ref = 0.0, {k: 0.0 for k in refs}
        default = set(list_metrics(preset, extras=False))
        for name in names:
            fn = p.metrics[name].fn
            med, mn = _time(lambda: fn(Ctx(f_, a_, b_)), args.repeats)
            mark = " " if name in default else "+"
            line = f"{mark} {name:<14} {med * 1e3:7.1f}ms {mn * 1e3:7.1f}ms"
            for k in refs:
                ref_name = REF_NAMES.get(preset, {}).get(name, name)
                r = timings[k][TAG][RULE].get(ref_name)
                if r is None:
                    line += f"   {'-':>36} {'':>7}"
                    continue
                line += f"   {r['wall_s']:27.4f} / {r['cpu_s']:6.4f} {r['wall_s'] / med:6.0f}x"
                if name in default:
                    tot_ref[k] += r["wall_s"]
            if name in default:
                tot_ours += med
            print(line)
        line = f"  {'sum (toolbox set)':<14} {tot_ours * 1e3:7.1f}ms {'':>9}"
        for k in refs:
            line += f"   {tot_ref[k]:27.4f} {'':>8} {tot_ref[k] / tot_ours:6.0f}x"
        print(line)
        all_label = "all metrics" + ("" if args.with_slow else " but FMI_dct, FMI_w")
        for label, sel in (("toolbox set", None), (all_label, names)):
            med, mn = _time(lambda: evaluate(fused, a, b, preset, sel), args.repeats)
            line = f"  evaluate(), {label}: median {med * 1e3:.1f} ms, min {mn * 1e3:.1f} ms"
            if sel is None:
                for k in refs:
                    line += f"; {k}: {tot_ref[k]:.3f} s -> {tot_ref[k] / med:.0f}x"
            print(line)
    print("\n'+' = extra metric (not in the toolbox, not in the sums); "
          "ratio = toolbox wall time / our median.")


if __name__ == "__main__":
    main()
