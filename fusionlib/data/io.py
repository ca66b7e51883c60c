"""Reading and writing single images as ``(C, H, W)`` float tensors in [0, 1].

Conventions (one rule each, stated once):

* **8-bit** files are divided by 255, **16-bit** gray files (Pillow modes ``I;16``/``I;16B``/``I``)
  by 65535. A 12- or 14-bit sensor stored in a 16-bit container therefore reads dark; rescale it
  yourself if you want its own range. ``allow_16bit=False`` makes a 16-bit file an error.
* **16-bit colour PNGs** (RGB/RGBA/LA with 16 bits per channel) are reduced to 8 bits per channel by
  Pillow itself (it keeps the high byte); we read them at that precision and warn.
* **Alpha is dropped**, not composited: RGBA -> RGB, LA -> L, palette with transparency -> RGB.
* **Palette** (``P``) images are expanded to RGB; bilevel (``1``) to L; CMYK / YCbCr to RGB.
* **"gray" = "y"** = BT.601 luminance ``0.299 R + 0.587 G + 0.114 B`` of the RGB values
  (:func:`fusionlib.ops.colour.rgb_to_gray`), kept as a float: it is *not* rounded to 8 bits the way
  ``PIL .convert('L')`` or ``cv2.IMREAD_GRAYSCALE`` round it (difference at most 0.5/255).
* EXIF orientation is **not** applied: pixels are read in file order, as the pairs were registered.
* **A pixel budget** (:data:`MAX_PIXELS`, 50 megapixels) is checked on the header, before anything is
  decoded: a larger file (a decompression bomb, a 12000x12000 PNG of 140 kB that would take ~5 GB as
  float) is refused with its size. Raise it per call (``max_pixels=``), for the process
  (``fusionlib.data.io.MAX_PIXELS``) or in the commands (``--max-pixels``); Pillow's own limit is
  replaced by it.

Every error is a :class:`FusionDataError` (a ``ValueError``) whose message names the file.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fusionlib.ops.colour import rgb_to_gray

__all__ = [
    "FusionDataError",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "DEFAULT_MAX_PIXELS",
    "pixel_budget",
    "open_image",
    "READ_MODES",
    "ImageInfo",
    "image_info",
    "read_image",
    "resize_lanczos",
    "save_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
READ_MODES = ("gray", "y", "rgb", "raw")

#: Largest image (H * W) read without being asked: 50 MP, e.g. 8660 x 5770 (a 480x640 pair is 0.3 MP).
DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS = DEFAULT_MAX_PIXELS


@contextlib.contextmanager
def pixel_budget(max_pixels: int) -> Iterator[None]:
    """Within the block, :data:`MAX_PIXELS` is ``max_pixels`` (0: no limit); restored afterwards (the commands)."""
    global MAX_PIXELS
    saved, MAX_PIXELS = MAX_PIXELS, int(max_pixels)
    try:
        yield
    finally:
        MAX_PIXELS = saved

# Pillow modes we decode, and what they become before scaling.
_GRAY8 = {"L", "1", "LA", "La"}
_COLOUR8 = {"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr"}
_GRAY16 = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class FusionDataError(ValueError):
    """Bad input data: a missing, unreadable or unsupported file, or a broken dataset layout."""


@dataclass(frozen=True)
class ImageInfo:
    """Header facts about one image file (nothing decoded).

    ``size`` is ``(H, W)``; ``bit_depth`` is 8 or 16 (bits per channel in the file);
    ``channels`` is what :func:`read_image` with ``mode="raw"`` returns (1 or 3).
    """

    path: Path
    size: tuple[int, int]
    pil_mode: str
    bit_depth: int
    channels: int
    format: str | None


def _check_path(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise FusionDataError(f"image file not found: {p}")
    if not p.is_file():
        raise FusionDataError(f"not a file (a folder?): {p}")
    return p


def _file_bit_depth(img: Image.Image) -> int:
    """16 when the file stores 16 bits per channel (PNG rawmode ``...;16B``, TIFF ``I;16``), else 8."""
    if img.mode in _GRAY16:
        return 16
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return 16
    return 8


def open_image(path: str | Path, *, max_pixels: int | None = None) -> Image.Image:
    """``PIL.Image.open`` (header only, nothing decoded) with the pixel budget checked first.

    Args:
        max_pixels: largest ``H * W`` accepted; None uses :data:`MAX_PIXELS`, 0 disables the check.

    Raises:
        FusionDataError: missing, not an image, or over the budget (the message gives the size and
            how to raise the budget).
    """
    p = _check_path(path)
    budget = MAX_PIXELS if max_pixels is None else int(max_pixels)
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our budget replaces Pillow's warning / DecompressionBombError
    try:
        img = Image.open(p)
    except UnidentifiedImageError as e:
        raise FusionDataError(f"not a readable image (unknown or corrupt format): {p}") from e
    except OSError as e:
        raise FusionDataError(f"cannot open image {p}: {e}") from e
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    w, h = img.size
    if budget and w * h > budget:
        img.close()
        raise FusionDataError(
            f"{p}: {w}x{h} (W x H) = {w * h / 1e6:.1f} megapixels is over the pixel budget of "
            f"{budget / 1e6:g} MP (nothing was decoded); if the image is genuine, raise the budget with "
            f"--max-pixels {w * h} (or fusionlib.data.io.MAX_PIXELS)")
    return img


def image_info(path: str | Path) -> ImageInfo:
    """Read only the header of ``path``: size ``(H, W)``, Pillow mode, bit depth, channels.

    Raises:
        FusionDataError: the file is missing, not an image, or of an unsupported mode.
    """
    p = _check_path(path)
    with open_image(p) as img:
        mode = img.mode
        if mode not in _GRAY8 | _COLOUR8 | _GRAY16:
            raise FusionDataError(
                f"unsupported image mode {mode!r} in {p} (supported: 8-bit L/LA/RGB/RGBA/P, 16-bit gray)"
            )
        channels = 1 if mode in _GRAY8 | _GRAY16 else 3
        return ImageInfo(p, (img.height, img.width), mode, _file_bit_depth(img), channels, img.format)


def _load_array(path: str | Path, allow_16bit: bool = True, max_pixels: int | None = None) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, C)`` array, C in {1, 3}, dtype uint8 or uint16 (alpha dropped).

    Kept integer so that datasets can cache it compactly and crop before converting to float.
    """
    p = _check_path(path)
    with open_image(p, max_pixels=max_pixels) as img:
        mode = img.mode
        depth = _file_bit_depth(img)
        if depth == 16 and not allow_16bit:
            raise FusionDataError(
                f"16-bit image {p} (mode {mode!r}) where 8-bit was required (allow_16bit=False)"
            )
        if depth == 16 and mode not in _GRAY16:
            warnings.warn(
                f"{p} is a 16-bit-per-channel {mode} image; Pillow decodes it to 8 bits per channel "
                "(the high byte), so it is read at 8-bit precision",
                stacklevel=3,
            )
        try:
            img.load()
            if mode in _GRAY16:
                arr = np.asarray(img)
                if arr.dtype != np.uint16:
                    lo, hi = int(arr.min()), int(arr.max())
                    if lo < 0 or hi > 65535:
                        raise FusionDataError(
                            f"integer image {p} (mode {mode!r}) has values in [{lo}, {hi}], "
                            "outside the 16-bit range [0, 65535]"
                        )
                    arr = arr.astype(np.uint16)
            elif mode in _GRAY8:
                arr = np.asarray(img.convert("L"))
            elif mode in _COLOUR8:
                arr = np.asarray(img.convert("RGB"))  # drops alpha / expands palette
            else:
                raise FusionDataError(
                    f"unsupported image mode {mode!r} in {p} (supported: 8-bit L/LA/RGB/RGBA/P, 16-bit gray)"
                )
        except FusionDataError:
            raise
        except (OSError, SyntaxError, ValueError) as e:
            raise FusionDataError(f"cannot decode image {p} (corrupt or truncated?): {e}") from e
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def _to_float(arr: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` uint8/uint16 array -> ``(C, H, W)`` float32 in [0, 1] (/255 or /65535)."""
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32))
    return t.div_(scale)


def _convert(t: torch.Tensor, mode: str) -> torch.Tensor:
    """``(C, H, W)`` with C in {1, 3} -> the channels asked for by ``mode``."""
    if mode == "raw":
        return t
    if mode in ("gray", "y"):
        return t if t.shape[0] == 1 else rgb_to_gray(t)
    if mode == "rgb":
        return t.expand(3, -1, -1).contiguous() if t.shape[0] == 1 else t
    raise FusionDataError(f"unknown read mode {mode!r}; expected one of {READ_MODES}")


def resize_lanczos(arr: np.ndarray, scale: float) -> np.ndarray:
    """Resize an ``(H, W, C)`` uint8/uint16 array by ``scale`` with Pillow's Lanczos filter.

    The output is ``(round(H * scale), round(W * scale), C)`` in the input's dtype, i.e. what resizing
    the image file and saving it again gives (how SIBA's authors halve M3FD). 8-bit images go through
    Pillow's integer path; 16-bit channels through its float ``"F"`` mode, rounded back.

    Examples:
        >>> resize_lanczos(np.full((4, 6, 3), 200, np.uint8), 0.5).shape
        (2, 3, 3)
    """
    if not scale > 0:
        raise FusionDataError(f"resize scale must be positive, got {scale}")
    h, w = arr.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if arr.dtype == np.uint8:
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        out = np.asarray(img.resize(size, Image.LANCZOS))
        return np.ascontiguousarray(out.reshape(size[1], size[0], arr.shape[2]))
    chans = [np.asarray(Image.fromarray(arr[:, :, c].astype(np.float32), "F").resize(size, Image.LANCZOS))
             for c in range(arr.shape[2])]
    return np.clip(np.rint(np.stack(chans, -1)), 0, 65535).astype(arr.dtype)


def read_image(path: str | Path, mode: str = "gray", *, allow_16bit: bool = True,
               scale: float | None = None, max_pixels: int | None = None) -> torch.Tensor:
    """Read an image file as a float32 tensor ``(C, H, W)`` in [0, 1].

    Args:
        path: image file (PNG, JPEG, BMP, TIFF, ...).
        mode: ``"gray"`` or ``"y"`` -> ``(1, H, W)`` BT.601 luminance; ``"rgb"`` -> ``(3, H, W)``
            (gray files replicated); ``"raw"`` -> the file's own channels, 1 or 3 (alpha dropped).
        allow_16bit: if False, a 16-bit file raises :class:`FusionDataError` instead of being
            scaled by 1/65535.
        scale: if given, the decoded integer image is first resized by this factor with Lanczos
            (:func:`resize_lanczos`; e.g. ``0.5`` for M3FD as the SIBA paper evaluates it).
        max_pixels: pixel budget (None: :data:`MAX_PIXELS`; 0: none), checked before decoding.

    Raises:
        FusionDataError: missing file, undecodable file, unsupported Pillow mode, bad ``mode``,
            an image over the pixel budget.
    """
    if mode not in READ_MODES:
        raise FusionDataError(f"unknown read mode {mode!r} for {path}; expected one of {READ_MODES}")
    arr = _load_array(path, allow_16bit=allow_16bit, max_pixels=max_pixels)
    if scale is not None:
        arr = resize_lanczos(arr, scale)
    return _convert(_to_float(arr), mode)


def save_image(image: torch.Tensor, path: str | Path, *, compress_level: int | None = None) -> Path:
    """Write a gray or RGB image in [0, 1] as an 8-bit file (PNG recommended: lossless).

    ``image`` is ``(H, W)``, ``(1|3, H, W)`` or a batch of one ``(1, 1|3, H, W)``. Values are
    clamped to [0, 1], scaled by 255 and **rounded** (SIBA's test script truncates instead).
    ``compress_level`` (PNG, 0-9; Pillow's default 6) trades file size for speed: 1 writes ~5x faster.
    The format follows the suffix; parent folders are created. Returns the path written.
    """
    p = Path(path)
    if not p.suffix:
        raise FusionDataError(f"no file suffix in {p}; give e.g. '.png'")
    x = image.detach().to("cpu", torch.float32)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise FusionDataError(
            f"cannot save tensor of shape {tuple(image.shape)} to {p}: expected (H, W), (1|3, H, W) "
            "or (1, 1|3, H, W)"
        )
    if torch.isnan(x).any():
        raise FusionDataError(f"tensor to save to {p} contains NaN")
    arr = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)  # uint8: L or RGB
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        pil.save(p, **({"compress_level": int(compress_level)} if compress_level is not None
                        and p.suffix.lower() == ".png" else {}))
    except (OSError, ValueError, KeyError) as e:
        raise FusionDataError(f"cannot write image {p}: {e}") from e
    return p
