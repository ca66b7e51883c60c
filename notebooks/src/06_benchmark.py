# %% [markdown]
# # 06 · Benchmark: every method side by side
#
# > Same images, same metrics under a named convention, same device, with significance, cost, a
# > qualitative grid and the laziness curves of every method on one figure.
#
# Library: [`fusionlib.methods`](../fusionlib/methods.py) (one entry per method: model, weights,
# inference, training function and recipe), `fusionlib.metrics`, `fusionlib.stats`,
# `fusionlib.profiling`, `fusionlib.laziness`. The `fuse` command (`python -m fusionlib.fuse`) runs
# the same `Fuser` this notebook uses.
#
# **Where the weights come from.** For each network, in this order: the authors' released weights
# when given as a parameter (SIBA, RPFNet); at `smoke`, the network the suite **ships** in `weights/`
# (trained by its notebook's own training function at the `lab` recipe on a CPU, or a *narrow*
# configuration for LKC-FUNet and DMNet; `weights/MANIFEST.json` says how, `make weights` retrains them),
# because a smoke run's few steps learn nothing a table could compare; at `lab`/`paper`, the weights its
# paper notebook saved in `runs/<notebook>/weights.pt` (what `make run` produces before this notebook);
# otherwise a training run through the library *here*, with the method's own `train_<paper>` function and
# its recipe at this profile. The table says which, per method: never compare a shipped CPU network, a
# 4-step smoke network and a released one without reading that column.

# %%
from fusionlib import pacing  # the map for a 90-minute class: core path, appendix, measured times

pacing.show_map("06")

# %% tags=["parameters"]
profile = "auto"        # smoke | lab | paper | auto (lab on a GPU, else smoke)
device = "auto"         # auto | cpu | cuda | cuda:1 | mps
data_root = None        # not used: the benchmark runs on the bundled test pairs in data/
seed = 0
out_dir = "../runs/06_benchmark"
epochs = None           # not used: each method's recipe sets its budget
runs_dir = "../runs"    # where the paper notebooks saved weights.pt and laziness.json
siba_checkpoint = None  # the authors' SIBA_epoch60.pth (optional)
rpfnet_checkpoint = None  # the released RPFNet weights converted to a state dict (optional)
methods = None          # None: every registered method; or a list of names

# %% [markdown]
# ## 1 · Setup

# %%
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display
from tqdm.auto import tqdm

from fusionlib import conformance, data, metrics, paper_numbers, profiling, stats, viz, weights
from fusionlib.laziness import summarise
from fusionlib.methods import Fuser, default_weights, get_method, list_methods, load_laziness, train_method
from fusionlib.models import create_model
from fusionlib.nb import budget, record, setup

S = setup(seed=seed, device=device, profile=profile, out_dir=out_dir)
BUDGETS = {  # training steps when a method must be trained here; evaluation pairs per set and crop
    "smoke": dict(train_steps=2, n_eval=2, eval_crop=(128, 160), latency_repeats=1, sizes=((256, 256), (480, 640))),
    "lab": dict(train_steps=None, n_eval=None, eval_crop=None, latency_repeats=5, sizes=((256, 256), (480, 640))),
    "paper": dict(train_steps=None, n_eval=None, eval_crop=None, latency_repeats=10,
                  sizes=((256, 256), (480, 640))),
}
B = budget(BUDGETS, S.profile)
RESULTS: dict = {"budget": B}
RELEASED = {"siba": siba_checkpoint, "rpfnet": rpfnet_checkpoint}
NAMES = list(methods) if methods else list_methods()
print("methods:", NAMES)
T0 = time.perf_counter()

# %% [markdown]
# ## 2 · Weights for every method
#
# Given, shipped, found, or trained here (a network trained here at smoke gets a handful of CPU steps: its
# numbers show that the pipeline runs end to end, not how good the method is).

# %%
fusers, origin, lazy_records, train_seconds = {}, {}, {}, {}
shipped_recs = {}  # the weights/MANIFEST.json record of each shipped network used (its `narrow` field says so)
for name in NAMES:
    m = get_method(name)
    if not m.needs_weights:
        fusers[name], origin[name] = Fuser(name, device=S.device), "rule (no weights)"
        continue
    w = default_weights(name, runs_dir)
    shipped = weights.shipped_weights(name) if S.profile == "smoke" else None
    lazy_records[name] = load_laziness(name, runs_dir)  # the notebook's own training run, whichever weights
    if RELEASED.get(name):  # asked for explicitly: wins over this repository's runs
        w = Path(RELEASED[name])
        origin[name] = f"authors' released weights ({w.name})"
    elif shipped is not None:  # smoke: the shipped lab-trained network, not a 4-step one
        w = shipped
        origin[name] = weights.shipped_label(name)
        shipped_recs[name] = weights.shipped_record(name)
    elif w is not None:
        origin[name] = f"{m.notebook} run ({w})"
    else:
        t = train_method(name, S.profile, out_dir=Path(out_dir) / "trained" / name, device=S.device, seed=seed,
                         progress=False, max_steps=B["train_steps"])
        w, train_seconds[name] = t.weights, t.seconds
        lazy_records[name] = t.laziness
        origin[name] = f"trained here at {S.profile} ({t.seconds:.0f} s)"
    fusers[name] = Fuser(name, w, device=S.device)
    print(f"{m.title:>14}: {origin[name]}")
RESULTS["weights"] = origin
WEIGHTS_SHORT = ("shipped (weights/)" if any(v.startswith("shipped") for v in origin.values())
                 else "this run's" if S.profile != "smoke" else "smoke-trained")
RESULTS["evaluated_configs"] = {n: type(f.model).__name__ + f" ({profiling.count_parameters(f.model):,} parameters)"
                                for n, f in fusers.items() if f.model is not None}
RESULTS["train_seconds"] = train_seconds

# %% [markdown]
# ## 3 · Fusing every bundled test set
#
# Infrared–visible sets (MSRS, TNO, RoadScene, LLVIP, M3FD) and the medical Harvard sets (MRI with
# CT, PET, SPECT; the second image's luminance is fused and its colour restored for display).
# Every method sees the same pairs (smoke: the first pairs of each set, each cropped to the window that
# holds the most infrared energy above the image's mean, `data.target_box`, so that a crop shows the
# targets rather than dark foliage; the medical sets are centre-cropped: the brain fills the middle).

# %%
SETS = [n for n in data.list_bundled() if "test" in data.list_bundled()[n]["splits"]]


def eval_box(ds_name, ir):
    """The evaluation crop of one pair: None (full image), the target window (IVIF) or the centre (medical)."""
    if B["eval_crop"] is None:
        return None
    return (data.centre_box if ds_name.startswith("harvard") else data.target_box)(ir, B["eval_crop"])


FUSED, SOURCES = {}, {}
t_fuse = {}
for ds_name in SETS:
    ds = data.bundled(ds_name, "test", limit=B["n_eval"])
    for i in tqdm(range(len(ds)), desc=f"fusing {ds_name} with {len(fusers)} methods"):
        s = ds[i]
        box = eval_box(ds_name, s["ir"])
        ir, vi = data.crop_box(s["ir"], box)[None], data.crop_box(s["vi"], box)[None]
        cbcr = data.crop_box(s["vi_cbcr"], box)[None] if s.get("vi_cbcr") is not None else None
        SOURCES[(ds_name, s["name"])] = (ir, vi, cbcr)
        for name, f in fusers.items():
            t = time.perf_counter()
            FUSED[(ds_name, s["name"], name)] = f(ir, vi).cpu()
            t_fuse[name] = t_fuse.get(name, 0.0) + time.perf_counter() - t
EVAL_DESC = (f"{S.profile}: " + (f"first {B['n_eval']} pair(s) per set, {B['eval_crop'][0]}x{B['eval_crop'][1]} "
             f"target crops" if B["eval_crop"] else "every bundled test pair, full resolution"))
RESULTS["evaluation"] = EVAL_DESC
print(f"{len(SOURCES)} pairs from {len(SETS)} sets x {len(fusers)} methods fused ({EVAL_DESC}; "
      f"{', '.join(f'{k} {v:.1f}s' for k, v in t_fuse.items())})")

# %% [markdown]
# ## 4 · Metrics under both conventions
#
# `tang` is the MATLAB toolbox convention (metrics averaged over the two sources, VIF multi-scale,
# Qabf/Nabf), `cddfuse` the Python evaluator (SSIM and friends **summed** over the two sources, so
# values up to 2 are normal). One table per data set: the mean over its pairs, per method. Where a
# paper reports that data set under that convention, its own value follows as a row
# "<method> (paper, full test set, <preset>)"; see the note after this cell.

# %%
rows = []
for (ds_name, pair, name), fused in FUSED.items():
    ir, vi, _ = SOURCES[(ds_name, pair)]
    for preset in ("tang", "cddfuse", "lkc"):
        vals = metrics.evaluate(fused, ir, vi, preset=preset)
        rows.append({"set": ds_name, "pair": pair, "method": get_method(name).title, "preset": preset,
                     **{k: float(v[0]) for k, v in vals.items()}})
SCORES = pd.DataFrame(rows)
TABLES = {}
for (ds_name, preset), df in SCORES.groupby(["set", "preset"], sort=False):
    TABLES[(ds_name, preset)] = df.drop(columns=["set", "pair", "preset"]).groupby("method", sort=False).mean() \
        .dropna(axis=1, how="all")


def with_paper(ds_name, preset):
    """Our mean table for one set and preset, then the papers' reported rows for it (their full test sets)."""
    ours = TABLES[(ds_name, preset)]
    extra = paper_numbers.rows_for(ds_name, preset, methods=list(fusers))
    return pd.concat([ours, pd.DataFrame.from_dict(extra, orient="index")]) if extra else ours


def arrows(df, preset):
    """Column names with the metric's direction: ↑ higher is better, ↓ lower is better."""
    p = metrics.get_preset(preset)
    return df.rename(columns={c: f"{c} {'↑' if metrics.higher_is_better(c, p) else '↓'}" for c in df.columns
                              if p.resolve(c) in p.metrics})


def metric_notes(preset):
    """What each metric of a preset is, on which scale (the preset's own words)."""
    p = metrics.get_preset(preset)
    return pd.DataFrame([{"metric": n, "better": "higher" if m.higher_is_better else "lower", "definition": m.doc}
                         for n, m in p.metrics.items() if m.default]).set_index("metric")


for ds_name in SETS:
    print(f"\n== {ds_name} · tang · {EVAL_DESC} ==")
    print(arrows(with_paper(ds_name, "tang"), "tang").round(3).to_string(na_rep="–"))
# A metric can be undefined for an image: CC of a constant fused image (a barely trained network can
# output one), PSNR of an identical one. Those cells are NaN/inf here and None in results.json.
undefined = sorted({f"{m} ({c})" for (d, p), t in TABLES.items() for m, row in t.iterrows() for c, v in row.items()
                    if not np.isfinite(v)})
if undefined:
    print("undefined (NaN/inf) for:", ", ".join(undefined))
RESULTS["undefined_metrics"] = undefined
RESULTS["tables"] = {f"{k[0]}/{k[1]}": {m: {c: (float(v) if np.isfinite(v) else None) for c, v in row.items()}
                                        for m, row in t.round(6).iterrows()} for k, t in TABLES.items()}

# %% [markdown]
# **The papers' own numbers.** A row "<method> (paper, <n> pairs, <preset>)" is the value a paper
# reports for its own method, read from the paper's table (`fusionlib.paper_numbers`; the transcription
# of the five papers' tables ships as `fusionlib/paper_tables.json`). Only the metrics whose convention
# is this table's preset are placed in it: each paper metric has a recorded convention (preset, status
# verified / code / inferred / unknown, and the evidence), listed in the conformance table below; a
# metric whose convention is unknown is never put beside ours. The paper's value is on its full test set
# with the authors' fully trained network; ours use the bundled subsets at this run's budget: the two
# compare in kind (the scale a metric lives on under that evaluator), not as a reproduction.
# "–" marks a metric one side does not report.

# %%
for e in paper_numbers.entries():
    n = f"{e['test_pairs']} pairs" if e["test_pairs"] else "test-set size not stated"
    print(f"- {get_method(e['method']).title} / {e['dataset']}: {e['paper_dataset']} ({n}); {e['source']['kind']}, "
          f"{e['table']}")
CONFORMANCE = paper_numbers.conventions_table()
print("\nconventions per paper and metric (status counts):")
print(CONFORMANCE.groupby(["paper", "status"]).size().unstack(fill_value=0).to_string())

# %% [markdown]
# **Conformance: which preset each paper's numbers are on.** One row per paper metric: our metric and
# preset, the status (`verified`: the authors' released weights scored here reproduce the paper's own row;
# `code`: the authors' evaluator was read; `inferred`: the scale of the paper's numbers and of baselines
# other papers also report; `unknown`: no preset reproduces the scale, so no value of ours is placed beside
# the paper's) and the evidence with its residual. The README's section "Metric conventions" is the same
# table with how the evidence was computed.

# %%
with pd.option_context("display.max_colwidth", 140):
    display(CONFORMANCE.set_index(["paper", "metric"]))
RESULTS["conventions"] = {f"{p}/{m}": {"preset": rec["preset"] or "none", "status": rec["status"]}
                          for p in paper_numbers.PAPERS for m, rec in paper_numbers.conventions(p).items()}
RESULTS["paper_reported"] = paper_numbers.results_block()

# %% [markdown]
# **Conformance per preset.** The same records, one row per preset this notebook reports: how many of our
# metrics under that preset are checked number for number against the toolbox's own output
# (`tests/test_metrics_reference.py`), which paper values its tables carry with which status, and what that
# allows when our row is read beside a paper's (`fusionlib.conformance`).

# %%
display(Markdown(conformance.summary_markdown(("tang", "cddfuse", "lkc"))))
RESULTS["conformance_per_preset"] = conformance.summary_table().to_dict(orient="index")

# %% [markdown]
# **Units and directions.** The same name can mean a different quantity under another preset: `tang`'s MSE
# is on [0, 1] data and its PSNR is `20 log10(255 / sqrt(MSE))` (48.13 dB above the usual value), while
# `cddfuse`'s MSE is on 0–255 and its PSNR takes the fused image's own maximum as peak (so a black output
# gives −inf dB); `cddfuse` sums SSIM-like metrics over the two sources (values up to 2). `Nabf_argfix` is
# the artefact measure with the toolbox's argument-order slip fixed (ours). The definitions, per preset:

# %%
with pd.option_context("display.max_colwidth", 120):
    display(pd.concat({p: metric_notes(p) for p in ("tang", "cddfuse")}, names=["preset"]))

# %%
with pd.option_context("display.max_rows", 200, "display.max_columns", 40, "display.width", 250):
    CDD = pd.concat({ds: with_paper(ds, "cddfuse") for ds in SETS}, names=["set"]).dropna(axis=1, how="all")
    print(f"cddfuse preset · {EVAL_DESC}")
    display(arrows(CDD, "cddfuse").round(3))

# %% [markdown]
# Under the `lkc` preset (LKC-FUNet's released evaluator: the CDDFuse one with SSIM's data range 255), where
# LKC-FUNet's rows for SD, AG, SF, SCD and VIFF belong; its SSIM convention is unknown, so that column has no
# paper value.

# %%
with pd.option_context("display.max_rows", 200):
    print(f"lkc preset · {EVAL_DESC}")
    display(arrows(pd.concat({ds: with_paper(ds, "lkc")[["SD", "AG", "SF", "SCD", "VIF", "SSIM"]] for ds in SETS},
                             names=["set"]), "lkc").round(3))

# %% [markdown]
# ## 5 · Per-image significance
#
# For each pair of methods and each metric (Tang preset): a paired test over all images of all sets
# (`fusionlib.stats.compare_methods`, t-test or Wilcoxon after a normality check, Holm-corrected over
# the metrics). The heatmap shows, for row method vs column method, how many metrics the row is
# significantly better on minus how many it is significantly worse on.

# %%
tang = SCORES[SCORES.preset == "tang"].copy()
tang["key"] = tang["set"] + "/" + tang["pair"]
metric_cols = [c for c in tang.columns if c not in ("set", "pair", "method", "preset", "key")
               and tang[c].notna().all()]
titles = [get_method(n).title for n in fusers]
per_method = {t: tang[tang.method == t].set_index("key")[metric_cols] for t in titles}
wins = pd.DataFrame(0, index=titles, columns=titles, dtype=int)
for a in titles:
    for b in titles:
        if a == b:
            continue
        cmp = stats.compare_methods(per_method[a], per_method[b], metric_cols)
        wins.loc[a, b] = int((cmp.better == "method").sum() - (cmp.better == "baseline").sum())
fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(titles), 0.8 + 0.6 * len(titles)))
sns.heatmap(wins, annot=True, fmt="d", cmap="RdBu", center=0, ax=ax, cbar_kws={"label": "metrics won − lost"})
ax.set_title(f"row vs column: significant wins − losses over {len(metric_cols)} metrics "
             f"({len(per_method[titles[0]])} images; {EVAL_DESC})", fontsize=9)
viz.save_figure(fig, out_dir, "significance")
plt.close(fig)  # shown once, by the cell's value
RESULTS["significance_wins_minus_losses"] = wins.to_dict(orient="index")
fig

# %% [markdown]
# ## 6 · Cost
#
# Each row is the network evaluated above; its name says which configuration was measured ("narrow …,
# shipped": the smaller CPU configuration of `weights/`, as `weights/MANIFEST.json` records it; "full size":
# the paper's) and its `weights` column which file. Where a narrow network was evaluated, a second row counts
# the paper's full configuration on the meta device (parameters and FLOPs, no latency: it is not run here).
# Parameters; FLOPs of one forward at 256×256 and 480×640 counted on the meta device (GMAC = fused
# multiply-adds; GFLOPs = 2 × GMAC, the convention most papers' "FLOPs" use — see the reference
# notes §7); latency at 256×256 on this run's device; peak memory on CUDA only.

# %%
def full_model(name):
    """The paper's full-size network of a method, built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        return create_model(get_method(name).model)


FULL = {n: full_model(n) for n, f in fusers.items() if f.model is not None and get_method(n).model}


def cost_name(name, net):
    """The cost row's name: the method and which network was measured (narrow shipped or full size)."""
    m, rec = get_method(name), shipped_recs.get(name) or {}
    if rec.get("narrow"):
        return f"{m.title}: narrow {rec['config']}, shipped"
    if name in FULL and profiling.count_parameters(net) != profiling.count_parameters(FULL[name]):
        return f"{m.title}: {profiling.count_parameters(net) / 1e6:.2f} M-parameter config, not full size"
    return f"{m.title}: full size"


cost_rows = []
for name, f in tqdm(fusers.items(), desc="FLOPs and latency per method", total=len(fusers)):
    m = get_method(name)
    if f.model is None:
        cost_rows.append({"method": m.title, "weights": origin[name], "params": 0})
        continue
    net = f.model
    row = {"method": cost_name(name, net), "weights": origin[name].split(" (")[0]}
    row["params"] = profiling.count_parameters(net)
    for h, w in B["sizes"]:
        try:
            fl = profiling.count_flops(net, torch.Size((1, 1, h, w)), torch.Size((1, 1, h, w)), meta=True)
            row[f"GMAC@{h}x{w}"], row[f"GFLOPs@{h}x{w}"] = fl["gmac"], fl["gflops"]
        except Exception as e:  # a forward that reads values cannot run on meta: say so
            print(f"{m.title}: FLOPs on meta failed ({type(e).__name__}); counting with a real pass at {h}x{w}")
            x = torch.rand(1, 1, h, w, device=f.device)
            fl = profiling.count_flops(net, x, x)
            row[f"GMAC@{h}x{w}"], row[f"GFLOPs@{h}x{w}"] = fl["gmac"], fl["gflops"]
    x = torch.rand(1, 1, 256, 256)
    t = []  # the whole Fuser call (padding included), as a user meets it
    for _ in range(B["latency_repeats"] + 1):
        if S.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        f(x, x)
        if S.device.type == "cuda":
            torch.cuda.synchronize()
        t.append(time.perf_counter() - t0)
    row["latency_ms@256"] = 1e3 * float(np.median(t[1:]))
    if S.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        f(x, x)
        row["peak_MiB@256"] = torch.cuda.max_memory_allocated() / 2**20
    cost_rows.append(row)
for name, full in FULL.items():  # a narrow network stands in for a full one: count the full one too
    m = get_method(name)
    if profiling.count_parameters(full) == profiling.count_parameters(fusers[name].model):
        continue
    row = {"method": f"{m.title}: full size {m.model}, not run here", "weights": "none (counted on meta)",
           "params": profiling.count_parameters(full)}
    for h, w in B["sizes"]:
        try:
            fl = profiling.count_flops(full, torch.Size((1, 1, h, w)), torch.Size((1, 1, h, w)), meta=True)
            row[f"GMAC@{h}x{w}"], row[f"GFLOPs@{h}x{w}"] = fl["gmac"], fl["gflops"]
        except Exception as e:  # reads values: not countable without running the 41 M / 413 M network
            print(f"{row['method']}: FLOPs not countable on meta ({type(e).__name__}); parameters only")
    cost_rows.append(row)
COST = pd.DataFrame(cost_rows).set_index("method")
print(f"latency: median of {B['latency_repeats']} run(s) after one warm-up, on {S.device}"
      + ("" if S.device.type == "cuda" else "; peak memory is measured on CUDA only"))
RESULTS["cost"] = COST.drop(columns=["weights"]).fillna(-1).to_dict(orient="index")
COST.round(3)

# %% [markdown]
# ## 7 · Qualitative grid
#
# One infrared–visible pair and one medical pair, every method, with the same zoomed crop. At smoke the
# networks are the shipped ones (section 2 says which file each row comes from).

# %%
def qualitative(ds_name):
    key = next(k for k in SOURCES if k[0] == ds_name)
    ir, vi, cbcr = SOURCES[key]
    h, w = ir.shape[-2:]
    t, l, bh, bw = data.target_box(ir, (max(8, h // 3), max(8, w // 3)), stride=4)
    box = (l, t, bw, bh)  # the zoom inset: where the first image is brightest
    imgs = {"A (IR / MRI)": ir[0], "B (VI / functional)": data.merge_luma(vi[0], cbcr[0]) if cbcr is not None else vi[0]}
    for name in fusers:
        f = FUSED[(ds_name, key[1], name)][0]
        imgs[get_method(name).title] = data.merge_luma(f, cbcr[0]) if cbcr is not None else f
    return viz.show_images(imgs, ncols=min(5, len(imgs)), zoom=box,
                           title=f"{ds_name} · {key[1]} · {EVAL_DESC} · networks: {WEIGHTS_SHORT}")


fig = qualitative("msrs")
viz.save_figure(fig, out_dir, "grid_msrs")
fig

# %% [markdown]
# RPFNet's default inference is the released `test.py`'s: it never calls `eval()`, so every BatchNorm
# normalises with the statistics of the test image itself (`mode="as_released"`, `04_rpfnet` §12). A night
# image is then normalised like a daytime one, which can lift its dark background towards grey. The next
# cell prints the mean brightness of each panel above, and of RPFNet's output on the same crop with the
# stored running statistics (`mode="eval"`, standard PyTorch inference), so you can see how much of the
# difference comes from the BatchNorm mode. `04_rpfnet` §12 shows both modes side by side and scores both
# in its evaluation table.

# %%
if "rpfnet" in fusers:
    from fusionlib.models.rpfnet import rpfnet_infer

    key = next(k for k in SOURCES if k[0] == "msrs")
    ir, vi, _ = SOURCES[key]
    means = {"A (IR)": float(ir.mean()), "B (VI luma)": float(vi.mean())}
    means.update({get_method(n).title: float(FUSED[("msrs", key[1], n)].mean()) for n in fusers})
    rp_eval = rpfnet_infer(fusers["rpfnet"].model, ir.to(S.device), vi.to(S.device), mode="eval").cpu()
    rp_title = get_method("rpfnet").title
    means[f"{rp_title} in eval mode (stored BN)"] = float(rp_eval.mean())
    RESULTS["rpfnet_bn_modes"] = {"pair": key[1], "means": means}
    print(f"mean brightness on the msrs {key[1]} crop ({rp_title}: {origin['rpfnet']}; its panel above is the "
          f"as-released mode, test-image BN):")
    print(pd.Series(means).round(3).to_string())

# %%
fig = qualitative("harvard_pet")
viz.save_figure(fig, out_dir, "grid_harvard_pet")
fig

# %% [markdown]
# ## 8 · Laziness of every method
#
# The relative weight change per epoch, ‖ΔW‖_F / ‖W‖_F, of each functional block, divided by that
# block's largest value so that every method fits one scale (1 = the block's most active epoch).
# Then the summary: the fraction of epochs in which each block's relative update stayed above 1e-3.
# The curves come from each paper notebook's own training run (`runs/<notebook>/laziness.json`), at this
# run's profile, not from the shipped networks. DMNet's CSAB and projection blocks sit at 0 during stage I:
# they are not used until stage II (05_dmnet explains).

# %%
norm_records = []
for name, recs in lazy_records.items():
    if not recs:
        continue
    peak = {}
    for r in recs:
        peak[r["block"]] = max(peak.get(r["block"], 0.0), r["relative"])
    for r in recs:
        norm_records.append({"method": get_method(name).title, "epoch": r["epoch"], "block": r["block"],
                             "normalised": r["relative"] / peak[r["block"]] if peak[r["block"]] > 0 else 0.0})
LZ = pd.DataFrame(norm_records)
if len(LZ):
    meths = list(dict.fromkeys(LZ.method))
    ncols = min(3, len(meths))
    nrows = -(-len(meths) // ncols)
    legend_rows = max(-(-LZ[LZ.method == mth].block.nunique() // 2) for mth in meths)  # 2 legend columns
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, nrows * (2.9 + 0.17 * legend_rows)),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, mth in zip(axes.flat, meths):
        for blk, d in LZ[LZ.method == mth].groupby("block", sort=False):
            ax.plot(d.epoch, d.normalised, marker="o", ms=3, label=blk)
        ax.set_title(mth, fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    for ax in axes.flat[len(meths):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("relative ‖ΔW‖ / block max", fontsize=9)
    fig.suptitle("laziness of each notebook's own training run (this run's profile)", fontsize=11)
    viz.save_figure(fig, out_dir, "laziness_all")
    plt.close(fig)  # shown once, by the cell's value
else:
    fig = None
    print("no laziness records (no method was trained here and no notebook saved laziness.json)")
fig

# %%
LAZY = {get_method(n).title: summarise(r, threshold=1e-3) for n, r in lazy_records.items() if r}
RESULTS["laziness_fraction_above_1e-3"] = LAZY
# long form: one row per (method, block), each method's own blocks only, every row shown
LAZY_LONG = pd.DataFrame([{"method": mth, "block": blk, "fraction of epochs above 1e-3": v}
                          for mth, blocks in LAZY.items() for blk, v in blocks.items()])
with pd.option_context("display.max_rows", None):
    display(LAZY_LONG.set_index(["method", "block"]).round(2) if len(LAZY_LONG) else Markdown("no laziness records"))

# %% [markdown]
# ## 9 · Results
#
# `results.json` holds every table above; `python -m fusionlib.report runs/06_benchmark/results.json`
# prints the README's results table from it (with the profile, device and date it was measured).

# %%
RESULTS["seconds_total"] = time.perf_counter() - T0
record(out_dir, RESULTS, meta=S)
print(f"done in {RESULTS['seconds_total']:.0f} s; results -> {Path(out_dir) / 'results.json'}")

# %% [markdown]
# ## Questions for a reading group
#
# 1. Which ranking changes between the `tang` and `cddfuse` tables, and which metric definitions cause it?
# 2. Do the classical rules win any metric significantly? What does that say about the metric?
# 3. Which method's cost grows fastest from 256×256 to 480×640, and why (attention, FFT, U-Net depth)?
# 4. Compare the laziness curves: which blocks of which methods stop changing first?
# 5. Is a significant difference on 2 or 20 images evidence of a better method? What else would you need?
