"""The real image pairs bundled in the repository's ``data/`` folder, by name.

``bundled("msrs", split="test")`` is a :class:`~fusionlib.data.pairs.PairedImageDataset`; extra
keywords (``crop``, ``mode``, ``names``, ``seed``, ``cache`` ...) go to it. The data folder is
``$FUSIONLIB_DATA`` if set, else ``<repo>/data`` next to the ``fusionlib`` package. Provenance and
terms are in ``data/<folder>/SOURCE.md``; the summaries below are not a substitute for them.

=============  ============================  ===========================  ==========================
name           test (folder, pairs)          train (folder, pairs)        terms (summary)
=============  ============================  ===========================  ==========================
msrs           msrs_mini/test, 22            msrs_mini/train, 4           no licence file; cite PIAFusion
tno            tno_mini, 20                  --                           TNO figshare (CC BY 4.0?); cite Toet
roadscene      roadscene_mini, 20            roadscene_train, 200         no licence file; cite FusionDN
llvip          llvip_mini test, 12           llvip_mini train, 32         non-commercial only; cite LLVIP
m3fd           m3fd_sample, 1                --                           no data terms; cite TarDAL
harvard_ct     harvard_mini, 10              harvard_train, 11            Whole Brain Atlas, copyrighted
harvard_pet    harvard_mini, 10              harvard_train, 22            idem (11 distinct PET slices)
harvard_spect  harvard_mini, 10              harvard_train, 63            idem
=============  ============================  ===========================  ==========================
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import ConcatDataset

from fusionlib.data.io import FusionDataError
from fusionlib.data.pairs import PairedImageDataset

__all__ = [
    "DATA_DIR",
    "get_data_dir",
    "BundledSet",
    "BUNDLED",
    "bundled",
    "list_bundled",
    "ConcatPairs",
    "bundled_concat",
]

DATA_DIR = Path(os.environ.get("FUSIONLIB_DATA") or Path(__file__).resolve().parents[2] / "data")


def get_data_dir(path: str | Path | None = None) -> Path:
    """The bundled data folder: ``path`` if given, else ``$FUSIONLIB_DATA``, else ``<repo>/data``.

    Raises:
        FusionDataError: the folder does not exist (says how to point at it).
    """
    if path is not None:
        d = Path(path)
    elif os.environ.get("FUSIONLIB_DATA"):
        d = Path(os.environ["FUSIONLIB_DATA"])
    else:
        d = DATA_DIR
    if not d.is_dir():
        raise FusionDataError(
            f"bundled data folder not found: {d}. It ships as <repo>/data next to the fusionlib package; "
            "set the environment variable FUSIONLIB_DATA (or pass data_dir=) to its location"
        )
    return d


@dataclass(frozen=True)
class BundledSet:
    """One bundled set: its layout, and per split ``(folder under data/, layout split or None, pairs)``."""

    name: str
    layout: str
    splits: dict[str, tuple[str, str | None, int]]
    licence: str
    source: str  # SOURCE.md folder(s) to read for provenance and terms


_HARVARD = (
    "Harvard Whole Brain Atlas (via CDDFuse): copyrighted, no open licence; "
    "teaching/research with attribution"
)
BUNDLED: dict[str, BundledSet] = {
    s.name: s
    for s in (
        BundledSet(
            "msrs", "msrs", {"test": ("msrs_mini", "test", 22), "train": ("msrs_mini", "train", 4)},
            "no licence file; research/teaching with citation (PIAFusion); derived from MFNet", "msrs_mini",
        ),
        BundledSet(
            "tno", "tno", {"test": ("tno_mini", None, 20)},
            "TNO figshare, CC BY 4.0 (unverified); cite Toet", "tno_mini",
        ),
        BundledSet(
            "roadscene", "roadscene",
            {"test": ("roadscene_mini", None, 20), "train": ("roadscene_train", None, 200)},
            "no licence file; cite FusionDN/U2Fusion; FLIR ADAS terms upstream",
            "roadscene_mini, roadscene_train",
        ),
        BundledSet(
            "llvip", "llvip", {"test": ("llvip_mini", "test", 12), "train": ("llvip_mini", "train", 32)},
            "NON-COMMERCIAL use only; cite LLVIP (ICCV 2021)", "llvip_mini",
        ),
        BundledSet(
            "m3fd", "m3fd", {"test": ("m3fd_sample", None, 1)},
            "no data terms stated; research/teaching with citation (TarDAL)", "m3fd_sample",
        ),
        BundledSet(
            "harvard_ct", "harvard_ct",
            {"test": ("harvard_mini", None, 10), "train": ("harvard_train", None, 11)},
            _HARVARD, "harvard_mini, harvard_train",
        ),
        BundledSet(
            "harvard_pet", "harvard_pet",
            {"test": ("harvard_mini", None, 10), "train": ("harvard_train", None, 22)},
            _HARVARD + "; train holds 11 distinct PET slices, each twice", "harvard_mini, harvard_train",
        ),
        BundledSet(
            "harvard_spect", "harvard_spect",
            {"test": ("harvard_mini", None, 10), "train": ("harvard_train", None, 63)},
            _HARVARD, "harvard_mini, harvard_train",
        ),
    )
}


def _get(name: str) -> BundledSet:
    try:
        return BUNDLED[name.lower()]
    except KeyError:
        raise FusionDataError(f"unknown bundled set {name!r}; known: {', '.join(BUNDLED)}") from None


def bundled(
    name: str, split: str = "test", *, data_dir: str | Path | None = None, **kw
) -> PairedImageDataset:
    """A bundled set as a :class:`PairedImageDataset` (keywords ``crop``, ``mode``, ``names``,
    ``limit``, ``hflip``, ``vflip``, ``min_border``, ``seed``, ``cache``, ``transform`` ... pass through).

    ``data_dir`` overrides the data folder (default: :func:`get_data_dir`).

    Examples:
        >>> ds = bundled("msrs", "test", limit=2)
        >>> len(ds), ds[0]["ir"].shape
        (2, torch.Size([1, 480, 640]))
    """
    s = _get(name)
    if split not in s.splits:
        raise FusionDataError(f"bundled set {name!r} has splits {tuple(s.splits)}, not {split!r}")
    folder, layout_split, _ = s.splits[split]
    root = get_data_dir(data_dir) / folder
    if not root.is_dir():
        raise FusionDataError(f"bundled folder {root} is missing (set {name!r}, split {split!r})")
    return PairedImageDataset(root, s.layout, layout_split, **kw)


def list_bundled() -> dict[str, dict]:
    """``name -> {"splits": {split: pairs}, "layout": str, "licence": str, "source": str}``.

    Counts are the documented ones (see ``data/README.md``); ``tests/test_data.py`` checks them.
    """
    return {
        n: {
            "splits": {k: v[2] for k, v in s.splits.items()},
            "layout": s.layout,
            "licence": s.licence,
            "source": s.source,
        }
        for n, s in BUNDLED.items()
    }


class ConcatPairs(ConcatDataset):
    """``torch.utils.data.ConcatDataset`` of paired datasets that forwards :meth:`set_epoch`.

    Samples keep the paired-dataset dict format; crops must match for batching.
    """

    def __init__(self, datasets: Sequence[PairedImageDataset]) -> None:
        super().__init__(list(datasets))

    @property
    def mode(self) -> str:
        modes = {getattr(d, "mode", "test") for d in self.datasets}
        return "train" if "train" in modes else "test"

    @property
    def names(self) -> list[str]:
        return [n for d in self.datasets for n in d.names]

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)

    def __repr__(self) -> str:
        return f"ConcatPairs({len(self)} pairs: " + ", ".join(repr(d) for d in self.datasets) + ")"


def bundled_concat(*specs: str | tuple[str, str] | tuple[str, str, int], **kw) -> ConcatPairs:
    """Several bundled sets as one dataset.

    A spec is ``name`` (split ``"train"``), ``(name, split)``, or ``(name, split, times)``: that set's
    pairs ``times`` times per epoch, each with its own crop (:class:`~fusionlib.data.RepeatedCrops`,
    train mode with a crop only).

    SIBA's training set on the bundled data, with the paper's mix of MSRS and RoadScene scenes
    (1083 : 200 in the paper; 4 × 270 : 200 here):
    ``bundled_concat(("msrs", "train", 270), "roadscene", crop=128, mode="train", min_border=10)``.
    """
    from fusionlib.data.pairs import RepeatedCrops

    if not specs:
        raise FusionDataError("bundled_concat needs at least one set name")
    parts = []
    for spec in specs:
        name, split, times = (spec, "train", 1) if isinstance(spec, str) else (*spec, 1)[:3]
        ds = bundled(name, split, **kw)
        parts.append(RepeatedCrops(ds, times) if times != 1 else ds)
    return ConcatPairs(parts)
