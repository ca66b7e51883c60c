"""Figures for the notebooks: images, laziness curves, attention maps, spectra, training curves.

Every function returns a :class:`matplotlib.figure.Figure` (and takes ``ax`` / ``axes`` where a
caller may want to place the plot in a figure of its own). Figures are made with
``matplotlib.figure.Figure``, not ``pyplot``: in Jupyter a figure shows **once**, where it is
the value of a cell or through ``display(fig)`` (``fig = viz.show_images(...)`` alone shows
nothing: end the cell with ``fig``); nothing is left open in pyplot, so scripts and tests do
not accumulate figures. Save one with :func:`save_figure`.

Images may be torch tensors ``(H, W)``, ``(1, H, W)``, ``(3, H, W)`` (a leading batch of
one is dropped) or numpy arrays ``(H, W)``, ``(H, W, 1|3)``, ``(1|3, H, W)``; floats are
taken to lie in [0, 1], uint8 / uint16 are scaled. Grayscale is always drawn with
``cmap="gray", vmin=0, vmax=1``: no contrast stretch (DESIGN.md, "Conventions").

Explorers (:func:`explorer`, :func:`laziness_explorer`, :func:`attention_explorer`) give
ipywidgets sliders in a live Jupyter front end, and a static grid of frames otherwise.
Which one is decided by ``static=`` or, when that is ``None``, by the module flag
:data:`STATIC`, set at import from :func:`detect_static`:

- ``FUSIONLIB_STATIC_WIDGETS=1`` in the environment: static (the papermill test harness
  sets it: a papermill run has a kernel but no front end, so widgets would not render);
- ``FUSIONLIB_STATIC_WIDGETS=0``: interactive;
- unset: interactive inside an IPython kernel (Jupyter), static anywhere else.

Set ``fusionlib.viz.STATIC = True`` in a notebook to force the static figures.
Each explorer draws its frames with a plain function (:func:`render_attention`,
:func:`render_laziness`) that can be called directly.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fusionlib.ops.colour import BT601
from fusionlib.spectral import log_magnitude, radial_psd

__all__ = [
    "STATIC",
    "detect_static",
    "show_images",
    "plot_laziness",
    "plot_laziness_compare",
    "render_laziness",
    "laziness_explorer",
    "overlay_attention",
    "plot_channel_attention",
    "render_attention",
    "attention_explorer",
    "plot_spectrum",
    "plot_radial_psd",
    "plot_history",
    "explorer",
    "save_figure",
]

STATIC_ENV = "FUSIONLIB_STATIC_WIDGETS"


def detect_static() -> bool:
    """True when explorers should draw static figures instead of widgets (see module doc)."""
    env = os.environ.get(STATIC_ENV, "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return True
    return not _in_kernel()


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _hook_up_jupyter_display() -> None:
    """Load the kernel's matplotlib backend now (pyplot loads it lazily, at the first pyplot
    figure): the inline backend is what registers the PNG display of a returned ``Figure``."""
    if _in_kernel():
        plt.close(plt.figure())


_hook_up_jupyter_display()

STATIC: bool = detect_static()


def _use_static(static: bool | None) -> bool:
    return STATIC if static is None else bool(static)


# --- conversions -------------------------------------------------------------------


def _to_numpy(x: Any, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bool:
            x = x.float()
        elif x.is_floating_point() and x.dtype != torch.float64:
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # noqa: BLE001 - re-raised with the argument's name
        raise TypeError(f"{what}: cannot turn a {type(x).__name__} into an array") from e


def _as_image(img: Any, what: str = "image") -> np.ndarray:
    """Any accepted image -> float array ``(H, W)`` (gray) or ``(H, W, 3)`` (colour), nominally [0, 1]."""
    is_torch = isinstance(img, torch.Tensor)
    a = _to_numpy(img, what)
    shape = a.shape
    if a.dtype == np.uint8:
        a = a / 255.0
    elif a.dtype == np.uint16:
        a = a / 65535.0
    elif a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64)
    elif not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{what}: expected a numeric image, got dtype {a.dtype}")
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        first, last = a.shape[0] in (1, 3), a.shape[-1] in (1, 3)
        if is_torch and first or (not is_torch and first and not last):
            a = np.moveaxis(a, 0, -1)
        elif not last:
            a = None  # type: ignore[assignment]
        if a is not None and a.shape[-1] == 1:
            a = a[..., 0]
    if a is None or a.ndim not in (2, 3) or min(a.shape[:2]) < 1:
        raise ValueError(
            f"{what}: expected an image (H, W), (1, H, W) or (3, H, W) (numpy also (H, W, 1|3)); "
            f"got shape {tuple(shape)}"
        )
    return a


def _as_gray(img: Any, what: str = "image") -> np.ndarray:
    """Image -> ``(H, W)``; colour is reduced to BT.601 luminance Y."""
    a = _as_image(img, what)
    if a.ndim == 3:
        a = a @ np.asarray(BT601, dtype=a.dtype)
    return a


def _as_map(x: Any, what: str) -> np.ndarray:
    """A 2-D map after dropping leading singleton dims."""
    a = _to_numpy(x, what).astype(np.float64)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(
            f"{what}: expected a 2-D map (H, W) (leading dims of size 1 are dropped), got shape "
            f"{tuple(_to_numpy(x, what).shape)}; select one head / channel first, e.g. attn[0, head]"
        )
    return a


def _resize_bilinear(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if m.shape == tuple(size):
        return m
    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].double().numpy()


def _draw_image(ax: Axes, a: np.ndarray, cmap: str | None = None, **kw: Any):
    """Gray with vmin=0, vmax=1 (``cmap`` overrides 'gray'); colour clipped to [0, 1]."""
    if a.ndim == 2:
        return ax.imshow(a, cmap=cmap or "gray", vmin=0.0, vmax=1.0, **kw)
    return ax.imshow(np.clip(a, 0.0, 1.0), **kw)


def _new_figure(nrows: int, ncols: int, panel: tuple[float, float], **kw: Any) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _panel_axes(n: int, nrows: int, ncols: int, panel: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """A grid of ``nrows x ncols`` panels with the unused trailing axes removed: (fig, n axes)."""
    fig, grid = _new_figure(nrows, ncols, panel)
    flat = list(grid.ravel())
    for extra in flat[n:]:
        fig.delaxes(extra)
    return fig, flat[:n]


def _single_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _flat_axes(axes: Any, n: int, what: str) -> list[Axes]:
    flat = list(np.ravel(np.asarray(axes, dtype=object))) if not isinstance(axes, Axes) else [axes]
    if len(flat) < n:
        raise ValueError(f"{what}: {n} panels need {n} axes, got {len(flat)}")
    return flat


# --- images ------------------------------------------------------------------------


def show_images(
    images: Mapping[str, Any] | Sequence[Any],
    ncols: int = 4,
    title: str | None = None,
    cmap: str | None = None,
    zoom: tuple[int, int, int, int] | None = None,
    *,
    axes: Any = None,
    panel_size: float = 3.0,
    zoom_color: str = "yellow",
) -> Figure:
    """A grid of images with titles; gray with ``vmin=0, vmax=1``.

    Args:
        images: ``{title: image}`` or a list of images (no titles).
        ncols: panels per row (fewer if there are fewer images).
        title: figure title.
        cmap: colour map for single-channel images instead of ``"gray"`` (still 0..1).
        zoom: ``(x, y, w, h)`` in pixels (x = column, y = row of the top-left corner): the same
            box is outlined on every panel and shown enlarged in an inset at its lower right.
        axes: existing axes to draw into (at least one per image).
        panel_size: inches per panel.
        zoom_color: colour of the box and the inset frame.

    Returns:
        the figure; one axes per image (unused grid cells are removed), the zoom insets are
        child axes of each panel.
    """
    if isinstance(images, Mapping):
        items = [(str(k), v) for k, v in images.items()]
    else:
        items = [(None, v) for v in images]
    if not items:
        raise ValueError("show_images: no images given")
    arrays = [(t, _as_image(v, f"show_images[{t if t is not None else i}]")) for i, (t, v) in enumerate(items)]
    n = len(arrays)
    if axes is None:
        nc = max(1, min(int(ncols), n))
        nr = math.ceil(n / nc)
        h0, w0 = arrays[0][1].shape[:2]
        fig, flat = _panel_axes(n, nr, nc, (panel_size, panel_size * h0 / w0 + (0.3 if items[0][0] else 0)))
    else:
        flat = _flat_axes(axes, n, "show_images")[:n]
        fig = flat[0].figure
    for i, (ax, (t, a)) in enumerate(zip(flat, arrays)):
        _draw_image(ax, a, cmap)
        ax.set_axis_off()
        if t is not None:
            ax.set_title(t)
        if zoom is not None:
            _zoom_inset(ax, a, zoom, cmap, zoom_color, t if t is not None else str(i))
    if title:
        fig.suptitle(title)
    return fig


def _inset_bounds(box: Sequence[int], shape: tuple[int, int], pad: float = 0.01) -> tuple[float, float, float, float]:
    """Where the zoom inset of ``box`` = (x, y, w, h) pixels goes in an image of ``shape`` = (H, W):
    (left, bottom, width, height) in axes fractions (y up, the image's row 0 at the top).

    The inset keeps the box's shape and is as large as possible up to 42 % of the panel, in the
    image corner farthest from the box that does not overlap it; if no corner inside the image
    is free (a box covering most of the image), it sits just right of the panel.
    """
    x, y, w, h = box
    H, W = shape
    # the box in axes fractions, y up
    bx0, bx1 = x / W, (x + w) / W
    by0, by1 = 1 - (y + h) / H, 1 - y / H
    bcx, bcy = (bx0 + bx1) / 2, (by0 + by1) / 2
    aspect = (h / w) * (W / H)  # keep the crop's shape inside the panel
    for frac in (0.42, 0.36, 0.30, 0.24, 0.18):
        iw, ih = (frac, frac * aspect) if aspect <= 1 else (frac / aspect, frac)
        corners = [(pad, pad), (1 - iw - pad, pad), (pad, 1 - ih - pad), (1 - iw - pad, 1 - ih - pad)]
        corners.sort(key=lambda c: -math.hypot(c[0] + iw / 2 - bcx, c[1] + ih / 2 - bcy))
        for cx, cy in corners:
            if cx + iw <= bx0 or cx >= bx1 or cy + ih <= by0 or cy >= by1:
                return cx, cy, iw, ih
    iw, ih = (0.42, 0.42 * aspect) if aspect <= 1 else (0.42 / aspect, 0.42)
    return 1 + pad, pad, iw, ih


def _zoom_inset(ax: Axes, a: np.ndarray, box: Sequence[int], cmap: str | None, color: str, name: str) -> Axes:
    if len(box) != 4:
        raise ValueError(f"zoom must be (x, y, w, h) in pixels, got {box!r}")
    x, y, w, h = (int(v) for v in box)
    H, W = a.shape[:2]
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > W or y + h > H:
        raise ValueError(f"zoom box (x={x}, y={y}, w={w}, h={h}) does not fit image {name!r} of size {H}x{W}")
    ins = ax.inset_axes(list(_inset_bounds((x, y, w, h), (H, W))))
    _draw_image(ins, a, cmap, interpolation="nearest")
    ins.set_xlim(x - 0.5, x + w - 0.5)
    ins.set_ylim(y + h - 0.5, y - 0.5)
    ins.set_xticks([])
    ins.set_yticks([])
    for s in ins.spines.values():
        s.set_edgecolor(color)
        s.set_linewidth(1.5)
    ax.indicate_inset_zoom(ins, edgecolor=color, alpha=1.0, linewidth=1.2)
    return ins


# --- network laziness --------------------------------------------------------------

_LAZINESS_Y = {"relative": "relative change ‖ΔW‖ / ‖W‖", "delta": "weight change ‖ΔW‖"}


def _laziness_frame(records: Any, y: str):
    import pandas as pd

    if isinstance(records, pd.DataFrame):
        df = records.copy()
    else:
        if hasattr(records, "records") and not isinstance(records, (list, tuple)):
            records = records.records
        records = list(records)
        if records and not isinstance(records[0], Mapping):
            raise TypeError(
                f"laziness records must be dicts {{epoch, block, delta, relative, weight_norm}} or a "
                f"DataFrame, got a list of {type(records[0]).__name__}"
            )
        df = pd.DataFrame(records)
    if df.empty:
        raise ValueError("laziness records are empty")
    missing = [c for c in ("epoch", "block", y) if c not in df.columns]
    if missing:
        raise KeyError(f"laziness records lack column(s) {missing}; they have {list(df.columns)}")
    df["block"] = df["block"].astype(str)
    return df


def _block_palette(blocks: Sequence[str]) -> dict[str, Any]:
    import seaborn as sns

    colours = sns.color_palette("tab10" if len(blocks) <= 10 else "husl", n_colors=len(blocks))
    return dict(zip(blocks, colours))


def _draw_boundaries(ax: Axes, stage_boundaries: Sequence[float] | Mapping[str, float] | None) -> None:
    if stage_boundaries is None:
        return
    pairs = (
        list(stage_boundaries.items())
        if isinstance(stage_boundaries, Mapping)
        else [(None, b) for b in stage_boundaries]
    )
    for label, x in pairs:
        ax.axvline(float(x), linestyle="--", color="0.35", linewidth=1.0, zorder=0)
        if label:
            ax.text(float(x), 0.98, f" {label}", transform=ax.get_xaxis_transform(),
                    va="top", ha="left", fontsize="small", color="0.25")


def plot_laziness(
    records: Any,
    *,
    relative: bool = True,
    ax: Axes | None = None,
    title: str | None = None,
    stage_boundaries: Sequence[float] | Mapping[str, float] | None = None,
    logy: bool = False,
    palette: Mapping[str, Any] | None = None,
    legend: bool = True,
) -> Figure:
    """Per-block weight change per epoch, one line per block (AIDFusion Fig. 1 a/b style).

    Args:
        records: dicts ``{epoch, block, delta, relative, weight_norm}`` (a tracker's output),
            a pandas DataFrame with those columns, or an object with a ``.records`` list.
            Several rows per (epoch, block) are averaged.
        relative: plot ``relative`` (‖ΔW‖/‖W‖) instead of ``delta`` (‖ΔW‖).
        ax: axes to draw into.
        title: axes title.
        stage_boundaries: epochs where a training stage ends (DMNet's two stages), drawn as
            dashed vertical lines; a ``{label: epoch}`` mapping also writes the labels.
        logy: logarithmic y axis.
        palette: ``{block: colour}``, its order the legend's; by default blocks keep the
            order they first appear in the records.
        legend: draw the block legend.

    Returns:
        the figure; ``ax.lines`` holds one data line per block and one per boundary.
    """
    import seaborn as sns

    y = "relative" if relative else "delta"
    df = _laziness_frame(records, y)
    blocks = list(dict.fromkeys(df["block"]))
    if palette is not None:
        blocks = [b for b in palette if b in set(blocks)] + [b for b in blocks if b not in palette]
        pal = {**_block_palette(blocks), **palette}
    else:
        pal = _block_palette(blocks)
    fig, ax = _single_axes(ax, (6.0, 3.8))
    sns.lineplot(data=df, x="epoch", y=y, hue="block", hue_order=blocks, palette=pal, marker="o",
                 markersize=4, errorbar=None, ax=ax, legend=legend)
    _draw_boundaries(ax, stage_boundaries)
    if logy:
        ax.set_yscale("log")
    if np.allclose(df["epoch"].to_numpy(dtype=float) % 1, 0):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(_LAZINESS_Y[y])
    if legend and ax.get_legend() is not None:
        ax.legend(title="block", fontsize="small", frameon=False, loc="best")
    if title:
        ax.set_title(title)
    return fig


def plot_laziness_compare(
    runs: Mapping[str, Any],
    *,
    relative: bool = True,
    logy: bool = False,
    stage_boundaries: Sequence[float] | Mapping[str, float] | None = None,
    title: str | None = None,
    axes: Any = None,
) -> Figure:
    """Laziness curves of several runs side by side with a shared y axis.

    ``runs`` maps a run name (``"baseline"``, ``"DIILS"``) to its records (as in
    :func:`plot_laziness`); blocks get the same colours in every panel; one legend, on the
    last panel.
    """
    if not runs:
        raise ValueError("plot_laziness_compare: no runs given")
    y = "relative" if relative else "delta"
    frames = {name: _laziness_frame(r, y) for name, r in runs.items()}
    blocks = list(dict.fromkeys(b for df in frames.values() for b in df["block"]))
    pal = _block_palette(blocks)
    if axes is None:
        fig, grid = _new_figure(1, len(frames), (4.6, 3.6), sharey=True)
        flat = list(grid.ravel())
    else:
        flat = _flat_axes(axes, len(frames), "plot_laziness_compare")
        fig = flat[0].figure
        for a in flat[1 : len(frames)]:
            a.sharey(flat[0])
    for i, (ax, (name, df)) in enumerate(zip(flat, frames.items())):
        last = i == len(frames) - 1
        plot_laziness(df, relative=relative, ax=ax, title=str(name), stage_boundaries=stage_boundaries,
                      logy=logy, palette=pal, legend=last)
        if i > 0:
            ax.set_ylabel("")
    if title:
        fig.suptitle(title)
    return fig


def render_laziness(
    records: Any,
    epoch: float,
    *,
    relative: bool = True,
    ax: Axes | None = None,
    ylim: tuple[float, float] | None = None,
    logy: bool = False,
    palette: Mapping[str, Any] | None = None,
) -> Figure:
    """One explorer frame: a bar per block with its weight change at ``epoch``."""
    y = "relative" if relative else "delta"
    df = _laziness_frame(records, y)
    blocks = list(dict.fromkeys(df["block"]))
    sel = df[df["epoch"] == epoch]
    if sel.empty:
        raise KeyError(f"no laziness records for epoch {epoch!r}; epochs: {sorted(df['epoch'].unique())}")
    vals = sel.groupby("block", sort=False)[y].mean().reindex(blocks)
    pal = dict(palette) if palette is not None else _block_palette(blocks)
    fig, ax = _single_axes(ax, (max(4.0, 0.5 * len(blocks) + 2), 3.4))
    ax.bar(range(len(blocks)), np.nan_to_num(vals.to_numpy(dtype=float)), color=[pal[b] for b in blocks])
    ax.set_xticks(range(len(blocks)), blocks, rotation=45, ha="right", fontsize="small")
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(_LAZINESS_Y[y])
    ax.set_title(f"epoch {epoch}")
    return fig


def laziness_explorer(
    records: Any,
    *,
    relative: bool = True,
    logy: bool = False,
    static: bool | None = None,
    max_panels: int = 12,
):
    """Slider over epochs showing each block's weight change (:func:`render_laziness`).

    Static (see module doc): a grid of frames at up to ``max_panels`` epochs, first and last
    included, all on the same y scale. Returns a Figure (static) or an ipywidgets widget.
    """
    y = "relative" if relative else "delta"
    df = _laziness_frame(records, y)
    epochs = sorted(df["epoch"].unique().tolist())
    blocks = list(dict.fromkeys(df["block"]))
    pal = _block_palette(blocks)
    top = float(df.groupby(["epoch", "block"])[y].mean().max())
    if logy:
        pos = df[y][df[y] > 0]
        ylim = (float(pos.min()) / 1.5, top * 1.5) if len(pos) else None
    else:
        ylim = (0.0, top * 1.05 if top > 0 else 1.0)

    def frame(*, ax: Axes, epoch: float) -> None:
        render_laziness(df, epoch, relative=relative, ax=ax, ylim=ylim, logy=logy, palette=pal)

    return explorer(frame, static=static, max_panels=max_panels,
                    panel_size=(max(3.2, 0.45 * len(blocks) + 1.5), 3.0), epoch=epochs)


# --- attention ---------------------------------------------------------------------


def overlay_attention(
    image: Any,
    attn_map: Any,
    alpha: float = 0.5,
    cmap: str = "jet",
    ax: Axes | None = None,
    *,
    title: str | None = None,
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """Heat map over the image: the map ``(h, w)`` is resized to the image (bilinear) and drawn
    with ``alpha``; the image stays on 0..1 gray; a colourbar gives the map's values.
    """
    img = _as_image(image, "overlay_attention image")
    m = _as_map(attn_map, "overlay_attention attn_map")
    m = _resize_bilinear(m, img.shape[:2])
    fig, ax = _single_axes(ax, (4.4, 3.8))
    _draw_image(ax, img)
    hm = ax.imshow(m, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)
    ax.set_axis_off()
    if colorbar:  # opaque colourbar: the same norm and colours without the overlay's alpha
        fig.colorbar(ScalarMappable(norm=hm.norm, cmap=hm.get_cmap()), ax=ax, fraction=0.046, pad=0.03)
    if title:
        ax.set_title(title)
    return fig


def _heatmap(ax: Axes, m: np.ndarray, *, cmap: str, vmin: float | None, vmax: float | None,
             annotate: bool | None, labels: bool):
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    r, c = m.shape
    if annotate is None:
        annotate = max(r, c) <= 8
    if annotate:
        lo, hi = im.norm.vmin, im.norm.vmax
        mid = (lo + hi) / 2
        for i in range(r):
            for j in range(c):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if m[i, j] > mid else "white")
    if labels:
        if c <= 16:
            ax.set_xticks(range(c))
        if r <= 16:
            ax.set_yticks(range(r))
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    return im


def _heads(x: Any, what: str, batch: int = 0) -> np.ndarray:
    """``(h, w)``, ``(heads, h, w)`` or ``(B, heads, h, w)`` -> ``(heads, h, w)``."""
    a = _to_numpy(x, what).astype(np.float64)
    if a.ndim == 4:
        if not -a.shape[0] <= batch < a.shape[0]:
            raise IndexError(f"{what}: batch={batch} but the batch has {a.shape[0]} item(s)")
        a = a[batch]
    elif a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{what}: expected (heads, h, w), (B, heads, h, w) or (h, w), got shape {a.shape}")
    return a


def plot_channel_attention(
    matrices: Any,
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    cmap: str = "viridis",
    annotate: bool | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    batch: int = 0,
    axes: Any = None,
) -> Figure:
    """Per-head channel-attention matrices (SIBA's ``(C/heads) × (C/heads)`` = 6×6 per head).

    ``matrices``: ``(heads, c, c)``, or ``(B, heads, c, c)`` (item ``batch`` is shown) as
    captured from an ``attend`` softmax (rows: queries, sum to 1). One shared colour scale
    (data min..max unless ``vmin`` / ``vmax``) and one colourbar; values are written in the
    cells when c ≤ 8 (``annotate``).

    Returns:
        the figure: one axes per head plus the colourbar's.
    """
    a = _heads(matrices, "plot_channel_attention matrices", batch)
    n = a.shape[0]
    if titles is not None and len(titles) != n:
        raise ValueError(f"plot_channel_attention: {len(titles)} titles for {n} heads")
    lo = float(a.min()) if vmin is None else vmin
    hi = float(a.max()) if vmax is None else vmax
    if axes is None:
        nc = min(ncols or min(n, 4), n)
        nr = math.ceil(n / nc)
        fig, flat = _panel_axes(n, nr, nc, (2.4, 2.3))
    else:
        flat = _flat_axes(axes, n, "plot_channel_attention")[:n]
        fig = flat[0].figure
    im = None
    for h, ax in enumerate(flat):
        im = _heatmap(ax, a[h], cmap=cmap, vmin=lo, vmax=hi, annotate=annotate, labels=True)
        ax.set_title(titles[h] if titles is not None else f"head {h}")
    fig.colorbar(im, ax=flat, shrink=0.8)
    return fig


def render_attention(
    maps: Mapping[Any, Any],
    block: Any,
    head: int,
    *,
    image: Any = None,
    batch: int = 0,
    ax: Axes | None = None,
    cmap: str | None = None,
    alpha: float = 0.5,
    annotate: bool | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """One explorer frame: head ``head`` of block ``block``.

    ``maps[block]`` is ``(heads, h, w)``, ``(B, heads, h, w)`` (item ``batch``) or ``(h, w)``.
    With ``image`` the map is overlaid on it (:func:`overlay_attention`, spatial maps);
    without, it is drawn as a matrix (rows = queries), annotated when small.
    """
    if block not in maps:
        raise KeyError(f"render_attention: no block {block!r}; blocks: {list(maps)}")
    a = _heads(maps[block], f"render_attention maps[{block!r}]", batch)
    fig, ax = _single_axes(ax, (4.2, 3.6))
    title = f"{block} · head {head}"
    if not 0 <= head < a.shape[0]:
        ax.text(0.5, 0.5, f"{block} has {a.shape[0]} head(s)", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        ax.set_axis_off()
        ax.set_title(title)
        return fig
    if image is not None:
        overlay_attention(image, a[head], alpha=alpha, cmap=cmap or "jet", ax=ax, title=title,
                          vmin=vmin, vmax=vmax)
    else:
        im = _heatmap(ax, a[head], cmap=cmap or "viridis", vmin=vmin, vmax=vmax, annotate=annotate,
                      labels=True)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        ax.set_title(title)
    return fig


def attention_explorer(
    maps: Mapping[Any, Any],
    *,
    image: Any = None,
    batch: int = 0,
    shared_scale: bool = True,
    static: bool | None = None,
    max_panels: int = 16,
    cmap: str | None = None,
):
    """Sliders over blocks and heads of captured attention maps (:func:`render_attention`).

    ``maps``: ``{block name: tensor (heads, ...) or (B, heads, ...)}``, e.g. the output of
    ``probes.capture(model, ir, vi, names="*.attend")``. With ``shared_scale`` every frame
    uses the global min..max, so blocks and heads compare by colour.
    Static (see module doc): a grid, one row per block and one column per head (at most
    ``max_panels`` frames, evenly subsampled). Returns a Figure or an ipywidgets widget.
    """
    if not maps:
        raise ValueError("attention_explorer: maps is empty")
    arrays = {b: _heads(m, f"attention_explorer maps[{b!r}]", batch) for b, m in maps.items()}
    n_heads = max(a.shape[0] for a in arrays.values())
    lo = min(float(a.min()) for a in arrays.values()) if shared_scale else None
    hi = max(float(a.max()) for a in arrays.values()) if shared_scale else None

    def frame(*, ax: Axes, block: Any, head: int) -> None:
        render_attention(arrays, block, head, image=image, ax=ax, cmap=cmap, vmin=lo, vmax=hi)

    return explorer(frame, static=static, max_panels=max_panels, panel_size=(3.4, 3.0),
                    block=list(arrays), head=list(range(n_heads)))


# --- spectra -----------------------------------------------------------------------


def plot_spectrum(
    img: Any,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    cmap: str = "magma",
    colorbar: bool = True,
) -> Figure:
    """Centred log-magnitude spectrum log(1 + |FFT2|) of an image (colour: of its Y), mean removed
    (:func:`fusionlib.spectral.log_magnitude`); axes in cycles/pixel, zero frequency centred.
    """
    g = _as_gray(img, "plot_spectrum img")
    h, w = g.shape
    spec = log_magnitude(torch.from_numpy(np.ascontiguousarray(g, dtype=np.float32))).numpy()
    fx = np.fft.fftshift(np.fft.fftfreq(w))
    fy = np.fft.fftshift(np.fft.fftfreq(h))
    dx = 1.0 / w / 2
    dy = 1.0 / h / 2
    fig, ax = _single_axes(ax, (4.4, 3.8))
    im = ax.imshow(spec, cmap=cmap, origin="upper",
                   extent=(fx[0] - dx, fx[-1] + dx, fy[-1] + dy, fy[0] - dy))
    ax.set_xlabel("$f_x$ (cycles/pixel)")
    ax.set_ylabel("$f_y$ (cycles/pixel)")
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="log(1 + |F|)")
    if title:
        ax.set_title(title)
    return fig


#: how many decades below the highest power :func:`plot_radial_psd` shows on a log axis (1e8 = 8 decades)
PSD_DYNAMIC_RANGE = 1e8


def plot_radial_psd(
    images: Mapping[str, Any],
    ax: Axes | None = None,
    loglog: bool = True,
    *,
    title: str | None = None,
) -> Figure:
    """Radially averaged PSD of several images on one axis, one line each.

    Values of ``images`` are images (colour: their Y), or precomputed ``(freqs, psd)`` pairs
    such as :func:`fusionlib.probes.feature_spectrum` returns (leading dims of ``psd`` are
    averaged). On log axes the zero-frequency bin (the mean, which a log axis cannot place and
    whose power dwarfs the rest) is left out, and the y-axis spans at most :data:`PSD_DYNAMIC_RANGE`
    below the highest plotted power, so one near-zero bin cannot flatten every curve.
    """
    if not images:
        raise ValueError("plot_radial_psd: no images given")
    fig, ax = _single_axes(ax, (5.2, 3.8))
    shown: list[np.ndarray] = []
    for name, v in images.items():
        if isinstance(v, tuple) and len(v) == 2:
            f = _to_numpy(v[0], f"plot_radial_psd[{name!r}] freqs").astype(np.float64)
            p = _to_numpy(v[1], f"plot_radial_psd[{name!r}] psd").astype(np.float64)
            p = p.reshape(-1, p.shape[-1]).mean(0) if p.ndim > 1 else p
            if f.shape != p.shape:
                raise ValueError(f"plot_radial_psd[{name!r}]: freqs {f.shape} and psd {p.shape} differ")
        else:
            g = _as_gray(v, f"plot_radial_psd[{name!r}]")
            if min(g.shape) < 2:
                raise ValueError(f"plot_radial_psd[{name!r}]: image of size {g.shape} is too small")
            ft, pt = radial_psd(torch.from_numpy(np.ascontiguousarray(g, dtype=np.float64)))
            f, p = ft.numpy(), pt.numpy()
        if loglog:
            # f = 0, and a first bin whose power is numerically zero (a removed mean, plotted at f = 0.5/N)
            keep = (f > 0) & (p > (p.max() * 1e-12 if p.size else 0))
            f, p = f[keep], p[keep]
            shown.append(p)
        ax.plot(f, p, label=str(name))
    if loglog:
        ax.set_xscale("log")
        ax.set_yscale("log")
        top = max((float(p.max()) for p in shown if p.size), default=0.0)
        if top > 0:
            low = min(float(p.min()) for p in shown if p.size)
            ax.set_ylim(max(low, top / PSD_DYNAMIC_RANGE) * 0.8, top * 1.25)
    ax.set_xlabel("frequency (cycles/pixel)" + (", zero frequency left out" if loglog else ""))
    ax.set_ylabel("power")
    ax.legend(frameon=False, fontsize="small")
    if title:
        ax.set_title(title)
    return fig


# --- training curves ---------------------------------------------------------------


def _constant_ylim(ax: Axes, levels: Sequence[float]) -> None:
    """Y axis from 0 to 1.2x the largest |level| (sign kept) for a panel of constant curves, so
    a constant (e.g. a fixed learning rate) is not drawn on an autoscaled ±4 % axis."""
    lo, hi = min(0.0, *levels), max(0.0, *levels)
    ax.set_ylim(1.2 * lo, 1.2 * hi)


def plot_history(
    history_records: Any,
    keys: Sequence[str | Sequence[str]] | str | None = ("loss",),
    *,
    x: str = "epoch",
    logy: bool = False,
    axes: Any = None,
    title: str | None = None,
) -> Figure:
    """Training curves from per-epoch dicts (``[{"epoch": 1, "loss": ..., "val_loss": ...}, ...]``
    or a DataFrame).

    ``keys``: one panel per entry; an entry that is a tuple of keys shares a panel
    (``keys=("loss", ("psnr", "val_psnr"))``); ``None`` = every numeric column but ``x``.
    The x axis is column ``x`` when present, else 1, 2, ...; a key missing from some epochs
    leaves a gap. A panel whose curves are all constant (a fixed learning rate) gets a y axis
    from 0 to 1.2x its value instead of an autoscaled ±4 % one (not with ``logy``).
    """
    import pandas as pd

    df = history_records.copy() if isinstance(history_records, pd.DataFrame) else pd.DataFrame(list(history_records))
    if df.empty:
        raise ValueError("plot_history: no records")
    if keys is None:
        keys = [c for c in df.columns if c != x and pd.api.types.is_numeric_dtype(df[c])]
    elif isinstance(keys, str):
        keys = [keys]
    panels = [[k] if isinstance(k, str) else list(k) for k in keys]
    wanted = [k for p in panels for k in p]
    missing = [k for k in wanted if k not in df.columns]
    if missing or not wanted:
        numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
        raise KeyError(f"plot_history: key(s) {missing} not in the records; available: {numeric}")
    xs = df[x].to_numpy() if x in df.columns else np.arange(1, len(df) + 1)
    if axes is None:
        fig, grid = _new_figure(1, len(panels), (4.2, 3.2))
        flat = list(grid.ravel())
    else:
        flat = _flat_axes(axes, len(panels), "plot_history")
        fig = flat[0].figure
    for ax, p in zip(flat, panels):
        flat_levels = []
        for k in p:
            ys = pd.to_numeric(df[k], errors="coerce").to_numpy(dtype=float)
            ax.plot(xs, ys, marker="o", markersize=3, label=k)
            fin = ys[np.isfinite(ys)]
            if fin.size and np.ptp(fin) <= 1e-9 * np.abs(fin).max():
                flat_levels.append(float(fin[0]))
        ax.set_xlabel(x if x in df.columns else "epoch")
        if logy:
            ax.set_yscale("log")
        elif len(flat_levels) == len(p) and any(flat_levels):
            _constant_ylim(ax, flat_levels)
        if len(p) > 1:
            ax.legend(frameon=False, fontsize="small")
        else:
            ax.set_ylabel(p[0])
    if title:
        fig.suptitle(title)
    return fig


# --- explorers ---------------------------------------------------------------------


def _even_subset(values: list, k: int) -> list:
    if len(values) <= k:
        return values
    if k == 1:
        return values[:1]
    idx = sorted({round(i * (len(values) - 1) / (k - 1)) for i in range(k)})
    return [values[i] for i in idx]


def _slider_values(name: str, spec: Any) -> list:
    try:
        import ipywidgets as widgets
    except ImportError:  # pragma: no cover - ipywidgets is a dependency
        widgets = None
    if widgets is not None and isinstance(spec, widgets.Widget):
        opts = getattr(spec, "options", None)
        if opts:
            return [o[1] if isinstance(o, tuple) and len(o) == 2 else o for o in opts]
        return [spec.value]
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Iterable):
        raise TypeError(f"explorer slider {name!r}: give a sequence of values, got {spec!r}")
    vals = list(spec)
    if not vals:
        raise ValueError(f"explorer slider {name!r} has no values")
    return vals


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def explorer(
    fn: Callable[..., Any],
    *,
    static: bool | None = None,
    max_panels: int = 16,
    ncols: int | None = None,
    panel_size: float | tuple[float, float] = 3.2,
    **sliders: Any,
):
    """Interactive sliders over the keyword arguments of a frame function, or a static grid.

    ``fn(*, ax, **values)`` draws one frame into ``ax`` (e.g. a wrapper around
    :func:`render_attention`). Each slider is a sequence of values (``epoch=[1, 2, 3]``) or a
    ready ipywidgets widget.

    - Interactive (a live Jupyter front end): returns an ``ipywidgets.VBox`` of one slider per
      argument and the frame, redrawn when a slider is released.
    - Static (``static=True``, or :data:`STATIC`, e.g. under papermill): returns a Figure
      with a grid of frames over the combinations of values; with two sliders, rows follow the
      first and columns the second. Beyond ``max_panels`` frames each slider's values are
      evenly subsampled, first and last kept.

    Slider names cannot be ``static``, ``max_panels``, ``ncols`` or ``panel_size``.
    """
    if not sliders:
        raise ValueError("explorer: give at least one slider, e.g. explorer(fn, epoch=[1, 2, 3])")
    values = {name: _slider_values(name, spec) for name, spec in sliders.items()}
    size = (panel_size, panel_size) if isinstance(panel_size, (int, float)) else tuple(panel_size)
    if _use_static(static):
        return _static_grid(fn, values, max_panels=max_panels, ncols=ncols, size=size)
    return _interactive(fn, sliders, values, size)


def _static_grid(fn: Callable[..., Any], values: dict[str, list], *, max_panels: int, ncols: int | None,
                 size: tuple[float, float]) -> Figure:
    max_panels = max(1, int(max_panels))
    kept = {k: list(v) for k, v in values.items()}
    while math.prod(len(v) for v in kept.values()) > max_panels:
        name = max(kept, key=lambda k: len(kept[k]))
        others = math.prod(len(v) for k, v in kept.items() if k != name)
        kept[name] = _even_subset(values[name], max(1, min(len(kept[name]) - 1, max_panels // others)))
    names = list(kept)
    combos = [dict(zip(names, c)) for c in itertools.product(*kept.values())]
    varying = [k for k in names if len(kept[k]) > 1]
    if len(varying) == 2 and ncols is None:
        nr, nc = len(kept[varying[0]]), len(kept[varying[1]])
    else:
        nc = min(ncols or 4, len(combos))
        nr = math.ceil(len(combos) / nc)
        if ncols is None:
            nc = math.ceil(len(combos) / nr)  # balanced rows: 6 frames -> 2 x 3
    fig, flat = _panel_axes(len(combos), nr, nc, size)
    for ax, combo in zip(flat, combos):
        fn(ax=ax, **combo)
        if not ax.get_title():
            ax.set_title(", ".join(f"{k}={_fmt(v)}" for k, v in combo.items()), fontsize="small")
    return fig


def _interactive(fn: Callable[..., Any], sliders: dict[str, Any], values: dict[str, list],
                 size: tuple[float, float]):
    import ipywidgets as widgets
    from IPython.display import display

    controls: dict[str, Any] = {}
    for name, spec in sliders.items():
        if isinstance(spec, widgets.Widget):
            controls[name] = spec
        else:
            vals = values[name]
            controls[name] = widgets.SelectionSlider(
                options=[(_fmt(v), v) for v in vals], value=vals[0], description=name,
                continuous_update=False,
            )
    out = widgets.Output()

    def redraw(*_: Any) -> None:
        fig = Figure(figsize=(size[0] * 1.4, size[1] * 1.4), layout="constrained")
        fn(ax=fig.add_subplot(), **{k: c.value for k, c in controls.items()})
        with out:
            out.clear_output(wait=True)
            display(fig)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox(list(controls.values())), out])


# --- files -------------------------------------------------------------------------


def save_figure(fig: Figure, out_dir: str | os.PathLike, name: str, *, dpi: int = 120) -> Path:
    """Write ``fig`` as ``<out_dir>/<name>.png`` (folders created) and return the path."""
    if not isinstance(fig, Figure):
        raise TypeError(f"save_figure: expected a matplotlib Figure, got {type(fig).__name__}")
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"save_figure: name must be a plain file name, got {name!r}")
    if not name.lower().endswith(".png"):
        name += ".png"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=dpi, format="png", bbox_inches="tight")
    return path
