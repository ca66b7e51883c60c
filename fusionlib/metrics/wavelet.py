"""One-level 2-D discrete wavelet transform (MATLAB ``dwt2``), in torch, for the FMI_w feature.

Only what Tang's ``analysis_fmi.m`` (feature ``'wavelet'``) needs: ``dwt2(im, 'dmey')`` with
MATLAB's default extension mode ``'sym'`` (half-point symmetric), i.e. PyWavelets'
``pywt.dwt2(x, 'dmey', mode='symmetric')``. Images are ``(B, 1, H, W)``; each sub-band is
``(B, 1, floor((H + 61) / 2), floor((W + 61) / 2))`` (62-tap filters), float64, any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fusionlib.metrics._common import DTYPE

__all__ = ["DMEY_DEC_LO", "dmey_filters", "sym_extend", "dwt2"]

# Decomposition low-pass filter of the discrete Meyer wavelet (62 taps, the first one 0):
# MATLAB ``wfilters('dmey')`` = PyWavelets ``pywt.Wavelet('dmey').dec_lo`` (PyWavelets 1.9.0, the
# values printed with ``repr``). The 61 taps after the leading 0 are symmetric about the middle,
# so only the first 32 are written out. Their squares sum to 1.00224, not 1: a property of the
# published (truncated) filter, kept as is since the toolboxes use it as is.
_DMEY_HALF = (
    0.0, -1.009999956941423e-12, 8.519459636796214e-09, -1.111944952595278e-08,
    -1.0798819539621958e-08, 6.066975741351135e-08, -1.0866516536735883e-07, 8.200680650386481e-08,
    1.1783004497663934e-07, -5.506340565252278e-07, 1.1307947017916706e-06, -1.489549216497156e-06,
    7.367572885903746e-07, 3.20544191334478e-06, -1.6312699734552807e-05, 6.554305930575149e-05,
    -0.0006011502343516092, -0.002704672124643725, 0.002202534100911002, 0.006045814097323304,
    -0.006387718318497156, -0.011061496392513451, 0.015270015130934803, 0.017423434103729693,
    -0.03213079399021176, -0.024348745906078023, 0.0637390243228016, 0.030655091960824263,
    -0.13284520043622938, -0.035087555656258346, 0.44459300275757724, 0.7445855923188063,
)
DMEY_DEC_LO: tuple[float, ...] = _DMEY_HALF + _DMEY_HALF[1:-1][::-1]


def dmey_filters(device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decomposition filters ``(lo, hi)`` of ``'dmey'``, float64 ``(62,)`` each.

    The high-pass filter is the quadrature mirror of the low-pass one,
    ``hi[k] = (-1)^(k+1) lo[61 - k]`` (MATLAB ``orthfilt``, PyWavelets ``dec_hi``).

    Examples:
        >>> lo, hi = dmey_filters()
        >>> lo.shape, round(float(lo.sum()) ** 2, 12), round(float(hi.sum()), 4)  # truncated: hi leaks DC
        (torch.Size([62]), 2.0, 0.0011)
    """
    lo = torch.tensor(DMEY_DEC_LO, dtype=DTYPE, device=device)
    sign = torch.ones(62, dtype=DTYPE, device=device)
    sign[0::2] = -1.0
    return lo, sign * lo.flip(0)


def sym_extend(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Half-point symmetric extension by ``pad`` on both sides of ``dim`` (MATLAB ``wextend``
    ``'sym'``, PyWavelets ``'symmetric'``): ``... x2 x1 | x1 x2 ... xn | xn xn-1 ...``, repeated
    as often as needed when ``pad`` exceeds the length."""
    n = x.shape[dim]
    i = torch.arange(-pad, n + pad, device=x.device) % (2 * n)
    i = torch.where(i >= n, 2 * n - 1 - i, i)
    return x.index_select(dim, i)


def dwt2(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of MATLAB ``[cA, cH, cV, cD] = dwt2(x, 'dmey')`` (extension mode ``'sym'``).

    ``(B, 1, H, W) -> 4 x (B, 1, floor((H + 61) / 2), floor((W + 61) / 2))`` float64. Each 1-D
    step extends by 61 samples on both sides, convolves with the 62-tap filter ("valid") and
    keeps the even-indexed outputs (MATLAB's ``first = 2``). ``cH`` is low-pass along the width
    and high-pass along the height (horizontal edges), ``cV`` the reverse, as in MATLAB and in
    ``pywt.dwt2``, which the tests use as the oracle.

    Examples:
        >>> cA, cH, cV, cD = dwt2(torch.full((1, 1, 8, 8), 3.0))
        >>> cA.shape, round(float(cA.mean()), 9), round(float(cH.abs().max()), 4)  # gain 2; cH: hi.sum() x 3 x sqrt(2)
        (torch.Size([1, 1, 34, 34]), 6.0, 0.0046)
    """
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"dwt2: expected (B, 1, H, W), got shape {tuple(x.shape)}")
    lo, hi = dmey_filters(x.device)
    n = lo.numel()
    # conv2d correlates, MATLAB's wconv1 convolves: flip the taps
    k = torch.stack([lo.flip(0), hi.flip(0)])  # (2, 62)
    x = x.to(DTYPE)
    # along the width: (B, 1, H, W) -> (B, 2, H, W') channels [low, high]
    e = sym_extend(x, n - 1, -1)[..., 1:]
    y = F.conv2d(e, k.view(2, 1, 1, n), stride=(1, 2))
    # along the height, per channel: [lowW->lo, lowW->hi, highW->lo, highW->hi]
    e = sym_extend(y, n - 1, -2)[..., 1:, :]
    z = F.conv2d(e, k.view(2, 1, n, 1).repeat(2, 1, 1, 1), stride=(2, 1), groups=2)
    return z[:, 0:1], z[:, 1:2], z[:, 2:3], z[:, 3:4]
