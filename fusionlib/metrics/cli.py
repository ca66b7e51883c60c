"""``python -m fusionlib.metrics``: score a folder of fused images against two source folders.

Pairs are matched by file stem (``00004N.png`` in ``--fused`` with ``00004N.*`` in ``--a`` and
``--b``). Every image is read as 8-bit grey: one-channel images as they are, RGB as
``round(0.299 R + 0.587 G + 0.114 B)`` computed exactly in integers with ties (about 1 pixel in
1000 is an exact .5) rounded up, as in the metric_ref reference images. Other readers differ by 1
on some ties: CDDFuse's ``cv2`` float path and PIL's fixed-point ``convert('L')`` can round them down.

Prints mean ± std (sample std, ddof = 1) per metric, with the preset's conventions noted; ``--csv``
writes one row per image **as it is computed**, so the rows already done survive a later failure or an
interrupt. An image that cannot be read is reported and skipped (exit status 1 at the end, the others
are scored); a metric that cannot be computed on an image (MS-SSIM under 176 px) is NaN with a
warning. Hidden files (``.x.tmp.png`` from an interrupted ``fuse``, ``._x.png`` from macOS) are
ignored, as ``fuse`` ignores them. Images over the pixel budget (``--max-pixels``) are refused from
their header.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fusionlib.data import io
from fusionlib.data.io import FusionDataError, open_image
from fusionlib.metrics.presets import PRESETS, evaluate, get_preset, list_metrics

__all__ = ["main", "read_grey", "match_pairs"]

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def read_grey(path: str | Path) -> np.ndarray:
    """Read an image as ``(H, W)`` uint8 grey (BT.601 luma, half-up rounding, for colour images)."""
    path = Path(path)
    try:
        im = open_image(path)  # the pixel budget is checked on the header, before decoding
        im.load()
    except FusionDataError as e:
        raise CLIError(str(e)) from e
    except Exception as e:  # noqa: BLE001 - PIL raises many types
        raise CLIError(f"cannot read image {path}: {e}") from e
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise CLIError(f"{path}: {im.mode} (16-bit / float) images are not supported; save 8-bit images")
    if im.mode == "L":
        return np.array(im, dtype=np.uint8)
    if im.mode == "LA":
        return np.array(im.getchannel(0), dtype=np.uint8)
    if im.mode == "1":
        return np.array(im.convert("L"), dtype=np.uint8)
    rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    y = (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000
    return y.astype(np.uint8)


def _index(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise CLIError(f"--{role}: {folder} is not a folder")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS:
            if p.stem in out:
                raise CLIError(
                    f"--{role}: two images share the stem {p.stem!r}: {out[p.stem].name} and {p.name}"
                )
            out[p.stem] = p
    if not out:
        raise CLIError(f"--{role}: no images ({', '.join(sorted(IMAGE_EXTS))}) in {folder}")
    return out


def match_pairs(fused_dir: Path, a_dir: Path, b_dir: Path) -> list[tuple[str, Path, Path, Path]]:
    """``[(stem, fused, a, b)]`` for every fused image; error if a stem lacks a source image."""
    f_idx, a_idx, b_idx = _index(fused_dir, "fused"), _index(a_dir, "a"), _index(b_dir, "b")
    problems = []
    for role, idx, folder in (("a", a_idx, a_dir), ("b", b_idx, b_dir)):
        missing = [s for s in f_idx if s not in idx]
        if missing:
            shown = ", ".join(f_idx[s].name for s in missing[:10]) + (" ..." if len(missing) > 10 else "")
            problems.append(f"{len(missing)} fused image(s) have no match in --{role} {folder}: {shown}")
    if problems:
        raise CLIError("unmatched names (pairs are matched by file stem):\n  " + "\n  ".join(problems))
    return [(s, f_idx[s], a_idx[s], b_idx[s]) for s in f_idx]


def _table(names: list[str], rows: list[dict[str, float]], preset: str) -> str:
    p = get_preset(preset)
    lines = [f"preset: {preset} ({p.description}); {len(rows)} image(s)"]
    width = max(len(n) for n in names)
    for n in names:
        v = np.array([r[n] for r in rows], dtype=float)
        ok = v[~np.isnan(v)]
        mean = ok.mean() if ok.size else math.nan
        sd = ok.std(ddof=1) if ok.size > 1 else 0.0
        key = p.resolve(n)
        arrow = "↑" if p.metrics[key].higher_is_better else "↓"
        extra = f"  ({v.size - ok.size} NaN)" if ok.size < v.size else ""
        lines.append(f"  {n:<{width}} {arrow} {mean:12.6g} ± {sd:<10.4g} {p.metrics[key].doc}{extra}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fusionlib.metrics",
        description="Fusion metrics under a named toolbox convention (see fusionlib.metrics.presets).",
    )
    ap.add_argument("--fused", required=True, type=Path, help="folder of fused images")
    ap.add_argument("--a", required=True, type=Path, help="folder of source A images (infrared / MRI)")
    ap.add_argument("--b", required=True, type=Path,
                    help="folder of source B images (visible / CT / PET / SPECT)")
    ap.add_argument("--preset", default="tang", choices=sorted(PRESETS),
                    help="metric convention (default: tang)")
    ap.add_argument("--metrics", default=None,
                    help="comma-separated metric names, or 'all' (default: the toolbox's own set)")
    ap.add_argument("--csv", type=Path, default=None,
                    help="write per-image values to this CSV file (row by row, as they are computed)")
    ap.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    ap.add_argument("--max-pixels", type=int, default=io.DEFAULT_MAX_PIXELS,
                    help=f"refuse images with more pixels than this (default {io.DEFAULT_MAX_PIXELS:,}; 0: no limit)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.max_pixels < 0:
        ap.error(f"--max-pixels must be 0 (no limit) or positive, got {args.max_pixels}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(io.pixel_budget(args.max_pixels))
        try:  # everything that can be checked before the first image is computed
            pairs = match_pairs(args.fused, args.a, args.b)
            preset = get_preset(args.preset)
            if args.metrics is None:
                names = list_metrics(preset, extras=False)
            elif args.metrics.strip() == "all":
                names = list_metrics(preset)
            else:
                names = [m.strip() for m in args.metrics.split(",") if m.strip()]
                for n in names:
                    preset.resolve(n)
            device = _device(args.device)
            writer, fh = None, None
            if args.csv is not None:
                fh = stack.enter_context(_open_csv(args.csv))
                writer = csv.writer(fh)
                writer.writerow(["name", *names])
                fh.flush()
        except (CLIError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        rows, failed = _score(pairs, names, preset, device, writer, fh, args)
    if rows:
        print(_table(names, rows, args.preset))
    if args.csv is not None:
        print(f"per-image values written to {args.csv} ({len(rows)} row(s))")
    if failed:
        print(f"error: {len(failed)} of {len(pairs)} image(s) could not be scored and are not in the table:",
              file=sys.stderr)
        for stem, why in failed:
            print(f"  {stem}: {why}", file=sys.stderr)
        return 1
    return 0


def _device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as e:
        raise CLIError(f"--device {name!r} is not usable here ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                       f"use cpu, or cuda / cuda:N on a machine with a GPU") from None
    return dev


def _open_csv(path: Path):
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", newline="")
    except OSError as e:
        raise CLIError(f"--csv {path}: cannot write the file ({e.strerror or e}); choose another path "
                       f"(nothing was computed yet)") from None


def _score(pairs, names, preset, device, writer, fh, args) -> tuple[list[dict], list[tuple[str, str]]]:
    """Score every pair; a row per image into ``writer`` as soon as it is computed."""
    from tqdm.auto import tqdm

    rows: list[dict[str, float]] = []
    failed: list[tuple[str, str]] = []
    done = False
    try:
        for stem, pf, pa, pb in tqdm(pairs, desc="metrics", unit="img", disable=args.no_progress or None):
            try:
                imgs = [read_grey(p) for p in (pf, pa, pb)]
                shapes = [im.shape for im in imgs]
                if len(set(shapes)) > 1:
                    raise CLIError(
                        f"size mismatch: fused {pf} {shapes[0][1]}x{shapes[0][0]}, "
                        f"a {pa} {shapes[1][1]}x{shapes[1][0]}, b {pb} {shapes[2][1]}x{shapes[2][0]} (W x H)")
            except CLIError as e:
                failed.append((stem, str(e)))
                continue
            t = [torch.from_numpy(im).to(device)[None, None] for im in imgs]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                vals = evaluate(t[0], t[1], t[2], preset, names, errors="nan")
            for w in caught:
                print(f"warning: {stem}: {w.message}", file=sys.stderr)
            row = {n: float(v[0]) for n, v in vals.items()}
            rows.append(row)
            if writer is not None:
                writer.writerow([stem, *(repr(row[n]) for n in names)])
                fh.flush()
        done = True
    finally:
        if not done and writer is not None:
            print(f"stopped: {args.csv} holds the {len(rows)} row(s) computed before the interruption",
                  file=sys.stderr)
    return rows, failed
