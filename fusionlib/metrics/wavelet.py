"""One-level 2-D discrete wavelet transform (MATLAB ``dwt2``), in torch, for the FMI_w feature.

Only what Tang's ``analysis_fmi.m`` (feature ``'wavelet'``) needs: MATLAB's ``dwt2(im, 'dmey')``
with its default extension mode ``'sym'`` (half-point symmetric). MATLAB's ``'dmey'`` is a 102-tap
filter (``dmey.mat``); PyWavelets' ``'dmey'`` is a different, 62-tap truncation that does not
match MATLAB (PyWavelets issue #261), so the filter is shipped here as :data:`DMEY_W`. Images are
``(B, 1, H, W)``; each sub-band is ``(B, 1, floor((H + 101) / 2), floor((W + 101) / 2))``,
float64, any device.

Provenance of the 102 coefficients (caveat): MathWorks does not publish ``dmey.mat`` as text. The
values are those of the array ``meyer[102]`` in ``rafat/wavelib`` ``src/wavefilt.c`` (the list the
GNU Octave reference run of ``../shared/metric_ref`` used, per its README), which states no source.
Three checks, none of them against MathWorks' own file, so agreement with MATLAB itself remains
unverified:

* an older, independent listing, JWave's ``Dmey`` class (2010; 16 significant digits, reversed
  order), agrees with every value to 5e-16, i.e. to the 15 decimals printed here;
* the values are reproducible from first principles to 6e-11: the first 101 are the Meyer
  scaling filter ``h[n] = (1 / 2 pi) int_{-pi}^{pi} sqrt(2) phi_hat(2 w) e^{i n w} dw``,
  ``n = -50 .. 50``, with ``phi_hat(u) = 1`` for ``|u| <= 2 pi / 3``,
  ``cos(pi / 2 * nu(3 |u| / (2 pi) - 1))`` up to ``4 pi / 3`` and 0 beyond,
  ``nu(x) = x^4 (35 - 84 x + 70 x^2 - 20 x^3)`` (the polynomial of MATLAB's ``meyeraux``),
  truncated and rescaled to sum sqrt(2) (the truncation loses 8.1e-7 of the sum); the 102nd is 0;
* FMI_w on these filters reproduces the Octave reference to 1e-7 relative
  (``tests/test_metrics_reference.py``; ``tests/test_metrics.py`` holds the other two checks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fusionlib.metrics._common import DTYPE

__all__ = ["DMEY_W", "dmey_filters", "sym_extend", "dwt2"]

# MATLAB's discrete Meyer filter W as stored in ``dmey.mat`` (102 taps, the last one 0; the 101
# before it are symmetric about the 51st), transcribed from rafat/wavelib src/wavefilt.c
# ``meyer[102]`` (see the module docstring for the provenance caveat). They sum to sqrt(2) within
# 5e-16; MATLAB normalises them anyway (:func:`dmey_filters`).
DMEY_W: tuple[float, ...] = (
    -0.000001509740857, 0.000001278766757, 0.000000449585560, -0.000002096568870, 0.000001723223554,
    0.000000698082276, -0.000002879408033, 0.000002383148395, 0.000000982515602, -0.000004217789186,
    0.000003353501538, 0.000001674721859, -0.000006034501342, 0.000004837555802, 0.000002402288023,
    -0.000009556309846, 0.000007216527695, 0.000004849078300, -0.000014206928581, 0.000010503914271,
    0.000006187580298, -0.000024438005846, 0.000020106387691, 0.000014993523600, -0.000046428764284,
    0.000032341311914, 0.000037409665760, -0.000102779005085, 0.000024461956845, 0.000149713515389,
    -0.000075592870255, -0.000139913148217, -0.000093512893880, 0.000161189819725, 0.000859500213762,
    -0.000578185795273, -0.002702168733939, 0.002194775336459, 0.006045510596456, -0.006386728618548,
    -0.011044641900539, 0.015250913158586, 0.017403888210177, -0.032094063354505, -0.024321783959519,
    0.063667300884468, 0.030621243943425, -0.132696615358862, -0.035048287390595, 0.444095030766529,
    0.743751004903787, 0.444095030766529, -0.035048287390595, -0.132696615358862, 0.030621243943425,
    0.063667300884468, -0.024321783959519, -0.032094063354505, 0.017403888210177, 0.015250913158586,
    -0.011044641900539, -0.006386728618548, 0.006045510596456, 0.002194775336459, -0.002702168733939,
    -0.000578185795273, 0.000859500213762, 0.000161189819725, -0.000093512893880, -0.000139913148217,
    -0.000075592870255, 0.000149713515389, 0.000024461956845, -0.000102779005085, 0.000037409665760,
    0.000032341311914, -0.000046428764284, 0.000014993523600, 0.000020106387691, -0.000024438005846,
    0.000006187580298, 0.000010503914271, -0.000014206928581, 0.000004849078300, 0.000007216527695,
    -0.000009556309846, 0.000002402288023, 0.000004837555802, -0.000006034501342, 0.000001674721859,
    0.000003353501538, -0.000004217789186, 0.000000982515602, 0.000002383148395, -0.000002879408033,
    0.000000698082276, 0.000001723223554, -0.000002096568870, 0.000000449585560, 0.000001278766757,
    -0.000001509740857, 0.000000000000000,
)


def dmey_filters(device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decomposition filters ``(lo, hi)`` of MATLAB's ``wfilters('dmey')``, float64 ``(102,)`` each.

    MATLAB's ``orthfilt(W)``: ``Lo_R = sqrt(2) W / sum(W)``, ``Lo_D = wrev(Lo_R)`` (so ``lo[0]``
    is the 0 tap), ``Hi_R = qmf(Lo_R)``, ``Hi_D = wrev(Hi_R)``; for an even length that is
    ``hi[k] = (-1)^(k+1) lo[101 - k]``.

    Examples:
        >>> lo, hi = dmey_filters()
        >>> lo.shape, float(lo[0]), round(float(lo.sum()) ** 2, 12), abs(float(hi.sum())) < 1e-5
        (torch.Size([102]), 0.0, 2.0, True)
    """
    w = torch.tensor(DMEY_W, dtype=DTYPE, device=device)
    lo = (math.sqrt(2.0) * w / w.sum()).flip(0)
    n = lo.numel()
    sign = torch.ones(n, dtype=DTYPE, device=device)
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

    ``(B, 1, H, W) -> 4 x (B, 1, floor((H + 101) / 2), floor((W + 101) / 2))`` float64. MATLAB's
    ``dwt`` along each axis: extend by ``lf - 1 = 101`` samples on both sides (``'sym'``),
    convolve with the 102-tap filter keeping the ``'valid'`` part (``n + 101`` samples), keep
    samples ``2:2:n+101`` (1-based, MATLAB's ``first = 2``); along the width first, then the
    height. ``cH`` is low-pass along the width and high-pass along the height (horizontal
    edges), ``cV`` the reverse, as in MATLAB and in ``pywt.dwt2`` given the same filter bank,
    which the tests use as the oracle.

    Examples:
        >>> cA, cH, cV, cD = dwt2(torch.full((1, 1, 8, 8), 3.0))
        >>> cA.shape, round(float(cA.mean()), 9), float(cH.abs().max()) < 1e-4  # gain 2; hi leaks ~0
        (torch.Size([1, 1, 54, 54]), 6.0, True)
    """
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"dwt2: expected (B, 1, H, W), got shape {tuple(x.shape)}")
    lo, hi = dmey_filters(x.device)
    n = lo.numel()
    # conv2d correlates, MATLAB's wconv1 convolves: flip the taps
    k = torch.stack([lo.flip(0), hi.flip(0)])  # (2, n)
    x = x.to(DTYPE)
    # along the width: (B, 1, H, W) -> (B, 2, H, W') channels [low, high]; dropping the first
    # extended sample makes stride 2 start at MATLAB's second 'valid' sample
    e = sym_extend(x, n - 1, -1)[..., 1:]
    y = F.conv2d(e, k.view(2, 1, 1, n), stride=(1, 2))
    # along the height, per channel: [lowW->lo, lowW->hi, highW->lo, highW->hi]
    e = sym_extend(y, n - 1, -2)[..., 1:, :]
    z = F.conv2d(e, k.view(2, 1, n, 1).repeat(2, 1, 1, 1), stride=(2, 1), groups=2)
    return z[:, 0:1], z[:, 1:2], z[:, 2:3], z[:, 3:4]
