"""fusionlib.viz: every figure on tiny inputs (Agg backend), explorers in static and widget mode."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from fusionlib import viz  # noqa: E402


def _images(ax) -> list[AxesImage]:
    return [a for a in ax.get_children() if isinstance(a, AxesImage)]


def _data_lines(ax) -> list:
    """Lines holding data (seaborn also adds empty legend proxies to ax.lines)."""
    return [ln for ln in ax.lines if len(ln.get_xdata()) > 0]


def _assert_gray_unstretched(im: AxesImage) -> None:
    assert im.get_cmap().name == "gray"
    assert (im.norm.vmin, im.norm.vmax) == (0.0, 1.0)


def _records(blocks=("enc", "fuse", "dec"), epochs=4) -> list[dict]:
    recs = []
    for e in range(1, epochs + 1):
        for i, b in enumerate(blocks):
            delta = (i + 1) * 0.1 / e
            recs.append(dict(epoch=e, block=b, delta=delta, relative=delta / 10, weight_norm=10.0))
    return recs


# --- images -------------------------------------------------------------------------


def test_show_images_grid_titles_and_gray_norm():
    low_contrast = 0.2 + 0.1 * torch.rand(1, 8, 12)  # values in [0.2, 0.3]: must not be stretched
    imgs = {"ir": low_contrast, "vi": np.random.rand(8, 12), "rgb": torch.rand(3, 8, 12)}
    fig = viz.show_images(imgs, ncols=2, title="pair")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3  # the unused fourth cell is removed
    assert [ax.get_title() for ax in fig.axes] == ["ir", "vi", "rgb"]
    for ax in fig.axes[:2]:
        (im,) = _images(ax)
        _assert_gray_unstretched(im)
        assert im.get_array().shape == (8, 12)
    (im_rgb,) = _images(fig.axes[2])
    assert im_rgb.get_array().shape == (8, 12, 3)
    assert fig._suptitle.get_text() == "pair"


def test_show_images_accepts_lists_batches_uint8_and_cmap():
    u8 = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)
    fig = viz.show_images([u8, torch.rand(1, 1, 8, 8), np.random.rand(8, 8, 1)], cmap="inferno")
    assert len(fig.axes) == 3
    arr = _images(fig.axes[0])[0].get_array()
    assert arr.max() <= 1.0 and np.isclose(arr.max(), 252 / 255)
    im = _images(fig.axes[1])[0]
    assert im.get_cmap().name == "inferno" and (im.norm.vmin, im.norm.vmax) == (0.0, 1.0)


def test_show_images_zoom_inset_same_box_on_every_panel():
    imgs = {"a": torch.rand(1, 16, 20), "b": torch.rand(1, 16, 20)}
    fig = viz.show_images(imgs, zoom=(4, 2, 6, 5))
    assert len(fig.axes) == 2
    for ax in fig.axes:
        (ins,) = ax.child_axes
        assert ins.get_xlim() == (3.5, 9.5)
        assert ins.get_ylim() == (6.5, 1.5)
        _assert_gray_unstretched(_images(ins)[0])
    with pytest.raises(ValueError, match="does not fit"):
        viz.show_images(imgs, zoom=(15, 2, 6, 5))


@pytest.mark.parametrize("corner", ["top-left", "top-right", "bottom-left", "bottom-right"])
def test_show_images_zoom_inset_never_covers_its_box(corner):
    H, W, w, h = 48, 64, 14, 10
    x = 2 if "left" in corner else W - w - 2
    y = 2 if "top" in corner else H - h - 2
    fig = viz.show_images({"a": torch.rand(1, H, W)}, zoom=(x, y, w, h))
    fig.draw_without_rendering()
    ax = fig.axes[0]
    (ins,) = ax.child_axes
    inset = ins.get_window_extent()
    (bx0, by0), (bx1, by1) = ax.transData.transform([(x - 0.5, y + h - 0.5), (x + w - 0.5, y - 0.5)])
    assert inset.x1 <= bx0 or inset.x0 >= bx1 or inset.y1 <= by0 or inset.y0 >= by1, (corner, inset)
    # inside the panel, in the opposite corner
    panel = ax.get_window_extent()
    assert panel.x0 <= inset.x0 and inset.x1 <= panel.x1 and panel.y0 <= inset.y0 and inset.y1 <= panel.y1
    assert (inset.x0 + inset.x1 > panel.x0 + panel.x1) == ("left" in corner)
    assert (inset.y0 + inset.y1 > panel.y0 + panel.y1) == ("bottom" in corner)


def test_zoom_inset_bounds_shrink_or_leave_the_panel_for_large_boxes():
    # a box over the middle half: a 42 % inset overlaps it in every corner, a smaller one fits
    x0, y0, iw, ih = viz._inset_bounds((20, 15, 24, 18), (48, 64))
    assert iw < 0.42 and not (x0 < 44 / 64 and x0 + iw > 20 / 64 and y0 < 1 - 15 / 48 and y0 + ih > 1 - 33 / 48)
    # a box over the whole image: the inset sits right of the panel
    x0, _, _, _ = viz._inset_bounds((0, 0, 64, 48), (48, 64))
    assert x0 > 1


def test_show_images_into_given_axes_and_bad_shapes():
    fig = Figure()
    axes = fig.subplots(1, 3)
    out = viz.show_images([torch.rand(4, 4)] * 2, axes=axes)
    assert out is fig and len(_images(axes[0])) == 1 and len(_images(axes[2])) == 0
    with pytest.raises(ValueError, match=r"show_images\[x\].*\(5, 4, 4\)"):
        viz.show_images({"x": torch.rand(5, 4, 4)})
    with pytest.raises(ValueError, match="no images"):
        viz.show_images([])


# --- laziness -----------------------------------------------------------------------


def test_plot_laziness_lines_boundaries_and_scale():
    recs = _records()
    fig = viz.plot_laziness(recs, stage_boundaries=[2.5], title="AIDFusion Fig. 1", logy=True)
    (ax,) = fig.axes
    lines = _data_lines(ax)
    assert len(lines) == 3 + 1  # one per block, one boundary
    boundary = [ln for ln in lines if list(ln.get_xdata()) == [2.5, 2.5]]
    assert len(boundary) == 1 and boundary[0].get_linestyle() == "--"
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "AIDFusion Fig. 1"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["enc", "fuse", "dec"]
    # relative vs delta: the plotted values are the records' own
    rel = sorted(np.concatenate([ln.get_ydata() for ln in lines[:3]]))
    assert np.allclose(rel, sorted(r["relative"] for r in recs))
    fig2 = viz.plot_laziness(recs, relative=False)
    delta = sorted(np.concatenate([ln.get_ydata() for ln in _data_lines(fig2.axes[0])]))
    assert np.allclose(delta, sorted(r["delta"] for r in recs))


def test_plot_laziness_dataframe_labelled_boundaries_and_errors():
    import pandas as pd

    fig = viz.plot_laziness(pd.DataFrame(_records()), stage_boundaries={"stage 2": 2})
    ax = fig.axes[0]
    assert any(t.get_text().strip() == "stage 2" for t in ax.texts)
    with pytest.raises(KeyError, match="relative"):
        viz.plot_laziness([dict(epoch=1, block="a", delta=0.1)])
    with pytest.raises(ValueError, match="empty"):
        viz.plot_laziness([])


def test_plot_laziness_compare_shares_y_and_colours():
    fig = viz.plot_laziness_compare({"baseline": _records(), "DIILS": _records(epochs=3)})
    assert len(fig.axes) == 2
    a, b = fig.axes
    assert a.get_shared_y_axes().joined(a, b)
    assert [a.get_title(), b.get_title()] == ["baseline", "DIILS"]
    assert a.get_legend() is None and b.get_legend() is not None
    colours = lambda ax: [tuple(ln.get_color()) for ln in _data_lines(ax)]  # noqa: E731
    assert colours(a) == colours(b)


def test_render_laziness_frame():
    recs = _records()
    fig = viz.render_laziness(recs, 2)
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    assert np.allclose(heights, [0.005, 0.01, 0.015])
    assert ax.get_title() == "epoch 2"
    with pytest.raises(KeyError, match="epochs"):
        viz.render_laziness(recs, 99)


def test_laziness_explorer_static_grid():
    fig = viz.laziness_explorer(_records(epochs=10), static=True, max_panels=4)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "epoch 1" and titles[-1] == "epoch 10"
    assert len({ax.get_ylim() for ax in fig.axes}) == 1  # one y scale for all frames


# --- attention ----------------------------------------------------------------------


def test_overlay_attention_resizes_bilinear_with_colorbar():
    img = torch.rand(1, 8, 8)
    attn = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    fig = viz.overlay_attention(img, attn, alpha=0.4, title="t")
    assert len(fig.axes) == 2  # image + colourbar
    gray, heat = _images(fig.axes[0])
    _assert_gray_unstretched(gray)
    ref = F.interpolate(attn[None, None], size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
    assert np.allclose(heat.get_array(), ref.numpy(), atol=1e-6)
    assert heat.get_alpha() == 0.4 and heat.get_cmap().name == "jet"
    with pytest.raises(ValueError, match="select one head"):
        viz.overlay_attention(img, torch.rand(2, 4, 4))


def test_plot_channel_attention_per_head():
    m = torch.softmax(torch.randn(1, 3, 6, 6), dim=-1)
    fig = viz.plot_channel_attention(m, titles=["h0", "h1", "h2"])
    assert len(fig.axes) == 3 + 1  # heads + shared colourbar
    heads = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heads] == ["h0", "h1", "h2"]
    norms = {(_images(ax)[0].norm.vmin, _images(ax)[0].norm.vmax) for ax in heads}
    assert norms == {(float(m.min()), float(m.max()))}
    assert len(heads[0].texts) == 36  # 6x6 values written
    assert np.allclose(_images(heads[1])[0].get_array(), m[0, 1].numpy())
    with pytest.raises(ValueError, match="titles"):
        viz.plot_channel_attention(m, titles=["only one"])


def test_render_attention_frame_matrix_overlay_and_missing_head():
    maps = {"isca": torch.softmax(torch.randn(2, 2, 4, 4), -1), "vsca": torch.rand(3, 4, 4)}
    fig = viz.render_attention(maps, "isca", 1)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "isca · head 1"
    assert np.allclose(_images(fig.axes[0])[0].get_array(), maps["isca"][0, 1].numpy())
    fig = viz.render_attention(maps, "vsca", 2, image=torch.rand(1, 16, 16))
    gray, heat = _images(fig.axes[0])
    _assert_gray_unstretched(gray)
    assert heat.get_array().shape == (16, 16)
    fig = viz.render_attention(maps, "isca", 2)
    assert "2 head(s)" in fig.axes[0].texts[0].get_text()
    with pytest.raises(KeyError, match="blocks"):
        viz.render_attention(maps, "nope", 0)


def test_attention_explorer_static_grid_blocks_by_heads():
    maps = {"b0": torch.rand(1, 2, 4, 4), "b1": torch.rand(1, 3, 4, 4)}
    fig = viz.attention_explorer(maps, static=True)
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [f"b{b} · head {h}" for b in range(2) for h in range(3)]
    lo = min(float(m.min()) for m in maps.values())
    for ax in panels:
        if _images(ax):
            assert _images(ax)[0].norm.vmin == pytest.approx(lo)
    assert len(fig.axes) == 6 + 5  # 6 frames, 5 colourbars (b0 has no head 2)


def test_explorers_follow_module_flag(monkeypatch):
    monkeypatch.setattr(viz, "STATIC", True)
    assert isinstance(viz.laziness_explorer(_records()), Figure)
    assert isinstance(viz.attention_explorer({"b": torch.rand(2, 3, 3)}), Figure)


def test_detect_static_env(monkeypatch):
    monkeypatch.setenv("FUSIONLIB_STATIC_WIDGETS", "1")
    assert viz.detect_static() is True
    monkeypatch.setenv("FUSIONLIB_STATIC_WIDGETS", "0")
    assert viz.detect_static() is False
    monkeypatch.delenv("FUSIONLIB_STATIC_WIDGETS")
    assert viz.detect_static() is True  # pytest is not a Jupyter kernel


def test_explorer_static_subsamples_and_interactive_widget():
    calls = []

    def frame(*, ax, a, b):
        calls.append((a, b))
        ax.plot([0, 1], [a, b])

    fig = viz.explorer(frame, static=True, max_panels=6, a=list(range(5)), b=["x", "y"])
    assert len(fig.axes) == 6  # a subsampled to 0, 2, 4; rows a, columns b
    assert [c[0] for c in calls] == [0, 0, 2, 2, 4, 4]
    assert fig.axes[1].get_title() == "a=0, b=y"

    import ipywidgets

    calls.clear()
    ui = viz.explorer(frame, static=False, a=[1, 2, 3], b=["x", "y"])
    assert isinstance(ui, ipywidgets.VBox)
    assert calls == [(1, "x")]
    slider_a = ui.children[0].children[0]
    slider_a.value = 3
    assert calls[-1] == (3, "x")
    with pytest.raises(ValueError, match="no values"):
        viz.explorer(frame, static=True, a=[], b=[1])


# --- spectra, history, files --------------------------------------------------------


def test_plot_spectrum_peak_at_the_sinusoid_frequency():
    x = torch.arange(32.0)
    img = 0.5 + 0.4 * torch.cos(2 * torch.pi * 4 * x / 32).expand(1, 32, 32)  # 0.125 cycles/px along x
    fig = viz.plot_spectrum(img, title="spec")
    assert len(fig.axes) == 2  # spectrum + colourbar
    (im,) = _images(fig.axes[0])
    spec = np.asarray(im.get_array())
    r, c = np.unravel_index(spec.argmax(), spec.shape)
    x0, x1, _, _ = im.get_extent()
    fx = x0 + (c + 0.5) * (x1 - x0) / spec.shape[1]
    assert abs(abs(fx) - 0.125) < 1e-6 and r == 16


def test_plot_radial_psd_lines_and_precomputed_pairs():
    from fusionlib.probes import feature_spectrum

    imgs = {"ir": torch.rand(1, 16, 16), "rgb": torch.rand(3, 16, 16),
            "features": feature_spectrum(torch.rand(1, 4, 16, 16))}
    fig = viz.plot_radial_psd(imgs, title="PSD")
    (ax,) = fig.axes
    assert len(ax.lines) == 3
    assert [ln.get_label() for ln in ax.lines] == ["ir", "rgb", "features"]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    fig = viz.plot_radial_psd({"a": np.random.rand(16, 16)}, loglog=False)
    assert fig.axes[0].get_xscale() == "linear"


def test_plot_radial_psd_leaves_out_dc_and_bounds_the_log_axis():
    """A bright mean (huge DC power) and a spectrum with a 1e-34 bin must not flatten the curves."""
    freqs = np.linspace(0, 0.5, 9)
    tiny = np.array([1e6, 1.0, 0.5, 0.2, 0.1, 1e-34, 0.05, 0.02, 0.01])
    fig = viz.plot_radial_psd({"pair": (freqs, tiny), "img": torch.rand(1, 16, 16) + 5.0})
    ax = fig.axes[0]
    for ln in ax.lines:
        assert (ln.get_xdata() > 0).all()  # no zero-frequency point
    assert ax.lines[0].get_ydata().max() < 1e6  # the DC power of the pair is gone
    lo, hi = ax.get_ylim()
    assert hi / lo < 1e9 and lo > 1e-20
    assert "zero frequency left out" in ax.get_xlabel()


def test_plot_history_panels_and_missing_key():
    hist = [dict(epoch=e, loss=1 / e, val_loss=1.2 / e, psnr=20 + e) for e in range(1, 5)]
    fig = viz.plot_history(hist, keys=(("loss", "val_loss"), "psnr"))
    assert len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 1
    assert list(fig.axes[1].lines[0].get_xdata()) == [1, 2, 3, 4]
    assert len(viz.plot_history(hist).axes[0].lines) == 1  # default keys=("loss",)
    assert len(viz.plot_history(hist, keys=None).axes) == 3
    with pytest.raises(KeyError, match="available"):
        viz.plot_history(hist, keys=("accuracy",))


def test_plot_history_constant_panel_starts_at_zero():
    hist = [dict(epoch=e, loss=1 / e, lr=1e-4, lr_aux=5e-5, lr_step=1e-4 / e) for e in range(1, 5)]
    fig = viz.plot_history(hist, keys=("loss", "lr", ("lr", "lr_aux"), "lr_step"))
    loss_ax, lr_ax, pair_ax, step_ax = fig.axes
    assert lr_ax.get_ylim() == pytest.approx((0.0, 1.2e-4))
    assert pair_ax.get_ylim() == pytest.approx((0.0, 1.2e-4))
    # varying curves keep the autoscaled axis
    assert step_ax.get_ylim()[0] > 0 and loss_ax.get_ylim()[0] > 0
    assert viz.plot_history(hist, keys=("lr",), logy=True).axes[0].get_yscale() == "log"


def test_save_figure_writes_png(tmp_path):
    fig = viz.show_images([torch.rand(8, 8)])
    path = viz.save_figure(fig, tmp_path / "figs", "panel")
    assert path == tmp_path / "figs" / "panel.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="plain file name"):
        viz.save_figure(fig, tmp_path, "a/b")


def test_radial_psd_leaves_out_a_numerically_zero_first_bin():
    """A removed mean leaves a first bin of ~1e-33 at f = 0.5/N: it is not plotted and cannot set the axis."""
    import numpy as np

    from fusionlib.viz import plot_radial_psd

    f, p = np.array([0.01, 0.02, 0.04, 0.1]), np.array([1e-33, 1.0, 0.1, 0.01])
    ax = plot_radial_psd({"a": (f, p)}).axes[0]
    assert list(ax.lines[0].get_xdata()) == [0.02, 0.04, 0.1]
    assert ax.get_ylim()[0] > 1e-3
