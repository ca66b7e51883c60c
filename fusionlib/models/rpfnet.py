"""RPFNet: Z. Guan, X. Wang, W. Qian, P. Liu, R. Ma, "Residual Prior-driven Frequency-aware Network for Image
Fusion", ACM MM 2025.

Authors' code: ``wang-x-1997/RPFNet`` @ 43e555a (``net.py``: ``FusionNetwork(init_channels=32,
num_iterations=3)``; ``train.py``, ``loss.py``, ``test.py``); released weights ``Trained/Model.pth`` (a
pickle of the whole model: read it without executing it with
``fusionlib.safe_pickle.convert_rpfnet_pickle``, or load an extracted state dict with
``fusionlib.checkpoints.load_rpfnet_released``).

The idea: the difference image ``IR - VIS`` is a *residual prior* that marks where the two sources
disagree (hot targets, lit regions). One branch follows that residual in the spatial domain (RPM:
dilated convolutions); the other fuses the sources in the frequency domain (FDFM: a 1x1 convolution
on the real/imaginary parts of the feature spectrum, then BatchNorm and ReLU *in the frequency domain*).
The 1x1 convolution alone is not global in space (its weights are shared by all frequencies, so it is a
channel mix, see :func:`fdfm_jacobian`); the global reach comes from the BatchNorm and ReLU applied to
the spectrum. A cross promotion module (CPM) lets the two branches steer each other before every stage.

As the released code builds it (C = 32, N = 3 stages)::

    F_R = CB(ir - vi).detach()-input      F_F = CB(cat(vi, ir))              CB = conv3x3 + BN + ReLU
    repeat N times (one shared stage module in the code):
        CPM:  s = CB3x3(F_F)              g = sigmoid(BN(conv1x1(F_R)))      (probe ``cpm.gate``)
        RPM:  F_R = conv1x1(cat[CB_d(s + F_R) for d in 1, 3, 5])            (dilated 3x3, 96 -> 32)
        FDFM: x = g * F_F + F_F;  F_F = CB3x3(x) + irfft2(ReLU(BN(conv1x1(rfft2(x)))))
    fused = sigmoid(conv3x3(CB(CB(F_R + F_F))))                              (32 -> 32 -> 16 -> 1)

Images are ``(B, 1, H, W)`` in [0, 1]; ``vi`` is the visible luma (BT.601 full range, as ``test.py``).
Our argument order is ``forward(ir, vi)``; the authors' is ``forward(visible_Y, infrared)``.

**The released inference uses training-mode BatchNorm** (``test.py`` never calls ``eval()`` and the
model was pickled in training mode): every BN normalises with the statistics of the test image itself.
:func:`rpfnet_infer` offers both, by name: ``"as_released"`` (batch statistics, per image, without
touching the stored running statistics) and ``"eval"`` (the stored running statistics). The two differ a
lot (notebooks/released_code.md §RPFNet: as-released outputs average ≈ 0.55 on every image, eval
outputs are dim).

Deviations from the authors' code (none change the default model's outputs; ``tests/test_rpfnet.py``
reproduces the authors' outputs to < 1e-4 in both modes):

- RPM's channel attention (GAP -> FC 32->8 -> ReLU -> FC 8->32 -> sigmoid) and spatial attention
  (1x1 32->16 + BN + ReLU, 7x7 16->1, sigmoid) are built, so the released weights load, but their
  outputs are thrown away in the code (a list comprehension shadows the attended features). We do not
  compute them at all; the only trace of the difference is that our training does not update the SA's
  BN running statistics, which no output uses. Their 1,897 parameters receive no gradient.
- Parameter *names* are role names (``stage.rpm.dilated.0.0.weight`` for
  ``iteration_block.residual_branch.dilated_convs.0.0.weight``); ``fusionlib.checkpoints.rpfnet_key_map``
  is the table.

Paper switches (``RPFNetConfig``): ``shared_stages=False`` builds N stages with separate weights (the
paper reads so; the code shares one); ``attention_in_rpm=True`` applies SA(CA(x)) before the dilated
convolutions (paper Eq. 3); ``cpm_kernel=3`` makes the CPM gate convolution 3x3 (paper Eq. 2; code 1x1).

The auxiliary decoder of the self-supervised loss (training only, not in the released file) is
:class:`RPFNetAux`, applied to the last residual feature from :meth:`RPFNet.forward_features`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from fusionlib.models._registry import register_model
from fusionlib.recipes import Recipe

__all__ = ["ConvBNReLU", "CPM", "RPM", "FDFM", "RPFNetStage", "RPFNetHead", "RPFNetAux", "RPFNet",
           "RPFNetConfig", "rpfnet_infer", "batch_stat_bn", "PAPER", "RPFNET_RECIPES", "RPFNET_MILESTONES",
           "train_rpfnet", "rpfnet_train_step", "PAPER_TRAINING", "fdfm_jacobian", "jacobian_spread"]

#: What the code measures (notebooks/released_code.md §RPFNet); the paper states no parameter count in its text.
PAPER = {"params_code": 72_074, "params_aux": 14_113, "params_unused_attention": 1_897,
         "flops_G_128x128": 5.750, "flops_G_480x640": 107.8}

#: The paper's training budget (Sec. 4.1.1-4.1.2) and the released ``train.py``'s epochs (the paper states
#: none): 3,383 pre-cropped 128x128 FLIR patches, batch 16 without drop_last = 212 steps per epoch.
PAPER_TRAINING = {"train_pairs": 180, "train_patches": 3_383, "crop": 128, "batch": 16, "epochs_code": 100,
                  "steps_per_epoch": -(-3_383 // 16), "steps": 100 * -(-3_383 // 16),
                  "mif_train_pairs": 217, "mif_test": {"MRI-PET": 10, "MRI-SPECT": 20}}


# --- basic block ----------------------------------------------------------------------------------------
class ConvBNReLU(nn.Sequential):
    """``ReLU(BN(conv(x)))``, the authors' CB; conv with bias, ``padding = dilation * (k // 2)``.

    Children ``0`` (conv), ``1`` (BN), ``2`` (ReLU), as in the authors' ``nn.Sequential``s.

    Shape:
        (B, C_in, H, W) -> (B, C_out, H, W)

    Examples:
        >>> ConvBNReLU(2, 4)(torch.rand(1, 2, 8, 8)).shape
        torch.Size([1, 4, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> None:
        pad = dilation * (kernel_size // 2)
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad, dilation=dilation),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


# --- CPM: cross promotion ---------------------------------------------------------------------------------
class CPM(nn.Module):
    """Cross promotion module (paper Eq. 2): each branch prepares a prompt for the other.

    ``spatial_enh = CB3x3(F_F)`` (added to the residual branch's input) and
    ``gate = sigmoid(BN(conv_k(F_R)))`` with k = 1 as released (3 in the paper); the fusion branch's input
    is ``F_F * gate + F_F`` (the "+ F_F" is done by the stage). The gate passes through the probe point
    ``gate`` (an ``nn.Identity``; hook it to see where the residual steers the frequency branch).

    Shape:
        f_r, f_f (B, C, H, W) -> spatial_enh (B, C, H, W), freq_enh = F_F * gate (B, C, H, W)

    Examples:
        >>> s, f = CPM(8)(torch.rand(1, 8, 6, 6), torch.rand(1, 8, 6, 6))
        >>> s.shape, f.shape
        (torch.Size([1, 8, 6, 6]), torch.Size([1, 8, 6, 6]))
    """

    def __init__(self, channels: int, gate_kernel: int = 1) -> None:
        super().__init__()
        # released names: spatial_to_freq (the gate, from F_R), freq_to_spatial (from F_F)
        self.gate_conv = nn.Sequential(nn.Conv2d(channels, channels, gate_kernel, padding=gate_kernel // 2),
                                       nn.BatchNorm2d(channels), nn.Sigmoid())
        self.spatial = ConvBNReLU(channels, channels, 3)
        self.gate = nn.Identity()  # probe point: sigmoid(BN(conv(F_R))), (B, C, H, W) in (0, 1)

    def forward(self, f_r: torch.Tensor, f_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spatial_enh = self.spatial(f_f)
        freq_enh = f_f * self.gate(self.gate_conv(f_r))
        return spatial_enh, freq_enh


# --- RPM: residual prior module (the authors' ResidualBranch) -------------------------------------------
class ChannelAttention(nn.Module):
    """``x * sigmoid(FC(ReLU(FC(GAP(x)))))`` with bias, C -> C/r -> C. Only used when ``attention_in_rpm``.

    Examples:
        >>> ChannelAttention(8, 4)(torch.ones(1, 8, 4, 4)).shape
        torch.Size([1, 8, 4, 4])
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean(dim=(2, 3)))  # (B, C)
        return x * w[:, :, None, None]


class SpatialAttention(nn.Module):
    """``x * sigmoid(conv7x7(ReLU(BN(conv1x1(x)))))``, C -> C/2 -> 1. Only used when ``attention_in_rpm``.

    Examples:
        >>> SpatialAttention(8)(torch.ones(2, 8, 9, 9)).shape
        torch.Size([2, 8, 9, 9])
    """

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = max(1, channels // 2)
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden),
                                 nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, 1, kernel_size, padding=kernel_size // 2), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.net(x)


class RPM(nn.Module):
    """Residual prior module (paper Eq. 3, the authors' ``ResidualBranch``): multi-scale dilated convs.

    ``conv1x1(cat[CB3x3_d(x) for d in dilations])`` (3C -> C, with bias), the CBs applied to ``x`` directly.
    ``ca`` / ``sa`` exist for the released weights; as released their outputs are discarded, so they are
    skipped here; with ``attention=True`` (the paper) ``x = SA(CA(x))`` first.

    Shape:
        x (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> RPM(8)(torch.rand(1, 8, 12, 12)).shape
        torch.Size([1, 8, 12, 12])
    """

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 3, 5), *, ca_reduction: int = 4,
                 attention: bool = False) -> None:
        super().__init__()
        self.attention = attention
        self.ca = ChannelAttention(channels, ca_reduction)
        self.sa = SpatialAttention(channels)
        self.dilated = nn.ModuleList(ConvBNReLU(channels, channels, 3, dilation=d) for d in dilations)
        self.fuse = nn.Conv2d(len(dilations) * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attention:
            x = self.sa(self.ca(x))
        return self.fuse(torch.cat([branch(x) for branch in self.dilated], dim=1))


# --- FDFM: frequency domain fusion (the authors' FourierUnit) -------------------------------------------
class FDFM(nn.Module):
    """Frequency domain fusion module (the authors' ``FourierUnit``): spatial CB plus a spectral 1x1 conv.

    ``out = CB3x3(x) + irfft2(ReLU(BN(conv1x1(R(rfft2(x))))))``: ``rfft2``/``irfft2`` over (H, W) with
    ``norm="ortho"``; ``R`` stacks the real and imaginary parts as 2C channels, interleaved per channel
    ``[re_0, im_0, re_1, im_1, ...]`` (the layout of LaMa's Fourier unit); the 2C -> 2C conv has no bias. The
    spectral path sees ``x`` itself, not the CB output (the paper's Eq. 4 feeds the FFT with ``CB3x3(x)``).

    What is global here (:func:`fdfm_jacobian` measures it): the 1x1 conv's weights are the same at every
    frequency, so the *linear* spectral path is a channel mix, local in space: exactly a 1x1 spatial conv
    when the weights act on (re, im) as a complex number times a real matrix, and otherwise that plus
    row-wise Hilbert-transform parts (the half-spectrum of ``rfft2``) on the pixel's row and on its point
    reflection. The reach over the whole image comes from the BatchNorm (statistics over all frequencies in
    training mode, a constant offset on every frequency in eval mode) and the ReLU, both applied to the
    spectrum. The ReLU output, ``(B, 2C, H, W//2 + 1)``, passes through the probe point ``spectrum``.

    Shape:
        x (B, C, H, W) -> (B, C, H, W)

    Examples:
        >>> FDFM(4)(torch.rand(1, 4, 10, 7)).shape
        torch.Size([1, 4, 10, 7])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.spectral_conv = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        self.spectral_bn = nn.BatchNorm2d(2 * channels)
        self.relu = nn.ReLU(inplace=True)
        self.spectrum = nn.Identity()  # probe point: spectral activations (B, 2C, H, W//2+1)
        self.spatial = ConvBNReLU(channels, channels, 3)

    def spectral(self, x: torch.Tensor, *, linear_only: bool = False) -> torch.Tensor:
        """The spectral path alone: ``(B, C, H, W) -> (B, C, H, W)``.

        ``linear_only=True`` skips the BatchNorm and the ReLU (``irfft2(conv1x1(rfft2(x)))``): the linear
        part, for analysis (:func:`fdfm_jacobian`).
        """
        b, c, h, w = x.shape
        z = torch.fft.rfft2(x, norm="ortho")                                       # (B, C, H, W//2+1) complex
        z = torch.stack((z.real, z.imag), dim=2).reshape(b, 2 * c, h, z.shape[-1])  # interleaved re/im
        z = self.spectral_conv(z)
        if not linear_only:
            z = self.spectrum(self.relu(self.spectral_bn(z)))
        z = z.reshape(b, c, 2, h, z.shape[-1])
        return torch.fft.irfft2(torch.complex(z[:, :, 0], z[:, :, 1]), s=(h, w), norm="ortho")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spectral(x) + self.spatial(x)


def fdfm_jacobian(fdfm: FDFM, x: torch.Tensor, pixel: tuple[int, int], *, path: str = "linear",
                  kind: str = "impulse") -> torch.Tensor:
    """Where the spectral path of an FDFM reaches in space, around pixel p, as an ``(H, W)`` map.

    - ``kind="impulse"``: ``|∂y/∂x · δ_p|`` summed over output channels: the response of every output pixel
      to an impulse at p (in every input channel) added to ``x``; for the linear path, its impulse response.
    - ``kind="dependence"``: ``|∂ Σ_c y[c, p] / ∂x|`` summed over input channels: which input pixels the
      output at p depends on (its receptive field).

    Args:
        fdfm: an :class:`FDFM` (its train/eval mode decides how its BatchNorm normalises under ``"full"``;
            wrap it in :func:`batch_stat_bn` to use batch statistics without updating the stored ones).
        x: the input ``(1, C, H, W)`` (the point the non-linear path is linearised at).
        pixel: p = ``(row, col)``.
        path: ``"linear"``: ``irfft2(conv1x1(rfft2(x)))`` only; ``"full"``: with BatchNorm and ReLU
            (:meth:`FDFM.spectral`).
        kind: ``"impulse"`` or ``"dependence"``.

    Returns:
        ``(H, W)``, non-negative.

    Examples:
        >>> f = FDFM(2)
        >>> fdfm_jacobian(f, torch.rand(1, 2, 8, 8), (3, 4)).shape
        torch.Size([8, 8])
    """
    if path not in ("linear", "full"):
        raise ValueError(f"fdfm_jacobian: path must be 'linear' or 'full', got {path!r}")
    if kind not in ("impulse", "dependence"):
        raise ValueError(f"fdfm_jacobian: kind must be 'impulse' or 'dependence', got {kind!r}")

    def f(inp: torch.Tensor) -> torch.Tensor:
        return fdfm.spectral(inp, linear_only=(path == "linear"))

    x = x.detach()
    with torch.enable_grad():
        if kind == "impulse":
            delta = torch.zeros_like(x)
            delta[0, :, pixel[0], pixel[1]] = 1.0
            _, resp = torch.autograd.functional.jvp(f, x, delta)
            return resp[0].detach().abs().sum(0)
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(xg)[0, :, pixel[0], pixel[1]].sum(), xg)
    return g[0].abs().sum(0)


def jacobian_spread(j: torch.Tensor, pixel: tuple[int, int], radius: int = 3, rel_tol: float = 1e-6
                    ) -> dict[str, float]:
    """How local an ``(H, W)`` map from :func:`fdfm_jacobian` is around p (distances circular, as the FFT's).

    Returns ``near`` (share of the total within ``radius`` px of p, Chebyshev), ``at_p`` (share at p itself),
    ``rows`` (share on p's row and on the row of its point reflection ``-p``), ``support`` (share of pixels
    above ``rel_tol`` times the maximum).

    Examples:
        >>> j = torch.zeros(8, 8); j[3, 4] = 1.0
        >>> jacobian_spread(j, (3, 4))["near"], jacobian_spread(j, (3, 4))["support"]
        (1.0, 0.015625)
    """
    h, w = j.shape
    dy = (torch.arange(h) - pixel[0]).remainder(h)
    dx = (torch.arange(w) - pixel[1]).remainder(w)
    dy, dx = torch.minimum(dy, h - dy), torch.minimum(dx, w - dx)
    near = (dy[:, None] <= radius) & (dx[None, :] <= radius)
    rows = torch.zeros(h, w, dtype=torch.bool)
    rows[pixel[0]] = True
    rows[(-pixel[0]) % h] = True
    total = j.sum().clamp(min=1e-30)
    return {"near": float(j[near].sum() / total), "at_p": float(j[pixel[0], pixel[1]] / total),
            "rows": float(j[rows].sum() / total), "support": float((j > rel_tol * j.max()).float().mean())}


# --- one stage (the authors' IterationBlock) ------------------------------------------------------------
class RPFNetStage(nn.Module):
    """One iteration: CPM, then RPM on ``spatial_enh + F_R`` and FDFM on ``freq_enh + F_F``.

    Shape:
        f_r, f_f (B, C, H, W) -> new f_r, new f_f (B, C, H, W)

    Examples:
        >>> r, f = RPFNetStage(8)(torch.rand(1, 8, 8, 8), torch.rand(1, 8, 8, 8))
        >>> r.shape, f.shape
        (torch.Size([1, 8, 8, 8]), torch.Size([1, 8, 8, 8]))
    """

    def __init__(self, channels: int, *, dilations: tuple[int, ...] = (1, 3, 5), ca_reduction: int = 4,
                 attention_in_rpm: bool = False, cpm_kernel: int = 1) -> None:
        super().__init__()
        self.cpm = CPM(channels, gate_kernel=cpm_kernel)
        self.rpm = RPM(channels, dilations, ca_reduction=ca_reduction, attention=attention_in_rpm)
        self.fdfm = FDFM(channels)

    def forward(self, f_r: torch.Tensor, f_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spatial_enh, freq_enh = self.cpm(f_r, f_f)
        return self.rpm(spatial_enh + f_r), self.fdfm(freq_enh + f_f)


# --- head and auxiliary decoder ---------------------------------------------------------------------------
class RPFNetHead(nn.Sequential):
    """``sigmoid(conv3x3(CB(CB(x))))``, C -> C -> C/2 -> 1 (14,113 parameters at C = 32).

    Children ``0..7`` = conv, BN, ReLU, conv, BN, ReLU, conv, Sigmoid (the authors' ``decoder`` indices).

    Examples:
        >>> RPFNetHead(8)(torch.rand(1, 8, 5, 5)).shape
        torch.Size([1, 1, 5, 5])
    """

    def __init__(self, channels: int, out_channels: int = 1) -> None:
        half = max(1, channels // 2)
        super().__init__(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=True),
                         nn.Conv2d(channels, half, 3, padding=1), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                         nn.Conv2d(half, out_channels, 3, padding=1), nn.Sigmoid())


class RPFNetAux(RPFNetHead):
    """Auxiliary decoder of the self-supervised loss L_SS (training only; not in the released file).

    Same layout as the head, applied to the last residual feature: ``RPFNetAux()(model.forward_features(ir,
    vi)[1])`` gives the map M' of the loss. 14,113 parameters at C = 32.

    Examples:
        >>> sum(p.numel() for p in RPFNetAux(32).parameters())
        14113
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__(channels)


# --- the network ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RPFNetConfig:
    """RPFNet hyper-parameters; defaults are the released model's (``net.py``)."""

    channels: int = 32                  # init_channels = 32
    num_stages: int = 3                 # num_iterations = 3
    shared_stages: bool = True          # True: one IterationBlock applied N times (code); False: paper
    attention_in_rpm: bool = False      # False: code (CA/SA outputs discarded); True: paper Eq. 3
    cpm_kernel: int = 1                 # 1: code; 3: paper Eq. 2
    dilations: tuple[int, ...] = (1, 3, 5)
    ca_reduction: int = 4               # channel attention 32 -> 8 -> 32
    in_channels: int = 1                # one luminance channel per modality


class RPFNet(nn.Module):
    """The RPFNet network: ``forward(ir, vi) -> fused`` in (0, 1), all ``(B, 1, H, W)``.

    The residual branch starts from ``(ir - vi).detach()`` and the fusion branch from ``cat(vi, ir)``
    (this channel order, as released). Probe points (forward hooks): ``f_r`` and ``f_f`` see the two
    branch features after the stems and after every stage (N + 1 calls per forward; ``fusionlib.probes
    .Recorder`` keeps them all), ``fused_feat`` sees ``F_R + F_F``; ``*.cpm.gate`` and ``*.fdfm.spectrum``
    are inside the stages.

    Args:
        config: an ``RPFNetConfig``; keyword ``overrides`` replace its fields.

    Examples:
        >>> m = RPFNet(channels=8, num_stages=2)
        >>> m(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)).shape
        torch.Size([1, 1, 16, 16])
    """

    def __init__(self, config: RPFNetConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = RPFNetConfig(**overrides) if config is None else dataclasses.replace(config, **overrides)
        if cfg.num_stages < 1:
            raise ValueError(f"RPFNet: num_stages must be >= 1, got {cfg.num_stages}")
        if cfg.cpm_kernel % 2 != 1:
            raise ValueError(f"RPFNet: cpm_kernel must be odd, got {cfg.cpm_kernel}")
        self.config = cfg
        c = cfg.channels
        self.stem_residual = ConvBNReLU(cfg.in_channels, c, 3)       # released: init_spatial
        self.stem_fusion = ConvBNReLU(2 * cfg.in_channels, c, 3)     # released: init_freq
        stage = dict(dilations=tuple(cfg.dilations), ca_reduction=cfg.ca_reduction,
                     attention_in_rpm=cfg.attention_in_rpm, cpm_kernel=cfg.cpm_kernel)
        if cfg.shared_stages:
            self.stage = RPFNetStage(c, **stage)                     # released: iteration_block
        else:
            self.stages = nn.ModuleList(RPFNetStage(c, **stage) for _ in range(cfg.num_stages))
        self.head = RPFNetHead(c, cfg.in_channels)                   # released: decoder
        self.f_r = nn.Identity()         # probe point: residual-branch feature, stem and every stage
        self.f_f = nn.Identity()         # probe point: fusion-branch feature, stem and every stage
        self.fused_feat = nn.Identity()  # probe point: F_R + F_F, the head's input

    def stage_modules(self) -> list[RPFNetStage]:
        """The stage applied at each of the N iterations (the same module N times when shared)."""
        if self.config.shared_stages:
            return [self.stage] * self.config.num_stages
        return list(self.stages)

    def forward_features(self, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(fused (B, 1, H, W), last residual feature F_R^N (B, C, H, W))``.

        F_R^N is the input of the auxiliary decoder :class:`RPFNetAux` (training only).
        """
        _check_pair(ir, vi, self.config.in_channels)
        f_r = self.f_r(self.stem_residual((ir - vi).detach()))
        f_f = self.f_f(self.stem_fusion(torch.cat([vi, ir], dim=1)))
        for stage in self.stage_modules():
            f_r, f_f = stage(f_r, f_f)
            f_r, f_f = self.f_r(f_r), self.f_f(f_f)
        return self.head(self.fused_feat(f_r + f_f)), f_r

    def forward(self, ir: torch.Tensor, vi: torch.Tensor, *, return_residual: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``fused (B, 1, H, W)``; with ``return_residual=True`` also F_R^N (as :meth:`forward_features`).

        The keyword lets a training step get the auxiliary decoder's input through ``model(...)`` itself
        (so that a DDP wrapper sees the call).
        """
        fused, f_r = self.forward_features(ir, vi)
        return (fused, f_r) if return_residual else fused

    def laziness_blocks(self) -> dict[str, list[str]]:
        """Functional blocks for ``fusionlib.laziness``: block name -> parameter-name prefixes."""
        if self.config.shared_stages:
            prefixes = ["stage."]
        else:
            prefixes = [f"stages.{i}." for i in range(len(self.stages))]
        return {
            "stem": ["stem_residual.", "stem_fusion."],
            "cpm": [p + "cpm." for p in prefixes],
            "residual_branch": [p + "rpm." for p in prefixes],
            "fusion_branch": [p + "fdfm." for p in prefixes],
            "head": ["head."],
        }


def _check_pair(ir: torch.Tensor, vi: torch.Tensor, channels: int) -> None:
    for name, t in (("ir", ir), ("vi", vi)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != channels:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"RPFNet: {name} must be (B, {channels}, H, W), got {shape}")
    if ir.shape != vi.shape:
        raise ValueError(f"RPFNet: ir {tuple(ir.shape)} and vi {tuple(vi.shape)} must have the same shape")


# --- inference modes ----------------------------------------------------------------------------------
@contextlib.contextmanager
def batch_stat_bn(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block every BatchNorm normalises with the batch's own statistics and updates nothing.

    This is what the released ``test.py`` computes (training-mode BN), minus its side effect of
    overwriting the running statistics. Implemented by putting each BN in training mode with
    ``track_running_stats=False`` (PyTorch then calls ``F.batch_norm(training=True)`` with no running
    buffers); modes and flags are restored on exit, even after an exception.

    Examples:
        >>> bn = nn.BatchNorm2d(2).eval()
        >>> with batch_stat_bn(bn):
        ...     y = bn(torch.rand(1, 2, 4, 4) * 5)
        >>> bn.training, float(bn.running_mean.abs().sum()), int(bn.num_batches_tracked)
        (False, 0.0, 0)
    """
    saved = [(m, m.training, m.track_running_stats) for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    try:
        for m, _, _ in saved:
            m.training, m.track_running_stats = True, False
        yield model
    finally:
        for m, training, track in saved:
            m.training, m.track_running_stats = training, track


InferMode = Literal["as_released", "eval"]


def rpfnet_infer(model: RPFNet, ir: torch.Tensor, vi: torch.Tensor, mode: InferMode = "as_released"
                 ) -> torch.Tensor:
    """Fuse with RPFNet in a named BatchNorm mode, without gradients and without changing the model.

    Args:
        model: an :class:`RPFNet` (its train/eval mode is left as it was).
        ir, vi: ``(B, 1, H, W)`` in [0, 1]; ``vi`` is the visible luma.
        mode: ``"as_released"``: BN uses each image's own statistics (what ``test.py`` computes; images of
            a batch are run one by one, as ``test.py`` does, so a batch gives the same result as single
            images); ``"eval"``: BN uses the stored running statistics (standard inference).

    Returns:
        fused ``(B, 1, H, W)`` in (0, 1).

    Examples:
        >>> m = RPFNet(channels=8, num_stages=1)
        >>> rpfnet_infer(m, torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), mode="eval").shape
        torch.Size([2, 1, 8, 8])
    """
    if mode not in ("as_released", "eval"):
        raise ValueError(f"rpfnet_infer: mode must be 'as_released' or 'eval', got {mode!r}")
    _check_pair(ir, vi, model.config.in_channels)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if mode == "eval":
                return model(ir, vi)
            with batch_stat_bn(model):
                return torch.cat([model(ir[i:i + 1], vi[i:i + 1]) for i in range(ir.shape[0])], dim=0)
    finally:
        model.train(was_training)


# --- training -----------------------------------------------------------------------------------------
#: The paper's MultiStepLR milestones (epochs) and factor; on the main model's optimiser only.
RPFNET_MILESTONES = (20, 40, 60, 80)

RPFNET_RECIPES: dict[str, Recipe] = {
    # Recipe's "step" schedule lr * 0.5 ** (epoch // 20), floored at lr * 0.5 ** 4, is MultiStepLR
    # ([20, 40, 60, 80], gamma 0.5) exactly over the 100 epochs.
    "paper": Recipe(
        optimizer="adam", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0,   # train.py: two Adams, 1e-3
        scheduler="step", step_size=20, gamma=0.5, min_lr=1e-3 * 0.5 ** 4,  # MultiStepLR, main model only
        batch_size=16, crop_size=128, epochs=100,                          # paper Sec. 4.1 / train.py
        datasets=("roadscene/train",),
        notes="wang-x-1997/RPFNet train.py: seed 123, 3,383 pre-cropped 128x128 FLIR patches, no augmentation, "
              "batch 16 = 212 steps/epoch, 21,200 steps in 100 epochs; bundled stand-in: one random 128x128 crop "
              "of each of the 200 RoadScene (FLIR) training pairs per epoch, batch 16 with drop_last = 12 steps/"
              "epoch, 1,200 steps (17.7x fewer; the lr halvings come after 240 steps instead of 4,240)"),
    "lab": Recipe(
        optimizer="adam", lr=1e-3, scheduler="step", step_size=6, gamma=0.5, min_lr=1e-3 * 0.5 ** 4,
        batch_size=8, crop_size=96, epochs=30, datasets=("roadscene/train",),
        notes="paper optimisers; the schedule's four halvings squeezed into 30 short epochs of 25 steps (10 and "
              "20 epochs left the network at or below average fusion's VIF on the bundled pairs); 8 x 96x96 crops "
              "(the notebook cuts epochs to a few dozen steps: minutes on a CPU, seconds on a GPU)"),
    "smoke": Recipe(
        optimizer="adam", lr=1e-3, scheduler="step", step_size=1, gamma=0.5, min_lr=1e-3 * 0.5 ** 4,
        batch_size=4, crop_size=64, epochs=2, datasets=("roadscene/train",),
        notes="CI: a handful of CPU steps on 64x64 crops; checks the loop runs, not the result"),
}


def rpfnet_train_step(aux: nn.Module, criterion: nn.Module):
    """A ``fusionlib.train.fit`` step: ``fused, F_R = model(ir, vi, return_residual=True)``,
    ``criterion(fused, ir, vi, aux=aux(F_R))`` -> ``(total, terms)``.

    Gradients of L_SS flow through the auxiliary decoder into the residual branch (as in ``train.py``).
    """

    def step(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ir, vi = batch["ir"], batch["vi"]
        fused, f_r = model(ir, vi, return_residual=True)
        return criterion(fused, ir, vi, aux=aux(f_r))

    return step


def train_rpfnet(model: RPFNet, loader, *, recipe: Recipe, device: str | torch.device = "auto", seed: int = 123,
                 out_dir: str | None = None, epochs: int | None = None, callbacks=(),
                 max_steps_per_epoch: int | None = None, progress: bool = True, aux: RPFNetAux | None = None,
                 criterion: nn.Module | None = None):
    """Train RPFNet the released way: two Adam optimisers (network, auxiliary decoder), the step schedule
    on the network's optimiser only, loss ``L_c + 5 L_ssim + L_SS`` (:class:`fusionlib.losses.rpfnet.RPFNetLoss`).

    Built on :func:`fusionlib.train.fit` (checkpoint and exact resume in ``out_dir``): the optimisers go in as
    ``{"model": ..., "aux": ...}`` and the auxiliary decoder as ``extra_state["aux"]`` (so it is saved,
    restored and moved to ``device``). Pass a ``fusionlib.laziness.LazinessTracker`` in ``callbacks`` to
    follow :meth:`RPFNet.laziness_blocks`.

    Args:
        model: an :class:`RPFNet`.
        loader: batches ``{"ir", "vi"}`` of ``(B, 1, h, w)`` crops (``fusionlib.train.make_loader``).
        recipe: one of :data:`RPFNET_RECIPES` (lr, betas, schedule; ``epochs`` unless given).
        device, seed, out_dir, callbacks, max_steps_per_epoch, progress: as ``fit``.
        epochs: overrides ``recipe.epochs``.
        aux: the auxiliary decoder; a fresh :class:`RPFNetAux` (built after seeding) when None. Pass your
            own to keep it.
        criterion: default ``RPFNetLoss()`` (code variant).

    Returns:
        ``fusionlib.train.History`` (epoch means of ``loss``, ``fcr``, ``ssim``, ``ss``, ``w_area``, lr per
        optimiser).
    """
    from fusionlib.losses.rpfnet import RPFNetLoss
    from fusionlib.train import fit, seed_everything

    n_epochs = int(epochs if epochs is not None else (recipe.epochs or 0))
    if n_epochs < 1:
        raise ValueError(f"train_rpfnet: epochs must be given (argument or recipe.epochs), got {n_epochs}")
    if recipe.optimizer != "adam":
        raise ValueError(f"train_rpfnet: RPFNet trains with Adam, recipe.optimizer is {recipe.optimizer!r}")
    if aux is None:
        seed_everything(seed)
        aux = RPFNetAux(model.config.channels)
    criterion = RPFNetLoss() if criterion is None else criterion
    opts = {"model": torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=recipe.betas,
                                      weight_decay=recipe.weight_decay),
            "aux": torch.optim.Adam(aux.parameters(), lr=recipe.lr, betas=recipe.betas,
                                    weight_decay=recipe.weight_decay)}
    sched = {"model": torch.optim.lr_scheduler.LambdaLR(opts["model"], recipe.lr_lambda(n_epochs))}
    return fit(model, rpfnet_train_step(aux, criterion), loader, epochs=n_epochs, optimizer=opts,
               scheduler=sched, device=device, seed=seed, out_dir=out_dir, clip_grad_norm=recipe.clip_grad_norm,
               callbacks=list(callbacks), max_steps_per_epoch=max_steps_per_epoch, progress=progress,
               extra_state={"aux": aux}, run={"recipe": recipe})


# --- registration -------------------------------------------------------------------------------------
register_model("rpfnet", RPFNet, RPFNetConfig())
register_model("rpfnet_tiny", RPFNet, RPFNetConfig(channels=8, num_stages=2))
