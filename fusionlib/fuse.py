"""Fuse a folder of image pairs with any method: ``python -m fusionlib.fuse --method NAME ...``.

Examples::

    python -m fusionlib.fuse --method rpfnet --weights runs/04_rpfnet/weights.pt --ir IR/ --vi VI/ --out fused/
    python -m fusionlib.fuse --method siba --weights SIBA_epoch60.pth --dataset msrs --out fused/
    python -m fusionlib.fuse --method max --ir MRI/ --vi PET/ --out fused/          # medical: MRI + PET

Without ``--weights`` a network uses ``runs/<notebook>/weights.pt`` when its notebook has run, else the
network the suite ships in ``weights/`` (trained by ``make weights``; ``weights/MANIFEST.json`` says how), and
says which.

Pairs are matched by file stem. The second image (visible, or CT/PET/SPECT) may be colour: the
network fuses its luminance Y (BT.601 full range) with the first image, and the colour (Cb, Cr) is
put back. Images are fused at full resolution (padded to the method's size multiple and cropped
back), grouped by size into batches, and written as 8-bit PNG; existing outputs are kept unless
``--overwrite``. An output folder that is, or lies inside, an input folder is refused (the inputs are
never written over), and images larger than the pixel budget (``--max-pixels``, 50 MP) are refused
from their header, before anything is decoded.

Networks run on their fastest inference path that computes the same function as the readable one
(SIBA: ``forward_fast``; RPFNet with ``--mode eval``: BatchNorm folded into the convolutions; both within
1e-5); ``--path readable`` runs the readable ``forward`` instead, for teaching and debugging. The command
prints which path it took.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fusionlib.data import FusionDataError, image_info, merge_luma, read_image, save_image, split_luma
from fusionlib.data.pairs import match_pairs

__all__ = ["FuseReport", "find_pairs", "fuse_pairs", "main"]


@dataclass
class FuseReport:
    """What a fuse run did: counts and where the time went (seconds)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    forward_seconds: float = 0.0

    @property
    def overhead(self) -> float:
        """(total − forward) / forward: I/O, colour and padding cost relative to the network."""
        return (self.seconds - self.forward_seconds) / self.forward_seconds if self.forward_seconds else float("nan")


def find_pairs(ir_dir: str | Path, vi_dir: str | Path, *, ignore_unmatched: bool = False) -> list[tuple[str, Path, Path]]:
    """``[(stem, ir file, vi file)]`` matched by stem; raises naming unmatched or duplicate files."""
    m = match_pairs(ir_dir, vi_dir)
    problems = []
    if m.duplicates:
        problems.append("two files with the same stem: " + ", ".join(f"{a.name} / {b.name}" for a, b in m.duplicates[:5]))
    if not ignore_unmatched:
        if m.only_a:
            problems.append(f"{len(m.only_a)} file(s) in {m.a_dir} have no partner in {m.b_dir}: "
                            + ", ".join(p.name for p in m.only_a[:5]) + (" ..." if len(m.only_a) > 5 else ""))
        if m.only_b:
            problems.append(f"{len(m.only_b)} file(s) in {m.b_dir} have no partner in {m.a_dir}: "
                            + ", ".join(p.name for p in m.only_b[:5]) + (" ..." if len(m.only_b) > 5 else ""))
    if problems:
        raise FusionDataError("; ".join(problems) + (" (pass --ignore-unmatched to fuse only the matched pairs)"
                                                     if m.only_a or m.only_b else ""))
    if not m.pairs:
        raise FusionDataError(f"no image pairs found in {m.a_dir} and {m.b_dir}")
    return sorted(m.pairs)


def _load_pair(a: Path, b: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    ir = read_image(a, "gray")
    vi = read_image(b, "raw")
    if ir.shape[-2:] != vi.shape[-2:]:
        raise FusionDataError(f"size mismatch: {a} is {tuple(ir.shape[-2:])} (H, W) but {b} is "
                              f"{tuple(vi.shape[-2:])}; the pair must be registered (same size)")
    if vi.shape[0] == 3:
        y, cbcr = split_luma(vi)
        return ir, y, cbcr
    return ir, vi, None


def fuse_pairs(fuser, pairs: list[tuple[str, Path, Path]], out_dir: str | Path, *, batch_size: int = 1,
               overwrite: bool = False, progress: bool = True, suffix: str = ".png") -> FuseReport:
    """Fuse ``pairs`` with ``fuser`` (a :class:`fusionlib.methods.Fuser`) into ``out_dir/<stem>.png``.

    Pairs of the same size are batched (``batch_size``); colour is restored from the second image.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = FuseReport()
    t0 = time.perf_counter()
    todo = []
    for stem, a, b in pairs:
        target = out_dir / f"{stem}{suffix}"
        if target.exists() and not overwrite:
            rep.skipped.append(target)
        else:
            todo.append((stem, a, b, target))
    cuda = fuser.device.type == "cuda"
    bar = tqdm(total=len(todo), desc=f"fuse {fuser.method.name}", unit="pair", disable=not progress)
    # group by size so a batch holds one size; read lazily, one batch at a time. The headers are read
    # (and the pixel budget checked) for every pair before the first forward.
    by_size: dict[tuple[int, int], list] = defaultdict(list)
    for item in todo:
        image_info(item[2])
        by_size[image_info(item[1]).size].append(item)
    for items in by_size.values():
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            loaded = [_load_pair(a, b) for _, a, b, _ in chunk]
            ir = torch.stack([x[0] for x in loaded])
            y = torch.stack([x[1] for x in loaded])
            if cuda:
                torch.cuda.synchronize(fuser.device)
            tf = time.perf_counter()
            fused = fuser(ir, y)
            if cuda:
                torch.cuda.synchronize(fuser.device)
            rep.forward_seconds += time.perf_counter() - tf
            fused = fused.cpu()
            for (stem, a, b, target), (_, _, cbcr), f in zip(chunk, loaded, fused):
                img = merge_luma(f, cbcr) if cbcr is not None else f
                tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")
                save_image(img, tmp, compress_level=1)
                tmp.replace(target)  # never a half-written output
                rep.written.append(target)
            bar.update(len(chunk))
    bar.close()
    rep.seconds = time.perf_counter() - t0
    return rep


def check_output_folder(out: str | Path, inputs: list[str | Path]) -> Path:
    """Create ``out`` (parents too) and return it; refuse one that is, or lies inside, an input folder.

    Raises:
        FusionDataError: ``out`` is an input folder or inside one, is a file, or cannot be created or
            written (the message names it and says what to do).
    """
    out = Path(out)
    target = out.resolve()
    for folder in inputs:
        src = Path(folder).resolve()
        if target == src or src in target.parents:
            raise FusionDataError(f"--out {out} is {'the input folder' if target == src else 'inside the input folder'} "
                                  f"{folder}: fused images would be written among the source images; "
                                  f"choose an output folder outside the inputs")
    if out.exists() and not out.is_dir():
        raise FusionDataError(f"--out {out} is a file, not a folder; choose a folder (it is created when missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FusionDataError(f"--out {out}: cannot create the folder ({e.strerror or e}); choose another "
                              f"--out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise FusionDataError(f"--out {out}: the folder is not writable; choose another --out")
    return out


def main(argv: list[str] | None = None) -> int:
    from fusionlib import allocator
    from fusionlib.data import io
    from fusionlib.methods import METHODS, PATHS

    ap = argparse.ArgumentParser(prog="python -m fusionlib.fuse", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    ap.add_argument("--weights", default=None,
                    help="trained weights (default: runs/<notebook>/weights.pt if present, else the shipped "
                         "weights/<method>.pt)")
    ap.add_argument("--ir", "--a", dest="ir", default=None, help="folder of infrared (or MRI) images")
    ap.add_argument("--vi", "--b", dest="vi", default=None, help="folder of visible (or CT / PET / SPECT) images")
    ap.add_argument("--dataset", default=None, help="a bundled set instead of folders, e.g. msrs or harvard_pet:test")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 | mps")
    ap.add_argument("--batch", type=int, default=None, help="pairs per forward (default 8 on a GPU, 1 on CPU)")
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ap.add_argument("--ignore-unmatched", action="store_true", help="fuse the matched pairs, skip files without partner")
    ap.add_argument("--mode", default=None, help="RPFNet BatchNorm mode: as_released (default) | eval")
    ap.add_argument("--runs", default="runs", help="where the notebooks saved their weights")
    ap.add_argument("--shipped", default=None,
                    help="folder of the shipped weights and their MANIFEST.json (default: the repository's weights/)")
    ap.add_argument("--path", choices=PATHS, default="fast",
                    help="fast: the fastest path exact to the readable one (default); readable: the readable forward")
    ap.add_argument("--max-pixels", type=int, default=io.DEFAULT_MAX_PIXELS,
                    help=f"refuse images with more pixels than this (default {io.DEFAULT_MAX_PIXELS:,}; 0: no limit)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    if a.batch is not None and a.batch < 1:
        ap.error(f"--batch must be at least 1, got {a.batch}")
    if a.max_pixels < 0:
        ap.error(f"--max-pixels must be 0 (no limit) or positive, got {a.max_pixels}")
    allocator.keep_freed_memory()
    with io.pixel_budget(a.max_pixels):
        return _run(a, ap)


def _run(a: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    from fusionlib.methods import get_method, load_fuser
    from fusionlib.runner import run_failed
    from fusionlib.train import resolve_device
    from fusionlib.weights import WEIGHTS_DIR, resolve_weights

    try:
        method = get_method(a.method)
        if a.dataset:
            from fusionlib.data import bundled

            name, _, split = a.dataset.partition(":")
            ds = bundled(name, split or "test")
            a.ir, a.vi = ds.a_dir, ds.b_dir
        elif not (a.ir and a.vi):
            ap.error("give --ir and --vi folders, or --dataset")
        pairs = find_pairs(a.ir, a.vi, ignore_unmatched=a.ignore_unmatched)
        check_output_folder(a.out, [a.ir, a.vi])
        weights, where = a.weights, "given"
        if weights is None and method.needs_weights:
            weights, where = resolve_weights(a.method, a.runs, a.shipped or WEIGHTS_DIR)
            failed = run_failed(Path(a.runs) / method.notebook) if method.notebook else None
            if failed:
                print(f"note: the last {method.notebook} run failed ({failed}); its weights are not used")
            if weights is not None:
                print(f"weights: {where}")
        if a.mode and method.infer is None:
            raise ValueError(f"--mode is RPFNet's BatchNorm mode; {a.method} has no such option")
        device = resolve_device(a.device)
        kw = {"mode": a.mode} if a.mode else {}
        fuser = load_fuser(a.method, weights, device=device, path=a.path, **kw)
        if fuser.model is not None:
            print(f"inference path: {fuser.path}")
        batch = a.batch or (8 if device.type == "cuda" else 1)
        rep = fuse_pairs(fuser, pairs, a.out, batch_size=batch, overwrite=a.overwrite, progress=not a.quiet)
    except (FusionDataError, FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print(f"{method.title}: wrote {len(rep.written)} fused image(s) to {a.out} in {rep.seconds:.1f} s on {device} "
          f"(network {rep.forward_seconds:.1f} s, overhead {100 * rep.overhead:.0f} %)"
          + (f"; kept {len(rep.skipped)} existing (use --overwrite to redo)" if rep.skipped else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
