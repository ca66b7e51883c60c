"""Power-spectrum measures for the RPFNet-style frequency analysis (RPFNet, ACM MM 2025, Fig. 6).

RPFNet's Fig. 6 compares the power spectral density (PSD) of fused images with those of the
infrared and visible sources. The paper gives no formula for a scalar measure, so the
definitions below are **ours** (fusionlib's), stated here so that a table can cite them:

* **PSD fidelity to a source** S: how well F's log spectrum reproduces S's, as a coefficient of
  determination over the radial frequency bins 1..n-1 (DC ring dropped, image mean removed):
  ``1 - sum (l_F - l_S)^2 / sum (l_S - mean l_S)^2`` with ``l = log10`` of the radially averaged
  PSD. 1 = the same spectrum; 0 = no better than a flat spectrum at S's mean level; negative =
  worse. A contrast (gain) change counts as a loss. ``mode="corr"`` gives the Pearson correlation
  of the two log spectra instead, which ignores gain and is close to 1 for any pair of natural
  images (all roughly 1/f^2), so it discriminates little. ``PSD_fid_A`` / ``PSD_fid_B`` in the
  presets.
* **Spectral entropy** of F: the Shannon entropy (bits) of the normalised 2-D power spectrum
  (DC removed), divided by ``log2`` of the number of non-DC bins, so it lies in [0, 1]:
  1 = white (flat) spectrum, near 0 = energy in a few frequencies. ``PSD_entropy``.

Spectra come from :mod:`fusionlib.spectral` (``power_spectrum``, ``radial_psd``). Images
``(B, 1, H, W)``, any scale (both measures are scale-invariant); results ``(B,)`` float64.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from fusionlib.metrics._common import warn_undefined
from fusionlib.spectral import power_spectrum, radial_psd

__all__ = ["psd_fidelity", "spectral_entropy"]


def psd_fidelity(
    fused: torch.Tensor, source: torch.Tensor, *, mode: Literal["r2", "corr"] = "r2"
) -> torch.Tensor:
    """Fidelity of F's log radial PSD to a source's (our definition, see the module docstring): ``(B,)``.

    NaN, with a warning, for a constant image (its PSD is zero).

    Examples:
        >>> x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
        >>> round(float(psd_fidelity(x, x)), 6), round(float(psd_fidelity(3 * x, x, mode="corr")), 6)
        (1.0, 1.0)
        >>> bool(psd_fidelity(3 * x, x) < 0.5)      # a gain of 3 is a spectral change
        True
    """
    if mode not in ("r2", "corr"):
        raise ValueError(f"mode must be 'r2' or 'corr', got {mode!r}")
    _, pf = radial_psd(fused.to(torch.float64))
    _, ps = radial_psd(source.to(torch.float64))
    pf, ps = pf.flatten(1)[:, 1:], ps.flatten(1)[:, 1:]
    bad = (pf.amax(1) <= 0) | (ps.amax(1) <= 0)
    tiny = 1e-30
    lf = torch.log10(pf.clamp_min(tiny))
    ls = torch.log10(ps.clamp_min(tiny))
    ls_c = ls - ls.mean(1, keepdim=True)
    sst = (ls_c * ls_c).sum(1).clamp_min(1e-300)
    if mode == "r2":
        r = 1 - ((lf - ls) ** 2).sum(1) / sst
    else:
        lf_c = lf - lf.mean(1, keepdim=True)
        r = (lf_c * ls_c).sum(1) / torch.sqrt((lf_c * lf_c).sum(1) * sst).clamp_min(1e-300)
    r = torch.where(bad, float("nan"), r)
    warn_undefined("PSD fidelity", bad, "a constant image has no spectrum")
    return r


def spectral_entropy(x: torch.Tensor) -> torch.Tensor:
    """Normalised Shannon entropy of the 2-D power spectrum of ``x`` (our definition): ``(B,)`` in [0, 1].

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> white = torch.rand(1, 1, 64, 64, generator=g, dtype=torch.float64)
        >>> yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        >>> wave = torch.cos(2 * torch.pi * 4 * xx / 64).to(torch.float64).view(1, 1, 64, 64)
        >>> bool(spectral_entropy(white) > 0.9), bool(spectral_entropy(wave) < 0.1)
        (True, True)
    """
    p = power_spectrum(x.to(torch.float64), remove_mean=True, shift=False).flatten(1)[:, 1:]
    tot = p.sum(1, keepdim=True)
    bad = tot[:, 0] <= 0
    q = p / tot.clamp_min(1e-300)
    h = -torch.where(q > 0, q * torch.log2(q.clamp_min(1e-300)), 0.0).sum(1)
    h = h / math.log2(p.shape[1])
    h = torch.where(bad, float("nan"), h)
    warn_undefined("PSD entropy", bad, "a constant image has no spectrum")
    return h
