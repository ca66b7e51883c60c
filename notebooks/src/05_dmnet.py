# %% [markdown]
# # 05 · DMNet: dense transformer + invertible encoder, diffusion features, two-stage training
#
# > *DMNet: A Dense Multiscale Feature Extraction Network With Two-Stage Training for Infrared-Visible
# > Image Fusion* (the title as the paper's text prints it). Venue: IEEE Transactions on Multimedia as
# > recorded in `fusionlib/paper_numbers.json`; the text we hold does not print the venue, so this is
# > not checked against the paper itself. The paper's code link reads "DM_Net"; the repository is
# > `Pancy9476/DMNet`, **partial** (encoder/decoder @ e0eac99, SR3 denoiser and inference @ 16cbcb2; no
# > training script, no loss code).
#
# Library: [`fusionlib.models.dmnet`](../fusionlib/models/dmnet.py) (`DTB`, `DIB`, `AffineCoupling`,
# `CSAB`, `FeatureProjection`, `DMNetDecoder`, `DMNet`, `DMNET_RECIPES`, `train_dmnet`),
# [`fusionlib.models.sr3`](../fusionlib/models/sr3.py) (`SR3UNet`),
# [`fusionlib.diffusion`](../fusionlib/diffusion.py) (β schedule, `q_sample`, noise loss),
# [`fusionlib.losses.dmnet`](../fusionlib/losses/dmnet.py) (the two stages' objectives).
#
# **Idea in one paragraph.** A denoising diffusion model trained on image pairs has to know what
# images look like at every noise level, so the activations of its U-Net are rich, multi-scale
# descriptions of the input. DMNet runs a pair `[VIS, IR]` through the forward process to three
# small noise levels (steps t = 5, 50, 100 of 2,000), reads the 15 decoder feature maps of an SR3
# U-Net at each, and projects them to the width of a conventional encoder (a dense transformer block
# of Restormer layers and a dense invertible block of affine couplings, CDDFuse's building blocks).
# Channel-and-spatial attention (CSAB) refines the encoder features; the decoder turns
# `CSAB(f_vi) + CSAB(f_ir) + diffusion features` into the fused image. Training has two stages:
# reconstruct each source (auto-encoder + denoiser), then fuse. The lesson of this notebook: **what a
# diffusion model's features contain at different noise levels**, and what it costs (the denoiser alone
# holds almost all of the parameters, §4).
#
# The released code and the paper's text disagree in several places (§9 lists them, quoting the paper).
# `DMNet()` follows the released code where the released inference runs it and the paper where nothing
# was released; `create_model("dmnet", reading="paper")` selects every reading of the paper's text at
# once. §11 runs the paper's ablations (Tables V and VI) at a tiny budget; Table VII (YOLOv5x detection
# on M3FD, Fig. 12) is not reproduced here: no detector and no M3FD pairs ship with the suite.

# %%
from fusionlib import pacing  # the map for a 90-minute class: core path, appendix, measured times

pacing.show_map("05")

# %% tags=["parameters"]
profile = "auto"        # smoke | lab | paper | auto (lab on a GPU, else smoke)
device = "auto"         # auto | cpu | cuda | cuda:1 | mps
data_root = None        # not used: 05 trains on the bundled pairs (the paper's full MSRS-train: call train_dmnet)
seed = 0
out_dir = "../runs/05_dmnet"
epochs = None           # None: the profile's budget; an int total (split 1:2 as the paper) or [stage I, stage II]
model_name = None       # None: the profile's model ("dmnet_tiny" at smoke, "dmnet" otherwise)
weights_dir = None      # None: the repository's weights/ (the shipped networks); another folder for tests

# %% [markdown]
# ## 1 · Setup
#
# Every profile runs every section; smoke shrinks steps, crops **and the network** (next cell).

# %%
import copy
import dataclasses
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from einops import rearrange
from IPython.display import Markdown, display
from matplotlib.ticker import MaxNLocator, NullFormatter

from fusionlib import data, metrics, paper_numbers, profiling, spectral, viz, weights
from fusionlib.atomic import atomic_save
from fusionlib.baselines import average_fusion, max_fusion
from fusionlib.diffusion import NoiseSchedule, q_sample
from fusionlib.laziness import LazinessTracker, summarise
from fusionlib.methods import save_laziness
from fusionlib.models import create_model
from fusionlib.models.dmnet import (CSAB, DIB, DMNET_RECIPES, DTB, PAPER, AffineCoupling, DMNet, DMNetDecoder,
                                    DMNetEncoder, FeatureProjection, parameter_breakdown, stage_epochs, train_dmnet)
from fusionlib.models.sr3 import ResBlock, SR3UNet
from fusionlib.nb import record, setup, show
from fusionlib.probes import capture
from fusionlib.train import make_loader

S = setup(seed=seed, device=device, profile=profile, out_dir=out_dir)
if S.profile == "smoke" and S.device.type == "cpu":
    # the narrow smoke model is thousands of tiny ops: per-op overhead dominates, and on a shared 2-core
    # machine two intra-op threads wait on each other (measured: 0.43 s vs 3.4 s per 64² forward)
    torch.set_num_threads(1)
    print("smoke on CPU: torch threads set to 1")
BUDGETS = {  # crops px, batch, epochs (stage I, II), steps per epoch, eval pairs per set and crop, latency size
    "smoke": dict(model="dmnet_tiny", crop=48, batch=2, epochs=(2, 2), steps=2, walk_crop=48, n_eval=2,
                  eval_crop=(176, 176), latency=64, feat_crop=96, lat_repeats=3),
    "lab": dict(model="dmnet", crop=128, batch=4, epochs=(2, 4), steps=25, walk_crop=96, n_eval=4,
                eval_crop=None, latency=128, feat_crop=256, lat_repeats=5),
    "paper": dict(model="dmnet", crop=128, batch=4, epochs=(15, 30), steps=None, walk_crop=128, n_eval=None,
                  eval_crop=None, latency=128, feat_crop=256, lat_repeats=5),
}
B = dict(BUDGETS[S.profile])
if model_name:
    B["model"] = model_name
recipe = DMNET_RECIPES[S.profile]
E1, E2 = stage_epochs(recipe, B["epochs"] if epochs is None else epochs)
B["epochs"] = (E1, E2)
NARROW = B["model"] != "dmnet"
print("budget:", B)
if NARROW:
    print(f"NOTE: profile {S.profile!r} trains {B['model']!r}: a NARROW denoiser and encoder, not the full "
          "network of the paper. This run's training numbers come from that small model; the sections after "
          "training show the shipped NARROW dmnet_narrow when weights/ has it (§6 says which); parameter counts "
          "and FLOPs are given for the full configuration (meta device).")
RESULTS: dict = {"budget": {k: (list(v) if isinstance(v, tuple) else v) for k, v in B.items()},
                 "model_trained": B["model"], "narrow_denoiser": NARROW}
T0 = time.perf_counter()

# %% [markdown]
# ## 2 · Data: an MSRS night pair
#
# Everything below runs on real bundled pairs. The night scene 00004N has two pedestrians that are
# bright in the infrared image and nearly invisible in the visible one.

# %%
msrs = data.bundled("msrs", "test")
night = msrs.by_name("00004N")
ir_n, vi_n = night["ir"][None], night["vi"][None]        # (1, 1, 480, 640)
c = B["walk_crop"]
y0, x0 = 232, 512                                         # the walking pedestrian
PED = (275, 532)                                          # its centre (row, col), for the larger crops below
ir = ir_n[..., y0:y0 + c, x0:x0 + c]
vi = vi_n[..., y0:y0 + c, x0:x0 + c]
fig = viz.show_images({"IR 00004N": ir_n, "VI 00004N (Y)": vi_n, f"IR crop {c}²": ir, f"VI crop {c}²": vi}, ncols=4)
viz.save_figure(fig, out_dir, "pair")
fig


# %%
def _norm(t):
    t = t.detach().float()
    t = t - t.min()
    return t / t.max().clamp(min=1e-8)


# %% [markdown]
# ## 3 · Building DMNet step by step
#
# ```
# x -> conv3x3 1->64 -> DTB -> DIB -> f_x                     (one encoder for IR and VI)
# x0 = [2 vi - 1, 2 ir - 1];  for t in 5, 50, 100:  x_t = γ x0 + √(1-γ²) ε
#      15 decoder features of SR3UNet(x_t, γ) -> per level ConvTranspose -> IN -> GELU -> CSAB, Σ / 75
# av = mean over t;   fused feature = CSAB(f_vi) + CSAB(f_ir) + av
# fused = sigmoid(convs(RestormerBlock(fused feature)) + vi)
# ```
#
# ### 3.1 · Embedding and the dense transformer block (DTB)
#
# The released DTB is **five parallel branches** of Restormer blocks with depths 1, 2, 3, 4, 5 (15
# blocks), all fed from the same embedding and averaged. The paper's text says something else (§III-B):
# "the DTB contains five transformer layers and the DIB has three INN layers where each layer's output
# cascade is used as the input to the next layer ... [α and β] are the tuning parameters that we
# initially set to 1/5 and 1/3". Our reading of that sentence, `dtb_mode="dense"`: five single
# Restormer blocks in cascade, output α·(s₁ + … + s₅) with α = 1/5. The default stays the code's,
# because the released inference runs it; `reading="paper"` selects the dense one. Built here at the
# full width (C = 64, 8 heads).

# %%
show(DTB)

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(seed)
enc = DMNetEncoder().eval()                               # full width: C = 64
with torch.no_grad():
    emb = enc.embed(vi)                                   # (1, 64, c, c)
    branch_out = [branch(emb) for branch in enc.dtb.branches]   # five groups of depth 1..5, same input
    dtb_walk = torch.stack(branch_out).mean(0)            # the "1/5"
    assert torch.allclose(dtb_walk, enc.dtb(emb), atol=1e-6)
    dib_out = enc.dib(dtb_walk)
    assert torch.allclose(dib_out, enc(vi), atol=1e-6)
print("embedding", tuple(emb.shape), "| branch depths", [len(b) for b in enc.dtb.branches],
      "| DTB out", tuple(dtb_walk.shape), "| DIB out", tuple(dib_out.shape))
fig = viz.show_images({"VI crop": vi, **{f"branch {k + 1} (depth {k + 1})": _norm(b[0].mean(0))
                                         for k, b in enumerate(branch_out)},
                       "DTB = mean": _norm(dtb_walk[0].mean(0)), "DIB": _norm(dib_out[0].mean(0))},
                      ncols=8, panel_size=2.0)
fig.suptitle(f"DTB walk on the VI crop — untrained full-width encoder (C = 64, seed {seed})", fontsize="small")
viz.save_figure(fig, out_dir, "dtb_branches")
torch.manual_seed(seed)
dense_dtb = DTB(dim=64, num_heads=8, mode="dense").eval()
with torch.no_grad():
    states = dense_dtb.forward_branches(emb)
    assert torch.allclose(dense_dtb(emb), dense_dtb.alpha * torch.stack(states).sum(0), atol=1e-6)
dtb_blocks = {m: sum(len(b) for b in DTB(dim=8, num_heads=2, mode=m).branches) for m in DTB.MODES}
dtb_params = {m: sum(p.numel() for p in DTB(dim=64, num_heads=8, mode=m).parameters()) for m in DTB.MODES}
print("Restormer blocks per DTB mode:", dtb_blocks, "| parameters at C = 64:", dtb_params,
      f"| dense α = {dense_dtb.alpha}")
RESULTS["dtb_modes"] = {"blocks": dtb_blocks, "params_c64": dtb_params}
fig

# %% [markdown]
# ### 3.2 · The dense invertible block (DIB): affine coupling
#
# One layer (CDDFuse's INN node): a 1×1 "shuffle" conv `W x + b`, split into halves `z1, z2` of 32
# channels, then
#
# $$z_2' = z_2 + \phi(z_1), \qquad z_1' = z_1 \odot \exp(\rho(z_2')) + \eta(z_2')$$
#
# with φ, ρ, η small inverted-residual CNNs. Every step can be undone exactly (the exercise below asks
# how; the walk measures it). The released DIB applies the 3-layer stack **three times with the
# same weights and averages** the outputs (not invertible). The paper's text (the sentence quoted in
# §3.1) gives three INN layers in cascade and β = 1/3: our reading, `dib_mode="dense"`, outputs
# β·(s₁ + s₂ + s₃). That weighted sum of the states is **not** invertible, although the paper calls the
# DIB "lossless" because "the input and output features generate each other"; the cascade s₃ = g(x)
# itself is exactly invertible (`DIB.inverse_stack`, measured below). `dib_mode="cascade"` (the stack
# once, no β) is the invertible block.

# %%
show(AffineCoupling)

# %% tags=["reveals:MyAffineCoupling"]
layer = enc.dib.layers[0]
with torch.no_grad():
    z1, z2 = layer.shuffle(dtb_walk).chunk(2, dim=1)      # (1, 32, c, c) each
    z2n = z2 + layer.phi(z1)                              # additive coupling
    scale = torch.exp(layer.rho(z2n))                     # the affine coupling's scale
    z1n = z1 * scale + layer.eta(z2n)
    y = torch.cat([z1n, z2n], dim=1)
    assert torch.allclose(y, layer(dtb_walk), atol=1e-6), "the walk must equal AffineCoupling.forward"
    back = layer.inverse(y)
    inv_err32 = float((back - dtb_walk).abs().max())
    l64 = AffineCoupling(64).double()
    l64.load_state_dict(layer.state_dict())
    inv_err64 = float((l64.inverse(l64(dtb_walk.double())) - dtb_walk.double()).abs().max())
    cas = DIB(64, mode="cascade").double()
    cas.layers.load_state_dict(enc.dib.layers.state_dict())
    inv_err_dib = float((cas.inverse(cas(dtb_walk.double())) - dtb_walk.double()).abs().max())
    dense_dib = DIB(64, mode="dense").double()                  # the paper's reading: β Σ of the 3 states
    dense_dib.layers.load_state_dict(enc.dib.layers.state_dict())
    st = dense_dib.states(dtb_walk.double())
    inv_err_states = float((dense_dib.inverse_stack(st[-1]) - dtb_walk.double()).abs().max())
    inv_err_beta = float((dense_dib.inverse_stack(dense_dib(dtb_walk.double())) - dtb_walk.double()).abs().max())
    cond = float(torch.linalg.cond(layer.shuffle.weight[:, :, 0, 0].double()))
print(f"max |inverse(forward(x)) - x| on real DTB features: float32 {inv_err32:.2e}, float64 {inv_err64:.2e}; "
      f"3-layer cascade (float64) {inv_err_dib:.2e}; cond(W) of the shuffle conv = {cond:.1f}")
print(f"scale exp(ρ) range: {float(scale.min()):.3f} .. {float(scale.max()):.3f}")
print(f"paper's dense DIB (float64): inverting the cascade state s3 -> x: {inv_err_states:.2e}; "
      f"treating the β-sum output as if it were s3: {inv_err_beta:.2e} (β breaks invertibility)")
assert inv_err32 < 1e-4 and inv_err64 < 1e-9 and inv_err_dib < 1e-9 and inv_err_states < 1e-9
assert inv_err_beta > 1e-3
RESULTS["invertibility"] = {"coupling_float32": inv_err32, "coupling_float64": inv_err64,
                            "dib_cascade_float64": inv_err_dib, "dib_dense_state_float64": inv_err_states,
                            "dib_dense_beta_sum_as_state": inv_err_beta, "shuffle_cond": cond}
fig = viz.show_images({"z1": _norm(z1[0].mean(0)), "z2": _norm(z2[0].mean(0)), "z2' = z2 + φ(z1)": _norm(z2n[0].mean(0)),
                       "exp(ρ(z2'))": _norm(scale[0].mean(0)), "z1'": _norm(z1n[0].mean(0)),
                       "|inverse − x| ×1e5": (back - dtb_walk).abs()[0].mean(0) * 1e5}, ncols=6, panel_size=2.2)
fig.suptitle(f"one affine coupling, forward and inverse — untrained full-width DIB (seed {seed})", fontsize="small")
viz.save_figure(fig, out_dir, "coupling_walk")
fig

# %% [markdown]
# ### Exercise · the invertible coupling, both ways (Eq. 2, the DIB)
#
# The paper builds the DIB of Eq. 2 from "affine coupling layers [22]" and calls it lossless: "the DIB
# enables the input and output features generate each other". It prints no coupling equation; the two
# below are CDDFuse's INN node, as written in the cell above (our source, not the paper). Generating the
# input back from the output is the point, so you write both directions in `MyAffineCoupling`:
#
# - `forward(x)`: the 1×1 shuffle conv, the split into halves z₁, z₂ and the two coupling steps
#   $z_2' = z_2 + \phi(z_1)$, $z_1' = z_1 \odot \exp(\rho(z_2')) + \eta(z_2')$; the output is $[z_1', z_2']$.
# - `inverse(y)`: given $[z_1', z_2']$, recover x. Nothing in `__init__` helps here: work out from the two
#   equations which half you can recover first, and how to undo a 1×1 convolution.
#
# The check compares both methods with the reference on the same weights; then the notebook builds the
# three-layer DIB cascade with **your** coupling and inverts the real DTB features with it.

# %% [markdown] tags=["hint"]
# <details><summary>Hint 1 (forward)</summary>
#
# The layers are `self.shuffle`, `self.phi`, `self.rho`, `self.eta`; a tensor splits into two halves along
# the channels with `.chunk(2, dim=1)`. The order matters: ρ and η read the *updated* z₂.
# </details>
#
# <details><summary>Hint 2 (inverse)</summary>
#
# z₂' is stored unchanged in the output, so ρ(z₂') and η(z₂') can be recomputed: solve the second
# equation for z₁ first, then the first one for z₂. A 1×1 conv is a matrix W (`shuffle.weight[:, :, 0, 0]`,
# out × in) applied at every pixel plus the bias b: subtract b and apply W⁻¹ per pixel (`torch.einsum`),
# in float64 for accuracy, returning `y`'s dtype.
# </details>

# %% tags=["exercise"]
from fusionlib.models.dmnet import AffineCoupling as MyAffineCoupling  # exercise: forward, inverse

# %% tags=["check"]
import torch
from fusionlib.labs import check_exercise
from fusionlib.models.dmnet import AffineCoupling
MyAffineCoupling = check_exercise(
    MyAffineCoupling, AffineCoupling, init=dict(channels=8), inputs=lambda g: (torch.randn(2, 8, 10, 10, generator=g),),
    hint="update z2 first (it needs only z1), then z1 from the updated z2")
MyAffineCoupling = check_exercise(
    MyAffineCoupling, AffineCoupling, init=dict(channels=8), method="inverse",
    inputs=lambda g: (torch.randn(2, 8, 10, 10, generator=g),),
    hint="undo the steps in reverse order: z1 from z1' and z2', then z2, then the 1x1 conv")

# %% [markdown]
# **With your coupling.** The DIB cascade (three couplings, `dib_mode="cascade"`) of the untrained
# encoder, each coupling running the code the check just returned (yours if it passed), in float64:
# forward on the real DTB features of the walk above, then `inverse`. The error image is the "lossless"
# claim measured pixel by pixel. The inverse, step by step: $z_1 = (z_1' - \eta(z_2')) \odot \exp(-\rho(z_2'))$,
# $z_2 = z_2' - \phi(z_1)$, $x = W^{-1}([z_1, z_2] - b)$.

# %%
from fusionlib.labs import swap_modules, whose
yours_dib = swap_modules(cas, AffineCoupling, MyAffineCoupling)      # cas: the float64 cascade of the walk
with torch.no_grad():
    g_x = yours_dib(dtb_walk.double())
    back_yours = yours_dib.inverse(g_x)
err_yours = (back_yours - dtb_walk.double()).abs()
print(f"{whose(MyAffineCoupling, 'coupling')}: max |DIB⁻¹(DIB(x)) − x| = {float(err_yours.max()):.2e} (float64)")
assert float(err_yours.max()) < 1e-9, "the cascade built from the returned coupling must invert the features"
fig = viz.show_images({"x: DTB features (mean)": _norm(dtb_walk[0].mean(0)),
                       "DIB(x) (mean)": _norm(g_x[0].mean(0).float()),
                       "DIB⁻¹(DIB(x)) (mean)": _norm(back_yours[0].mean(0).float()),
                       f"|DIB⁻¹(DIB(x)) − x| / {float(err_yours.max()):.1e}":
                           (err_yours[0].mean(0) / err_yours.max().clamp(min=1e-30)).float()}, ncols=4, panel_size=2.6)
fig.suptitle(f"{whose(MyAffineCoupling, 'affine coupling')} in the 3-layer DIB cascade: forward, then inverse",
             fontsize="small")
viz.save_figure(fig, out_dir, "coupling_yours")
fig

# %% [markdown]
# ### 3.3 · CSAB: channel and spatial attention with max and "mix" pooling
#
# The released `CBAM` replaces CBAM's average pooling by a *mix* `½ avg + ½ max`:
# $M_c = \sigma(\mathrm{MLP}(\max) + \mathrm{MLP}(\mathrm{mix}))$ per channel, then
# $M_s = \sigma(\mathrm{conv}_{7\times7}[\max_c, \mathrm{mix}_c])$ per pixel. 2,147 parameters at C = 64.

# %%
show(CSAB)

# %%
torch.manual_seed(seed)
csab = CSAB(64).eval()
with torch.no_grad():
    f = dib_out
    mx = f.amax(dim=(2, 3), keepdim=True)                   # (1, 64, 1, 1)
    mix = 0.5 * f.mean(dim=(2, 3), keepdim=True) + 0.5 * mx
    m_c = torch.sigmoid(csab.mlp(mx) + csab.mlp(mix))       # channel weights
    fc = f * m_c
    mx_c = fc.amax(dim=1, keepdim=True)                     # (1, 1, c, c)
    mix_c = 0.5 * fc.mean(dim=1, keepdim=True) + 0.5 * mx_c
    m_s = torch.sigmoid(csab.spatial(torch.cat([mx_c, mix_c], dim=1)))   # spatial weights
    csab_walk = fc * m_s
    assert torch.allclose(csab_walk, csab(f), atol=1e-6), "the walk must equal CSAB.forward"
print(f"channel weights {float(m_c.min()):.3f} .. {float(m_c.max()):.3f}; spatial weights "
      f"{float(m_s.min()):.3f} .. {float(m_s.max()):.3f} (untrained: near 0.5)")
fig = viz.show_images({"f (mean)": _norm(f[0].mean(0)), "max_c": _norm(mx_c[0, 0]), "mix_c": _norm(mix_c[0, 0]),
                       "M_s": m_s[0, 0], "CSAB(f) (mean)": _norm(csab_walk[0].mean(0))}, ncols=5, panel_size=2.4)
fig.suptitle(f"CSAB walk — untrained CSAB(64) on the untrained DIB features (seed {seed})", fontsize="small")
fig


# %% [markdown]
# ### 3.4 · The denoiser: SR3's U-Net
#
# Inner width 128, multipliers 1-2-4-8-8 (128 … 1024 channels), two residual blocks per level
# (GroupNorm(32) + Swish, dropout 0.2), self-attention at the 16-pixel level of a 128-pixel image
# (2 down, 1 middle, 3 up = 6 attention blocks), and the noise level γ = √ᾱ encoded with sines
# and an MLP and **added** to every residual block. The up path has 3 blocks per level: 15 feature
# maps, the ones DMNet reads.

# %%
show(ResBlock)

# %%
# NBVAL_CHECK_OUTPUT
with torch.device("meta"):
    unet_full = SR3UNet()
lv = {lvl: {"level": lvl, "resolution (128² input)": 128 // 2 ** lvl, "channels": ch, "up-path features": 0,
            "attention (up)": 0, "projection ConvTranspose k = stride": 2 ** lvl}
      for lvl, ch in enumerate(unet_full.level_channels)}
blocks_up = [layer for layer in unet_full.ups if hasattr(layer, "res_block")]
for lvl, layer in zip(unet_full.up_levels, blocks_up):
    lv[lvl]["up-path features"] += 1
    lv[lvl]["attention (up)"] += int(layer.attn is not None)
n_unet = sum(p.numel() for p in unet_full.parameters())
print(f"SR3 U-Net (full, meta device): {n_unet:,} parameters (released config: {PAPER['params_unet_code']:,}); "
      f"{sum(type(m).__name__ == 'SelfAttention' for m in unet_full.modules())} attention blocks")
assert n_unet == PAPER["params_unet_code"]
pd.DataFrame(list(lv.values())).set_index("level")

# %% [markdown]
# ### 3.5 · Feature extraction and the whole forward, walked
#
# On the crop, through the **profile's model** (at smoke the narrow `dmnet_tiny`), in `eval()` mode:
# the noise comes from a generator seeded with `config.feature_seed`, so the walk can reproduce it.
# For each t: sample γ in (√ᾱ_{t−1}, √ᾱ_t), form x_t, run the U-Net up to its last decoder block,
# project every one of the 15 features to C channels at full resolution, sum, scale by 1/75; then
# average over t and add the CSAB-refined encoder features; decode with the visible image as residual.

# %%
torch.manual_seed(seed)
model = create_model(B["model"]).eval()
cfg = model.config
print(f"{B['model']}: C = {cfg.dim}, denoiser inner {cfg.denoiser_inner} x {cfg.denoiser_mults}"
      + ("  <- NARROW (smoke)" if NARROW else ""))
with torch.no_grad():
    g = torch.Generator().manual_seed(cfg.feature_seed)
    x0d = model.pad_for_denoiser(model.diffusion_input(ir, vi))        # (1, 2, c', c') in [-1, 1]
    per_t, xts, feats_t = {}, {}, {}
    for t in cfg.timesteps:
        xt, gamma = model.noisy_input(x0d, t, generator=g)
        feats = model.denoiser.decoder_features(xt, gamma)             # 15 x (level, (1, c_l, c/2^l, c/2^l))
        proj = sum(model.features.levels[lvl](fm) for lvl, fm in feats) * model.features.scale
        per_t[t], xts[t], feats_t[t] = proj[..., :c, :c], xt, feats
    av = torch.stack(list(per_t.values())).mean(0)
    f_ir, f_vi = model.encoder(ir), model.encoder(vi)
    fused_feature = model.csab(f_vi) + model.csab(f_ir) + av
    walk = model.decoder(vi, fused_feature)
    direct = model(ir, vi)
print("15 features per t:", [(lvl, tuple(fm.shape[1:])) for lvl, fm in feats_t[cfg.timesteps[0]]][:4], "...")
walk_diff = float((walk - direct).abs().max())
print(f"max |walk - model(ir, vi)| = {walk_diff:.2e}")
torch.testing.assert_close(walk, direct, atol=1e-5, rtol=1e-5)
RESULTS["walk_max_abs_diff"] = walk_diff
fig = viz.show_images({**{f"x_t VI, t={t}": (xts[t][0, 0] + 1) / 2 for t in cfg.timesteps},
                       **{f"a_t (mean), t={t}": _norm(per_t[t][0].mean(0)) for t in cfg.timesteps},
                       "av": _norm(av[0].mean(0)), "fused (untrained)": walk}, ncols=8, panel_size=2.0)
fig.suptitle(f"the whole forward, walked — untrained {B['model']} (seed {seed})", fontsize="small")
fig

# %% [markdown]
# ## 4 · Parameters: the full configuration beside Table VIII, counted on the meta device
#
# Table VIII of the paper gives DMNet's parameter count (and DANet's, the same authors' previous model);
# the cell reads both from `paper_numbers.paper_table("dmnet", "TABLE VIII")` and sets our counts
# beside them, part by part, for the code reading (our default) and the paper reading. What the numbers
# show (each printed by the cell): the released SR3 U-Net alone already has more parameters than the
# paper's whole DMNet, and equals DANet's count to the printed precision; so the paper's figure cannot include that U-Net in
# full, and no configuration of the released code reproduces it (`notebooks/released_code.md` §DMNet). Our code
# reading adds the feature projection that the released inference instantiates at random on every call
# and that we **learn** (five ConvTranspose layers, one per level, each kernel as large as its stride);
# the paper reading replaces it with one 1×1 conv and has five transformer layers instead of fifteen.

# %%
parts = parameter_breakdown()
paper_rows = {"encoder": PAPER["params_encoder_code"], "csab": PAPER["params_csab_code"],
              "denoiser": PAPER["params_unet_code"], "features": None,
              "decoder": PAPER["params_decoder_used_code"], "total": None}
ptab = pd.DataFrame({"ours (meta)": parts, "released code": paper_rows})
ptab["ours (M)"] = ptab["ours (meta)"] / 1e6
print(ptab.to_string())
print(f"total {parts['total'] / 1e6:.3f} M vs paper {PAPER['params_M']} M; released persistent modules "
      f"{PAPER['params_persistent_code_M']} M (decoder incl. 641,776 unused), + per-call upSkip "
      f"{PAPER['params_with_upskip_code_M']} M")
assert parts["denoiser"] == PAPER["params_unet_code"] and parts["encoder"] == PAPER["params_encoder_code"]
t8 = paper_numbers.paper_table("dmnet", "TABLE VIII")
own8 = t8.attrs["own"][0]
dan8 = next(r for r in t8.index if r.startswith("DAN"))
parts_paper = parameter_breakdown(reading="paper")
t8_tab = pd.DataFrame({
    f"paper Table VIII: {own8} (M)": {"total": float(t8.loc[own8, "Params(M)"])},
    f"paper Table VIII: {dan8} (M)": {"total": float(t8.loc[dan8, "Params(M)"])},
    "ours, code reading (M)": {k: v / 1e6 for k, v in parts.items()},
    "ours, paper reading (M)": {k: v / 1e6 for k, v in parts_paper.items()},
})
print(f"source: {t8.attrs['source']}")
gap_unet = parts["denoiser"] / 1e6 - float(t8.loc[own8, "Params(M)"])
print(f"U-Net alone minus the paper's DMNet total: {gap_unet:+.3f} M; U-Net minus the paper's DANet: "
      f"{parts['denoiser'] / 1e6 - float(t8.loc[dan8, 'Params(M)']):+.4f} M; our totals minus the paper's: "
      f"code reading {parts['total'] / 1e6 - float(t8.loc[own8, 'Params(M)']):+.3f} M, paper reading "
      f"{parts_paper['total'] / 1e6 - float(t8.loc[own8, 'Params(M)']):+.3f} M")
RESULTS["table_viii"] = {"paper_M": float(t8.loc[own8, "Params(M)"]), "paper_danet_M": float(t8.loc[dan8, "Params(M)"]),
                         "ours_code_reading": parts, "ours_paper_reading": parts_paper,
                         "paper_test_time_s": float(t8.loc[own8, "Test Time(s)"])}
display(t8_tab.round(3))
n_model = profiling.count_parameters(model)
print(f"the model trained in this run ({B['model']}): {n_model:,} parameters")
RESULTS["params"] = {"full": parts, "paper_M": PAPER["params_M"], "code_unet": PAPER["params_unet_code"],
                     "code_persistent_M": PAPER["params_persistent_code_M"],
                     "code_with_upskip_M": PAPER["params_with_upskip_code_M"], "trained_model": n_model}

# %% [markdown]
# ## 5 · The forward process on a real pair
#
# Linear β from 1e-6 to 1e-2 over 2,000 steps. DMNet's three steps are all **early**: the cell prints the
# signal-to-noise ratio at t = 5, 50 and 100, and the step where half the signal power (γ² = 1/2) is gone.
# The pair is shown in the diffusion's [−1, 1] scale mapped back to [0, 1].

# %%
sched = NoiseSchedule()
ts_show = [1, 5, 50, 100, 300, 700, 1200, 2000]
pair = torch.cat([vi_n, ir_n], dim=1)[..., 160:416, 320:576] * 2 - 1      # (1, 2, 256, 256)
gq = torch.Generator().manual_seed(seed)
eps = torch.randn(pair.shape, generator=gq)
x_t = {t: q_sample(pair, sched.gamma(t), eps) for t in ts_show}
sched_tab = pd.DataFrame([{"t": t, "γ = √ᾱ_t": sched.gamma(t), "γ interval (√ᾱ_{t−1}, √ᾱ_t)": sched.gamma_range(t),
                           "SNR (dB)": sched.snr_db(t)} for t in ts_show]).set_index("t")
RESULTS["schedule"] = {str(t): {"gamma": sched.gamma(t), "snr_db": sched.snr_db(t)} for t in (5, 50, 100)}
t_half = next(t for t in range(1, sched.num_steps + 1) if sched.gamma(t) ** 2 < 0.5)
RESULTS["schedule"]["half_signal_power_t"] = t_half
display(Markdown(f"SNR at t = 5, 50, 100: **{sched.snr_db(5):.1f}**, **{sched.snr_db(50):.1f}** and "
                 f"**{sched.snr_db(100):.1f} dB**; half the signal power is gone only at t = **{t_half}** of "
                 f"{sched.num_steps:,}."))
fig = viz.show_images({f"VI t={t}": ((x_t[t][0, 0] + 1) / 2).clamp(0, 1) for t in ts_show}
                      | {f"IR t={t}": ((x_t[t][0, 1] + 1) / 2).clamp(0, 1) for t in ts_show}, ncols=8, panel_size=1.9)
viz.save_figure(fig, out_dir, "forward_process")
sched_tab

# %%
fig

# %% [markdown]
# Which frequencies survive? The radial power spectrum of x_t (visible channel): white noise adds a
# flat floor `(1 − γ²)`; where the image's spectrum (falling like 1/f²) drops below it, that band is
# lost. At t = 5 almost everything survives; at t = 100 the top octave is under the floor.

# %%
fq, psd_clean = spectral.radial_psd(pair[0, 0].double())
_, psd_noise = spectral.radial_psd(eps[0, 0].double())      # unit white noise: a flat floor
hf = fq > 0.25
rows = []
psds = {"clean": (fq, psd_clean)}
for t in ts_show:
    _, p = spectral.radial_psd(x_t[t][0, 0].double())
    psds[f"t={t}"] = (fq, p)
    g2 = sched.gamma(t) ** 2
    rows.append({"t": t, "noise power 1−γ²": 1 - g2,
                 "fraction of frequency bins where signal > noise": float((g2 * psd_clean > (1 - g2) * psd_noise).double().mean()),
                 "high-freq power / clean": float(p[hf].sum() / psd_clean[hf].sum())})
fig = viz.plot_radial_psd({k: (v[0][1:], v[1][1:]) for k, v in psds.items()           # bin 0: the mean, removed
                           if k in ("clean", "t=5", "t=50", "t=100", "t=700")},
                          title="radial PSD of x_t (VI channel, 256² crop; no network)")
viz.save_figure(fig, out_dir, "forward_psd")
RESULTS["forward_hf_power_ratio"] = {str(r["t"]): r["high-freq power / clean"] for r in rows}
pd.DataFrame(rows).set_index("t").round(4)

# %%
fig

# %% [markdown]
# An explorer over the diffusion step (a slider in JupyterLab, a static grid under papermill):

# %%
def _frame_t(*, ax, t):
    xt = q_sample(pair, sched.gamma(t), eps)
    ax.imshow(((xt[0, 0] + 1) / 2).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"t={t}, SNR {sched.snr_db(t):.1f} dB", fontsize="small")


viz.explorer(_frame_t, t=[1, 5, 20, 50, 100, 200, 400, 700, 1000, 1500, 2000], max_panels=8, panel_size=2.2)

# %% [markdown]
# ## 6 · Two-stage training, with laziness tracking across both stages
#
# No training code was released, so the paper is the spec here (`DMNET_RECIPES`, `fusionlib.losses.dmnet`).
# The loss **forms** are the paper's (Eqs. 13–19); the weights λ1, μ, λ2 are not published and ours are
# marked:
#
# - **Stage I** (paper: 15 epochs): reconstruct each source through encoder, **CSAB** and decoder,
#   Î = DE(A(D(B(I)))) (Eq. 11: "finally the reconstructed important features ... are obtained by the
#   CSAB", §III-E). Eq. 13 `L_AE = L_vis + λ1 L_ir` with Eqs. 14–16 `L = ‖Î − I‖₂² + μ (1 − SSIM)`
#   (ours: λ1 = μ = 1), plus Eq. 17's noise loss `L_dm` that trains the denoiser in the same stage
#   (SR3's objective, per-element mean).
# - **Stage II** (paper: 30 epochs): fuse, Eq. 18 `L = L_int + L_dm + λ2 L_grad` with
#   `L_int = ‖F − max(ir, vi)‖₁ / HW` and Eq. 19 `L_grad` on Sobel gradients (ours: λ2 = 10, CDDFuse's).
#
# One Adam (1e-4) runs through both stages in one `fit` call, so the `LazinessTracker` sees one
# continuous run; the dashed line marks the stage boundary. Only the feature projection is outside
# stage I's loss (its change there is exactly 0, left out of the log-scale plot, so its curve starts at
# stage II). CDDFuse's stage I without CSAB (`reconstruct_csab=False`, this notebook's earlier default)
# would leave CSAB untrained until stage II; that is not the paper's Eq. 11.

# %%
train_set = data.bundled_concat(*[d.split("/")[0] for d in (recipe.datasets or ("msrs/train",))], crop=B["crop"],
                                mode="train", seed=seed, cache=True)
loader = make_loader(train_set, B["batch"], shuffle=True, seed=seed, drop_last=True, collate_fn=data.collate_pairs)
torch.manual_seed(seed)
net = create_model(B["model"])
tracker = LazinessTracker()
t_train = time.perf_counter()
hist = train_dmnet(net, loader, recipe=recipe, device=S.device, seed=seed, out_dir=str(S.train_dir),
                   epochs=(E1, E2), max_steps_per_epoch=B["steps"], callbacks=[tracker])
t_train = time.perf_counter() - t_train
net = net.eval()                                          # stays on S.device for the sections below
atomic_save({k: v.cpu() for k, v in net.state_dict().items()}, Path(out_dir) / "weights.pt")  # read by fuse and 06
dev = S.device
save_laziness(tracker.records, out_dir)
n_steps = int(sum(e.get("steps", 0) for e in hist.epochs))
boundary = E1 + 0.5
print(f"trained {B['model']} {E1} + {E2} epochs, {n_steps} steps of {B['batch']}x{B['crop']}² crops in "
      f"{t_train:.1f} s on {S.device}" + ("  (NARROW smoke model)" if NARROW else ""))
RESULTS["training"] = {"model": B["model"], "stage_epochs": [E1, E2], "steps": n_steps, "seconds": t_train,
                       "epochs": hist.epochs}
hist.to_frame().round(4)

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
df = hist.to_frame()
for ax, keys, title in ((axes[0], ["loss"], "total loss"), (axes[1], ["rec_ir", "rec_vi", "int", "grad"], "stage terms"),
                        (axes[2], ["diff"], "noise loss (both stages)")):
    for k in keys:
        if k in df:
            ax.plot(df["epoch"], df[k], marker="o", label=k)
    ax.axvline(boundary, ls="--", color="0.35")
    ax.text(boundary, 0.98, " stage II", transform=ax.get_xaxis_transform(), va="top", fontsize="small")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.legend(frameon=False, fontsize="small")
RUN_LABEL = f"this run ({B['model']}, {S.profile}, {n_steps} steps)"
fig.suptitle(f"DMNet training history — {RUN_LABEL}")
fig.tight_layout()
viz.save_figure(fig, out_dir, "history")
plt.close(fig)
fig

# %%
moved = [r for r in tracker.records if r["delta"] > 0]   # the projection does not move in stage I
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
viz.plot_laziness(moved, relative=False, logy=True, ax=axes[0], title="absolute ‖ΔW‖_F per epoch",
                  stage_boundaries={"stage II": boundary}, legend=False)
viz.plot_laziness(moved, relative=True, logy=True, ax=axes[1], title="relative ‖ΔW‖_F / ‖W‖_F",
                  stage_boundaries={"stage II": boundary})
axes[1].legend(title="block", fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.suptitle(f"DMNet weight change per epoch, both stages — {RUN_LABEL}")
fig.tight_layout()
viz.save_figure(fig, out_dir, "laziness")
plt.close(fig)
lazy_df = tracker.to_frame()
lazy_df["stage"] = np.where(lazy_df["epoch"] <= E1, "I", "II")
lazy_tab = lazy_df.pivot_table(index="block", columns="stage", values="relative", aggfunc="mean")
RESULTS["laziness_mean_relative_by_stage"] = {b: {s: (float(v) if np.isfinite(v) else None) for s, v in row.items()}
                                              for b, row in lazy_tab.iterrows()}
RESULTS["laziness_fraction_above_1e-3"] = summarise(tracker.records, threshold=1e-3)
fig

# %%
print(f"mean relative update per stage — {RUN_LABEL}")
lazy_tab

# %% [markdown]
# ### Which network the rest of the notebook shows
#
# The sections above trained DMNet at this profile's budget: at `smoke` the tiny `dmnet_tiny` for a few CPU
# steps, enough to show that both stages, the laziness tracking and the checkpoints work, not enough to learn.
# So from here on the sections that look at what a trained DMNet does (its diffusion features, CSAB, attention,
# the released-style inference, the metrics and fused images) use `fusionlib.weights.network_for`: at `lab` and
# `paper` this run's own network; at `smoke` the network shipped in `weights/dmnet.pt` when the repository has it.
# That file is a **narrow** configuration of the same architecture, `dmnet_narrow` (fewer channels and a small
# denoiser, every module kept), trained by `train_dmnet`, the function called above, at `DMNET_RECIPES["cpu"]` on
# a CPU (`python -m fusionlib.weights train`; its record in `weights/MANIFEST.json` is printed below): the full
# network (§4 counts it) does not train on two CPU cores. The sections that depend on the full configuration
# (parameter counts, FLOPs) keep it; every figure and table below names the network it shows.

# %%
WEIGHTS_DIR = weights_dir or weights.WEIGHTS_DIR
PICKED = weights.pick_network("dmnet", net, S.profile, own_short=RUN_LABEL, weights_dir=WEIGHTS_DIR,
                              where="the sections below")
NET, NET_LABEL, NET_SHORT, SHIPPED, rec = PICKED.model, PICKED.label, PICKED.short, PICKED.shipped, PICKED.record
if SHIPPED:
    display(Markdown(f"This run trained {B['model']} for {n_steps} steps; the shipped {rec['config']} "
                     f"{rec['steps']:,} steps, {rec['steps'] / max(n_steps, 1):.3g}× as many, with "
                     f"{rec['parameters'] / max(profiling.count_parameters(net), 1):.1f}× the parameters of this run's "
                     f"model and {rec['parameters'] / parts['total']:.2%} of the full configuration's."))
RESULTS["evaluated_network"] = NET_LABEL

# %% [markdown]
# ## 7 · What the denoiser's features contain at t = 5, 50, 100
#
# The diffusion features of the network chosen above (the titles say which) on a larger crop of the night
# scene: for each step, x_t, the projected feature `a_t` (channel mean) and the finest-level U-Net feature.
# Their radial power spectra (channel-averaged, normalised to unit total power, so that only their *shape* is
# compared) tell which spatial frequencies each noise level keeps; the second row divides each by the t = 5
# spectrum, which makes the differences between the steps readable. The x_t spectra are exact whatever the
# network; the feature spectra depend on what it learned.

# %%
fc_ = B["feat_crop"]
top_ = min(max(PED[0] - fc_ // 2, 0), ir_n.shape[-2] - fc_)                # a square crop around the pedestrian
left_ = min(max(PED[1] - fc_ // 2, 0), ir_n.shape[-1] - fc_)
irf, vif = ir_n[..., top_:top_ + fc_, left_:left_ + fc_], vi_n[..., top_:top_ + fc_, left_:left_ + fc_]
irf_d, vif_d = irf.to(dev), vif.to(dev)
with torch.no_grad():
    g = torch.Generator().manual_seed(NET.config.feature_seed)
    x0f = NET.pad_for_denoiser(NET.diffusion_input(irf_d, vif_d))
    feat_maps = {}
    for t in NET.config.timesteps:
        xt, gamma = NET.noisy_input(x0f, t, generator=g)
        fl = NET.denoiser.decoder_features(xt, gamma)
        a_t = NET.features(fl)[..., :fc_, :fc_]
        feat_maps[t] = {"x_t": xt[0, 0].cpu(), "a_t": a_t[0].cpu(), "finest": fl[-1][1][0].cpu()}
fig = viz.show_images({**{f"x_t (VI) t={t}": ((v["x_t"] + 1) / 2).clamp(0, 1) for t, v in feat_maps.items()},
                       **{f"a_t mean t={t}": _norm(v["a_t"].mean(0)) for t, v in feat_maps.items()},
                       **{f"finest U-Net feature, t={t}": _norm(v["finest"].mean(0)) for t, v in feat_maps.items()}},
                      ncols=3, panel_size=2.6)
fig.suptitle(f"diffusion features, 00004N crop {fc_}² — {NET_SHORT}", fontsize="small")
viz.save_figure(fig, out_dir, "features_t")
plt.close(fig)
fig

# %%
spec = {}
for t, v in feat_maps.items():
    for key in ("x_t", "a_t", "finest"):
        fr, p = spectral.radial_psd(v[key].double())
        p = p.reshape(-1, p.shape[-1]).mean(0)
        spec[(key, t)] = (fr[1:], (p / p.sum())[1:])        # normalised: the shape; bin 0 (the mean, 0) left out
fig, axes = plt.subplots(2, 3, figsize=(14, 6.6), sharex="col")
t_ref = min(feat_maps)
for j, key in enumerate(("x_t", "a_t", "finest")):
    viz.plot_radial_psd({f"t={t}": spec[(key, t)] for t in feat_maps}, ax=axes[0, j], title=f"normalised radial PSD: {key}")
    axes[0, j].set_xlabel("")
    fr0, p0 = spec[(key, t_ref)]
    keep = (fr0 > 0) & (p0 > 0)
    for t in feat_maps:
        ratio = spec[(key, t)][1][keep] / p0[keep]
        axes[1, j].plot(fr0[keep].numpy(), ratio.numpy(), label=f"t={t}")
    axes[1, j].set_xscale("log")
    axes[1, j].xaxis.set_minor_formatter(NullFormatter())                  # a narrow log range: no crowded labels
    axes[1, j].set_yscale("log")
    axes[1, j].axhline(1.0, color="0.6", lw=0.8)
    axes[1, j].set_xlabel("frequency (cycles/pixel), zero frequency left out")
    axes[1, j].set_title(f"{key}: PSD(t) / PSD(t={t_ref})")
    axes[1, j].legend(frameon=False, fontsize="small")
fig.suptitle(f"feature spectra, 00004N crop {fc_}² — {NET_SHORT}", fontsize="small")
fig.tight_layout()
viz.save_figure(fig, out_dir, "features_psd")
plt.close(fig)
hf_frac = {key: {str(t): float(spec[(key, t)][1][spec[(key, t)][0] > 0.25].sum()) for t in feat_maps}
           for key in ("x_t", "a_t", "finest")}
RESULTS["feature_high_freq_fraction"] = hf_frac
print(f"fraction of spectral power above 0.25 cycles/pixel — {NET_SHORT}:")
print(pd.DataFrame(hf_frac).round(4).to_string())
t_hi = max(feat_maps)
display(Markdown(
    f"From t = {t_ref} to t = {t_hi} the share of power above 0.25 cycles/pixel goes from "
    + "; ".join(f"{hf_frac[k][str(t_ref)]:.3f} to {hf_frac[k][str(t_hi)]:.3f} for {k}" for k in hf_frac)
    + ". The noise raises the top of x_t's spectrum by design; whether the features follow it or filter it "
      "out is what the network learned (a ratio curve near 1 in the second row: the step changes little)."))
fig

# %% [markdown]
# ## 8 · Attention: features before and after CSAB (Fig. 11), and the Restormer channel attention
#
# The encoder features of each modality, their channel mean before CSAB, after CSAB, and the spatial
# gate `M_s` as a heat map over the source (probe on `csab.spatial_gate`), through the network chosen after
# training (the title says which). Each overlay is scaled to its own range: the cell prints the gate's range
# and how much CSAB changes the picture, because an untrained gate sits near 0.5 everywhere and then "before"
# and "after" look the same.

# %%
with torch.no_grad():
    parts_d = NET.fusion_feature(irf_d, vif_d)
caps = {m: capture(NET.csab, parts_d[f"f_{m}"], names=["spatial_gate", "channel_gate"]) for m in ("ir", "vi")}
parts_f = {k: v.cpu() for k, v in parts_d.items()}
fig, axes = plt.subplots(2, 4, figsize=(15, 7))
for r, (m, src) in enumerate((("ir", irf), ("vi", vif))):
    axes[r, 0].imshow(src[0, 0], cmap="gray", vmin=0, vmax=1)
    axes[r, 0].set_title(f"{m.upper()} crop")
    axes[r, 0].set_axis_off()
    viz.overlay_attention(src[0, 0], _norm(parts_f[f"f_{m}"][0].abs().mean(0)), ax=axes[r, 1], title=f"before CSAB: |f_{m}|")
    viz.overlay_attention(src[0, 0], _norm(parts_f[f"a_{m}"][0].abs().mean(0)), ax=axes[r, 2], title=f"after CSAB: |a_{m}|")
    viz.overlay_attention(src[0, 0], caps[m]["spatial_gate"][0, 0], ax=axes[r, 3], title="spatial gate M_s")
fig.suptitle(f"CSAB on the encoder features, 00004N crop {fc_}² — {NET_SHORT}", fontsize="small")
fig.tight_layout()
viz.save_figure(fig, out_dir, "csab_heatmaps")
plt.close(fig)


def _corr_maps(a_, b_):
    a_, b_ = a_.flatten().double() - a_.mean(), b_.flatten().double() - b_.mean()
    return float((a_ @ b_) / (a_.norm() * b_.norm()).clamp(min=1e-12))


RESULTS["csab"] = {m: {"spatial_gate_min": float(caps[m]["spatial_gate"].min()),
                       "spatial_gate_max": float(caps[m]["spatial_gate"].max()),
                       "channel_gate_std": float(caps[m]["channel_gate"].std()),
                       "r_before_after": _corr_maps(parts_f[f"f_{m}"][0].abs().mean(0), parts_f[f"a_{m}"][0].abs().mean(0))}
                   for m in caps}
csab_txt = []
for m, v in RESULTS["csab"].items():
    span = v["spatial_gate_max"] - v["spatial_gate_min"]
    note = ("the after-CSAB map is the before map rescaled, so the two panels look alike: no Fig. 11 effect to "
            "look for here" if v["r_before_after"] > 0.99 else
            "the spatial gate is nearly flat, so what changes the map is the channel weighting, not a spatial "
            "selection" if span < 0.05 else "")
    csab_txt.append(f"{m.upper()}: gate {v['spatial_gate_min']:.3f}–{v['spatial_gate_max']:.3f}, r(before, after) = "
                    f"{v['r_before_after']:.3f}" + (f" — **{note}**" if note else ""))
display(Markdown("CSAB's spatial gate and the correlation of the |feature| maps before and after it: "
                 + "; ".join(csab_txt) + "."))
fig

# %% [markdown]
# Restormer's transposed attention inside the DTB: per head a (C/h × C/h) channel-to-channel map
# (softmax over key channels), global over the image. The deepest branch's blocks, visible crop.

# %%
names = [f"dtb.branches.4.{i}.attn.attend" for i in range(len(NET.encoder.dtb.branches[4]))]
att = capture(NET.encoder, vif_d, names=names)
first = att[names[0]]
print(f"{len(names)} attention maps of shape {tuple(first.shape)} (B, heads, C/h, C/h), visible crop — {NET_SHORT}")
fig = viz.plot_channel_attention(first, ncols=4)
fig.suptitle(f"DTB branch 5, block 1 · VI — {NET_SHORT}", fontsize="small")
viz.save_figure(fig, out_dir, "restormer_channel_attention")
ent = {n.split(".")[2] + "." + n.split(".")[3]: float(-(a.double() * a.double().clamp_min(1e-12).log()).sum(-1).mean())
       for n, a in att.items()}
RESULTS["restormer_attention_row_entropy"] = ent
RESULTS["restormer_attention_uniform_entropy"] = float(np.log(first.shape[-1]))
fig

# %%
viz.attention_explorer({n.split("branches.")[1].replace(".attn.attend", ""): a for n, a in att.items()}, max_panels=8)

# %% [markdown]
# ## 9 · Paper vs released code vs this notebook
#
# The paper column quotes the paper's text (its equations are damaged in our OCR copy, so each is read
# from the prose around its number). "Default" is what `DMNet()` builds: the released code where the
# released inference runs it, the paper where nothing was released (stage I). `reading="paper"` turns on
# every paper reading at once (`PAPER_READING`); the ablation switches are in §10.
#
# | item | paper | released code (`notebooks/released_code.md` §DMNet) | default here | paper's reading here |
# |---|---|---|---|---|
# | DTB | "the DTB contains five transformer layers ... each layer's output cascade is used as the input to the next layer"; α "set to 1/5" (§III-B, Eq. 1) | **5 parallel branches**, depths 1–5 (15 blocks), averaged | code | `dtb_mode="dense"`: 5 single blocks in cascade, α Σ of the 5 outputs (`"serial"`: 15 in series, neither) |
# | DIB | "three INN layers" in cascade; β "set to ... 1/3"; "lossless", "input and output features generate each other" (§III-B, Eq. 2) | the 3-layer INN **applied 3× with shared weights, averaged** | code | `dib_mode="dense"`: β Σ of the 3 states (the β-sum is not invertible; the cascade is) |
# | encoder sharing | not stated | one encoder for IR and VI | same | same |
# | stage I path | Eq. 11: Î = DE(A(Φ^D)); "finally the reconstructed important features ... are obtained by the CSAB" (§III-E) | not released | **paper** (`reconstruct_csab=True`) | same; `False` = CDDFuse's stage I |
# | diffusion input, stage I | "We concatenate the source image in the channel dimension and use the two-channel image as the input" (§III-C) | – (no training code) | [VIS, IR] in [−1, 1] | same |
# | diffusion input, stage II | Eq. 9: Φ^L = L(Conv(C(Φ_I^B, Φ_V^B))), "the input dimensions in the second stage are the same as in the first" | average of [VIS, IR] and five `[conv1×1(v_k), conv1×1(i_k)]`, the conv **new and untrained per image** | [VIS, IR] (ours: what the denoiser is trained on; `"branch_mix"` = the code's, learned) | `diffusion_input="dtb_conv"`: a 1×1 conv 2C→2 of the DTB features (kernel size ours) |
# | γ and noise at t = 5, 50, 100 | "three time steps, namely 5, 50, and 100" (§IV-B) | γ ~ U(√ᾱ_{t−1}, √ᾱ_t), **unseeded** noise | same γ; eval noise seeded (`feature_seed`) | same |
# | features and their fusion | "We use one convolutional layer to fuse the multichannel diffusion features generated by the five stages" (§III-C) | **all 15** decoder ResBlocks, per level ConvTranspose + IN + GELU + CBAM (`upSkip`), Σ / 75, **instantiated inside `forward`: random**, 21.6 M | code's `upSkip`, **learned** | `feature_fusion="conv"`: each stage's last map, resized, concatenated, one 1×1 conv (resizing and kernel ours) |
# | CSAB on the encoder features | Eq. 10: A(Φ_I^D), A(Φ_V^D) | top-level CBAM built at script start, **not in the checkpoint** | learned | same |
# | CSAB on the latent | Eq. 10: A(Φ^L) | none | none (code) | `latent_csab=True` (the same CSAB instance: the paper writes one A(·)) |
# | fusion | Eq. 12: F = DE(A(Φ_I^D) + A(Φ_V^D) + A(Φ^L)) | Decoder(VIS, CBAM(f_V) + CBAM(f_I) + av) | code | Eq. 12 with the switches above |
# | decoder | "a hybrid structure that combines Transformer and CNN modules", the same in both stages (§III-F) | first Restormer block + convs + **VIS residual** + sigmoid; 4 blocks and `reduce_channel` unused | only the used part; residual base = the source (stage I) / VIS (stage II), from CDDFuse and the code, not the paper | same |
# | output | fused image | per-image min-max normalisation, uint8 | sigmoid output, no renormalisation | same |
# | stage I loss | Eq. 13 L_AE = L_vis + λ1 L_ir; Eqs. 14–16 ‖Î − I‖₂² + μ(1 − SSIM); Eq. 17 L_dm | not released | the paper's forms; λ1 = μ = 1 ours | same |
# | stage II loss | Eq. 18 L_total = L_int + L_dm + λ2 L_grad; L_int = (1/HW)‖F − max(I_ir, I_vis)‖₁; Eq. 19 L_grad with "the Sobel gradient operator" | not released | the paper's forms; λ2 = 10 ours (CDDFuse's) | `grad_operator` for Table VI |
# | schedule | "The first and second stages have 15 and 30 epochs", Adam 1e-4, 128 × 128 crops, MSRS-train 1,083 pairs (§IV-A, B) | not released | `DMNET_RECIPES["paper"]`; batch 4 ours (not published); one Adam state across the stage boundary (ours) | same |
# | parameters | 386.358 M (Table VIII) | U-Net 391.05 M; persistent 392.49 M; + upSkip 414.06 M | 413.43 M (all trained) | see §11 |
#
# What the untrained modules do to the released inference: two runs of the released-style procedure
# differ in the random projection (and CSAB) weights and in the noise. The cell below imitates that
# with our model: the same trained encoder, denoiser and decoder, but (a) fresh random projection and
# CSAB weights, (b) new noise (another seed); it measures how much the fused image moves.

# %%
def _released_style(m, seed_proj, seed_noise, x_ir, x_vi):
    m2 = copy.deepcopy(m).eval()                                                 # the same configuration and weights
    torch.manual_seed(seed_proj)
    for mod in list(m2.features.modules()) + list(m2.csab.modules()):
        if hasattr(mod, "reset_parameters") and mod is not m2.features:
            mod.reset_parameters()
    f_i, f_v = m2.encoder(x_ir), m2.encoder(x_vi)
    av_ = m2.diffusion_features(x_ir, x_vi, generator=torch.Generator().manual_seed(seed_noise))
    out = m2.decoder(x_vi, m2.csab(f_v) + m2.csab(f_i) + av_)
    out = (out - out.min()) / (out.max() - out.min()).clamp(min=1e-8)           # the code's min-max step
    return out.cpu()


with torch.no_grad():
    ref_out = NET(irf_d, vif_d).cpu()
    r1 = _released_style(NET, 1, 11, irf_d, vif_d)
    r2 = _released_style(NET, 2, 12, irf_d, vif_d)
    r3 = _released_style(NET, 1, 13, irf_d, vif_d)                              # same random weights, new noise
var = {"two released-style runs (new weights + noise)": float((r1 - r2).abs().mean()),
       "same random weights, new noise": float((r1 - r3).abs().mean()),
       "released-style vs ours (learned; both min-max normalised)": float((r1 - _norm(ref_out)).abs().mean())}
RESULTS["released_inference_variability_mean_abs"] = var
print(f"released-style inference, 00004N crop {fc_}² — {NET_SHORT}:")
print(pd.Series(var).round(5).to_string())
fig = viz.show_images({"ours (learned, seeded), min-max": _norm(ref_out), "released-style run 1": r1, "run 2": r2,
                       "run 3 (noise only)": r3}, ncols=4, panel_size=2.6)
fig.suptitle(f"every panel min-max normalised, as the released inference does — {NET_SHORT}", fontsize="small")
viz.save_figure(fig, out_dir, "released_style_runs")
plt.close(fig)
fig

# %% [markdown]
# ## 10 · Evaluation beside Tables I–IV
#
# The paper evaluates on TNO (25 pairs, Table I), MSRS (361, Table II), RoadScene (221, Table III) and
# LLVIP (3,463, Table IV) with EN, SF, AG, SD, CC, SCD, MI, VIF, Qabf and MS-SSIM; it names no evaluator.
# Each of our metrics is computed under the preset that `fusionlib.paper_numbers.preset_for("dmnet", ·)`
# gives; where the paper's convention is unknown (the cell lists which), our value is computed under
# `"cddfuse"` and marked `*`: it is **not** on the paper's scale. The paper's rows come from
# `paper_numbers.paper_table` (the paper's text, not typed here). The bundled sets are small subsets
# (the cell prints which pairs and sizes), and the DMNet rows are the network chosen after training (the cell
# prints which: at smoke the shipped NARROW `dmnet_narrow` when `weights/` has it, else this run's few-step
# `dmnet_tiny`): neither is the paper's full network, so they measure our pipeline, not the paper's method.

# %%
PAPER_TABLES = {"TNO": "TABLE I", "MSRS": "TABLE II", "RoadScene": "TABLE III", "LLVIP": "TABLE IV"}
PAPER_COLS = list(paper_numbers.paper_table("dmnet", "TABLE II").columns)      # EN ... MS-SSIM
OURS_NAME = {c: paper_numbers.convention("dmnet", c)["ours"] for c in PAPER_COLS}  # MS-SSIM -> MS_SSIM_wang
PRESET_OF = {c: paper_numbers.preset_for("dmnet", c) for c in PAPER_COLS}
UNKNOWN = [c for c, pr in PRESET_OF.items() if pr is None]
COLS = [OURS_NAME[c] for c in PAPER_COLS]
BY_PRESET: dict = {}
for c in PAPER_COLS:
    BY_PRESET.setdefault(PRESET_OF[c] or "cddfuse", []).append(OURS_NAME[c])
print("presets:", {pr: ms for pr, ms in BY_PRESET.items()}, "| convention unknown (marked *):", UNKNOWN)
display(Markdown(paper_numbers.convention_note("dmnet")))      # the evidence for each metric's preset


def _evaluate(fz, a, b):
    """Our metrics of one fused image under each metric's preset (``paper_numbers.preset_for``)."""
    out = {}
    for pr, ms in BY_PRESET.items():
        out.update({k: float(v) for k, v in metrics.evaluate(fz, a, b, pr, ms).items()})
    return out
sets = {"TNO": data.bundled("tno", "test"), "MSRS": msrs, "RoadScene": data.bundled("roadscene", "test"),
        "LLVIP": data.bundled("llvip", "test")}
NET_TAG = "shipped" if SHIPPED else "this run"
NET_CONFIG = rec["config"] if SHIPPED else B["model"]
methods = {"average": average_fusion, "max": max_fusion,
           f"DMNet ({NET_CONFIG}, {NET_TAG})": lambda a, b: NET(a.to(dev), b.to(dev)).cpu()}


def _centre_crop(a, b, size):
    """A centre crop of both images (no resampling); ``size=None`` keeps the full images."""
    if size is None:
        return a, b
    h, w = min(size[0], a.shape[-2]), min(size[1], a.shape[-1])
    t0_, l0_ = (a.shape[-2] - h) // 2, (a.shape[-1] - w) // 2
    return a[..., t0_:t0_ + h, l0_:l0_ + w], b[..., t0_:t0_ + h, l0_:l0_ + w]


rows = []
undefined: dict = {}        # (metric, why) -> ["set image (method)", ...]: MetricWarnings, summarised below
t_eval = time.perf_counter()
for set_name, ds in sets.items():
    names = ds.names[:B["n_eval"]] if B["n_eval"] else ds.names
    for nm in names:
        s = ds.by_name(nm)
        a, b = _centre_crop(s["ir"][None], s["vi"][None], B["eval_crop"])
        for method, fn in methods.items():
            with torch.no_grad():
                fz = fn(a, b).clamp(0, 1)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", metrics.MetricWarning)
                vals = _evaluate(fz, a, b)
            for w in caught:
                if not issubclass(w.category, metrics.MetricWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)   # not ours to hide
                    continue
                undefined.setdefault((w.message.metric, w.message.why), []).append(f"{set_name} {nm} ({method})")
            rows.append({"set": set_name, "image": nm, "size": f"{a.shape[-2]}x{a.shape[-1]}", "method": method,
                         **vals})
t_eval = time.perf_counter() - t_eval
ev = pd.DataFrame(rows)
for (metric, why), where in undefined.items():   # one line per metric instead of a red warning per image
    print(f"note: {metric} is undefined (NaN, left out of the means) for {len(where)} of {len(ev)} fused images, "
          f"because {why or 'an image is constant'}: {', '.join(where)}")
table = ev.groupby(["set", "method"])[COLS].mean()
size_note = "full images" if B["eval_crop"] is None else f"centre {B['eval_crop'][0]}x{B['eval_crop'][1]} crops"
print(f"pairs per set: {ev.groupby('set')['image'].nunique().to_dict()} ({size_note}); "
      f"DMNet = {NET_SHORT}; metrics in {t_eval:.1f} s")
RESULTS["metrics_cddfuse"] = {f"{s}|{m}": {k: float(v) for k, v in row.items()} for (s, m), row in table.iterrows()}
RESULTS["eval"] = {"pairs": ev.groupby("set")["image"].unique().apply(list).to_dict(), "size": size_note,
                   "presets": {c: PRESET_OF[c] for c in PAPER_COLS}, "unknown_convention": UNKNOWN,
                   "seconds": t_eval, "network": NET_LABEL}
# the paper's rows beside ours: its own row and the two closest relatives (CDDFuse's blocks, DANet's denoiser)
beside = []
for set_name, tid in PAPER_TABLES.items():
    pt = paper_numbers.paper_table("dmnet", tid)
    keep = [r for r in pt.index if r in pt.attrs["own"] or r.startswith(("CDDFuse", "DANet"))]
    for r in keep:
        beside.append({"set": set_name, "row": f"paper {tid}: {r} ({pt.attrs['datasets'][0] if pt.attrs['datasets'] else ''})",
                       **{c: float(pt.loc[r, c]) for c in PAPER_COLS}})
    for m in methods:
        beside.append({"set": set_name, "row": f"ours: {m}",
                       **{c: float(table.loc[(set_name, m), OURS_NAME[c]]) for c in PAPER_COLS}})
beside_df = pd.DataFrame(beside).set_index(["set", "row"]).rename(columns={c: c + " *" for c in UNKNOWN})
RESULTS["paper_beside"] = {f"{s}|{r}": row.to_dict() for (s, r), row in beside_df.iterrows()}
print(f"the paper's rows beside ours ({size_note}, profile {S.profile}; DMNet = {NET_SHORT}):")
beside_df.round(3)

# %%
tno_pair = sets["TNO"].by_name(sets["TNO"].names[0])
a, b = _centre_crop(tno_pair["ir"][None], tno_pair["vi"][None], B["eval_crop"])
with torch.no_grad():
    fz = {k: fn(a, b).clamp(0, 1) for k, fn in methods.items()}
if SHIPPED:
    with torch.no_grad():
        fz[f"this run ({B['model']})"] = net(a.to(dev), b.to(dev)).cpu().clamp(0, 1)
fig = viz.show_images({"IR": a, "VI": b, **fz}, ncols=3 if SHIPPED else 5, panel_size=2.8)
fig.suptitle(f"TNO {sets['TNO'].names[0]} ({size_note}) — DMNet: {NET_SHORT}"
             + (f"; this run: {B['model']}, {S.profile}, {n_steps} steps" if SHIPPED else ""), fontsize="small")
viz.save_figure(fig, out_dir, "fused_tno")
fig

# %% [markdown]
# ## 11 · Ablations: Table V (modules, two-stage training) and Table VI (gradient operator)
#
# The paper's Table V trains 14 reduced networks on MSRS: "To verify the performance of TST, we only
# conduct training stage 2 in AE1 ... we set the epoch of the training stage 2 to 45", and "some modules
# are directly removed, while other complex modules (e.g., the diffusion module) are replaced by simple
# convolutional layers" (§IV-D). Which modules are removed and which replaced is not listed beyond the
# DM; our reading (`DMNetConfig.ablate`): DTB, DIB and DM each become one conv layer, CSAB is removed
# (the per-level CSABs of the projection too). Table VI swaps the operator of L_grad (Eq. 19) for Canny,
# LoG or Roberts (`DMNetRecipe.grad_operator`; our Canny keeps non-maximum suppression and drops the
# hysteresis thresholds so that the loss stays differentiable) and evaluates on LLVIP.
#
# **Budget, said plainly**: every run below retrains from scratch at the tiny budget the next cell prints
# (at smoke: the NARROW model, a handful of CPU steps, metrics on one MSRS and one LLVIP crop). Such runs
# check that each switch trains and evaluates; their metric differences are noise at this budget and
# say nothing about the paper's claims. The paper's rows are printed beside them, with the difference of
# each row to the full model so that directions can be compared; the agreement count is computed, not
# asserted.

# %%
ABL = {"smoke": dict(epochs=(1, 1), steps=1, pairs={"MSRS": 1, "LLVIP": 1}, crop=(176, 176)),
       "lab": dict(epochs=(1, 2), steps=10, pairs={"MSRS": 2, "LLVIP": 2}, crop=None),
       "paper": dict(epochs=(15, 30), steps=None, pairs={"MSRS": None, "LLVIP": None}, crop=None)}[S.profile]
ABL_RUNS = {  # our run: (paper row, table, model overrides, recipe overrides, stage-I epochs off)
    "full model (code reading)": ("Ours", "TABLE V", {}, {}, False),
    "full model (paper reading)": (None, None, {"reading": "paper"}, {}, False),
    "w/o TST (stage II only)": ("AE1", "TABLE V", {}, {}, True),
    "w/o DM": ("AE13", "TABLE V", {"ablate": ("dm",)}, {}, False),
    "w/o CSAB": ("AE14", "TABLE V", {"ablate": ("csab",)}, {}, False),
    "w/o DTB, DIB, DM, CSAB": ("AE2", "TABLE V", {"ablate": ("dtb", "dib", "dm", "csab")}, {}, False),
    "L_grad: LoG": ("LoG", "TABLE VI", {}, {"grad_operator": "log"}, False),
    "L_grad: Roberts": ("Roberts", "TABLE VI", {}, {"grad_operator": "roberts"}, False),
    "L_grad: Canny": ("Canny", "TABLE VI", {}, {"grad_operator": "canny"}, False),
}
e1a, e2a = ABL["epochs"]
print(f"ablation budget: model {B['model']}, {e1a} + {e2a} epochs of {ABL['steps']} steps of "
      f"{B['batch']}x{B['crop']}² crops per run; eval pairs {ABL['pairs']}, "
      f"{'full images' if ABL['crop'] is None else 'centre %dx%d crops' % ABL['crop']}"
      + ("  (NARROW smoke model: a switch check, not a result)" if NARROW else ""))
abl_pairs = []
for set_name, n in ABL["pairs"].items():
    ds = sets[set_name]
    for nm in (ds.names[:n] if n else ds.names):
        s_ = ds.by_name(nm)
        abl_pairs.append((set_name, nm, *_centre_crop(s_["ir"][None], s_["vi"][None], ABL["crop"])))
abl_rows, abl_info = [], {}
t_abl = time.perf_counter()
for run, (paper_row, tid, m_over, r_over, no_stage1) in ABL_RUNS.items():
    torch.manual_seed(seed)
    m_abl = create_model(B["model"], **m_over)
    rec_abl = dataclasses.replace(recipe, **r_over)
    ep = (0, e1a + e2a) if no_stage1 else (e1a, e2a)
    t_run = time.perf_counter()
    train_dmnet(m_abl, loader, recipe=rec_abl, device=S.device, seed=seed, out_dir=None, epochs=ep,
                max_steps_per_epoch=ABL["steps"], progress=False)
    m_abl = m_abl.eval()
    for set_name, nm, a, b in abl_pairs:
        with torch.no_grad():
            fz = m_abl(a.to(dev), b.to(dev)).cpu().clamp(0, 1)
        abl_rows.append({"run": run, "set": set_name, "image": nm, **_evaluate(fz, a, b)})
    abl_info[run] = {"paper_row": paper_row, "table": tid, "model": dict(m_over), "recipe": dict(r_over),
                     "stage_epochs": list(ep), "params": profiling.count_parameters(m_abl),
                     "seconds": time.perf_counter() - t_run}
    del m_abl
t_abl = time.perf_counter() - t_abl
abl_df = pd.DataFrame(abl_rows)
RESULTS["ablation"] = {"budget": {k: (list(v) if isinstance(v, tuple) else v) for k, v in ABL.items()},
                       "runs": abl_info, "seconds": t_abl,
                       "metrics": {f"{r}|{s_}": row for (r, s_), row in
                                   abl_df.groupby(["run", "set"])[COLS].mean().to_dict("index").items()}}
print(f"{len(ABL_RUNS)} runs in {t_abl:.1f} s")
pd.DataFrame(abl_info).T[["paper_row", "table", "stage_epochs", "params", "seconds"]]


# %%
def _beside(tid: str, set_name: str, runs: list[str], full_run: str, paper_full: str) -> pd.DataFrame:
    """Paper rows and ours for one table, with each row's difference to its full model."""
    pt = paper_numbers.paper_table("dmnet", tid)
    cols = [c for c in pt.columns if c in OURS_NAME]
    ours = abl_df[abl_df["set"] == set_name].groupby("run")[[OURS_NAME[c] for c in cols]].mean()
    ours.columns = cols
    out = []
    for run in runs:
        prow = paper_full if run == full_run else ABL_RUNS[run][0]
        rec = {"run": run, "paper row": prow}
        for c in cols:
            rec[f"paper {c}"] = float(pt.loc[prow, c]) if prow in pt.index else float("nan")
            rec[f"ours {c}"] = float(ours.loc[run, c])
            rec[f"Δ paper {c}"] = (float(pt.loc[prow, c] - pt.loc[paper_full, c]) if prow in pt.index
                                   else float("nan"))
            rec[f"Δ ours {c}"] = float(ours.loc[run, c] - ours.loc[full_run, c])
        out.append(rec)
    df = pd.DataFrame(out).set_index("run")
    same = [(np.sign(df.loc[r, f"Δ paper {c}"]) == np.sign(df.loc[r, f"Δ ours {c}"]))
            for r in runs[1:] for c in cols
            if np.isfinite(df.loc[r, f"Δ paper {c}"]) and df.loc[r, f"Δ paper {c}"] != 0]
    df.attrs["sign_agreement"] = (int(sum(same)), len(same))
    df.attrs["source"] = pt.attrs["source"]
    return df


tab5 = _beside("TABLE V", "MSRS", ["full model (code reading)", "w/o TST (stage II only)", "w/o DM", "w/o CSAB",
                                   "w/o DTB, DIB, DM, CSAB"], "full model (code reading)", "Ours")
tab6_runs = ["full model (code reading)", "L_grad: LoG", "L_grad: Roberts", "L_grad: Canny"]
tab6 = _beside("TABLE VI", "LLVIP", tab6_runs, "full model (code reading)", "Sobel")
RESULTS["ablation"]["sign_agreement"] = {"TABLE V": tab5.attrs["sign_agreement"],
                                         "TABLE VI": tab6.attrs["sign_agreement"]}
print(f"Table V ({tab5.attrs['source']}, MSRS): the direction of the change from the full model agrees with "
      f"the paper's in {tab5.attrs['sign_agreement'][0]} of {tab5.attrs['sign_agreement'][1]} (row, metric) cells; "
      f"Table VI ({tab6.attrs['source']}, LLVIP): {tab6.attrs['sign_agreement'][0]} of "
      f"{tab6.attrs['sign_agreement'][1]}. At a tiny budget these counts are no evidence either way.")
show_cols = ["paper row"] + [f"{w} {c}" for c in ("EN", "SF", "VIF", "Qabf") for w in ("paper", "ours", "Δ paper", "Δ ours")]
tab5[show_cols].round(3)

# %%
tab6[show_cols].round(3)

# %%
abl_full = abl_df.groupby(["run", "set"])[COLS].mean().round(3)
abl_full  # every metric of every run (our names; the full model under the paper's reading included)

# %% [markdown]
# ## 12 · Efficiency
#
# FLOPs per image of the **full** model at 128×128, counted on the meta device (shapes only): two
# encoder passes (IR, VI), **three denoiser passes** (t = 5, 50, 100; the noise head is not run), the
# projections, CSAB and the decoder. GFLOPs = 2 × GMAC. The measurements of the released code in
# `notebooks/released_code.md` §DMNet (taken with PyTorch's FlopCounterMode, which counts 2 FLOPs per multiply-add)
# agree with our **GFLOPs** column (the cell prints both). The paper reports no FLOPs; its Table VIII
# gives parameters and an average test time on MSRS (A100, resolution not stated), set beside ours below.

# %%
with torch.device("meta"):
    full = DMNet().eval()
S128 = torch.Size([1, 1, 128, 128])
cost = profiling.count_flops(full, S128, S128)
part_cost = {"encoder (x2)": 2 * profiling.count_flops(full.encoder, S128)["gflops"],
             "denoiser (x3, with its 2-channel head)": 3 * profiling.count_flops(
                 full.denoiser, torch.Size([1, 2, 128, 128]), torch.Size([1]))["gflops"],
             "CSAB (x2)": 2 * profiling.count_flops(full.csab, torch.Size([1, 64, 128, 128]))["gflops"],
             "decoder": profiling.count_flops(full.decoder, S128, torch.Size([1, 64, 128, 128]))["gflops"]}
part_cost["projection (rest)"] = cost["gflops"] - sum(part_cost.values())
print(f"full DMNet at 128x128: {cost['gmac']:.1f} GMAC = {cost['gflops']:.1f} GFLOPs per image")
print(pd.Series(part_cost).round(2).to_string())
print(f"denoiser per t {part_cost['denoiser (x3, with its 2-channel head)'] / 3:.1f} GFLOPs (released: "
      f"{PAPER['gflops_unet_per_t_128']}); encoder per modality {part_cost['encoder (x2)'] / 2:.1f} "
      f"(released: {PAPER['gflops_encoder_128']}); the denoiser is "
      f"{part_cost['denoiser (x3, with its 2-channel head)'] / cost['gflops']:.0%} of the total")
RESULTS["efficiency"] = {"params_full": parts["total"], "gmac_128": cost["gmac"], "gflops_128": cost["gflops"],
                         "gflops_by_part_128": part_cost}

# %% [markdown]
# Latency and peak memory. On a CPU the full model costs about 1.2 TFLOPs per 128² image (tens of
# seconds), so here the model of this run is timed; the lab profile on a GPU times the full one.
# Peak memory is measured on CUDA only (`None` on a CPU).

# %%
assert round(cost["gflops"] / 1e3, 1) == 1.2, cost["gflops"]               # the "about 1.2 TFLOPs" above
lat_model = net.to(S.device).eval()
L = B["latency"]
xi = torch.rand(1, 1, L, L, device=S.device)
r = profiling.measure_latency(lat_model, xi, xi, warmup=1, repeats=B["lat_repeats"])
peak = profiling.peak_memory(lambda: lat_model(xi, xi), device=S.device) if S.device.type == "cuda" else None
print(f"{B['model']} {L}x{L} on {r['device']} ({r['threads']} threads): {r['median_s'] * 1e3:.1f} ms"
      + ("  (NARROW smoke model)" if NARROW else ""))
print("peak memory:", "not measured off CUDA" if peak is None else f"{peak / 2**20:.0f} MiB")
print(f"paper, Table VIII: {RESULTS['table_viii']['paper_test_time_s']} s average test time per MSRS pair "
      "(full model, A100, image size not stated): not comparable with the line above unless the lab profile "
      "timed the full model on a GPU at the MSRS size")
RESULTS["efficiency"]["latency"] = {"model": B["model"], "size": L, "median_ms": r["median_s"] * 1e3,
                                    "device": r["device"], "threads": r["threads"]}
RESULTS["efficiency"]["peak_memory_bytes"] = peak
if S.device.type == "cuda" and not NARROW:
    full_gpu = DMNet().to(S.device).eval()
    x128 = torch.rand(1, 1, 128, 128, device=S.device)
    for dt in (torch.float32, torch.bfloat16):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dt == torch.bfloat16):
            rr = profiling.measure_latency(full_gpu, x128, x128, warmup=2, repeats=5)
            pk = profiling.peak_memory(lambda: full_gpu(x128, x128), device=S.device)
        RESULTS["efficiency"][f"full_128_{str(dt).split('.')[-1]}"] = {"median_ms": rr["median_s"] * 1e3, "peak_bytes": pk}
        print(f"full DMNet 128x128 {dt}: {rr['median_s'] * 1e3:.1f} ms, peak {pk / 2**20:.0f} MiB")
else:
    print("full-model GPU latency / memory (float32, bf16): skipped, no CUDA device in this run")
net = net.to("cpu")

# %% [markdown]
# ## 13 · Results and questions
#
# `results.json` holds the budget (and whether the denoiser was narrow), the walk and invertibility
# checks, the parameter breakdown, the schedule, the spectra of x_t and of the features, the training
# curves and laziness per stage, the CSAB and attention statistics, the variability of the
# released-style inference, the metrics per set and the cost.

# %%
RESULTS["seconds"] = {"train": t_train, "eval": t_eval, "total": time.perf_counter() - T0}
path = record(out_dir, RESULTS, meta=S)
print("wrote", path, f"({RESULTS['seconds']['total']:.0f} s)")

# %% [markdown]
# ### Questions for a reading group
#
# 1. At t = 5 the U-Net sees an almost clean image (§5 prints the SNR). What can its features
#    hold that an ordinary encoder's cannot? Would t = 500 features be more or less useful for fusion,
#    and how would you test it with this notebook?
# 2. The released inference creates the 21.6 M-parameter projection and a CSAB with random weights on
#    every call, and draws unseeded noise. How can such a pipeline give the paper's numbers, and how
#    would you check whether the diffusion branch contributes anything (§9 gives a first measurement)?
# 3. The released DIB applies its invertible layers three times with shared weights and averages; the
#    paper's text sums three states with β = 1/3. Is either block still invertible (§3.2 measures it)?
#    What does invertibility buy an encoder whose output is only decoded?
# 4. Stage I trains the auto-encoder and the denoiser separately; stage II adds a fusion loss that also
#    reaches the denoiser (`feature_grad=True`). What could go wrong for the denoiser's noise prediction,
#    and what do the laziness curves of its two halves show?
# 5. Most of the FLOPs are the three denoiser passes (§12 prints their share). Could the three steps share
#    one pass (the noise levels differ little)? What would you lose?
# 6. The paper's Table VIII parameter count is below that of the released U-Net alone (§4). Which numbers
#    in a paper can a reader verify without the training code, and how?
# 7. MS-SSIM above 1 in the paper's tables: which convention makes that possible, and how should a
#    table that mixes conventions be read?
# 8. The ablations of §11 ran at a tiny budget. What budget would make a difference of the size the
#    paper reports in Table V (for example AE13 vs Ours) measurable, and how many seeds would you need?
