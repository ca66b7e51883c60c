# %% [markdown]
# # 00 · Foundations: data, losses, baselines, a tiny fusion CNN and its laziness
#
# > The template every paper notebook follows, on the smallest network that still shows the
# > phenomena: what the images are, what the loss terms ask for, what the classical baselines
# > already achieve, how a network learns to fuse, and how we look inside and measure it.
#
# Library: [`fusionlib`](../fusionlib) — `data`, `ops`, `losses`, `train`, `laziness`, `viz`,
# `probes`, `spectral`, `metrics`, `profiling`, `nb`. There is one copy of every module: the
# notebook shows its source (`show(...)`) and checks what it computes.
#
# **Idea in one paragraph.** Infrared (IR) images see heat: people and cars stand out at night,
# texture is poor. Visible (VI) images see reflected light: rich texture by day, little at night.
# Medical pairs are alike in spirit: MRI shows soft tissue, CT bone, PET/SPECT function (in
# pseudo-colour). A fusion network takes both and returns one image that keeps the salient
# targets of one and the texture of the other. Without a ground-truth fused image, training
# relies on *unsupervised* loss terms built from the sources (max intensity, max gradient,
# SSIM ...) and evaluation on no-reference metrics, whose conventions differ between
# toolboxes (§8).

# %%
from fusionlib import pacing  # the map for a 90-minute class: core path, appendix, measured times

pacing.show_map("00")

# %% tags=["parameters"]
profile = "auto"        # smoke | lab | paper | auto (lab on a GPU, else smoke)
device = "auto"         # auto | cpu | cuda | cuda:1 | mps
data_root = None        # not used here: 00 runs on the bundled pairs in data/
seed = 0
out_dir = "../runs/00_foundations"
epochs = None           # None: the profile's budget
weights_dir = None      # None: the repository's weights/ (the shipped networks); another folder for tests

# %% [markdown]
# ## 1 · Setup
#
# One cell: seed, device, profile, versions. The profile fixes the budget; every profile runs
# every section (smoke only shrinks steps and sizes).

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from matplotlib.ticker import MaxNLocator

from fusionlib import data, losses, metrics, profiling, spectral, viz, weights
from fusionlib.baselines import average_fusion, max_fusion
from fusionlib.laziness import LazinessTracker, summarise
from fusionlib.atomic import atomic_save
from fusionlib.methods import save_laziness
from fusionlib.models.tinyfuse import TINYFUSE_RECIPES, TinyFuse, train_tinyfuse
from fusionlib.nb import budget, record, setup, show
from fusionlib.train import make_loader

S = setup(seed=seed, device=device, profile=profile, out_dir=out_dir)
BUDGETS = {  # crop px, batch, epochs, steps per epoch, evaluation pairs per set
    "smoke": dict(crop=64, batch=4, epochs=10, steps=20, n_eval=2),
    "lab": dict(crop=128, batch=8, epochs=30, steps=50, n_eval=None),
    "paper": dict(crop=128, batch=8, epochs=100, steps=None, n_eval=None),
}
B = budget(BUDGETS, S.profile, epochs=epochs)
RESULTS: dict = {"budget": B}
T0 = time.perf_counter()

# %% [markdown]
# ## 2 · The data
#
# The bundled pairs are real, registered images copied byte for byte from public repositories
# (`data/*/SOURCE.md` gives origin, commit, licence). `data.bundled(name, split)` returns a
# paired dataset: `ir` (source A as grey), `vi` (the Y channel of source B), `vi_cbcr` (its
# chroma, kept to restore colour at the end).

# %%
pd.DataFrame({k: {"splits": v["splits"], "licence": v["licence"]} for k, v in data.list_bundled().items()}).T

# %% [markdown]
# An MSRS night pair and a day pair. By night the pedestrians are bright in IR and almost
# invisible in VI; by day VI carries the texture and IR still marks the warm targets.

# %%
msrs = data.bundled("msrs", "test")
night, day = msrs.by_name("00004N"), msrs.by_name("00055D")
fig = viz.show_images({
    "IR 00004N (night)": night["ir"], "VI 00004N (RGB)": data.merge_luma(night["vi"], night["vi_cbcr"]),
    "IR 00055D (day)": day["ir"], "VI 00055D (RGB)": data.merge_luma(day["vi"], day["vi_cbcr"]),
}, ncols=4)
viz.save_figure(fig, out_dir, "msrs_pairs")
fig

# %% [markdown]
# **YCbCr, BT.601 full range.** Fusion networks work on the luminance Y; the visible image's
# chroma Cb, Cr is put back afterwards. `Y = 0.299 R + 0.587 G + 0.114 B`,
# `Cb = 0.564 (B − Y) + 0.5`, `Cr = 0.713 (R − Y) + 0.5` (`fusionlib.ops.colour`, through kornia).
# The round trip must give the RGB image back.

# %%
rgb = data.merge_luma(day["vi"], day["vi_cbcr"])
y, cbcr = data.split_luma(rgb)
roundtrip = (data.merge_luma(y, cbcr) - rgb).abs().max().item()
print(f"max |RGB - merge(split(RGB))| = {roundtrip:.2e}")
assert roundtrip < 1e-5
fig = viz.show_images({"RGB": rgb, "Y": y, "Cb": cbcr[0:1], "Cr": cbcr[1:2]}, ncols=4)
fig

# %% [markdown]
# Medical pairs (Harvard Whole Brain Atlas): MRI with CT, PET and SPECT. PET and SPECT are
# pseudo-colour, so they are fused on their Y channel and recoloured from their chroma.

# %%
med = {k: data.bundled(k, "test")[0] for k in ("harvard_ct", "harvard_pet", "harvard_spect")}
panels = {}
for k, s in med.items():
    panels[f"MRI ({k[8:].upper()} pair)"] = s["ir"]
    panels[k[8:].upper()] = data.merge_luma(s["vi"], s["vi_cbcr"])
fig = viz.show_images(panels, ncols=6)
viz.save_figure(fig, out_dir, "harvard_pairs")
fig

# %% [markdown]
# ## 3 · The loss terms, as pictures
#
# Each term compares the fused image F with a *target* built from the two sources.
#
# | term | definition | used by |
# |---|---|---|
# | max intensity | ‖F − max(IR, VI)‖₁ | SIBA, LKC-FUNet, DMNet |
# | max gradient | ‖S(F) − max(S(IR), S(VI))‖₁, S = \|Gx\| + \|Gy\| (Sobel) | SIBA, LKC-FUNet, DMNet |
# | Laplacian selection | ‖ΔF − Δ_sel‖₁, Δ_sel the signed Laplacian of the source with the larger \|Δ\| | SIBA |
# | SSIM | 1 − ½ (SSIM(IR, F) + SSIM(VI, F)) | LKC-FUNet |
#
# The source of one of them, then the targets drawn on the night pair.

# %%
show(losses.gradient_max_loss)

# %%
from fusionlib.ops import laplacian, sobel_l1

ir, vi = night["ir"][None], night["vi"][None]          # (1, 1, H, W)
g_ir, g_vi = sobel_l1(ir), sobel_l1(vi)
g_max = torch.maximum(g_ir, g_vi)
lap_target = losses.laplacian_select_target(ir, vi)
win = (lap_target == laplacian(ir)).float()           # 1 where IR's Laplacian is selected
gscale = float(g_max.quantile(0.99))
fig = viz.show_images({
    "max(IR, VI): intensity target": torch.maximum(ir, vi),
    "S(IR)": (g_ir / gscale).clamp(0, 1), "S(VI)": (g_vi / gscale).clamp(0, 1),
    "max(S(IR), S(VI)): gradient target": (g_max / gscale).clamp(0, 1),
    "Laplacian selection: IR wins (white)": win,
    "|Δ_sel| (scaled)": (lap_target.abs() / float(lap_target.abs().quantile(0.99))).clamp(0, 1),
}, ncols=3)
viz.save_figure(fig, out_dir, "loss_targets")
fig

# %% [markdown]
# Each target is a fixed point of its term: feeding the target itself gives zero loss, and the
# classical baselines do not.

# %%
terms = {"intensity": losses.intensity_max_loss, "gradient": losses.gradient_max_loss,
         "laplacian": losses.laplacian_select_loss, "ssim": losses.ssim_loss}
assert losses.intensity_max_loss(torch.maximum(ir, vi), ir, vi).item() == 0.0
loss_table = pd.DataFrame({
    name: {t: float(fn(f, ir, vi)) for t, fn in terms.items()}
    for name, f in {"average": average_fusion(ir, vi), "max": max_fusion(ir, vi), "IR only": ir, "VI only": vi}.items()
}).T
loss_table.round(4)

# %% [markdown]
# ## 4 · Classical baselines
#
# Average and maximum: no parameters, the floor a network has to clear. The average halves the
# contrast of every target; the maximum keeps the bright targets but lets the brighter source
# win everywhere, also where the darker one carries the texture.

# %%
fig = viz.show_images({"IR": ir, "VI (Y)": vi, "average": average_fusion(ir, vi), "max": max_fusion(ir, vi)},
                      ncols=4, zoom=(500, 200, 100, 100))
viz.save_figure(fig, out_dir, "baselines")
fig

# %% [markdown]
# ## 5 · A tiny fusion CNN, built and walked step by step
#
# Four functional blocks — encoders, fusion, decoder, prediction head — the grouping AIDFusion
# uses for its laziness analysis (Fig. 1). The source:

# %%
show(TinyFuse)

# %% [markdown]
# The forward pass walked one operation at a time on a real crop, with the intermediate
# features drawn, and checked against the module's own `forward`.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(seed)
net = TinyFuse()
crop = (slice(None), slice(None), slice(200, 296), slice(480, 576))   # around the pedestrians
x_ir, x_vi = ir[crop], vi[crop]
with torch.no_grad():
    f_ir = net.enc_ir(x_ir)                               # (1, C, h, w)
    f_vi = net.enc_vi(x_vi)                               # (1, C, h, w)
    f = net.fuse(torch.cat([f_ir, f_vi], dim=1))          # (1, C, h, w)
    d = net.decoder(f)                                    # (1, C/2, h, w)
    walked = torch.sigmoid(net.head(d))                   # (1, 1, h, w)
    direct = net(x_ir, x_vi)
print("shapes:", {k: tuple(v.shape) for k, v in dict(f_ir=f_ir, f_vi=f_vi, fused_feat=f, decoded=d, out=walked).items()})
assert torch.equal(walked, direct), "the walk must equal TinyFuse.forward"


def _norm(t):
    t = t - t.min()
    return t / t.max().clamp(min=1e-8)


fig = viz.show_images({"IR crop": x_ir, "VI crop": x_vi, "enc_ir ch0": _norm(f_ir[0, 0]), "enc_vi ch0": _norm(f_vi[0, 0]),
                       "fusion ch0": _norm(f[0, 0]), "output (untrained)": walked}, ncols=6)
fig

# %% [markdown]
# Parameters per block, and the cost (FLOPs counted by `torch.utils.flop_counter`; one
# multiply-add = 2 FLOPs, so GMAC = GFLOPs / 2 — papers mix the two conventions).

# %%
# NBVAL_CHECK_OUTPUT
print(profiling.format_parameter_table(net, depth=1))
cost = profiling.count_flops(net, torch.Size([1, 1, 480, 640]), torch.Size([1, 1, 480, 640]))
print(f"at 480x640: {cost['gmac']:.3f} GMAC = {cost['gflops']:.3f} GFLOPs")
RESULTS["tinyfuse"] = {"params": profiling.count_parameters(net), "gmac_480x640": cost["gmac"],
                       "gflops_480x640": cost["gflops"]}

# %% [markdown]
# ## 6 · Training, with laziness tracking
#
# `train_tinyfuse` with `TINYFUSE_RECIPES["paper"]` (Adam 3e-3, cosine schedule) and `TinyFuseLoss`,
# `L = L_int + L_grad` (max intensity + max gradient). Data: random crops of the MSRS and
# RoadScene train splits (204 pairs). The `LazinessTracker` callback records, for every block,
# the Frobenius norm of its weight change over each epoch, ‖W_e − W_{e−1}‖_F, and that norm
# relative to ‖W_{e−1}‖_F (AIDFusion Eq./Fig. 1).

# %%
train_set = data.bundled_concat("msrs", "roadscene", crop=B["crop"], mode="train", hflip=True, seed=seed, cache=True)
loader = make_loader(train_set, B["batch"], shuffle=True, seed=seed, drop_last=True, collate_fn=data.collate_pairs)


torch.manual_seed(seed)
net = TinyFuse()
tracker = LazinessTracker()
t_train = time.perf_counter()
hist = train_tinyfuse(net, loader, recipe=TINYFUSE_RECIPES["paper"], device=S.device, seed=seed,
                      out_dir=str(S.train_dir), epochs=B["epochs"], max_steps_per_epoch=B["steps"],
                      callbacks=[tracker])
t_train = time.perf_counter() - t_train
net = net.to("cpu").eval()
atomic_save(net.state_dict(), Path(out_dir) / "weights.pt")  # the fuse command and 06 read these two
save_laziness(tracker.records, out_dir)
n_steps = int(sum(e.get("steps", 0) for e in hist.epochs))
RUN_LABEL = f"this run ({S.profile}, {n_steps} steps)"
print(f"trained {B['epochs']} epochs, {n_steps} steps of {B['batch']}x{B['crop']}² crops in {t_train:.1f} s on {S.device}")
hist.to_frame().round(4)

# %%
fig = viz.plot_history(hist.epochs, keys=(("loss", "int", "grad"), "lr"), title=f"TinyFuse training — {RUN_LABEL}")
for ax in fig.axes:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
viz.save_figure(fig, out_dir, "history")
fig

# %% [markdown]
# ### Laziness curves
#
# Left: absolute weight change per epoch; right: relative to the block's weight norm. In
# AIDFusion's Fig. 1a the relative updates of a plainly supervised network collapse after the
# first epochs ("network laziness"); with a cosine learning-rate decay the updates shrink by
# construction too, so read the *ratios between blocks*, not only the downward trend.

# %%
fig = plt.figure(figsize=(12, 3.8), layout="constrained")
ax_abs, ax_rel = fig.subplots(1, 2)
viz.plot_laziness(tracker.records, relative=False, logy=True, ax=ax_abs, title="absolute ‖ΔW‖_F", legend=False)
viz.plot_laziness(tracker.records, relative=True, logy=True, ax=ax_rel, title="relative ‖ΔW‖_F / ‖W‖_F")
ax_rel.legend(title="block", fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.suptitle(f"TinyFuse weight change per epoch — {RUN_LABEL}")
viz.save_figure(fig, out_dir, "laziness")
plt.close(fig)
fig

# %%
lazy = summarise(tracker.records, threshold=1e-2)
print("fraction of epochs each block's relative update stayed above 1e-2:", lazy)
RESULTS["laziness_fraction_above_1e-2"] = lazy
lz_rel = pd.DataFrame(tracker.records).groupby("block", sort=False)["relative"].mean()
display(Markdown(f"Averaged over the epochs of this run, **{lz_rel.idxmax()}** has the largest relative update "
                 f"({lz_rel.max():.1e} per epoch) and **{lz_rel.idxmin()}** the smallest ({lz_rel.min():.1e})."))
if not viz.STATIC:   # JupyterLab: a slider over epochs; under papermill it would only repeat the figure above
    display(viz.laziness_explorer(tracker.records))

# %% [markdown]
# ### Which network the rest of the notebook shows
#
# The sections above trained TinyFuse at this profile's budget. A `smoke` run is a few hundred small steps
# on a CPU: it shows that training runs and gives real laziness curves, but the network it leaves has
# learned little. So at `smoke` the sections that look at what a trained TinyFuse does (the fused image,
# its spectrum, the metrics) use the network shipped in `weights/tinyfuse.pt`, when the repository has
# it: trained by `train_tinyfuse`, the function called above, at `TINYFUSE_RECIPES["lab"]`, by
# `python -m fusionlib.weights train` (its record in `weights/MANIFEST.json` is printed below). Under `lab`
# and `paper` they use this run's own network. Every figure and table below names the network it shows.

# %%
WEIGHTS_DIR = weights_dir or weights.WEIGHTS_DIR
PICKED = weights.pick_network("tinyfuse", net, S.profile, own_short=RUN_LABEL, weights_dir=WEIGHTS_DIR,
                              where="the sections below")
NET, NET_LABEL, NET_SHORT, SHIPPED, rec = PICKED.model, PICKED.label, PICKED.short, PICKED.shipped, PICKED.record
RESULTS["evaluated_network"] = NET_LABEL

# %% [markdown]
# ## 7 · The fused image and its spectrum
#
# The trained network on the whole night pair, next to the baselines, with colour restored
# from the visible chroma (at `smoke` with shipped weights, this run's short-trained network is drawn
# beside it).

# %%
with torch.no_grad():
    tiny = NET(ir, vi).clamp(0, 1)
    tiny_run = net(ir, vi).clamp(0, 1)
fused = {"average": average_fusion(ir, vi), "max": max_fusion(ir, vi), "TinyFuse": tiny}
panels = {"IR": ir, "VI": vi, "average": fused["average"], "max": fused["max"], f"TinyFuse, {NET_SHORT}": tiny}
if SHIPPED:
    panels[f"TinyFuse, {RUN_LABEL}"] = tiny_run
fig = viz.show_images(panels, ncols=3, zoom=(500, 200, 100, 100), panel_size=3.6,
                      title=f"MSRS 00004N, night — TinyFuse: {NET_SHORT}")
viz.save_figure(fig, out_dir, "fused_night")
fig

# %% [markdown]
# Does the fused image keep the pedestrians bright? The *target contrast* of an image: its mean over the
# infrared image's brightest 3 % of pixels minus its mean over the rest (positive: the hot targets stand out).

# %%
def target_contrast(f: torch.Tensor, ir_img: torch.Tensor, frac: float = 0.03) -> float:
    """Mean of ``f`` over the top ``frac`` of ``ir_img``'s pixels minus its mean elsewhere; (1, 1, H, W) each."""
    hot = ir_img.flatten() >= torch.quantile(ir_img.flatten().double(), 1 - frac).float()
    f = f.flatten()
    return float(f[hot].mean() - f[~hot].mean())


contrast = {"IR": target_contrast(ir, ir), "VI": target_contrast(vi, ir),
            **{k: target_contrast(v, ir) for k, v in fused.items()}}
if SHIPPED:
    contrast[f"TinyFuse {RUN_LABEL}"] = target_contrast(tiny_run, ir)
RESULTS["target_contrast_00004N"] = contrast
kept = contrast["TinyFuse"] / contrast["IR"]
display(Markdown(
    f"Target contrast on 00004N (TinyFuse = {NET_SHORT}): "
    + ", ".join(f"{k} {v:.3f}" for k, v in contrast.items())
    + f". TinyFuse keeps {kept:.0%} of the infrared contrast, "
    + ("more than the average" if contrast["TinyFuse"] > contrast["average"] else "no more than the average")
    + f" ({contrast['average'] / contrast['IR']:.0%}) and "
    + ("more than" if contrast["TinyFuse"] > contrast["max"] else "less than")
    + f" the maximum ({contrast['max'] / contrast['IR']:.0%})."))

# %%
fig = viz.show_images({f"{k} (RGB)" if k != "TinyFuse" else f"TinyFuse, {NET_SHORT} (RGB)":
                       data.merge_luma(v[0], night["vi_cbcr"]) for k, v in fused.items()}, ncols=3)
fig

# %% [markdown]
# **Spectra.** The radial power spectral density (power averaged over rings of equal spatial
# frequency) shows which frequencies each image carries. One expects the visible image's texture at
# high frequencies and the infrared image's smooth blobs at low ones; whether that holds for this night
# pair, and what the fusion rules keep, is read from the curves in the cell after the figure.

# %%
imgs = {"IR": ir[0, 0], "VI": vi[0, 0], **{k: v[0, 0] for k, v in fused.items()}}
fig = viz.plot_radial_psd(imgs, title=f"radial PSD, MSRS 00004N — TinyFuse: {NET_SHORT}")
viz.save_figure(fig, out_dir, "radial_psd")
fig

# %%
f, p = spectral.radial_psd(torch.stack(list(imgs.values())).double())
bands = {"low (0 < f < 0.05)": (f > 0) & (f < 0.05), "mid (0.05-0.25)": (f >= 0.05) & (f <= 0.25), "high (f > 0.25)": f > 0.25}
band_power = pd.DataFrame({b: {k: float(p[i][m].sum()) for i, k in enumerate(imgs)} for b, m in bands.items()})
RESULTS["band_power"] = band_power.to_dict("index")
src_top = {b: band_power.loc[["IR", "VI"], b].idxmax() for b in bands}
vi_above = float((p[1][f > 0] > p[0][f > 0]).double().mean())
avg_below = float((p[2][f > 0] < torch.maximum(p[0], p[1])[f > 0]).double().mean())
display(Markdown(
    f"Measured on 00004N: the source with more power is **{src_top['low (0 < f < 0.05)']}** at low frequencies, "
    f"**{src_top['mid (0.05-0.25)']}** in the middle band and **{src_top['high (f > 0.25)']}** at high ones; the "
    f"visible image lies above the infrared one in {vi_above:.0%} of the frequency bins. "
    + ("So on this night scene the textbook split does not hold at low frequencies: the visible image carries "
       "more power there than the infrared one. " if src_top["low (0 < f < 0.05)"] == "VI" else "")
    + f"The average lies below the stronger source in {avg_below:.0%} of the bins: averaging halves each "
    f"source's amplitude where the other is weak. Band powers (sum of the PSD over each band):"))
band_power

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
for ax, (k, v) in zip(axes, {"IR": ir, "VI": vi, f"TinyFuse, {NET_SHORT}": tiny}.items()):
    viz.plot_spectrum(v[0, 0], ax=ax, title=f"log |FFT| {k}")
fig.tight_layout()
plt.close(fig)
fig

# %%
hi = f > 0.25
RESULTS["high_freq_power"] = {k: float(p[i][hi].sum()) for i, k in enumerate(imgs) if k in ("IR", "VI", "TinyFuse")}
RESULTS["high_freq_power"]

# %% [markdown]
# ## 8 · Evaluation under two conventions
#
# The field's two evaluators disagree on what a metric means: Tang's MATLAB toolbox (used by
# SIBA) **averages** SSIM over the two sources but **sums** VIF; the CDDFuse Python evaluator
# (used by LKC-FUNet, likely AIDFusion and DMNet) **sums** SSIM (values up to 2) and VIF, and
# reports MI in nats instead of bits. `fusionlib.metrics` reproduces each as a named *preset*;
# every table says which one it shows. Images are rounded to 8-bit levels first, as both
# toolboxes do.

# %%
def eval_set(name, n):
    ds = data.bundled(name, "test")
    names = ds.names[:n] if n else ds.names
    rows = []
    for nm in names:
        s = ds.by_name(nm)
        a, b = s["ir"][None], s["vi"][None]
        with torch.no_grad():
            outs = {"average": average_fusion(a, b), "max": max_fusion(a, b), "TinyFuse": NET(a, b).clamp(0, 1)}
            if SHIPPED:                       # this run's short-trained network beside the shipped one
                outs["TinyFuse, this run"] = net(a, b).clamp(0, 1)
        for method, fz in outs.items():
            for preset in ("tang", "cddfuse"):
                vals = metrics.evaluate(fz, a, b, preset, ["EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM"])
                rows.append({"set": name, "image": nm, "method": method, "preset": preset,
                             **{k: float(v) for k, v in vals.items()}})
    return rows


t_eval = time.perf_counter()
rows = eval_set("msrs", B["n_eval"]) + eval_set("harvard_ct", B["n_eval"])
t_eval = time.perf_counter() - t_eval
df = pd.DataFrame(rows)
table = df.groupby(["set", "preset", "method"], sort=False).mean(numeric_only=True).round(3)
pairs_used = {s_: sorted(df[df.set == s_]["image"].unique()) for s_ in df.set.unique()}
print(f"Metrics, {S.profile} profile — TinyFuse = {NET_LABEL}" + (f"; 'TinyFuse, this run' = {RUN_LABEL}" if SHIPPED else ""))
print("pairs (full resolution): " + "; ".join(f"{k}: {len(v)} ({', '.join(v)})" for k, v in pairs_used.items())
      + f" | {len(df)} rows, metrics in {t_eval:.1f} s")
table

# %%
tang_means = df[df.preset == "tang"].groupby(["set", "method"]).mean(numeric_only=True)
lines = []
for s_ in pairs_used:
    t_ = tang_means.loc[s_]
    parts = []
    for ref in ("max", "average"):
        wins = [m for m in t_.columns if t_.loc["TinyFuse", m] > t_.loc[ref, m]]
        parts.append(f"above **{ref}** on {len(wins)} of {len(t_.columns)}" + (f" ({', '.join(wins)})" if wins else ""))
    lines.append(f"{s_}: " + ", ".join(parts))
RESULTS["tinyfuse_above_baselines_tang"] = lines
display(Markdown(f"Under `tang` (every metric here is higher-is-better), TinyFuse ({NET_LABEL}) is: " + "; ".join(lines) + ". "
                 + ("A network of a few hundred smoke steps is not expected to beat the baselines: these rows show "
                    "that the pipeline runs." if not SHIPPED and S.profile == "smoke" else
                    f"The pairs are {sum(len(v) for v in pairs_used.values())}, so read these as a sketch, not a "
                    "ranking.")))

# %% [markdown]
# Same images, same fused outputs, two conventions: SSIM under `cddfuse` is a sum where `tang` takes a
# mean (so about twice), MI is in nats instead of bits (a factor ln 2 ≈ 0.69) and each toolbox bins its
# histogram its own way. The ratios measured on these pairs follow the table. Comparing numbers across
# papers that use different evaluators is meaningless without saying which.

# %%
tang = df[df.preset == "tang"].groupby(["set", "method"]).mean(numeric_only=True)
cdd = df[df.preset == "cddfuse"].groupby(["set", "method"]).mean(numeric_only=True)
ratio = (cdd[["SSIM", "MI", "VIF"]] / tang[["SSIM", "MI", "VIF"]]).round(3)
ratio.columns = [f"{c} cddfuse/tang" for c in ratio.columns]
away = (tang[["SSIM", "MI", "VIF"]].abs() > 0.05).to_numpy()    # a ratio of two near-zero values means nothing
RESULTS["preset_ratio_range"] = {c: [float(ratio[c][away[:, i]].min()), float(ratio[c][away[:, i]].max())]
                                 for i, c in enumerate(ratio.columns) if away[:, i].any()}
display(Markdown("Measured `cddfuse` / `tang` ratios over these sets and methods (rows whose `tang` value is "
                 "near zero, a black or flat output, left out): " + "; ".join(
                     f"{c.split()[0]} {lo:.2f}–{hi:.2f}" for c, (lo, hi) in RESULTS["preset_ratio_range"].items())
                 + f" (TinyFuse = {NET_SHORT})."))
ratio

# %%
RESULTS["metrics"] = {
    f"{s}/{p}/{m}": {k: float(v) for k, v in row.items()}
    for (s, p, m), row in df.groupby(["set", "preset", "method"]).mean(numeric_only=True).iterrows()
}
RESULTS["eval_pairs"] = {s: int(df[df.set == s]["image"].nunique()) for s in df.set.unique()}

# %% [markdown]
# ## 9 · Efficiency
#
# Parameters, FLOPs and latency of TinyFuse at the MSRS size, measured on this run's device.

# %%
lat = profiling.measure_latency(net.to(S.device), torch.rand(1, 1, 480, 640, device=S.device),
                                torch.rand(1, 1, 480, 640, device=S.device), warmup=1, repeats=3)
net.to("cpu")
print(f"TinyFuse at 480x640 on {lat['device']}: median {lat['median_s'] * 1e3:.1f} ms ({lat['fps']:.1f} FPS), "
      f"{RESULTS['tinyfuse']['params']} parameters, {RESULTS['tinyfuse']['gmac_480x640']:.2f} GMAC")
RESULTS["tinyfuse"]["latency_ms_480x640"] = lat["median_s"] * 1e3

# %% [markdown]
# ## 10 · Results and questions
#
# `results.json` holds the budget, the laziness summary, the metrics per set, preset and
# method (with the network that produced them, `evaluated_network`), and the timings;
# `tests/test_notebooks.py` checks that every number in it is finite.

# %%
RESULTS["final_loss"] = hist.epochs[-1]["loss"]
RESULTS["training_steps"] = n_steps
RESULTS["seconds"] = {"train": t_train, "eval": t_eval, "total": time.perf_counter() - T0}
path = record(out_dir, RESULTS, meta=S)
print("wrote", path)

# %% [markdown]
# ### Questions for a reading group
#
# 1. The max-intensity target is the `max` baseline itself. Why does a network trained on it
#    (plus a gradient term) not simply return `max(IR, VI)`? Look at the zoomed crops.
# 2. Under which preset does SSIM exceed 1, and why is that not a bug?
# 3. The laziness curves shrink with the learning rate. Design an experiment that separates
#    "the schedule makes updates small" from "the network stops learning" (hint: AIDFusion
#    compares two supervision schemes at the same schedule).
# 4. In the radial PSD, which method keeps the most high-frequency power, and is more
#    high-frequency power always better (think of noise)?
# 5. Which loss term would you add to keep the visible image's texture at night, where VI is
#    dark but not empty?
