"""LKC-FUNet inference fast path: the same function as ``LKCFUNet.forward``, with less arithmetic.

``fusionlib/models/lkc_funet.py`` is the readable reference; this file computes the same network with two
changes of *algorithm*, reading the model's own parameters at every call (nothing cached, so it always
follows the weights). Checked against the readable path and the authors' golden outputs (< 1e-4;
``tests/test_lkc_funet_fast.py``). What it does:

1. **Dense large-kernel convolutions by FFT, overlap-save tiles.** At 256x256 the dense 15x15
   convolutions of the InitBlock, the first encoder stage, the last decoder stage and the fuse block run
   at full resolution and take ~80 % of the readable path's time (~90 % of its FLOPs). A k x k
   cross-correlation of a T x T tile is a product of spectra, ``Y(f) = sum_ci X_ci(f) conj(W_co,ci(f))``,
   so each output pixel costs ~``8 C_in`` real multiply-adds per frequency instead of ``k^2 C_in``.
   The zero-padded input is cut into overlapping T x T tiles (stride S = T - k + 1); of each tile's
   circular correlation the first S x S values are exact (no wrap-around), and they tile the output.
   The per-frequency channel mixing is a real batched GEMM on the interleaved spectrum
   (``Y = W_re X + W_im (i X)``), and the weight spectrum is a pair of small DFT matrix products (only
   k of the T taps are non-zero). Bias is added after; padding is the layer's ``k // 2`` zeros
   (``padding_mode="zeros"`` only).
2. **Depthwise large kernels in channels-last.** The LKDC blocks' depthwise k x k convolutions (192
   channels) run ~20x faster on a channels-last (NHWC) tensor in oneDNN, with the same output (issue #23:
   21x, 10 % of the readable path's time at 256²).

Everything else (norms, MPAFMs, up/down-sampling, 1x1 convs, the head) is the model's own modules.
The tile size T is chosen per layer by a cost model (FFT and GEMM work, overlap waste) under a cap on the
weight spectrum's memory (:data:`MAX_SPECTRUM_BYTES`); the FFT is used only where it beats the direct
convolution by that model (dense, stride 1, k >= 7, image at least 2k on a side).

Accuracy: float32 FFT round-off is relative to the magnitude of the sums, not to each product: on the
golden 64x64 input the output is 1.5e-5 from the readable path's (which is itself 1.9e-5 from the
golden output), 1.4e-5 at 256x256; in float64 the FFT convolution matches ``F.conv2d`` to 1e-10.

Measured (``benchmarks/bench_lkc_funet.py``: released variant, seeded random init, batch 1, float32,
256x256, 2 threads; readable and fast interleaved in one process, 3 runs each, on the shared 2-core CPU
box, 2026-12-07), two runs: load average 12-17: readable min 322 s, fast min 86 s wall, **3.77x**
(process CPU time 57.3 s vs 16.9 s, 3.40x); load average 7-10: readable min 130 s, fast min 36 s,
**3.61x** (CPU time 58.6 s vs 15.6 s, 3.76x). On an idle machine the readable path takes ~32 s (issue #23).

Where it stops paying off:

- **Small images and kernels.** The weight spectrum is recomputed at every call (nothing cached: 1.2 GB
  of float32 spectra for the whole network at 256²) and costs about as much as the channel mixing; below ~4k
  pixels a side the direct convolution wins (measured, 128 -> 128 channels, 2 threads, CPU time: k = 15
  at 32² 0.48x, 64² 1.26x, 128² 2.56x, 256² 4.7x; k = 11 at 128² 1.85x; k = 7 at 64² 0.50x), and
  :func:`choose_tile`'s cost model picks the direct conv there (all 5x5 and 3x3 convs stay direct).
- **GPU.** Not measured here (no GPU in this task). cuDNN's direct and implicit-GEMM convolutions run
  near the card's peak, and the FFT path's extra memory passes would likely lose to them, so
  :func:`fast_path_supported` is False off the CPU and for non-float32/float64 parameters (no
  half-precision FFT on the CPU).
- **Training.** Dropout and DropPath are random in training mode: the fast path is inference only
  (``model.eval()``), without gradients, and forward hooks on the replaced blocks are not called.
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["lkc_forward_fast", "fast_path_supported", "fft_conv2d", "choose_tile", "MAX_SPECTRUM_BYTES"]

_CL = torch.channels_last

#: Cap on the weight spectrum of one layer, (T * (T//2+1)) * 2 * C_out * C_in floats (bytes).
MAX_SPECTRUM_BYTES = 320 * 2 ** 20

#: How many times faster oneDNN's direct convolution runs per multiply-add than the FFT path per unit of
#: :func:`_fft_cost` (measured on 2 CPU threads; it decides where the FFT stops paying off).
DIRECT_EFFICIENCY = 5.5

#: Smallest kernel for which the FFT path is considered.
MIN_FFT_KERNEL = 7

#: The configuration fields the fast path mirrors (any value); a new field must stay at its default.
_KNOWN_FIELDS = {"in_channels", "out_channels", "stem", "width", "kernels", "mid_kernel", "mid_blocks",
                 "init_kernel", "norm_groups", "init_groups", "dropout", "drop_path", "lkdc_ratio",
                 "ca_reduction", "init_norm", "block_norm", "attn_norm", "mpafm_roles"}


def fast_path_supported(model: nn.Module, **infer_kwargs: object) -> bool:
    """True when :func:`lkc_forward_fast` computes ``model.forward`` faster: an ``LKCFUNet`` in eval mode
    with float32/float64 parameters on the CPU, and no configuration field this file does not know."""
    from fusionlib.models.lkc_funet import LKCFUNet, LKCFUNetConfig

    if not isinstance(model, LKCFUNet) or model.training:
        return False
    p = next(model.parameters())
    if p.device.type != "cpu" or p.dtype not in (torch.float32, torch.float64):
        return False
    defaults = LKCFUNetConfig()
    for f in dataclasses.fields(model.config):
        if f.name not in _KNOWN_FIELDS and getattr(model.config, f.name) != getattr(defaults, f.name):
            return False
    return True


# --- FFT convolution ----------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _dft_matrices(t: int, k: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """DFT matrices with the *positive* exponent (the conjugate spectrum), for k non-zero taps of length t.

    Returns ``half`` (2 (t//2+1), k): rows ``[cos; sin](2 pi f n / t)`` for f = 0..t//2, and ``full``
    (2t, 2k): the real form of the complex (t, k) matrix acting on ``[re, im]``-interleaved columns,
    rows ``(part_out, f)``, columns ``(n, part_in)``.
    """
    f_half = torch.arange(t // 2 + 1, dtype=torch.float64)[:, None]
    f_full = torch.arange(t, dtype=torch.float64)[:, None]
    n = torch.arange(k, dtype=torch.float64)[None, :]
    a = 2 * math.pi * f_half * n / t
    half = torch.cat([torch.cos(a), torch.sin(a)])                  # (2 K2, k)
    b = 2 * math.pi * f_full * n / t
    c, s = torch.cos(b), torch.sin(b)                                 # (t, k)
    full = torch.empty(2, t, k, 2, dtype=torch.float64)
    full[0, :, :, 0], full[0, :, :, 1] = c, -s                        # re = c re - s im
    full[1, :, :, 0], full[1, :, :, 1] = s, c                         # im = s re + c im
    return half.to(dtype), full.reshape(2 * t, 2 * k).to(dtype)


def weight_spectrum(weight: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Conjugate 2-D spectrum of a (C_out, C_in, k, k) kernel zero-padded to t x t, as (re, im), each
    (t * (t//2+1), C_out, C_in): ``conj(rfft2(w_pad))`` computed as two DFT matrix products."""
    co, ci, k, _ = weight.shape
    k2 = t // 2 + 1
    half, full = _dft_matrices(t, k, weight.dtype)
    w = weight.permute(2, 3, 0, 1).reshape(k, k, co * ci)             # (n1, n2, co ci)
    a = torch.matmul(half, w)                                         # (n1, 2 K2, co ci): along n2
    # rows of ``full`` index (n1, part_in), and a is (n1, part, K2 co ci) already
    spec = full @ a.view(2 * k, k2 * co * ci)                         # (2 t, K2 co ci): along n1
    spec = spec.view(2, t * k2, co, ci)
    return spec[0], spec[1]


def _tiles(h: int, k: int, t: int) -> tuple[int, int]:
    """(stride S, number of tiles) along one axis of length h for tile t and kernel k."""
    s = t - k + 1
    return s, -(-h // s)


def _fft_cost(h: int, w: int, ci: int, co: int, k: int, t: int) -> float:
    """Relative cost of the FFT path with tile t (GEMM multiply-adds plus FFT and copy passes)."""
    _, ny = _tiles(h, k, t)
    _, nx = _tiles(w, k, t)
    bins = t * (t // 2 + 1)
    gemm = 4.0 * bins * ny * nx * ci * co
    ffts = ny * nx * (ci + co) * t * t * (5 * math.log2(t) + 8)      # rfft2 + irfft2 + copies
    wspec = 2.0 * k * 2 * t * bins / t * ci * co * 2                  # second DFT product dominates
    return gemm + ffts + wspec


def choose_tile(h: int, w: int, ci: int, co: int, k: int, itemsize: int = 4) -> int | None:
    """The FFT tile size for a k x k conv C_in -> C_out on H x W, or None when the direct conv is cheaper.

    Candidates are sizes with small prime factors; the weight spectrum must fit :data:`MAX_SPECTRUM_BYTES`.
    The direct convolution costs ``H W C_in C_out k^2`` multiply-adds, run :data:`DIRECT_EFFICIENCY` times
    faster per unit than the FFT path's cost model (calibrated on 2 CPU threads: 128 -> 128 channels,
    k = 7..15, 32² to 256²).
    """
    if k < MIN_FFT_KERNEL or min(h, w) < 2 * k:
        return None
    best, best_cost = None, h * w * ci * co * k * k / DIRECT_EFFICIENCY
    for t in (24, 32, 36, 40, 48, 54, 60, 64, 72, 80, 96, 108, 128, 144):
        if t < 2 * k:
            continue
        if t * (t // 2 + 1) * 2 * ci * co * itemsize > MAX_SPECTRUM_BYTES:
            break
        c = _fft_cost(h, w, ci, co, k, t)
        if c < best_cost:
            best, best_cost = t, c
    return best


def fft_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tile: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=k // 2)`` (zeros padding, stride 1, odd square kernel) by
    overlap-save FFT tiles of size ``tile``: (B, C_in, H, W) -> (B, C_out, H, W)."""
    b, ci, h, w = x.shape
    co, _, k, _ = weight.shape
    p, t = k // 2, tile
    s, ny = _tiles(h, k, t)
    _, nx = _tiles(w, k, t)
    k2 = t // 2 + 1
    m = b * ny * nx
    # zero-pad so that ny x nx tiles of t with stride s cover it: tile (i, j) starts at (i s, j s)
    xp = F.pad(x, (p, nx * s + k - 1 - w - p, p, ny * s + k - 1 - h - p))
    tiles = xp.unfold(2, t, s).unfold(3, t, s)                         # (B, C_in, ny, nx, t, t) view
    spec = torch.fft.rfft2(tiles)                                      # (B, C_in, ny, nx, t, K2) complex
    # GEMM operands, frequency-major: [X, iX] as real (bins, C_in, 2M) each, M = B ny nx
    xs = torch.empty(2, t, k2, ci, b, ny, nx, 2, dtype=x.dtype, device=x.device)
    sr = torch.view_as_real(spec).permute(4, 5, 1, 0, 2, 3, 6)        # (t, K2, C_in, B, ny, nx, 2)
    xs[0].copy_(sr)
    xs[1, ..., 0].copy_(sr[..., 1]).neg_()                             # i X = -im + i re
    xs[1, ..., 1].copy_(sr[..., 0])
    del spec, sr
    xs = xs.view(2, t * k2, ci, 2 * m)
    w_re, w_im = weight_spectrum(weight, t)                            # (bins, C_out, C_in) each
    y = torch.bmm(w_re, xs[0])                                         # (bins, C_out, 2M)
    y.baddbmm_(w_im, xs[1])
    del xs, w_re, w_im
    yc = torch.view_as_complex(y.view(t, k2, co, b, ny, nx, 2))
    yc = yc.permute(3, 2, 4, 5, 0, 1)                                  # (B, C_out, ny, nx, t, K2)
    out_t = torch.fft.irfft2(yc, s=(t, t))                             # (B, C_out, ny, nx, t, t)
    del y, yc
    out = out_t[..., :s, :s].permute(0, 1, 2, 4, 3, 5).reshape(b, co, ny * s, nx * s)[:, :, :h, :w]
    return out + bias.view(1, -1, 1, 1) if bias is not None else out.contiguous()


# --- layers -------------------------------------------------------------------------------------------
def _conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``: by FFT tiles where :func:`choose_tile` finds it cheaper, else the layer itself."""
    k = conv.kernel_size[0]
    if (conv.groups == 1 and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros" and conv.kernel_size == (k, k) and k % 2 == 1
            and conv.padding == (k // 2, k // 2)):
        t = choose_tile(x.shape[-2], x.shape[-1], conv.in_channels, conv.out_channels, k, x.element_size())
        if t is not None:
            return fft_conv2d(x, conv.weight, conv.bias, t)
    return conv(x)


def _depthwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A depthwise conv computed on a channels-last copy of ``x``; returns a contiguous (NCHW) tensor."""
    y = F.conv2d(x.contiguous(memory_format=_CL), conv.weight.contiguous(memory_format=_CL), conv.bias,
                 conv.stride, conv.padding, conv.dilation, conv.groups)
    return y.contiguous()


def _init_block(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``InitBlock``: ``conv(dropout(relu(norm(x))))``, dropout the identity in eval mode."""
    return _conv(m.conv, m.act(m.norm(x)))


def _lkc_block(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``LKCBlock`` (Eq. 3 of the readable module): two dense k x k convs and the skip."""
    h = _conv(m.conv1, F.relu(m.norm1(x)))
    h = _conv(m.conv2, F.relu(m.norm2(h)))
    return h.add_(m.skip(x))


def _lkdc_block(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``LKDCBlock`` with its depthwise conv in channels-last; DropPath the identity in eval mode."""
    h = F.relu(m.pw1_norm(m.pw1(m.pre_norm(x))))
    h = F.relu(m.dw_norm(_depthwise(m.dw, h)))
    return m.pw2_norm(m.pw2(h)).add_(x)


def _lkdc_seq(seq: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for blk in (seq if isinstance(seq, nn.Sequential) else [seq]):
        x = _lkdc_block(blk, x)
    return x


# --- the network --------------------------------------------------------------------------------------
def lkc_forward_fast(model: nn.Module, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    """``model(ir, vi)`` for an ``LKCFUNet`` in eval mode, by the computation above; (B, 1, H, W) each.

    Falls back to ``model(ir, vi)`` where :func:`fast_path_supported` is False, for inputs off the CPU and
    under ``torch.autocast`` (the FFTs have no bfloat16 kernels on the CPU).
    """
    if not fast_path_supported(model) or ir.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return model(ir, vi)  # the readable path (training mode, GPU, half precision, autocast)
    model.check_pair(ir, vi)
    with torch.no_grad():
        return _forward_cat(model, torch.cat([vi, ir], dim=1))


def _forward_cat(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``LKCFUNet.forward_cat`` with the layers above: (B, 2, H, W) -> (B, 1, H, W)."""
    m = 2 ** (len(model.encoder) - 1)
    if x.shape[-1] % m or x.shape[-2] % m:
        raise ValueError(f"LKCFUNet: H, W must be multiples of {m}, got {tuple(x.shape)}")
    x0 = model.init_conv(x)
    h = _init_block(model.init_block, x0)
    skips = []
    for st in model.encoder:
        h = _lkdc_seq(st.lkdc, _lkc_block(st.lkc, h))
        skips.append(h)
        if st.down is not None:
            h = st.down(h)
    h = _lkdc_seq(model.mid, h)
    for st in model.decoder:
        h = _lkdc_seq(st.lkdc, _lkc_block(st.lkc, st.mpafm(h, skips.pop())))
        if st.up is not None:
            h = st.up(h)
    return model.head(_lkc_block(model.fuse, torch.cat([h, x0], dim=1)))
