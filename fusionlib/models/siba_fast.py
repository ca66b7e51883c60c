"""SIBA inference fast path: the same function as ``SIBA.forward``, computed with fewer memory passes.

``fusionlib/models/siba.py`` is the readable reference; this file only re-associates its algebra, reading
the model's own parameters at every call (nothing cached, so it always follows the weights). It is checked
against the reference and the authors' golden outputs (< 1e-4; ``tests/test_siba.py``). What it does:

1. **Channels-last (NHWC) throughout.** Features live as ``(B, H, W, C)``; 3x3 convs see them as
   channels-last NCHW views (oneDNN's fast layout; depthwise convs run several times faster) and 1x1 convs
   are plain GEMMs on ``(B*H*W, C)``, so LayerNorm needs no transposed copies.
2. **K/V shared work.** ``ca_ir2vi`` and ``ca_irI2vi`` both read LayerNorm(f_vi), with *different*
   weights (LayerNorm γ, β and the K/V convs). The normalisation is computed once, each block's affine is
   folded into its 1x1 conv (``W (γ ⊙ x̂ + β) = (W diag γ) x̂ + W β``), the two 1x1 convs are stacked into
   one GEMM (C -> 4C) and the two depthwise convs into one; likewise for the f_ir pair.
3. **Attention without normalising the big tensors**: ``q̂ᵀk̂ = diag(1/‖q‖) (qᵀk) diag(1/‖k‖)``; the
   (C/h x C/h) maps act on V and the output projection as one C x C matrix ``W_proj · blockdiag(A)``,
   applied with the residual in one ``baddbmm``. Residual adds ride on GEMMs (``addmm``/``baddbmm``).
4. **Stems and CBSMs of one image in one pass**: the first convs of ``stem``, ``cbsm`` and ``cbsmI``
   read the stack ``[x, 1 - x]`` as one conv (2 -> 3C), their second convs run as one grouped conv, and
   the SE gates, shortcut and the per-module PReLU slopes are applied per channel group.
5. **Fewer fresh buffers.** Residuals, SE gates and PReLUs update intermediates in place (PReLU with its
   single slope as ``leaky_relu_``, the same products): at 480x640 a forward touches about 5.5 GB of new
   memory pages instead of 14.5 GB, and page faults were a third of the reference path's CPU time.

Use it through ``SIBA.forward_fast`` under ``torch.inference_mode()``; it supports the released
configuration family (WithBias LayerNorm, one-channel images; any ``dim``, ``num_heads``, ``sa_depth``,
``bias``, ``query_layernorm``) and falls back to ``SIBA.forward`` otherwise (``BiasFree`` LayerNorm, the
Table 2-4 ablations).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["siba_forward_fast", "fast_path_supported"]

_CL = torch.channels_last


def fast_path_supported(model: nn.Module, **infer_kwargs: object) -> bool:
    """True when ``siba_forward_fast`` computes ``model.forward`` (WithBias LayerNorm, 1-channel images,
    the full model of Fig. 2: no Table 2-4 ablation)."""
    cfg = model.config
    return cfg.LayerNorm_type == "WithBias" and cfg.in_channels == 1 and getattr(cfg, "is_full_model", True)


# --- layout helpers: features are (B, H, W, C) contiguous ---------------------------------------------
def _conv(t: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
          groups: int = 1) -> torch.Tensor:
    """'same' conv of an NHWC tensor, computed on its channels-last NCHW view; returns NHWC."""
    y = F.conv2d(t.permute(0, 3, 1, 2), weight.contiguous(memory_format=_CL), bias,
                 padding=weight.shape[-1] // 2, groups=groups)
    return y.permute(0, 2, 3, 1)


def _prelu_(t: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """In-place PReLU with a single slope (``leaky_relu_`` computes the same products, bit for bit)."""
    return F.leaky_relu_(t, float(slope))


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B, H*W, C), a view when the pixel axes are mergeable."""
    return t.reshape(t.shape[0], -1, t.shape[-1])


def _ln(t: torch.Tensor, norm: nn.Module | None = None) -> torch.Tensor:
    """LayerNorm over the channels of NHWC ``t``, with ``norm``'s affine, or none (folded elsewhere)."""
    if norm is None:
        return F.layer_norm(t, (t.shape[-1],), eps=1e-5)
    return F.layer_norm(t, (t.shape[-1],), norm.weight, norm.bias, norm.eps)


def _folded_1x1(conv: nn.Conv2d, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (C_out, C_in) and bias of ``conv(norm(x))`` acting on the *un-affined* normalised x."""
    w = conv.weight.flatten(1)  # (C_out, C_in)
    b = w @ norm.bias
    if conv.bias is not None:
        b = b + conv.bias
    return w * norm.weight, b


def _se_gate(se: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """SE gate (B, 1, 1, C) of an NHWC tensor."""
    fc1, fc2 = se.fc[0], se.fc[2]
    m = y.mean(dim=(1, 2))  # (B, C)
    return torch.sigmoid(F.linear(F.relu(F.linear(m, fc1.weight)), fc2.weight))[:, None, None, :]


def _column_norms(t: torch.Tensor) -> torch.Tensor:
    """L2 norm over pixels of each channel of (B, N, C), clamped like ``F.normalize`` (eps 1e-12).

    Read off the diagonal of the Gram matrix: one GEMM pass, faster on strided views than a reduction
    and, with its blocked accumulation, closer to the float64 value than ``vector_norm`` in float32.
    """
    return torch.diagonal(torch.bmm(t.transpose(1, 2), t), dim1=1, dim2=2).sqrt().clamp_min(1e-12)


# --- attention -------------------------------------------------------------------------------------
def _attend_and_project(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, residual: torch.Tensor,
                        attn: nn.Module, *, inplace: bool) -> torch.Tensor:
    """``residual + project_out(channel_attention(q, k, v))`` for NHWC q, k, v (views allowed).

    ``inplace`` adds into ``residual`` (contiguous, not needed afterwards) instead of a copy of it.
    """
    b, hgt, wid, c = residual.shape
    h = attn.num_heads
    d = c // h
    q, k, v = _rows(q), _rows(k), _rows(v)  # (B, N, C)
    gram = torch.bmm(q.transpose(1, 2), k)  # (B, C, C); only the per-head diagonal blocks are used
    gram = torch.diagonal(gram.view(b, h, d, h, d), dim1=1, dim2=3).permute(0, 3, 1, 2)  # (B, h, d, d)
    nq = _column_norms(q).view(b, h, d, 1)
    nk = _column_norms(k).view(b, h, 1, d)
    a = torch.softmax(gram / (nq * nk) * attn.temperature, dim=-1)  # (B, h, d, d)
    blocks = torch.einsum("bhij,hg->bhigj", a, torch.eye(h, dtype=a.dtype, device=a.device)).reshape(b, c, c)
    m = attn.project_out.weight.flatten(1) @ blocks  # (B, C, C) = W_proj · blockdiag(A)
    out = _rows(residual if inplace else residual.clone())
    out.baddbmm_(v, m.transpose(1, 2))
    if attn.project_out.bias is not None:
        out += attn.project_out.bias
    return out.view(b, hgt, wid, c)


def _gdfn(x: torch.Tensor, norm: nn.Module, ffn: nn.Module) -> torch.Tensor:
    """``x + GDFN(LN(x))`` on NHWC, accumulated into ``x``."""
    h = F.linear(_ln(x, norm), ffn.project_in.weight.flatten(1), ffn.project_in.bias)
    h = _conv(h, ffn.dwconv.weight, ffn.dwconv.bias, groups=ffn.dwconv.groups)
    x1, x2 = h.chunk(2, dim=-1)
    g = F.gelu(x1).mul_(x2)
    out = x.view(-1, x.shape[-1])  # in place: x is a fresh intermediate
    out.addmm_(g.reshape(-1, g.shape[-1]), ffn.project_out.weight.flatten(1).t())
    if ffn.project_out.bias is not None:
        out += ffn.project_out.bias
    return x


def _restormer_block(x: torch.Tensor, blk: nn.Module) -> torch.Tensor:
    qkv = F.linear(_ln(x, blk.norm1), blk.attn.qkv.weight.flatten(1), blk.attn.qkv.bias)
    dw = blk.attn.qkv_dwconv
    qkv = _conv(qkv, dw.weight, dw.bias, groups=dw.groups)
    q, k, v = qkv.chunk(3, dim=-1)
    x = _attend_and_project(q, k, v, x, blk.attn, inplace=True)
    return _gdfn(x, blk.norm2, blk.ffn)


def _sca_pair(f: torch.Tensor, queries: tuple[torch.Tensor, torch.Tensor], blocks: tuple[nn.Module, nn.Module]
              ) -> list[torch.Tensor]:
    """Two SCA blocks with the same K/V source ``f``: one LayerNorm, one stacked K/V GEMM and dwconv."""
    c = f.shape[-1]
    folded = [_folded_1x1(blk.attn.kv, blk.norm1) for blk in blocks]
    w = torch.cat([fw for fw, _ in folded])  # (4C, C)
    b = torch.cat([fb for _, fb in folded])
    dw = torch.cat([blk.attn.kv_dwconv.weight for blk in blocks])  # (4C, 1, 3, 3)
    dwb = None if blocks[0].attn.kv_dwconv.bias is None else torch.cat(
        [blk.attn.kv_dwconv.bias for blk in blocks])
    kv = _conv(F.linear(_ln(f), w, b), dw, dwb, groups=4 * c)  # (B, H, W, 4C) = [k_a, v_a, k_b, v_b]
    outs = []
    for i, (blk, q) in enumerate(zip(blocks, queries)):
        if not isinstance(blk.norm_q, nn.Identity):
            q = _ln(q, blk.norm_q)
        k, v = kv[..., 2 * c * i: 2 * c * i + c], kv[..., 2 * c * i + c: 2 * c * (i + 1)]
        x = _attend_and_project(q, k, v, f, blk.attn, inplace=i == len(blocks) - 1)  # f: last use
        outs.append(_gdfn(x, blk.norm2, blk.ffn))
    return outs


# --- stems and CBSMs of one image together ---------------------------------------------------------
def _stem_and_queries(x: torch.Tensor, stem: nn.Module, cbsm: nn.Module, cbsm_inv: nn.Module
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``stem(x)``, ``cbsm(x)``, ``cbsm_inv(1 - x)`` for a (B, 1, H, W) image; NHWC outputs."""
    c = stem.conv2.weight.shape[0]
    xs = torch.cat([x, 1 - x], dim=1).contiguous(memory_format=_CL)  # (B, 2, H, W)
    w1 = x.new_zeros(3 * c, 2, 3, 3)
    w1[:c, :1], w1[c:2 * c, :1], w1[2 * c:, 1:] = stem.conv1.weight, cbsm.conv1.weight, cbsm_inv.conv1.weight
    b1 = torch.cat([stem.conv1.bias, cbsm.conv1.bias, cbsm_inv.conv1.bias])
    modules = (stem, cbsm, cbsm_inv)

    def groups(t: torch.Tensor) -> list[torch.Tensor]:  # the three C-channel groups of an NHWC tensor
        return [t[..., i * c:(i + 1) * c] for i in range(3)]

    y = F.conv2d(xs, w1, b1, padding=1).permute(0, 2, 3, 1)  # (B, H, W, 3C)
    for m, part in zip(modules, groups(y)):
        _prelu_(part, m.act.weight)  # each module's own slope
    w2 = torch.cat([m.conv2.weight for m in modules])  # grouped: (3C, C, 3, 3)
    b2 = torch.cat([m.conv2.bias for m in modules])
    y = _conv(y, w2, b2, groups=3)
    y.mul_(torch.cat([_se_gate(m.se, part) for m, part in zip(modules, groups(y))], dim=-1))
    shortcut = stem.res_conv  # 1x1 conv 1 -> C: an outer product
    groups(y)[0].add_(shortcut.bias).addcmul_(x.permute(0, 2, 3, 1), shortcut.weight.flatten())
    for m, part in zip(modules, groups(y)):
        _prelu_(part, m.act.weight)
    return y[..., :c].contiguous(), y[..., c:2 * c], y[..., 2 * c:]


# --- fusion head -----------------------------------------------------------------------------------
def _res_se(x: torch.Tensor, m: nn.Module) -> torch.Tensor:
    """``ResSE`` on NHWC: act(se(conv2(act(conv1 x))) + res_conv x), accumulated in place."""
    y = _prelu_(_conv(x, m.conv1.weight, m.conv1.bias), m.act.weight)
    y = _conv(y, m.conv2.weight, m.conv2.bias)
    conv_shortcut = isinstance(m.res_conv, nn.Conv2d)
    gate = None if isinstance(m.se, nn.Identity) else _se_gate(m.se, y)
    if gate is not None and conv_shortcut:
        torch.addcmul(m.res_conv.bias, y, gate, out=y)  # y = b_res + y * gate, one pass
    elif gate is not None:
        y.mul_(gate)
    elif conv_shortcut:
        y += m.res_conv.bias
    if conv_shortcut:  # + W_res x as a GEMM accumulating into y
        y.view(-1, y.shape[-1]).addmm_(x.reshape(-1, x.shape[-1]), m.res_conv.weight.flatten(1).t())
    else:
        y += x
    return _prelu_(y, m.act.weight)


def siba_forward_fast(model: nn.Module, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    """``model(ir, vi)`` for a ``SIBA``, by the restructured computation above; ``(B, 1, H, W)`` each."""
    from fusionlib.models.siba import _check_pair

    if not fast_path_supported(model):
        return model(ir, vi)
    _check_pair(ir, vi, 1)
    if torch.is_autocast_enabled(ir.device.type):
        raise RuntimeError("SIBA.forward_fast: does not run under torch.autocast (its in-place GEMMs need one "
                           "dtype); for bf16 cast the model and inputs instead (model.to(torch.bfloat16), "
                           "ir.bfloat16()), or call forward under autocast")
    with torch.no_grad():  # intermediates are updated in place
        return _forward(model, ir, vi)


def _forward(model: nn.Module, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    f_ir, q_ir, q_irI = _stem_and_queries(ir, model.stem_ir, model.cbsm_ir, model.cbsm_irI)
    f_vi, q_vi, q_viI = _stem_and_queries(vi, model.stem_vi, model.cbsm_vi, model.cbsm_viI)
    for blk in model.sa_ir:
        f_ir = _restormer_block(f_ir, blk)
    for blk in model.sa_vi:
        f_vi = _restormer_block(f_vi, blk)
    ir2vi, irI2vi = _sca_pair(f_vi, (q_ir, q_irI), (model.ca_ir2vi, model.ca_irI2vi))
    vi2ir, viI2ir = _sca_pair(f_ir, (q_vi, q_viI), (model.ca_vi2ir, model.ca_viI2ir))
    f = torch.cat([ir2vi, vi2ir, irI2vi, viI2ir], dim=-1)  # (B, H, W, 4C)
    for m in model.fuse_conv:
        f = _res_se(f, m)
    out = _res_se(f, model.out_conv)  # (B, H, W, 1)
    return out.permute(0, 3, 1, 2).contiguous()
