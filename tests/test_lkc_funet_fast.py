"""LKC-FUNet's inference fast path: FFT-tiled convolution, the whole network vs the readable one, golden."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fusionlib.models import lkc_funet_fast as fast
from fusionlib.models.lkc_funet import LKCFUNet, load_lkc_golden
from fusionlib.models.lkc_funet_fast import (
    MAX_SPECTRUM_BYTES, choose_tile, fast_path_supported, fft_conv2d, lkc_forward_fast, weight_spectrum,
)

# small enough for a unit test, large enough that the FFT path is taken for its 15x15 and 7x7 convs
SMALL = dict(stem=8, width=16, norm_groups=8, kernels=(15, 7, 3), mid_kernel=3, init_kernel=15)


# --- FFT convolution ----------------------------------------------------------------------------------
def test_weight_spectrum_is_the_conjugate_rfft2():
    w = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    re, im = weight_spectrum(w, 12)
    ref = torch.fft.rfft2(F.pad(w, (0, 7, 0, 7))).conj().permute(2, 3, 0, 1).reshape(12 * 7, 3, 2)
    torch.testing.assert_close(re, ref.real, atol=1e-12, rtol=0)
    torch.testing.assert_close(im, ref.imag, atol=1e-12, rtol=0)


@pytest.mark.parametrize("b, ci, co, h, w, k, t, bias", [
    (2, 3, 4, 20, 27, 7, 16, True),    # tiles overhang on both axes, batch 2
    (1, 5, 6, 33, 31, 5, 12, False),   # odd sizes, no bias
    (1, 4, 2, 30, 30, 15, 32, True),   # one tile a side, the kernel as large as the image half
])
def test_fft_conv2d_equals_direct_conv(b, ci, co, h, w, k, t, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, ci, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(co, ci, k, k, generator=g, dtype=torch.float64)
    bb = torch.randn(co, generator=g, dtype=torch.float64) if bias else None
    out = fft_conv2d(x, wt, bb, t)
    assert out.shape == (b, co, h, w) and out.is_contiguous()
    torch.testing.assert_close(out, F.conv2d(x, wt, bb, padding=k // 2), atol=1e-10, rtol=0)


def test_fft_conv2d_float32_accuracy():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 32, 70, 70, generator=g)
    wt = torch.randn(16, 32, 15, 15, generator=g) * 0.02
    ref = F.conv2d(x.double(), wt.double(), padding=7)
    err = (fft_conv2d(x, wt, None, 40).double() - ref).abs().max().item()
    direct = (F.conv2d(x, wt, padding=7).double() - ref).abs().max().item()
    assert err < 1e-4 * ref.abs().max().item() and err < 20 * direct + 1e-6


def test_choose_tile():
    assert choose_tile(256, 256, 128, 128, 15) is not None       # the full-resolution dense 15x15 convs
    assert choose_tile(256, 256, 256, 128, 15) is not None
    assert choose_tile(64, 64, 128, 128, 5) is None              # small kernel: direct
    assert choose_tile(20, 20, 128, 128, 15) is None             # image under 2k a side: direct
    t = choose_tile(512, 512, 512, 512, 15)                      # the spectrum cap holds
    assert t is None or t * (t // 2 + 1) * 2 * 512 * 512 * 4 <= MAX_SPECTRUM_BYTES


# --- the network ----------------------------------------------------------------------------------------
def _small(**kw) -> LKCFUNet:
    torch.manual_seed(0)
    m = LKCFUNet(**{**SMALL, **kw}).eval()
    with torch.no_grad():  # non-trivial norm affines and BN statistics, so that a wrong wiring shows
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for b in m.buffers():
            if b.dtype.is_floating_point:
                b.uniform_(0.5, 1.5)
    return m


@pytest.mark.parametrize("kw", [{}, {"init_norm": "bn", "mpafm_roles": "paper"}, {"block_norm": "bn"}])
def test_fast_equals_readable_and_uses_fft(kw, monkeypatch):
    m = _small(**kw)
    calls = []
    real = fast.fft_conv2d
    monkeypatch.setattr(fast, "fft_conv2d", lambda *a: calls.append(a[-1]) or real(*a))
    g = torch.Generator().manual_seed(0)
    ir, vi = (torch.rand(2, 1, 64, 72, generator=g) for _ in range(2))
    with torch.inference_mode():
        ref = m(ir, vi)
        out = lkc_forward_fast(m, ir, vi)
    assert len(calls) >= 5                                       # InitBlock, enc/dec/fuse 15x15 convs
    assert float(ref.abs().max()) > 0.1                          # a signal to compare, not zeros
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)      # float32; float64: the fft_conv2d tests
    with pytest.raises(ValueError, match="same shape"):
        lkc_forward_fast(m, ir, vi[..., :32])


def test_fast_path_supported_cases():
    m = _small()
    assert fast_path_supported(m)
    assert not fast_path_supported(m.train())                    # dropout / DropPath are random
    m.eval()
    assert not fast_path_supported(torch.nn.Conv2d(1, 1, 3))    # not an LKCFUNet
    assert not fast_path_supported(_small().to(torch.bfloat16))  # no half-precision FFT path
    with torch.device("meta"):
        assert not fast_path_supported(LKCFUNet(**SMALL).eval())  # not on the CPU (CUDA: cuDNN is faster)


def test_autocast_falls_back_to_the_readable_path():
    m = _small()
    ir, vi = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = m(ir, vi)
        out = lkc_forward_fast(m, ir, vi)
    assert ref.dtype == torch.bfloat16 and torch.equal(out, ref)


def test_registered_as_the_methods_fast_path():
    from fusionlib.methods import get_method, inference_path

    assert get_method("lkc_funet").fast == "fusionlib.models.lkc_funet_fast:lkc_forward_fast"
    m = _small()
    assert inference_path("lkc_funet", m)[0].startswith("fast")
    assert inference_path("lkc_funet", m.train())[0].startswith("readable")


# --- golden ---------------------------------------------------------------------------------------------
def test_golden_crop64_on_the_fast_path(shared, monkeypatch):
    path = shared / "golden/lkc_funet/init_seed0_q4.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    m = load_lkc_golden(path).eval()
    d = shared / "golden/lkc_funet/crop64"
    x = torch.from_numpy(np.load(d / "input_cat_vi_ir.npy"))
    ref = torch.from_numpy(np.load(d / "out_raw.npy"))
    calls = []
    real = fast.fft_conv2d
    monkeypatch.setattr(fast, "fft_conv2d", lambda *a: calls.append(a[-1]) or real(*a))
    with torch.inference_mode():
        out = lkc_forward_fast(m, x[:, 1:], x[:, :1])
    assert calls                                                   # the FFT path ran at 64x64
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
