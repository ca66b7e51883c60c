"""RPFNet inference fast path in eval mode: the same function as ``rpfnet_infer(mode="eval")``, fewer passes.

``fusionlib/models/rpfnet.py`` is the readable reference; this file re-associates its algebra, reading the
model's own parameters at every call (nothing cached). Checked against the reference and the authors'
golden eval-mode output (``tests/test_rpfnet.py``). What it does:

1. **BatchNorm folded into the convolutions.** In eval mode BN is a per-channel affine with the stored
   statistics, ``BN(W x + b) = (s W) x + s (b - mu) + beta`` with ``s = gamma / sqrt(var + eps)``, so each
   ConvBNReLU is one convolution and an in-place ReLU (the spectral 1x1 conv and its BN likewise).
2. **Channels-last (NHWC) features**, oneDNN's fast layout for these 32-channel 3x3 convolutions.
3. **The spectral path without copies.** ``rfft2`` runs over the H, W axes of the NHWC view, so the
   spectrum is ``(B, H, W/2+1, C)`` complex and ``view_as_real`` of it *is* the released interleaved
   layout ``[re_0, im_0, re_1, im_1, ...]`` along the last axis: the 2C x 2C spectral conv is one GEMM on it,
   its ReLU is in place, and ``view_as_complex`` hands the result straight back to ``irfft2``.
4. **CPM in place**: ``F_F * gate + F_F`` as ``(gate + 1) * F_F`` and ``spatial_enh + F_R`` into the
   fresh ``spatial_enh`` buffer.

Only the **eval** BatchNorm mode can be folded. The released test script's mode (``"as_released"``,
batch statistics per image) is left to the readable path: :func:`rpfnet_forward_fast` falls back to
:func:`~fusionlib.models.rpfnet.rpfnet_infer` there, and for the paper switch ``attention_in_rpm=True``.
Inference only: no gradients, no forward hooks (the probe points are not called).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["rpfnet_forward_fast", "fast_path_supported"]

_CL = torch.channels_last


def fast_path_supported(model: nn.Module, mode: str = "as_released") -> bool:
    """True when :func:`rpfnet_forward_fast` computes ``rpfnet_infer(model, ..., mode)`` by the fast path."""
    return mode == "eval" and not model.config.attention_in_rpm


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``bn(conv(x))`` with eval-mode BN (running statistics) folded in."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = -bn.running_mean if conv.bias is None else conv.bias - bn.running_mean
    return (conv.weight * scale.view(-1, 1, 1, 1)).contiguous(memory_format=_CL), bias * scale + bn.bias


def _conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    w, b = _fold(conv, bn)
    return F.conv2d(x, w, b, padding=conv.padding, dilation=conv.dilation)


def _cbr(x: torch.Tensor, m: nn.Sequential, at: int = 0) -> torch.Tensor:
    """``ConvBNReLU`` (children ``at``, ``at + 1``: conv, BN; then ReLU) as one folded conv and an in-place
    ReLU; channels-last."""
    return F.relu_(_conv_bn(x, m[at], m[at + 1]))


def _fdfm(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``FDFM``: ``CB3x3(x) + irfft2(ReLU(BN(conv1x1(R(rfft2(x))))))`` on a channels-last ``x``."""
    b, c, h, w = x.shape
    z = torch.fft.rfft2(x.permute(0, 2, 3, 1), dim=(1, 2), norm="ortho")  # (B, H, W/2+1, C) complex
    wt, bias = _fold(m.spectral_conv, m.spectral_bn)
    y = torch.addmm(bias, torch.view_as_real(z).reshape(-1, 2 * c), wt.flatten(1).t()).relu_()
    spectral = torch.fft.irfft2(torch.view_as_complex(y.view(b, h, -1, c, 2)), s=(h, w), dim=(1, 2),
                                norm="ortho")  # (B, H, W, C)
    out = _cbr(x, m.spatial)
    out.permute(0, 2, 3, 1).add_(spectral)
    return out


def _stage(st: nn.Module, f_r: torch.Tensor, f_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cpm, rpm = st.cpm, st.rpm
    rpm_in = _cbr(f_f, cpm.spatial).add_(f_r)                                   # spatial_enh + F_R
    gate = torch.sigmoid_(_conv_bn(f_r, cpm.gate_conv[0], cpm.gate_conv[1]))
    fdfm_in = gate.add_(1).mul_(f_f)                                            # F_F * gate + F_F
    branches = torch.cat([_cbr(rpm_in, d) for d in rpm.dilated], dim=1).contiguous(memory_format=_CL)
    new_r = F.conv2d(branches, rpm.fuse.weight.contiguous(memory_format=_CL), rpm.fuse.bias)
    return new_r, _fdfm(st.fdfm, fdfm_in)


def rpfnet_forward_fast(model: nn.Module, ir: torch.Tensor, vi: torch.Tensor, mode: str = "as_released"
                        ) -> torch.Tensor:
    """``rpfnet_infer(model, ir, vi, mode)``; by the restructured computation above when ``mode="eval"``."""
    from fusionlib.models.rpfnet import _check_pair, rpfnet_infer

    if not fast_path_supported(model, mode):
        return rpfnet_infer(model, ir, vi, mode=mode)
    _check_pair(ir, vi, model.config.in_channels)
    with torch.inference_mode():
        x_r = (ir - vi).contiguous(memory_format=_CL)
        x_f = torch.cat([vi, ir], dim=1).contiguous(memory_format=_CL)
        f_r = _cbr(x_r, model.stem_residual).contiguous(memory_format=_CL)
        f_f = _cbr(x_f, model.stem_fusion).contiguous(memory_format=_CL)
        for stage in model.stage_modules():
            f_r, f_f = _stage(stage, f_r, f_f)
        head = model.head
        y = _cbr(_cbr(f_r.add_(f_f), head, 0), head, 3)  # head: conv, BN, ReLU, conv, BN, ReLU, conv, sigmoid
        out = F.conv2d(y, head[6].weight.contiguous(memory_format=_CL), head[6].bias, padding=1)
        return torch.sigmoid_(out).contiguous()
