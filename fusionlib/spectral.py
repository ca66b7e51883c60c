"""Spectra of images and feature maps: the 2-D power spectrum and its radial average.

Used by the notebooks' "spectra" sections (RPFNet's Fig. 6, DMNet's timestep features),
by ``fusionlib.viz`` and by the PSD metrics in ``fusionlib.metrics``.
"""

from __future__ import annotations

import torch

__all__ = ["power_spectrum", "log_magnitude", "radial_profile", "radial_psd"]


def power_spectrum(x: torch.Tensor, *, remove_mean: bool = True, shift: bool = True) -> torch.Tensor:
    """|FFT2(x)|² / (H·W) over the last two dims: ``(*, H, W)`` -> ``(*, H, W)``.

    With ``shift`` the zero frequency sits at index ``(H // 2, W // 2)``; with
    ``remove_mean`` the DC term is removed first so it does not dominate the plot.

    Examples:
        >>> x = torch.rand(2, 1, 8, 8)
        >>> p = power_spectrum(x, remove_mean=False, shift=False)
        >>> torch.allclose(p.sum((-2, -1)), (x ** 2).sum((-2, -1)))   # Parseval
        True
    """
    x = x.to(torch.float32) if not x.is_floating_point() or x.dtype == torch.float16 else x
    if remove_mean:
        x = x - x.mean(dim=(-2, -1), keepdim=True)
    h, w = x.shape[-2:]
    p = torch.fft.fft2(x).abs().square() / (h * w)
    return torch.fft.fftshift(p, dim=(-2, -1)) if shift else p


def log_magnitude(x: torch.Tensor, *, remove_mean: bool = True) -> torch.Tensor:
    """log(1 + |FFT2(x)|), centred: the usual picture of a spectrum. ``(*, H, W)``."""
    h, w = x.shape[-2:]
    return torch.log1p((power_spectrum(x, remove_mean=remove_mean) * (h * w)).sqrt())


def _radius_index(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer radius (in cycles of the normalised frequency grid) of each centred bin."""
    fy = torch.fft.fftshift(torch.fft.fftfreq(h, device=device))
    fx = torch.fft.fftshift(torch.fft.fftfreq(w, device=device))
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # cycles / pixel, 0 .. ~0.707
    n_bins = min(h, w) // 2
    idx = torch.clamp((r / 0.5 * n_bins).floor().long(), max=n_bins)  # bin n_bins = corners
    return idx, r


def radial_profile(spectrum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average a centred spectrum ``(*, H, W)`` over rings of equal frequency.

    Returns ``(freqs, profile)`` with ``freqs`` in cycles/pixel (0 .. 0.5, ring centres)
    and ``profile`` of shape ``(*, n)``, n = min(H, W) // 2. Corners beyond 0.5 are dropped.
    """
    h, w = spectrum.shape[-2:]
    idx, _ = _radius_index(h, w, spectrum.device)
    n_bins = min(h, w) // 2
    flat = spectrum.reshape(-1, h * w)
    sums = torch.zeros(flat.shape[0], n_bins + 1, dtype=flat.dtype, device=flat.device)
    sums.index_add_(1, idx.flatten(), flat)
    counts = torch.bincount(idx.flatten(), minlength=n_bins + 1).to(flat.dtype)
    prof = (sums / counts.clamp(min=1))[:, :n_bins]
    freqs = (torch.arange(n_bins, device=spectrum.device, dtype=flat.dtype) + 0.5) * 0.5 / n_bins
    return freqs, prof.reshape(*spectrum.shape[:-2], n_bins)


def radial_psd(x: torch.Tensor, *, remove_mean: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectral density of ``x`` ``(*, H, W)`` -> ``(freqs, psd (*, n))``.

    Examples:
        >>> f, p = radial_psd(torch.rand(1, 1, 64, 64))
        >>> f.shape, p.shape
        (torch.Size([32]), torch.Size([1, 1, 32]))
    """
    return radial_profile(power_spectrum(x, remove_mean=remove_mean))
