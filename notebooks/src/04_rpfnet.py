# %% [markdown]
# # 04 · RPFNet: residual prior and frequency-domain fusion
#
# > Bing Wang (wang-x-1997) et al. *RPFNet: residual prior driven frequency-aware network for infrared
# > and visible image fusion.* ACM MM 2025. Authors' code: `wang-x-1997/RPFNet` @ 43e555a (released
# > weights `Trained/Model.pth`, a pickle of the whole model).
#
# Library: [`fusionlib.models.rpfnet`](../fusionlib/models/rpfnet.py) (`RPFNet`, `CPM`, `RPM`, `FDFM`,
# `RPFNetAux`, `rpfnet_infer`, `RPFNET_RECIPES`, `train_rpfnet`),
# [`fusionlib.losses.rpfnet`](../fusionlib/losses/rpfnet.py) (mask w, L_c, SSIM term, L_SS, `RPFNetLoss`),
# [`fusionlib.ops.studio`](../fusionlib/ops/studio.py) (the released colour restoration),
# `fusionlib.checkpoints.load_rpfnet_released`, plus the shared `spectral`, `metrics`, `probes`, `viz`,
# `profiling`, `train`, `laziness`.
#
# **Idea in one paragraph.** Where the infrared and visible images *disagree*, the difference
# `IR − VI` is large: hot targets, lit windows, smoke. RPFNet treats that residual as a **prior** and
# follows it in one branch (RPM, multi-scale dilated convolutions), while the other branch fuses the
# two images **in the Fourier domain** (FDFM: a 1×1 convolution on the real and imaginary parts of the
# spectrum, which is a *global* operator in space). A cross-promotion module (CPM) lets each branch
# steer the other before every one of the N = 3 stages. Training uses a contrastive loss *in the
# frequency domain* with an adaptive mask w (where the infrared should win), an SSIM term, and a
# self-supervised saliency-structure loss on an auxiliary decoder of the residual branch. The network
# is tiny: 72,074 parameters. This notebook is the suite's home for **spectra**.

# %% tags=["parameters"]
profile = "auto"        # smoke | lab | paper | auto (lab on a GPU, else smoke)
device = "auto"         # auto | cpu | cuda | cuda:1 | mps
data_root = None        # not used here: 04 runs on the bundled pairs in data/
seed = 123              # the authors' train.py seed
out_dir = "../runs/04_rpfnet"
epochs = None           # None: the profile's budget
threads = None          # torch CPU threads; None: 1 under smoke (shared CI cores: oversubscribed OpenMP is slower), else torch's default
checkpoint = None       # converted released weights (../shared/golden/rpfnet/rpfnet_state_dict.pt); evaluated when given

# %% [markdown]
# ## 1 · Setup
#
# One cell: seed, device, profile, versions, budget. Every profile runs every section; smoke only
# shrinks steps and image sizes and says so next to the numbers it produces.

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from fusionlib import data, metrics, profiling, spectral, viz
from fusionlib.atomic import atomic_save
from fusionlib.methods import save_laziness
from fusionlib.baselines import average_fusion, max_fusion
from fusionlib.checkpoints import load_rpfnet_released
from fusionlib.laziness import LazinessTracker
from fusionlib.losses.rpfnet import (RPFNetLoss, frequency_contrastive_loss, rpfnet_mask, rpfnet_ssim_term,
                                     saliency_structure_loss)
from fusionlib.models.rpfnet import (CPM, FDFM, PAPER, RPM, RPFNET_RECIPES, RPFNet, RPFNetAux, RPFNetStage,
                                     rpfnet_infer, train_rpfnet)
from fusionlib.nb import budget, laziness_section, record, setup, show
from fusionlib.ops.studio import released_colour
from fusionlib.probes import Recorder
from fusionlib.train import make_loader

from fusionlib.nb import resolve_profile
from fusionlib.train import resolve_device

n_threads = int(threads) if threads else (1 if resolve_profile(profile, resolve_device(device)) == "smoke" else None)
S = setup(seed=seed, device=device, profile=profile, out_dir=out_dir, threads=n_threads)
BUDGETS = {  # training epochs/steps per epoch; experiment steps; analysis crops; evaluation pairs, crops, latency
    "smoke": dict(recipe="smoke", epochs=2, steps=3, exp_steps=2, walk_crop=64, crop=64, psd_crop=96,
                  n_eval=1, n_med=1, eval_crop=(96, 128), med_crop=(96, 96), latency_full=False, lat_repeats=2),
    "lab": dict(recipe="lab", epochs=10, steps=12, exp_steps=8, walk_crop=96, crop=192, psd_crop=256,
                n_eval=3, n_med=2, eval_crop=None, med_crop=None, latency_full=True, lat_repeats=2),
    "paper": dict(recipe="paper", epochs=100, steps=None, exp_steps=50, walk_crop=96, crop=256, psd_crop=480,
                  n_eval=None, n_med=None, eval_crop=None, med_crop=None, latency_full=True, lat_repeats=5),
}
B = budget(BUDGETS, S.profile, epochs=epochs)
RESULTS: dict = {"budget": B}
T0 = time.perf_counter()

released = None
if checkpoint:
    released = load_rpfnet_released(checkpoint)
    print(f"released weights loaded from {checkpoint}")
else:
    print("checkpoint=None: the released Model.pth (converted) is not evaluated in this run "
          "(pass checkpoint=.../golden/rpfnet/rpfnet_state_dict.pt to papermill to include it)")
RESULTS["released_weights"] = bool(released is not None)

msrs = data.bundled("msrs", "test")
night, day = msrs.by_name("00004N"), msrs.by_name("00055D")
ir_n, vi_n = night["ir"][None], night["vi"][None]          # (1, 1, 480, 640)
ir_d, vi_d = day["ir"][None], day["vi"][None]

# %% [markdown]
# ## 2 · Why the Fourier domain: Fig. 1c reproduced
#
# Fig. 1c of the paper: change the **phase** of an infrared image's spectrum in a *small* region of
# frequencies, transform back, and the image changes **everywhere**. Each Fourier coefficient is a
# plane wave that covers the whole image, so any operation on the spectrum (like FDFM's 1×1
# convolution) acts globally in space: a receptive field of the whole image in one layer.
#
# Below: a 5×5 block of low frequencies (and its mirror, so that the image stays real) has its phase
# rotated by π/2; amplitude untouched.

# %%
def perturb_phase(img: torch.Tensor, centre=(3, 4), size=5, shift=np.pi / 2) -> torch.Tensor:
    """Rotate the phase of a ``size x size`` block of frequencies around ``centre`` (and its mirror)."""
    z = torch.fft.fft2(img.double())
    h, w = img.shape[-2:]
    ky = (torch.arange(size) - size // 2 + centre[0]) % h
    kx = (torch.arange(size) - size // 2 + centre[1]) % w
    rot = torch.ones(h, w, dtype=torch.complex128)
    rot[ky[:, None], kx[None, :]] = complex(np.cos(shift), np.sin(shift))
    rot[(-ky)[:, None] % h, (-kx)[None, :] % w] = complex(np.cos(shift), -np.sin(shift))
    return torch.fft.ifft2(z * rot).real.float()


ir0 = ir_n[0, 0]
ir_phase = perturb_phase(ir0)
delta = (ir_phase - ir0).abs()
changed = float((delta > 1 / 255).float().mean())
n_freq = 2 * 5 * 5
print(f"{n_freq} of {ir0.numel()} Fourier coefficients ({100 * n_freq / ir0.numel():.3f} %) had their phase rotated; "
      f"{100 * changed:.1f} % of the pixels changed by more than one grey level (max {255 * float(delta.max()):.1f})")
RESULTS["phase_experiment"] = {"coefficients_changed": n_freq, "pixels_changed_frac": changed,
                               "max_change_levels": 255 * float(delta.max())}
fig = viz.show_images({"IR 00004N": ir0, "phase of 50 coefficients rotated": ir_phase.clamp(0, 1),
                       "|difference| (×4)": (4 * delta).clamp(0, 1)}, ncols=3, panel_size=3.6)
viz.save_figure(fig, out_dir, "fig1c_phase")
fig

# %% [markdown]
# The dual statement is as true: a change in a *small spatial region* changes every Fourier
# coefficient. An explorer over the phase rotation and the size of the frequency block (sliders in
# JupyterLab, a static grid under papermill):

# %%
def _phase_frame(*, ax, shift, size):
    d = (perturb_phase(ir0, size=size, shift=shift) - ir0).abs()
    ax.imshow(d.numpy(), cmap="magma", vmin=0, vmax=0.25)
    ax.set_title(f"|Δ|, shift {shift:.2f} rad, {size}×{size} block", fontsize=8)
    ax.set_axis_off()


viz.explorer(_phase_frame, shift=[np.pi / 8, np.pi / 4, np.pi / 2, np.pi], size=[1, 3, 9], max_panels=12)

# %% [markdown]
# ### Amplitude and phase swaps
#
# Rebuild an image from the *amplitude* of one source and the *phase* of the other. The result looks
# like the **phase** donor: phase carries structure (where the edges are), amplitude carries the
# energy per frequency (contrast, texture statistics). That is the intuition behind fusing in the
# frequency domain: the two spectra can be mixed per frequency, with structure kept from either.

# %%
z_ir, z_vi = torch.fft.fft2(ir0.double()), torch.fft.fft2(vi_n[0, 0].double())
amp_ir_ph_vi = torch.fft.ifft2(torch.polar(z_ir.abs(), z_vi.angle())).real.float()
amp_vi_ph_ir = torch.fft.ifft2(torch.polar(z_vi.abs(), z_ir.angle())).real.float()


def _num(v):
    """A finite float, or None (results.json holds finite numbers only; None = undefined, e.g. SCD of F = a source)."""
    v = float(v)
    return v if np.isfinite(v) else None


def _corr(a, b):
    a, b = a.flatten().double() - a.mean(), b.flatten().double() - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


swap = {"|IR| ∠VI": {"r with IR": _corr(amp_ir_ph_vi, ir0), "r with VI": _corr(amp_ir_ph_vi, vi_n[0, 0])},
        "|VI| ∠IR": {"r with IR": _corr(amp_vi_ph_ir, ir0), "r with VI": _corr(amp_vi_ph_ir, vi_n[0, 0])}}
RESULTS["amplitude_phase_swap"] = swap
fig = viz.show_images({"IR": ir0, "VI": vi_n[0, 0], "amplitude IR + phase VI": amp_ir_ph_vi.clamp(0, 1),
                       "amplitude VI + phase IR": amp_vi_ph_ir.clamp(0, 1)}, ncols=4, panel_size=3.2)
viz.save_figure(fig, out_dir, "amplitude_phase_swap")
print(pd.DataFrame(swap).T.round(3))
fig

# %% [markdown]
# ## 3 · Building RPFNet step by step
#
# As the released code builds it (C = 32 channels, N = 3 stages, **one stage module applied three
# times**):
#
# ```
# F_R = CB(IR − VI)                F_F = CB(cat(VI, IR))                     CB = conv3×3 + BN + ReLU
# repeat 3×:
#   CPM : s = CB3×3(F_F)                         g = σ(BN(conv1×1(F_R)))    (the "attention" on F_F)
#   RPM : F_R ← conv1×1(cat[CB3×3,d(s + F_R) for d = 1, 3, 5])
#   FDFM: x = g·F_F + F_F;   F_F ← CB3×3(x) + irfft2(ReLU(BN(conv1×1(re/im of rfft2(x)))))
# fused = σ(conv3×3(CB(CB(F_R + F_F))))
# ```
#
# **CPM**, cross promotion: the fusion branch gives the residual branch a spatial prompt, the
# residual branch gives the fusion branch a sigmoid gate.

# %%
show(CPM)

# %% [markdown]
# ### Exercise 1 · CPM (Eq. 2)
#
# Write `forward(f_r, f_f)` of `MyCPM`: `spatial_enh = spatial(F_F)` (CB3×3) and
# `freq_enh = F_F · gate(gate_conv(F_R))`, where `gate_conv` is conv → BN → sigmoid (1×1 as released) and
# `gate` is the identity probe point. Return `(spatial_enh, freq_enh)`.

# %% tags=["exercise"]
from fusionlib.models.rpfnet import CPM as MyCPM  # exercise: forward

# %% tags=["check"]
import torch
from fusionlib.labs import check_exercise
from fusionlib.models.rpfnet import CPM
check_exercise(MyCPM, CPM, init=dict(channels=8), inputs=lambda g: (torch.rand(2, 8, 12, 12, generator=g),
                                                                   torch.rand(2, 8, 12, 12, generator=g)),
               hint="the gate comes from F_R (residual branch) and multiplies F_F; the spatial prompt comes from F_F")

# %% [markdown]
# **RPM**, residual prior module: three dilated 3×3 conv blocks (d = 1, 3, 5) on the *same* input,
# concatenated and mixed by a 1×1 convolution. The channel and spatial attention of the paper's Eq. 3
# exist as layers (so the released weights load) but are **not applied**: the released code computes
# them and throws the result away (§5).

# %%
show(RPM)

# %% [markdown]
# **FDFM**, frequency-domain fusion: a spatial CB plus a spectral path. `rfft2` (orthonormal) gives a
# complex `(B, C, H, W/2+1)` spectrum; its real and imaginary parts become 2C real channels, a 1×1
# convolution (no bias) mixes them *per frequency*, BN + ReLU, and `irfft2` brings it back.

# %%
show(FDFM)

# %% [markdown]
# ### Exercise 2 · the FDFM spectral path
#
# Write `spectral(x)` of `MyFDFM`: `z = rfft2(x, norm="ortho")`; stack real and imaginary parts
# interleaved per channel, `[re_0, im_0, re_1, im_1, ...]`, into `(B, 2C, H, W//2+1)`; apply
# `spectral_conv`, `spectral_bn`, `relu`, then the probe `spectrum`; split back into real and imaginary
# parts and return `irfft2(complex(re, im), s=(H, W), norm="ortho")`.

# %% tags=["exercise"]
from fusionlib.models.rpfnet import FDFM as MyFDFM  # exercise: spectral

# %% tags=["check"]
import torch
from fusionlib.labs import check_exercise
from fusionlib.models.rpfnet import FDFM
check_exercise(MyFDFM, FDFM, init=dict(channels=8), inputs=lambda g: (torch.rand(2, 8, 24, 20, generator=g),),
               hint="torch.stack((z.real, z.imag), dim=2).reshape(b, 2 * c, h, w_r) interleaves re/im per channel; "
                    "irfft2 needs s=(h, w) to recover an odd or even width")

# %%
show(RPFNetStage)

# %% [markdown]
# ### The forward pass, one operation at a time
#
# A real crop of the night pair 00004N (a pedestrian) through the network, written out with the
# modules' layers: stems, then per stage CPM → RPM → FDFM (the FDFM spectral path opened), then the
# head. The network is the released one when `checkpoint` is given (eval-mode BN, stored statistics),
# otherwise a seeded fresh initialisation. The walk must equal `model(ir, vi)`.

# %%
torch.manual_seed(seed)
walk_model = (released if released is not None else RPFNet()).eval()
walk_label = "released weights" if released is not None else "fresh init (seed %d)" % seed
c = B["walk_crop"]
y0, x0 = 200, 500
ir = ir_n[..., y0:y0 + c, x0:x0 + c]
vi = vi_n[..., y0:y0 + c, x0:x0 + c]
m = walk_model
with torch.no_grad():
    f_r = m.stem_residual(ir - vi)                       # (1, 32, c, c): the residual prior
    f_f = m.stem_fusion(torch.cat([vi, ir], dim=1))      # (1, 32, c, c): both sources
    per_stage = []
    for n, stage in enumerate(m.stage_modules(), start=1):
        # CPM
        s = stage.cpm.spatial(f_f)                       # spatial prompt for the residual branch
        g = stage.cpm.gate_conv(f_r)                     # σ(BN(conv1×1(F_R))), gate for the fusion branch
        # RPM on s + F_R: three dilations on the same input, concatenated, 1×1
        x_r = s + f_r
        f_r_next = stage.rpm.fuse(torch.cat([blk(x_r) for blk in stage.rpm.dilated], dim=1))
        # FDFM on g·F_F + F_F: spectral path written out
        fd, x_f = stage.fdfm, f_f * g + f_f
        b_, c_, h_, w_ = x_f.shape
        z = torch.fft.rfft2(x_f, norm="ortho")                                   # (1, 32, c, c//2+1) complex
        zr = torch.stack((z.real, z.imag), dim=2).reshape(b_, 2 * c_, h_, z.shape[-1])
        zo = fd.relu(fd.spectral_bn(fd.spectral_conv(zr)))                       # 1×1 conv per frequency
        zo = zo.reshape(b_, c_, 2, h_, z.shape[-1])
        z_out = torch.complex(zo[:, :, 0], zo[:, :, 1])
        spec = torch.fft.irfft2(z_out, s=(h_, w_), norm="ortho")
        f_f_next = spec + fd.spatial(x_f)
        per_stage.append(dict(gate=g, x_f=x_f, z_in=z, z_out=z_out, spectral=spec, f_r=f_r_next, f_f=f_f_next))
        f_r, f_f = f_r_next, f_f_next
    walk = m.head(f_r + f_f)
    direct = m(ir, vi)
walk_diff = float((walk - direct).abs().max())
print(f"{walk_label}: max |walk − model(ir, vi)| = {walk_diff:.2e}")
torch.testing.assert_close(walk, direct, atol=1e-5, rtol=1e-4)
RESULTS["walk_max_abs_diff"] = walk_diff


def _norm(t):
    t = t - t.min()
    return t / t.max().clamp(min=1e-8)


fig = viz.show_images({"IR crop": ir, "VI crop": vi, "F_R stem ch-mean": _norm(m.stem_residual(ir - vi)[0].mean(0).detach()),
                       **{f"stage {i + 1} F_R": _norm(st["f_r"][0].mean(0)) for i, st in enumerate(per_stage)},
                       **{f"stage {i + 1} F_F": _norm(st["f_f"][0].mean(0)) for i, st in enumerate(per_stage)},
                       "output": walk}, ncols=5, panel_size=2.2)
viz.save_figure(fig, out_dir, "walk")
fig

# %% [markdown]
# ### The FDFM spectral path on a real feature map
#
# Stage 1's FDFM input `x = g·F_F + F_F`, for the channel with the largest variance: log amplitude
# and phase of `rfft2(x)` before, and of the complex spectrum after the 1×1 spectral convolution
# (+ BN + ReLU); then the spatial result of that path. Frequencies are shifted so that 0 is in the
# middle of the vertical axis (the horizontal axis of an `rfft2` holds only non-negative frequencies).
# After the ReLU, real and imaginary parts are both ≥ 0, so every phase lies in [0, π/2]: the
# ReLU folds the spectrum into one quadrant, a strong non-linearity in the frequency domain.

# %%
st = per_stage[0]
ch = int(st["x_f"][0].flatten(1).var(1).argmax())
shift = lambda t: torch.fft.fftshift(t, dim=-2)
panels = {f"x (ch {ch})": _norm(st["x_f"][0, ch]),
          "log|rfft2(x)|": _norm(shift((st["z_in"][0, ch].abs() + 1e-4).log())),
          "∠rfft2(x)": (shift(st["z_in"][0, ch].angle()) + np.pi) / (2 * np.pi),
          "log|after 1×1 conv|": _norm(shift((st["z_out"][0, ch].abs() + 1e-4).log())),
          "∠after (0..π/2 → 0.5..0.75)": (shift(st["z_out"][0, ch].angle()) + np.pi) / (2 * np.pi),
          "irfft2 (spectral path)": _norm(st["spectral"][0, ch])}
fig = viz.show_images(panels, ncols=6, panel_size=2.4)
viz.save_figure(fig, out_dir, "fdfm_spectral_path")
ph = st["z_out"].angle()
RESULTS["fdfm_spectral"] = {"channel": ch, "phase_after_min": float(ph.min()), "phase_after_max": float(ph.max()),
                            "frac_zero_coeffs_after": float((st["z_out"].abs() == 0).float().mean())}
print(f"phase after the ReLU spans [{float(ph.min()):.3f}, {float(ph.max()):.3f}] rad; "
      f"{100 * RESULTS['fdfm_spectral']['frac_zero_coeffs_after']:.1f} % of the coefficients are exactly 0")
fig

# %% [markdown]
# ## 4 · Parameters: 72,074
#
# The paper states no parameter count in its text (only a bar in Fig. 1b). The released file holds
# 72,074 parameters, all trainable, of which 1,897 belong to the residual branch's channel/spatial
# attention that never reaches the output; the auxiliary decoder (training only) adds 14,113.

# %%
net0 = RPFNet()
n_params = profiling.count_parameters(net0)
assert n_params == PAPER["params_code"] == 72_074, n_params
ptab = profiling.parameter_table(net0, depth=2)
print(profiling.format_parameter_table(ptab))
n_aux = profiling.count_parameters(RPFNetAux(32))
unused = profiling.count_parameters(net0.stage.rpm.ca) + profiling.count_parameters(net0.stage.rpm.sa)
n_sep = profiling.count_parameters(RPFNet(shared_stages=False))
print(f"total {n_params:,}; auxiliary decoder {n_aux:,}; unused attention {unused:,}; "
      f"with separate weights per stage (paper reading) {n_sep:,}")
RESULTS["params"] = {"total": n_params, "aux_decoder": n_aux, "unused_attention": unused, "separate_stages": n_sep}

# %% [markdown]
# ## 5 · Paper vs code
#
# What the released code does where the paper says otherwise (reference notes on `wang-x-1997/RPFNet`;
# each code choice is our default, each paper reading a switch):
#
# | item | paper | released code (our default) | switch |
# |---|---|---|---|
# | stages | N = 3 (reads as 3 modules) | **one `IterationBlock` applied 3×** (shared weights) | `RPFNetConfig(shared_stages=False)` |
# | RPM attention | SA(CA(x)) before the dilated convs (Eq. 3) | CA and SA computed and **discarded** (1,897 parameters, no gradient) | `attention_in_rpm=True` |
# | RPM merge | — | concat of d = 1, 3, 5 + 1×1 (not a sum) | — |
# | CPM gate conv | 3×3 (Eq. 2) | **1×1** | `cpm_kernel=3` |
# | FDFM spectral input | — | the FDFM input itself, not the spatial CB's output | — |
# | mask w | S_en = (S_IR(1−S_M) + S_M(1−S_IR))/2 (Eq. 11) | **(1 + ·)** | `rpfnet_mask(form="paper")` |
# | L_c negatives | (Fw̄, IR·w), (Fw̄, VI·w̄); ε = 1e-9 | **(Fw̄, IR·w̄), (Fw̄, VI·w)**; ε = 1e-10 | `negatives="paper"` |
# | L_SS | ‖·‖₂ | MSE and means, λ1 = 0.3 | — |
# | SSIM term | λ2 = 5 | kornia `SSIMLoss(3)`, i.e. (1 − SSIM)/2 per source | — |
# | optimisers | — | two Adams at 1e-3; MultiStepLR [20,40,60,80]×0.5 on the main model only | `RPFNET_RECIPES["paper"]` |
# | test-time BN | — | **batch statistics of the test image** (`eval()` never called) | `rpfnet_infer(mode=...)` |
# | colour | — | full-range Y treated as studio range (×1.164, −16) | §11 |
#
# **A small experiment: shared vs separate stage weights.** The same data, seed, loss and budget
# (`exp_steps` steps per model, printed), the released layout against the paper's reading. Separate
# weights triple the stage parameters; does the loss go lower in the same number of steps?

# %%
recipe = RPFNET_RECIPES[B["recipe"]]
train_set = data.bundled("roadscene", "train", crop=recipe.crop_size, mode="train", seed=seed, cache=True)
loader = make_loader(train_set, recipe.batch_size, shuffle=True, seed=seed, drop_last=True,
                     collate_fn=data.collate_pairs)
exp = {}
for name, cfg in (("shared (code)", dict()), ("separate (paper)", dict(shared_stages=False))):
    torch.manual_seed(seed)
    mdl = RPFNet(**cfg)
    t_exp = time.perf_counter()
    h = train_rpfnet(mdl, loader, recipe=recipe, device=S.device, seed=seed, out_dir=None, epochs=1,
                     max_steps_per_epoch=B["exp_steps"], progress=False)
    exp[name] = {"params": profiling.count_parameters(mdl), "loss": h.epochs[-1]["loss"], "fcr": h.epochs[-1]["fcr"],
                 "ssim": h.epochs[-1]["ssim"], "seconds": time.perf_counter() - t_exp}
print(f"{B['exp_steps']} steps of {recipe.batch_size}×{recipe.crop_size}² RoadScene crops per model "
      f"(mean loss over the steps):")
RESULTS["experiment_shared_vs_separate"] = {"steps": B["exp_steps"], **exp}
pd.DataFrame(exp).T.round(4)

# %% [markdown]
# With the released weights, the discarded attention can be switched on (`attention_in_rpm=True`):
# its weights were never trained (no gradient reaches them), so applying them changes the output,
# which measures how far the paper's Eq. 3 is from what was trained.

# %%
if released is not None:
    att_on = RPFNet(attention_in_rpm=True)
    att_on.load_state_dict(released.state_dict())
    with torch.no_grad():
        o_code = rpfnet_infer(released, ir, vi, mode="as_released")
        o_att = rpfnet_infer(att_on, ir, vi, mode="as_released")
    d_att = float((o_code - o_att).abs().mean())
    print(f"released weights, walk crop: mean |output(code) − output(with the untrained attention)| = {d_att:.4f}")
    RESULTS["released_attention_switch_mean_abs_diff"] = d_att
else:
    print("skipped: needs the released weights (checkpoint=None)")
    RESULTS["released_attention_switch_mean_abs_diff"] = None

# %% [markdown]
# ## 6 · The losses
#
# `L = L_c + 5·L_ssim + L_SS` (the released `train.py`):
#
# - **mask w** (`rpfnet_mask`): S_M = σ(z(IR − VI)), S_IR = σ(z(IR)) with z-scores over the whole
#   batch; S_en = (S_IR(1 + S_M) + S_M(1 + S_IR))/2; w = [S_en > mean + std];
# - **L_c** (`frequency_contrastive_loss`): spectral L1 distances, positives (F·w ↔ IR·w,
#   F·w̄ ↔ VI·w̄) over negatives;
# - **L_ssim** (`rpfnet_ssim_term`): (1 − SSIM₃ₓ₃(F, VI))/2 + (1 − SSIM₃ₓ₃(F, IR))/2;
# - **L_SS** (`saliency_structure_loss`) on the auxiliary decoder's map M'.

# %%
show(rpfnet_mask)

# %% [markdown]
# ### Exercise 3 · the adaptive mask w (Eq. 10–11, code form)
#
# Write `my_rpfnet_mask(ir, vi, *, form="code", return_saliency=False)`: S_M = σ((D − mean D)/std D) with
# D = IR − VI, S_IR = σ((IR − mean IR)/std IR), statistics over the whole tensor (`x.mean()`, `x.std()`);
# S_en = (S_IR(1 + S_M) + S_M(1 + S_IR))/2 for `form="code"`, with `1 − ·` for `"paper"`;
# w = (S_en > S_en.mean() + S_en.std()) as a float tensor of the input's dtype.

# %% tags=["exercise"]
from fusionlib.losses.rpfnet import rpfnet_mask as my_rpfnet_mask

# %% tags=["check"]
import torch
from fusionlib.labs import check_exercise
from fusionlib.losses.rpfnet import rpfnet_mask
check_exercise(my_rpfnet_mask, rpfnet_mask,
               inputs=lambda g: (torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)),
               hint="z-scores with the statistics of the whole batch tensor; sigmoid; threshold at mean + std of S_en")

# %% [markdown]
# ### Exercise 4 · the frequency contrastive loss L_c (Eq. 12, code negatives)
#
# Write `my_frequency_contrastive_loss(fused, ir, vi, w=None, *, negatives="code", eps=None,
# return_parts=False)` with `d(a, b) = mean |fft2(a) − fft2(b)|` (`spectral_l1`): numerator
# d(Fw, IRw) + d(Fw̄, VIw̄); denominator d(Fw, IRw̄) + d(Fw, VIw) + d(Fw̄, IRw̄) + d(Fw̄, VIw) + 1e-10
# (paper: the last two are d(Fw̄, IRw) + d(Fw̄, VIw̄), ε = 1e-9). w defaults to `rpfnet_mask(ir, vi)`.

# %% tags=["exercise"]
from fusionlib.losses.rpfnet import frequency_contrastive_loss as my_frequency_contrastive_loss

# %% tags=["check"]
import torch
from fusionlib.labs import check_exercise
from fusionlib.losses.rpfnet import frequency_contrastive_loss
check_exercise(my_frequency_contrastive_loss, frequency_contrastive_loss,
               inputs=lambda g: tuple(torch.rand(2, 1, 16, 16, generator=g) for _ in range(3)),
               hint="w̄ = 1 − w; every distance is spectral_l1 of two masked images; return positives / (negatives + eps)")

# %% [markdown]
# The terms for the baselines on a night crop (the mask computed on the crop). The perfect masked
# composite `IR·w + VI·(1 − w)` has L_c = 0: the loss asks for the infrared image inside w and the
# visible image outside, measured on spectra. The paper's negatives contain the second positive pair,
# so its L_c penalises what the numerator rewards.

# %%
crit = RPFNetLoss()
w_crop = rpfnet_mask(ir, vi)
cands = {"average": average_fusion(ir, vi), "max": max_fusion(ir, vi), "IR": ir, "VI": vi,
         "IR·w + VI·(1−w)": ir * w_crop + vi * (1 - w_crop)}
rows = {}
for name, f in cands.items():
    rows[name] = {"L_c code": float(frequency_contrastive_loss(f, ir, vi)),
                  "L_c paper": float(frequency_contrastive_loss(f, ir, vi, negatives="paper")),
                  "L_ssim": float(rpfnet_ssim_term(f, ir, vi)),
                  "L_SS (M' = f)": float(saliency_structure_loss(f, ir, vi))}
RESULTS["loss_terms_night_crop"] = rows
pd.DataFrame(rows).T.round(4)

# %% [markdown]
# ## 7 · Training, with laziness tracking
#
# `train_rpfnet` is the one training function (the benchmark notebook and `fuse` use it too): two
# Adam optimisers (network, auxiliary decoder) at 1e-3, the step schedule on the network only, loss
# `L_c + 5·L_ssim + L_SS`. Data: random crops of the 200 bundled RoadScene training pairs (RoadScene is
# drawn from FLIR; the authors trained on 3,383 FLIR patches of 128×128). The `LazinessTracker`
# follows the blocks of `model.laziness_blocks()`: stems, CPM, residual branch (RPM), fusion branch
# (FDFM), head.
#
# **Budget honesty.** Smoke trains a handful of steps on 64×64 crops: it shows the loop, the
# schedule and the tracker work, not a trained network. The `lab` profile trains a few hundred steps;
# the released weights (`checkpoint=...`) are what the later sections should be read with.

# %%
torch.manual_seed(seed)
net = RPFNet()
aux = RPFNetAux(32)
tracker = LazinessTracker()
t_train = time.perf_counter()
hist = train_rpfnet(net, loader, recipe=recipe, device=S.device, seed=seed, out_dir=str(S.train_dir),
                    epochs=B["epochs"], callbacks=[tracker], max_steps_per_epoch=B["steps"], progress=True, aux=aux)
t_train = time.perf_counter() - t_train
net, aux = net.to("cpu").eval(), aux.to("cpu").eval()
n_steps = int(sum(e.get("steps", 0) for e in hist.epochs))
print(f"trained {len(hist.epochs)} epochs, {n_steps} steps of {recipe.batch_size}×{recipe.crop_size}² crops "
      f"in {t_train:.1f} s on {S.device}")
weights_path = atomic_save(net.state_dict(), Path(out_dir) / "weights.pt")
save_laziness(tracker.records, out_dir)  # read by 06_benchmark
print("weights ->", weights_path)
RESULTS["training"] = {"steps": n_steps, "epochs": len(hist.epochs), "seconds": t_train, "recipe": B["recipe"],
                       "batch": recipe.batch_size, "crop": recipe.crop_size,
                       "first_loss": hist.epochs[0]["loss"], "final_loss": hist.epochs[-1]["loss"],
                       "final_terms": {k: hist.epochs[-1][k] for k in ("fcr", "ssim", "ss", "w_area")}}
hist.to_frame().round(5)

# %%
fig = viz.plot_history(hist.epochs, keys=["loss", ("fcr", "ssim"), "ss", ("lr_model", "lr_aux")])
viz.save_figure(fig, out_dir, "history")
fig

# %% [markdown]
# ### Laziness curves
#
# Relative weight change per epoch, ‖W_e − W_{e−1}‖_F / ‖W_{e−1}‖_F, per block. The shared stage
# module is updated by the gradients of all three applications, so its blocks (CPM, RPM, FDFM) see
# three gradient contributions per step; the head and stems one.

# %%
laziness_section(tracker.records, out_dir, RESULTS)

# %%
viz.laziness_explorer(tracker.records, relative=True, max_panels=6)

# %% [markdown]
# ## 8 · The adaptive mask w and its complement on real pairs
#
# w marks where the infrared image should win the fused image (hot targets above the mean + std of
# the saliency S_en); 1 − w is the visible image's share. Per image (the training computes the
# statistics over the whole batch of 16 crops, so a crop's mask depends on its batch mates). Code form
# and paper form side by side: the code's `(1 + ·)` rewards agreement of the residual and the
# intensity, the paper's `(1 − ·)` their disagreement.

# %%
flir = data.bundled("roadscene", "test")[0]
pairs = {"MSRS 00004N": (ir_n, vi_n), "MSRS 00055D": (ir_d, vi_d), f"RoadScene {flir['name']}": (flir["ir"][None], flir["vi"][None])}
panels, mask_stats = {}, {}
for name, (a, b) in pairs.items():
    w_code, s_en = rpfnet_mask(a, b, return_saliency=True)
    w_paper = rpfnet_mask(a, b, form="paper")
    tag = name.split()[-1]
    panels.update({f"{name} IR": a, f"{tag} VI": b, f"{tag} S_en": _norm(s_en[0, 0]), f"{tag} w (code)": w_code,
                   f"{tag} 1 − w": 1 - w_code, f"{tag} w (paper form)": w_paper})
    mask_stats[name] = {"area w code": float(w_code.mean()), "area w paper": float(w_paper.mean()),
                        "IR mean inside w": float(a[w_code.bool()].mean()), "IR mean outside": float(a[~w_code.bool()].mean())}
fig = viz.show_images(panels, ncols=6, panel_size=2.3)
viz.save_figure(fig, out_dir, "mask_w")
RESULTS["mask_w"] = mask_stats
print(pd.DataFrame(mask_stats).T.round(3))
fig

# %% [markdown]
# ## 9 · Inside the network: the CPM gate per stage, and the residual branch
#
# The CPM gate σ(BN(conv(F_R))) (probe `stage.cpm.gate`, channel mean) at each of the three
# applications of the shared stage, over the infrared image; and the residual-branch features
# (probe `f_r`: after the stem and after each stage). Released weights in the as-released mode when
# given, otherwise this run's network.

# %%
att_model, att_label = (released, "released") if released is not None else (net, "this run")
ca_ = B["crop"]
ir_c, vi_c = ir_n[..., 160:160 + ca_, 440:440 + ca_], vi_n[..., 160:160 + ca_, 440:440 + ca_]
with Recorder(att_model, ["stage.cpm.gate", "f_r"]) as rec:
    out_c = rpfnet_infer(att_model, ir_c, vi_c, mode="as_released")
gates, frs = rec["stage.cpm.gate"], rec["f_r"]
fig, axes = plt.subplots(2, 4, figsize=(15, 7))
for k, gt in enumerate(gates):
    viz.overlay_attention(ir_c[0, 0], gt[0].mean(0), alpha=0.55, ax=axes[0, k], title=f"{att_label}: CPM gate, stage {k + 1}")
viz.show_images({"fused (as released)": out_c[0, 0]}, axes=[axes[0, 3]])
for k, fr in enumerate(frs):
    viz.overlay_attention(ir_c[0, 0], fr[0].mean(0), alpha=0.55, ax=axes[1, k],
                          title="F_R stem" if k == 0 else f"F_R after stage {k}")
fig.tight_layout()
viz.save_figure(fig, out_dir, "cpm_gate_residual")
plt.close(fig)
RESULTS["cpm_gate"] = {"model": att_label, "crop": ca_,
                       "mean_per_stage": [float(gt.mean()) for gt in gates],
                       "corr_with_ir_per_stage": [_corr(gt[0].mean(0), ir_c[0, 0]) for gt in gates]}
print(pd.DataFrame({"gate mean": RESULTS["cpm_gate"]["mean_per_stage"],
                    "r(gate, IR)": RESULTS["cpm_gate"]["corr_with_ir_per_stage"]}, index=[1, 2, 3]).round(3))
fig

# %% [markdown]
# ## 10 · Spectra: the PSD analysis of Fig. 6
#
# The paper's Fig. 6 compares power spectral densities of the sources and the fused images. Below:
# the 2-D log spectra, the radially averaged PSD, and the PSD measures of `fusionlib.metrics`
# (`PSD_fid_A` / `PSD_fid_B`: R² of the source's log radial PSD by the fused image's; `PSD_entropy`:
# normalised spectral entropy; our definitions, see `fusionlib.metrics.psd`). Crop of 00055D (day)
# at the profile's size.

# %%
pc = B["psd_crop"]
a_p, b_p = ir_d[..., :pc, :pc], vi_d[..., :pc, :pc]
fused_p = {"average": average_fusion(a_p, b_p), "max": max_fusion(a_p, b_p),
           "RPFNet this run (as released)": rpfnet_infer(net, a_p, b_p, mode="as_released"),
           "RPFNet this run (eval)": rpfnet_infer(net, a_p, b_p, mode="eval")}
if released is not None:
    fused_p["RPFNet released (as released)"] = rpfnet_infer(released, a_p, b_p, mode="as_released")
    fused_p["RPFNet released (eval)"] = rpfnet_infer(released, a_p, b_p, mode="eval")
imgs = {"IR": a_p, "VI": b_p, **fused_p}
fig, axes = plt.subplots(1, len(imgs), figsize=(3.2 * len(imgs), 3.2))
for ax, (k, v) in zip(axes, imgs.items()):
    viz.plot_spectrum(v[0, 0], ax=ax, title=k, colorbar=False)
    ax.title.set_fontsize(8)
fig.tight_layout()
viz.save_figure(fig, out_dir, "psd_2d")
plt.close(fig)
fig

# %%
fig = viz.plot_radial_psd({k: v[0, 0] for k, v in imgs.items()}, title=f"radial PSD, 00055D crop {pc}×{pc}")
viz.save_figure(fig, out_dir, "psd_radial")
psd_rows = {k: {m_: _num(v_) for m_, v_ in metrics.evaluate(v, a_p, b_p, "cddfuse",
                                                             ["PSD_fid_A", "PSD_fid_B", "PSD_entropy"]).items()}
            for k, v in imgs.items()}
RESULTS["psd"] = {"crop": pc, "rows": psd_rows}
print(pd.DataFrame(psd_rows).T.round(4))
fig

# %% [markdown]
# ## 11 · Colour: full range (ours) vs the released studio range
#
# The network fuses luminance. We restore colour by putting the visible image's full-range Cb/Cr back
# with the fused Y (`data.merge_luma`, the inverse of how Y was made). The released `test.py` instead
# computes studio-swing Cb/Cr and rebuilds RGB as 1.164·(255·Y − 16) + …, treating the full-range Y as
# studio range (`fusionlib.ops.studio.released_colour`, which reproduces the authors' saved PNG of
# 00004N to one grey level). The difference, in numbers:

# %%
col_model, col_label = (released, "released") if released is not None else (net, "this run")
vi_rgb = data.merge_luma(day["vi"], day["vi_cbcr"])[None]                      # the visible RGB
ccrop = (slice(None), slice(None), slice(100, 100 + pc), slice(200, 200 + pc))
fy = rpfnet_infer(col_model, ir_d[ccrop], vi_d[ccrop], mode="as_released")
rgb_full = data.merge_luma(fy, day["vi_cbcr"][None][ccrop])
rgb_studio = released_colour(fy, vi_rgb[ccrop])
lum = lambda t: 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]
colour = {"mean |Δ| (grey levels)": 255 * float((rgb_full - rgb_studio).abs().mean()),
          "max |Δ| (grey levels)": 255 * float((rgb_full - rgb_studio).abs().max()),
          "luma mean full": float(lum(rgb_full).mean()), "luma mean studio": float(lum(rgb_studio).mean()),
          "luma std ratio studio/full": float(lum(rgb_studio).std() / lum(rgb_full).std()),
          "clipped frac full": float(((rgb_full <= 0) | (rgb_full >= 1)).float().mean()),
          "clipped frac studio": float(((rgb_studio <= 0) | (rgb_studio >= 1)).float().mean())}
RESULTS["colour"] = {"model": col_label, **colour}
fig = viz.show_images({"visible RGB": vi_rgb[ccrop][0], f"{col_label}: full range (ours)": rgb_full[0],
                       "released studio-range": rgb_studio[0], "|Δ| ×4": (4 * (rgb_full - rgb_studio).abs()).clamp(0, 1)[0]},
                      ncols=4, panel_size=3.2)
viz.save_figure(fig, out_dir, "colour_full_vs_studio")
print(pd.Series(colour).round(4).to_string())
fig

# %% [markdown]
# ## 12 · The two inference modes, and evaluation against Table 4
#
# The released `test.py` never calls `eval()`, so every BatchNorm normalises with the statistics of
# the *test image itself* (`mode="as_released"`); standard inference uses the stored running
# statistics (`mode="eval"`). With the released weights the two differ a lot: as released, the output
# averages ≈ 0.55 on every image (night scenes included); in eval mode it is dim and low-contrast.
# **The paper's fused images, and so Table 4, come from the as-released mode**: that is the one that
# reproduces the published results. Side by side on the night pair:

# %%
modes_model, modes_label = (released, "released") if released is not None else (net, "this run")
mc = (slice(None), slice(None), slice(120, 120 + pc), slice(380, 380 + pc))
o_rel = rpfnet_infer(modes_model, ir_n[mc], vi_n[mc], mode="as_released")
o_eval = rpfnet_infer(modes_model, ir_n[mc], vi_n[mc], mode="eval")
modes = {"mean as_released": float(o_rel.mean()), "mean eval": float(o_eval.mean()),
         "max |Δ|": float((o_rel - o_eval).abs().max()), "mean |Δ|": float((o_rel - o_eval).abs().mean())}
RESULTS["inference_modes"] = {"model": modes_label, "crop": pc, **modes}
fig = viz.show_images({"IR": ir_n[mc], "VI": vi_n[mc], f"{modes_label} as_released": o_rel, f"{modes_label} eval": o_eval,
                       "|Δ|": (o_rel - o_eval).abs()}, ncols=5, panel_size=3.0)
viz.save_figure(fig, out_dir, "inference_modes")
print({k: round(v, 4) for k, v in modes.items()})
fig

# %% [markdown]
# Table 4 of the paper reports EN, SF, SD, CC, SCD and VIFF on TNO, MSRS and M3FD. We compute them with
# the `"cddfuse"` preset (the CDDFuse evaluator, whose metric names — VIFF among them — the paper
# uses; the paper does not say which toolbox). The paper's Table 4 values are **not reproduced here**:
# our reference notes do not record them, and the bundled pairs are small subsets (TNO 20, MSRS 22,
# M3FD 1) of the test sets. The cell prints which pairs, which size and which budget gave each number.
# A metric that is undefined on an image (SCD when F minus a source is constant, e.g. the max baseline
# equal to one source on a crop) is left out of the mean, and stored as None when no image defines it.
# Images are fused one at a time (as_released: per-image BN statistics).

# %%
T4 = ["EN", "SF", "SD", "CC", "SCD", "VIFF"]
methods = {"average": average_fusion, "max": max_fusion,
           "RPFNet this run (as_released)": lambda x, y: rpfnet_infer(net, x, y, mode="as_released"),
           "RPFNet this run (eval)": lambda x, y: rpfnet_infer(net, x, y, mode="eval")}
if released is not None:
    methods["RPFNet released (as_released)"] = lambda x, y: rpfnet_infer(released, x, y, mode="as_released")
    methods["RPFNet released (eval)"] = lambda x, y: rpfnet_infer(released, x, y, mode="eval")


def _centre(x, size):
    if size is None:
        return x
    h, w = min(size[0], x.shape[-2]), min(size[1], x.shape[-1])
    t0, l0 = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., t0:t0 + h, l0:l0 + w]


def evaluate_sets(sets, n, size):
    rows = []
    for set_name in sets:
        ds = data.bundled(set_name, "test")
        for nm in (ds.names[:n] if n else ds.names):
            s = ds.by_name(nm)
            x, y = _centre(s["ir"][None], size), _centre(s["vi"][None], size)
            for method, fn in methods.items():
                with torch.no_grad():
                    fz = fn(x, y).clamp(0, 1)
                vals = metrics.evaluate(fz, x, y, "cddfuse", T4)
                rows.append({"set": set_name, "image": nm, "size": f"{x.shape[-2]}x{x.shape[-1]}", "method": method,
                             **{k: float(v) for k, v in vals.items()}})
    return pd.DataFrame(rows)


t_eval = time.perf_counter()
df4 = evaluate_sets(["tno", "msrs", "m3fd"], B["n_eval"], B["eval_crop"])
t_eval = time.perf_counter() - t_eval
table4 = df4.groupby(["set", "method"])[T4].mean()
size_note = "full images" if B["eval_crop"] is None else f"centre {B['eval_crop'][0]}x{B['eval_crop'][1]} crops"
print(f"pairs per set: {df4.groupby('set').image.nunique().to_dict()} ({size_note}); preset 'cddfuse'; "
      f"'this run' = {n_steps} steps of {recipe.batch_size}x{recipe.crop_size}² crops; {t_eval:.1f} s")
RESULTS["table4"] = {f"{s}|{m}": {k: _num(v) for k, v in row.items()} for (s, m), row in table4.iterrows()}
RESULTS["eval"] = {"size": size_note, "preset": "cddfuse", "pairs": df4.groupby("set").image.unique().apply(list).to_dict(),
                   "seconds": t_eval}
table4.round(3)

# %% [markdown]
# ### The medical extension (Table 6) on the bundled Harvard pairs
#
# MRI in the first slot (`ir`), CT / PET / SPECT luma in the second (`vi`), as the bundled layout
# gives them; the network was trained on infrared–visible pairs only, as in the paper's
# generalisation experiment.

# %%
t_med = time.perf_counter()
df6 = evaluate_sets(["harvard_ct", "harvard_pet", "harvard_spect"], B["n_med"], B["med_crop"])
t_med = time.perf_counter() - t_med
table6 = df6.groupby(["set", "method"])[T4].mean()
print(f"pairs per set: {df6.groupby('set').image.nunique().to_dict()} "
      f"({'full 256x256' if B['med_crop'] is None else 'centre %dx%d crops' % B['med_crop']}); {t_med:.1f} s")
RESULTS["table6"] = {f"{s}|{m}": {k: _num(v) for k, v in row.items()} for (s, m), row in table6.iterrows()}
table6.round(3)

# %% [markdown]
# The fused night pair, as the paper shows it (full image at lab/paper, crop at smoke): does the fused
# image keep the infrared targets (the pedestrians) and the visible texture?

# %%
fc = (slice(None), slice(None), slice(None), slice(None)) if B["eval_crop"] is None else mc
show_f = {"IR": ir_n[fc], "VI": vi_n[fc], "average": average_fusion(ir_n[fc], vi_n[fc]),
          "this run (as_released)": rpfnet_infer(net, ir_n[fc], vi_n[fc], mode="as_released")}
if released is not None:
    show_f["released (as_released)"] = rpfnet_infer(released, ir_n[fc], vi_n[fc], mode="as_released")
fig = viz.show_images(show_f, ncols=len(show_f), panel_size=3.4)
viz.save_figure(fig, out_dir, "fused_night")
fig

# %% [markdown]
# ## 13 · Efficiency
#
# Parameters, FLOPs (`torch.utils.flop_counter`: 2 FLOPs per multiply-add; FFTs are not counted;
# ours are ≈ 2 % below the authors' forward because we do not compute the discarded attention) and
# latency on this run's device, in both inference modes. The authors' forward took 5.3 s at 480×640
# on a 2-thread CPU (reference notes); `benchmarks/bench_rpfnet.py` times ours against it.

# %%
cost128 = profiling.count_flops(net0, torch.Size([1, 1, 128, 128]), torch.Size([1, 1, 128, 128]), meta=True)
cost_full = profiling.count_flops(net0, torch.Size([1, 1, 480, 640]), torch.Size([1, 1, 480, 640]), meta=True)
print(f"128x128: {cost128['gmac']:.3f} GMAC = {cost128['gflops']:.3f} GFLOPs (authors' code: {PAPER['flops_G_128x128']} GFLOPs)")
print(f"480x640: {cost_full['gmac']:.2f} GMAC = {cost_full['gflops']:.1f} GFLOPs (authors' code: {PAPER['flops_G_480x640']})")
print("the difference is the residual branch's attention, which the authors' code computes and discards and we skip")
RESULTS["efficiency"] = {"params": n_params, "gmac_128": cost128["gmac"], "gflops_128": cost128["gflops"],
                         "gmac_480x640": cost_full["gmac"], "gflops_480x640": cost_full["gflops"]}


class Infer(torch.nn.Module):
    """``rpfnet_infer`` in one mode, as a module for ``measure_latency``."""

    def __init__(self, model, mode):
        super().__init__()
        self.m, self.mode = model, mode

    def forward(self, a, b):
        return rpfnet_infer(self.m, a, b, mode=self.mode)


lat = {}
net0 = net0.to(S.device).eval()
for hh, ww in [(128, 128)] + ([(480, 640)] if B["latency_full"] else []):
    xi = torch.rand(1, 1, hh, ww, device=S.device)
    for mode in ("as_released", "eval"):
        r = profiling.measure_latency(Infer(net0, mode), xi, xi, warmup=1, repeats=B["lat_repeats"])
        lat[f"{mode}_{hh}x{ww}_ms"] = r["median_s"] * 1e3
        print(f"{mode:11s} {hh}x{ww} on {r['device']} ({r['threads']} threads): {r['median_s'] * 1e3:.1f} ms ({r['fps']:.1f} FPS)")
if B["latency_full"] and S.device.type == "cpu":
    print(f"ratio authors' 5.3 s / ours (eval, 480x640) = {5.3 / (lat['eval_480x640_ms'] / 1e3):.2f}")
net0 = net0.to("cpu")
RESULTS["efficiency"]["latency"] = lat
RESULTS["efficiency"]["latency_device"] = str(S.device)

# %% [markdown]
# ## 14 · Results and questions
#
# `results.json` holds the budget, the phase experiment, the walk check, the parameter counts, the
# shared-vs-separate experiment, the loss terms, training and laziness, the mask statistics, the CPM
# gate statistics, the PSD measures, the colour difference, the two inference modes, Tables 4 and 6
# (with the pairs and sizes) and the cost; every number in it is finite (None where something needs
# the released weights and they were not given).

# %%
RESULTS["seconds"] = {"train": t_train, "eval": t_eval, "medical": t_med, "total": time.perf_counter() - T0}
path = record(out_dir, RESULTS, meta=S)
print("wrote", path)

# %% [markdown]
# ### Questions for a reading group
#
# 1. FDFM applies a 1×1 convolution to the real and imaginary parts of the spectrum, then a ReLU.
#    After the ReLU every coefficient lies in the first quadrant (§3). What does that do to the phase,
#    which §2 showed carries the structure? Would an amplitude/phase parametrisation be better?
# 2. The released network applies **one** stage module three times. What does weight sharing buy
#    (parameters, a recurrent/unrolled reading) and cost? Look at the experiment of §5.
# 3. The residual branch's attention is computed and discarded in the released code, yet the paper's
#    ablations credit the RPM. What exactly was ablated, then? How would you check a paper's ablation
#    against its code?
# 4. The released inference normalises each BatchNorm with the test image's own statistics, and its
#    outputs average ≈ 0.55 on every image. Which metrics of Table 4 (EN, SD, SF…) does a forced
#    mid-grey mean and stretched contrast favour? Is it fair to compare it with methods in eval mode?
# 5. The code's mask uses `(1 + ·)` where the paper writes `(1 − ·)`, and its L_c negatives differ
#    from Eq. 12, whose last negative equals a positive pair. Which version is "RPFNet"?
# 6. L_c divides the positive distances by the negative ones. What happens to the gradient when the
#    negatives grow, e.g. by making F very different from *both* sources everywhere?
# 7. Treating a full-range Y as studio range stretches contrast by 1.164 and clips (§11). Would that
#    change any of the Table 4 metrics if they were computed on the saved colour images?
