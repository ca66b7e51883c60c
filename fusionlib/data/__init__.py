"""Image pairs for fusion: reading, colour split, paired datasets per public layout, bundled sets, checks.

Modules (one concern each):

* :mod:`~fusionlib.data.io`       ``read_image`` / ``save_image`` (8/16-bit, gray/RGB/RGBA/palette),
  ``FusionDataError``
* :mod:`~fusionlib.data.luma`     ``split_luma`` / ``merge_luma`` (BT.601 full-range Y and CbCr)
* :mod:`~fusionlib.data.layouts`  ``Layout`` per public dataset (MSRS, TNO, RoadScene, LLVIP, M3FD, Harvard)
* :mod:`~fusionlib.data.pairs`    ``PairedImageDataset`` (crops, flips, cache), ``collate_pairs``,
  ``pair_loader``
* :mod:`~fusionlib.data.bundled`  ``bundled("msrs", "test")``, ``list_bundled()``, ``bundled_concat(...)``
* :mod:`~fusionlib.data.checks`   ``check_layout`` for a full dataset, ``verify_manifest`` for ``data/``

Quick start::

    from fusionlib import data
    ds = data.bundled("msrs", "test")            # 22 whole 480x640 pairs
    s = ds[0]                                    # ir (1,H,W), vi (1,H,W), vi_cbcr (2,H,W), name, size, box
    train = data.bundled_concat("msrs", "roadscene", crop=128, mode="train", min_border=10)
    loader = data.pair_loader(train, batch_size=8)
"""

from __future__ import annotations

from fusionlib.data.bundled import (
    BUNDLED,
    DATA_DIR,
    BundledSet,
    ConcatPairs,
    bundled,
    bundled_concat,
    get_data_dir,
    list_bundled,
)
from fusionlib.data.checks import LayoutReport, SplitReport, check_layout, sha256_file, verify_manifest
from fusionlib.data.io import (
    IMAGE_EXTENSIONS,
    READ_MODES,
    FusionDataError,
    ImageInfo,
    image_info,
    open_image,
    read_image,
    resize_lanczos,
    save_image,
)
from fusionlib.data.layouts import LAYOUTS, Layout, get_layout
from fusionlib.data.luma import NEUTRAL_CHROMA, merge_luma, split_luma
from fusionlib.data.pairs import (
    Pair,
    PairedImageDataset,
    RepeatedCrops,
    PairMatch,
    collate_pairs,
    list_images,
    match_pairs,
    pair_loader,
)

from fusionlib.data.crops import centre_box, crop_box, target_box

__all__ = [
    # crops
    "centre_box",
    "target_box",
    "crop_box",
    # io
    "FusionDataError",
    "IMAGE_EXTENSIONS",
    "READ_MODES",
    "ImageInfo",
    "image_info",
    "open_image",
    "read_image",
    "resize_lanczos",
    "save_image",
    # colour
    "split_luma",
    "merge_luma",
    "NEUTRAL_CHROMA",
    # layouts and pairs
    "Layout",
    "LAYOUTS",
    "get_layout",
    "Pair",
    "PairMatch",
    "list_images",
    "match_pairs",
    "PairedImageDataset",
    "RepeatedCrops",
    "collate_pairs",
    "pair_loader",
    # bundled
    "DATA_DIR",
    "get_data_dir",
    "BundledSet",
    "BUNDLED",
    "bundled",
    "list_bundled",
    "ConcatPairs",
    "bundled_concat",
    # checks
    "check_layout",
    "LayoutReport",
    "SplitReport",
    "verify_manifest",
    "sha256_file",
]
