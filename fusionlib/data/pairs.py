"""Paired image datasets: source A (ir / MRI) and source B (vi / CT, PET, SPECT), matched by file stem.

Each sample is a dict (the suite's modality names, also for medical pairs):

* ``ir``      ``(1, H, W)`` source A as BT.601 luminance, float32 in [0, 1];
* ``vi``      ``(1, H, W)`` Y of source B (BT.601 full range), float32 in [0, 1];
* ``vi_cbcr`` ``(2, H, W)`` CbCr of source B, for colour restoration (0.5 where B is gray);
* ``name``    the pair's file stem (``"00004N"``);
* ``size``    ``(H, W)`` of the full image before any crop;
* ``box``     ``(top, left, h, w)`` of the crop in the full image (``(0, 0, H, W)`` without crop);
  flips are applied after cropping.

``mode="train"`` takes random crops (optionally at least ``min_border`` px from the border, as SIBA
does with 10) and random flips; ``mode="test"`` returns whole images (or a centre crop when ``crop``
is given). Whole test images differ in size between pairs: use ``batch_size=1`` or
:func:`collate_pairs`, which says so clearly.

Randomness: with ``seed=None`` crops and flips are drawn from torch's global RNG (reproducible after
``torch.manual_seed``, also with DataLoader workers). With ``seed=<int>`` the crop of a pair is a pure
function of ``(seed, epoch, pair name)``: call :meth:`PairedImageDataset.set_epoch` every epoch to get
new crops.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fusionlib.data.io import IMAGE_EXTENSIONS, FusionDataError, _load_array, _to_float, image_info
from fusionlib.data.layouts import Layout, get_layout
from fusionlib.data.luma import NEUTRAL_CHROMA
from fusionlib.ops.colour import rgb_to_gray, rgb_to_ycbcr

__all__ = [
    "Layout",
    "Pair",
    "PairMatch",
    "list_images",
    "match_pairs",
    "PairedImageDataset",
    "RepeatedCrops",
    "collate_pairs",
    "pair_loader",
]

_SHOW = 10  # how many names an error message lists before "... and N more"


def _natural_key(name: str) -> tuple:
    """Sort ``2.png`` before ``11.png``: digits compare as numbers."""
    return tuple(int(t) if i % 2 else t.lower() for i, t in enumerate(re.split(r"(\d+)", name)))


def _listing(items: Sequence[object]) -> str:
    shown = ", ".join(str(x) for x in items[:_SHOW])
    return shown + (f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, case-insensitive; hidden skipped), natural order."""
    d = Path(folder)
    if not d.is_dir():
        raise FusionDataError(f"image folder not found: {d}")
    files = [
        p
        for p in d.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


@dataclass(frozen=True)
class Pair:
    """One registered pair: stem ``name``, files ``a`` (ir / MRI) and ``b`` (vi / ...), ``size`` (H, W)."""

    name: str
    a: Path
    b: Path
    size: tuple[int, int]


@dataclass
class PairMatch:
    """Result of matching two folders by file stem (extensions may differ, e.g. ``.png`` vs ``.jpg``)."""

    a_dir: Path
    b_dir: Path
    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)
    only_a: list[Path] = field(default_factory=list)
    only_b: list[Path] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)
    n_a: int = 0
    n_b: int = 0


def match_pairs(a_dir: str | Path, b_dir: str | Path) -> PairMatch:
    """Match the images of two folders by stem; reports (does not raise on) orphans and duplicates.

    Raises:
        FusionDataError: a folder does not exist.
    """
    a_dir, b_dir = Path(a_dir), Path(b_dir)
    out = PairMatch(a_dir, b_dir)
    stems: list[dict[str, Path]] = []
    for folder in (a_dir, b_dir):
        files = list_images(folder)
        by_stem: dict[str, Path] = {}
        for p in files:
            if p.stem in by_stem:
                out.duplicates.append((by_stem[p.stem], p))
            else:
                by_stem[p.stem] = p
        stems.append(by_stem)
    a, b = stems
    out.n_a, out.n_b = len(a), len(b)
    out.pairs = [(s, a[s], b[s]) for s in a if s in b]
    out.only_a = [a[s] for s in a if s not in b]
    out.only_b = [b[s] for s in b if s not in a]
    return out


def _missing_folder_error(root: Path, folder: Path, layout: Layout) -> FusionDataError:
    try:
        present = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    except OSError:
        present = []
    return FusionDataError(
        f"folder {folder} not found (layout {layout.name!r} expects '{layout.a}' and '{layout.b}' under "
        f"{root}); {root} contains: {_listing(present) or 'nothing'}"
    )


def _as_hw(crop: int | Sequence[int] | None) -> tuple[int, int] | None:
    if crop is None:
        return None
    hw = (int(crop), int(crop)) if isinstance(crop, (int, np.integer)) else tuple(int(c) for c in crop)
    if len(hw) != 2 or min(hw) <= 0:
        raise FusionDataError(f"crop must be a positive int or (h, w), got {crop!r}")
    return hw  # type: ignore[return-value]


class PairedImageDataset(Dataset):
    """Registered image pairs under ``root`` in a public ``layout`` (see :mod:`fusionlib.data.layouts`).

    Args:
        root: dataset root (e.g. ``.../MSRS``, ``data/msrs_mini``).
        layout: a name in ``LAYOUTS`` (``"msrs"``, ``"tno"``, ``"roadscene"``, ``"llvip"``, ``"m3fd"``,
            ``"harvard_ct"``, ``"harvard_pet"``, ``"harvard_spect"``) or a :class:`Layout`.
        split: split folder for layouts that have them (``"train"`` / ``"test"``), else None.
        crop: patch size, int or ``(h, w)``; None = whole images.
        mode: ``"train"`` (random crops and flips) or ``"test"`` (whole images, or a centre crop).
        names: keep only these pair names (stems), in this order.
        limit: keep only the first ``limit`` pairs (after ``names``), e.g. for smoke runs.
        hflip, vflip: in train mode, flip left-right / up-down, each with probability 0.5.
        min_border: in train mode, keep crops at least this many px inside the image (SIBA: 10).
        seed: None = torch's global RNG; int = crops are a function of (seed, epoch, name).
        cache: keep decoded images (uint8 / uint16 arrays) in memory; each DataLoader worker
            keeps its own copy.
        allow_16bit: False makes a 16-bit file an error (see :func:`fusionlib.data.read_image`).
        skip_small: drop (with a warning) pairs smaller than the crop instead of raising.
        transform: optional callable applied to each sample dict last.

    Sample: ``dict(ir=(1, h, w), vi=(1, h, w), vi_cbcr=(2, h, w), name=str, size=(H, W),
    box=(top, left, h, w))``.

    Raises:
        FusionDataError: unknown layout / split, missing or empty folder, an image without partner,
            duplicated stem, A/B size mismatch, image smaller than the crop, unknown ``names``,
            unreadable file. Every message names the folder or files concerned.
    """

    def __init__(
        self,
        root: str | Path,
        layout: str | Layout,
        split: str | None = None,
        *,
        crop: int | tuple[int, int] | None = None,
        mode: str = "test",
        names: Sequence[str] | None = None,
        limit: int | None = None,
        hflip: bool = False,
        vflip: bool = False,
        min_border: int = 0,
        seed: int | None = None,
        cache: bool = False,
        allow_16bit: bool = True,
        skip_small: bool = False,
        transform: Callable[[dict], dict] | None = None,
    ) -> None:
        if mode not in ("train", "test"):
            raise FusionDataError(f"mode must be 'train' or 'test', got {mode!r}")
        if min_border < 0:
            raise FusionDataError(f"min_border must be >= 0, got {min_border}")
        self.layout = get_layout(layout)
        self.root = Path(root)
        self.split = split
        self.mode = mode
        self.crop = _as_hw(crop)
        self.hflip, self.vflip = bool(hflip), bool(vflip)
        self.min_border = int(min_border) if mode == "train" else 0
        self.seed = seed
        self.epoch = 0
        self.allow_16bit = allow_16bit
        self.transform = transform
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

        if not self.root.is_dir():
            raise FusionDataError(f"dataset root not found: {self.root} (layout {self.layout.name!r})")
        a_rel, b_rel = self.layout.folders(split)
        self.a_dir, self.b_dir = self.root / a_rel, self.root / b_rel
        for d in (self.a_dir, self.b_dir):
            if not d.is_dir():
                raise _missing_folder_error(self.root, d, self.layout)
        m = match_pairs(self.a_dir, self.b_dir)
        self._raise_on_match_problems(m)
        found = m.pairs
        if names is not None:
            index = {n: (n, a, b) for n, a, b in found}
            unknown = [n for n in names if n not in index]
            if unknown:
                raise FusionDataError(
                    f"{len(unknown)} requested name(s) not found as pairs in {self.a_dir} / {self.b_dir}: "
                    f"{_listing(unknown)}"
                )
            found = [index[n] for n in names]
        if limit is not None:
            found = found[: int(limit)]
        self.pairs: list[Pair] = self._with_sizes(found)
        self._check_crop(skip_small)

    # --- construction checks ------------------------------------------------------------------
    def _raise_on_match_problems(self, m: PairMatch) -> None:
        if m.duplicates:
            shown = [f"{x.name} & {y.name} in {x.parent}" for x, y in m.duplicates]
            raise FusionDataError(f"duplicate pair names (same stem, two files): {_listing(shown)}")
        for d, n in ((m.a_dir, m.n_a), (m.b_dir, m.n_b)):
            if n == 0:
                raise FusionDataError(
                    f"empty folder: {d} holds no image files ({', '.join(IMAGE_EXTENSIONS)})"
                )
        for orphans, partner in ((m.only_a, m.b_dir), (m.only_b, m.a_dir)):
            if orphans:
                raise FusionDataError(
                    f"{len(orphans)} image(s) in {orphans[0].parent} have no partner with the same name in "
                    f"{partner}: {_listing([p.name for p in orphans])}"
                )

    def _with_sizes(self, found: list[tuple[str, Path, Path]]) -> list[Pair]:
        pairs, bad = [], []
        for name, a, b in found:
            ha, hb = image_info(a).size, image_info(b).size
            if ha != hb:
                bad.append(f"{a} is {ha[0]}x{ha[1]} but {b} is {hb[0]}x{hb[1]} (HxW)")
            pairs.append(Pair(name, a, b, ha))
        if bad:
            raise FusionDataError(f"{len(bad)} pair(s) differ in size between A and B: {_listing(bad)}")
        return pairs

    def _check_crop(self, skip_small: bool) -> None:
        if self.crop is None:
            return
        need = (self.crop[0] + 2 * self.min_border, self.crop[1] + 2 * self.min_border)
        small = [p for p in self.pairs if p.size[0] < need[0] or p.size[1] < need[1]]
        if not small:
            return
        what = f"crop {self.crop[0]}x{self.crop[1]}" + (
            f" with min_border {self.min_border}" if self.min_border else ""
        )
        desc = [f"{p.a} ({p.size[0]}x{p.size[1]})" for p in small]
        if not skip_small:
            raise FusionDataError(
                f"{len(small)} image(s) smaller than {what} (needs {need[0]}x{need[1]} HxW): "
                f"{_listing(desc)}; "
                "use a smaller crop or skip_small=True"
            )
        warnings.warn(f"skipping {len(small)} pair(s) smaller than {what}: {_listing(desc)}", stacklevel=3)
        keep = set(id(p) for p in small)
        self.pairs = [p for p in self.pairs if id(p) not in keep]
        if not self.pairs:
            raise FusionDataError(f"no pair in {self.a_dir} is large enough for {what}")

    # --- access ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Pair names (file stems), in dataset order."""
        return [p.name for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """With ``seed`` set, choose the epoch whose crops and flips ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def by_name(self, name: str) -> dict:
        """The sample of the pair called ``name``."""
        try:
            return self[self.names.index(name)]
        except ValueError:
            raise FusionDataError(f"no pair named {name!r} in {self.a_dir}") from None

    def _arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        p = self.pairs[i]
        out = (_load_array(p.a, self.allow_16bit), _load_array(p.b, self.allow_16bit))
        for f, arr in zip((p.a, p.b), out):
            if arr.shape[:2] != p.size:
                raise FusionDataError(f"{f} decoded to {arr.shape[:2]} but its header says {p.size}")
        if self._cache is not None:
            self._cache[i] = out
        return out

    def _draw(self, i: int, high_h: int, high_w: int, draw: int = 0) -> tuple[int, int, bool, bool]:
        """Random (top offset, left offset, hflip, vflip); offsets in ``[0, high]``.

        ``draw`` > 0 picks another independent crop of the same pair in the same epoch
        (:class:`RepeatedCrops`); draw 0 is the crop an unrepeated dataset gives.
        """
        if self.seed is None:
            r = torch.randint(0, 2**31 - 1, (4,)).tolist()
        else:
            key = zlib.crc32(f"{self.layout.name}:{self.split}:{self.pairs[i].name}".encode())
            entropy = [int(self.seed), self.epoch, key] + ([int(draw)] if draw else [])
            r = np.random.default_rng(entropy).integers(0, 2**31 - 1, 4).tolist()
        flip_h, flip_v = self.hflip and r[2] % 2 == 1, self.vflip and r[3] % 2 == 1
        return r[0] % (high_h + 1), r[1] % (high_w + 1), flip_h, flip_v

    def __getitem__(self, i: int) -> dict:
        return self._sample(i)

    def _sample(self, i: int, draw: int = 0) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"pair index {i} out of range for {len(self)} pairs")
        i = i % len(self)
        a, b = self._arrays(i)
        H, W = self.pairs[i].size
        flip_h = flip_v = False
        top, left, h, w = 0, 0, H, W
        if self.crop is not None:
            ch, cw = self.crop
            if self.mode == "train":
                m = self.min_border
                dy, dx, flip_h, flip_v = self._draw(i, H - ch - 2 * m, W - cw - 2 * m, draw)
                top, left = m + dy, m + dx
            else:
                top, left = (H - ch) // 2, (W - cw) // 2
            h, w = ch, cw
            a, b = a[top : top + h, left : left + w], b[top : top + h, left : left + w]
        elif self.mode == "train" and (self.hflip or self.vflip):
            _, _, flip_h, flip_v = self._draw(i, 0, 0, draw)
        ta, tb = _to_float(a), _to_float(b)
        ir = ta if ta.shape[0] == 1 else rgb_to_gray(ta)
        if tb.shape[0] == 1:
            vi, cbcr = tb, torch.full((2, *tb.shape[1:]), NEUTRAL_CHROMA)
        else:
            ycc = rgb_to_ycbcr(tb)
            vi, cbcr = ycc[:1], ycc[1:]
        dims = ([-1] if flip_h else []) + ([-2] if flip_v else [])
        if dims:
            ir, vi, cbcr = (t.flip(dims) for t in (ir, vi, cbcr))
        # clamp: BT.601 weights sum to 1 only up to float error (Y of white may be 1 + 1e-7)
        sample = {
            "ir": ir.clamp(0.0, 1.0).contiguous(),
            "vi": vi.clamp(0.0, 1.0).contiguous(),
            "vi_cbcr": cbcr.clamp(0.0, 1.0).contiguous(),
            "name": self.pairs[i].name,
            "size": (H, W),
            "box": (top, left, h, w),
        }
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        split = f", split={self.split!r}" if self.split else ""
        crop = f", crop={self.crop}" if self.crop else ""
        return (
            f"PairedImageDataset({self.layout.name!r}{split}, {len(self)} pairs, mode={self.mode!r}{crop}, "
            f"root={str(self.root)!r})"
        )


class RepeatedCrops(Dataset):
    """Each pair of a training dataset ``times`` times per epoch, each time with its own random crop.

    For a bundled set much smaller than the paper's: SIBA trains on 1083 MSRS pairs beside 200
    RoadScene pairs, the bundle holds 4 MSRS training pairs, and ``RepeatedCrops(msrs, 270)`` restores
    the paper's mix of scenes per epoch (from 4 scenes, not 1083). Index ``k * n + j`` is draw ``k`` of
    pair ``j``; draw 0 equals ``dataset[j]``. Decoded images are shared (one cache).

    Raises:
        FusionDataError: ``times`` < 1, or the dataset is not in train mode with a crop (repeating a
            whole image gives the same sample again).
    """

    def __init__(self, dataset: PairedImageDataset, times: int) -> None:
        if int(times) < 1:
            raise FusionDataError(f"RepeatedCrops: times must be >= 1, got {times}")
        if dataset.mode != "train" or dataset.crop is None:
            raise FusionDataError(f"RepeatedCrops: {dataset!r} must be in train mode with a crop; repeating "
                                  "whole images gives identical samples")
        self.dataset, self.times = dataset, int(times)

    def __len__(self) -> int:
        return self.times * len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        draw, j = divmod(i % len(self), len(self.dataset))
        return self.dataset._sample(j, draw)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    @property
    def mode(self) -> str:
        return self.dataset.mode

    @property
    def names(self) -> list[str]:
        return self.dataset.names * self.times

    def __repr__(self) -> str:
        return f"RepeatedCrops({self.times} x {self.dataset!r})"


def collate_pairs(batch: list[dict]) -> dict:
    """Batch samples: tensors stacked to ``(B, C, h, w)``, ``name`` and ``size`` kept as lists.

    Raises:
        FusionDataError: the images differ in size (whole test images): use batch size 1 or a crop.
    """
    out: dict = {}
    for key in batch[0]:
        vals = [s[key] for s in batch]
        if isinstance(vals[0], torch.Tensor):
            if len({tuple(v.shape) for v in vals}) > 1:
                desc = [f"{s.get('name', '?')} {tuple(s[key].shape[-2:])}" for s in batch]
                raise FusionDataError(
                    f"cannot batch {key!r}: images differ in size ({_listing(desc)}); use batch_size=1 "
                    "for whole test images, or a crop"
                )
            out[key] = torch.stack(vals)
        else:
            out[key] = vals
    return out


def pair_loader(
    dataset: Dataset,
    batch_size: int = 1,
    *,
    shuffle: bool | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    seed: int | None = None,
) -> DataLoader:
    """A DataLoader with :func:`collate_pairs`; ``shuffle`` defaults to True for train-mode datasets.

    ``seed`` seeds the shuffling order (a ``torch.Generator``); None uses torch's global RNG.
    """
    if shuffle is None:
        shuffle = getattr(dataset, "mode", "test") == "train"
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_pairs,
        generator=gen,
    )
