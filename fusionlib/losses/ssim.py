"""Differentiable SSIM, and the SSIM loss terms of LKC-FUNet and RPFNet.

Two conventions live here, kept apart on purpose:

* :func:`ssim` / :func:`ssim_loss`: the Po-Hsun-Su ``pytorch-ssim`` convention that SwinFusion ships
  as ``models/loss_ssim.py`` and that LKC-FUNet imports as ``losses/SwinF_ssim.py`` (that file is missing
  from LKC-FUNet's repository; SwinFusion's copy is the one its name points to). Gaussian window
  11x11, sigma = 1.5, normalised to sum 1; local moments by depthwise convolution with **zero padding**
  of ``window_size // 2`` (the map keeps H x W); biased variances E[x^2] - mu^2;
  C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 1; the mean of the map over every element.
* :func:`kornia_ssim_loss_term`: ``kornia.losses.ssim_loss`` as RPFNet calls it (``SSIMLoss(3)``):
  a 3x3 Gaussian window (sigma 1.5), **reflect** padding, eps = 1e-12 in the denominator, and the
  per-pixel value ``clamp((1 - SSIM) / 2, 0, 1)``, i.e. half of ``1 - SSIM``.
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from fusionlib.losses._common import check_images, check_reduction, reduce

__all__ = [
    "gaussian_window",
    "ssim",
    "ssim_loss",
    "kornia_ssim_loss_term",
    "SSIM",
    "SSIMLoss",
    "KorniaSSIMLossTerm",
]

_PADDINGS = ("zeros", "reflect", "valid")


def gaussian_window(
    window_size: int = 11,
    sigma: float = 1.5,
    *,
    gaussian: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """2-D averaging window ``(1, 1, k, k)`` summing to 1: a sampled Gaussian (outer product) or a box.

    The Gaussian taps are ``exp(-(i - k // 2)^2 / (2 sigma^2))`` for ``i = 0 .. k-1``, then normalised.

    Examples:
        >>> w = gaussian_window(11, 1.5)
        >>> w.shape, round(float(w.sum()), 6), bool(w[0, 0, 5, 5] == w.max())
        (torch.Size([1, 1, 11, 11]), 1.0, True)
    """
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"gaussian_window: window_size must be a positive odd int, got {window_size}")
    if gaussian:
        if sigma <= 0:
            raise ValueError(f"gaussian_window: sigma must be > 0, got {sigma}")
        i = torch.arange(window_size, dtype=torch.float64) - window_size // 2
        g = torch.exp(-(i**2) / (2.0 * sigma**2))
    else:
        g = torch.ones(window_size, dtype=torch.float64)
    g = g / g.sum()
    return torch.outer(g, g).to(dtype=dtype, device=device)[None, None]


def _local_mean(x: torch.Tensor, window: torch.Tensor, padding: str) -> torch.Tensor:
    c, p = x.shape[1], window.shape[-1] // 2
    w = window.expand(c, 1, -1, -1)
    if padding == "zeros":
        return F.conv2d(x, w, padding=p, groups=c)
    if padding == "reflect":
        return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), w, groups=c)
    return F.conv2d(x, w, groups=c)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    gaussian: bool = True,
    padding: str = "zeros",
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Structural similarity of ``x`` and ``y``, differentiable (pytorch-ssim / SwinFusion convention).

    .. math::

        \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
                                   {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
        \quad C_1 = (0.01 L)^2,\ C_2 = (0.03 L)^2

    with local moments from :func:`gaussian_window` (per channel). No eps is added.

    Args:
        x, y: images of shape :math:`(B, C, H, W)`.
        window_size: odd window size (11 in SwinFusion / LKC-FUNet).
        sigma: Gaussian standard deviation (1.5).
        data_range: L, the dynamic range of the pixels (1 for [0, 1] images).
        gaussian: ``False`` uses a uniform box window instead.
        padding: ``'zeros'`` (pytorch-ssim, map keeps H x W) | ``'reflect'`` (as kornia, needs
            ``H, W > window_size // 2``) | ``'valid'`` (no padding, map is smaller).
        reduction: ``'mean'`` (pytorch-ssim ``size_average=True``) | ``'sum'`` | ``'none'`` (the SSIM map).

    Examples:
        >>> x = torch.rand(2, 1, 16, 16)
        >>> float(ssim(x, x))
        1.0
        >>> ssim(x, 1 - x, reduction="none").shape
        torch.Size([2, 1, 16, 16])
    """
    check_images("ssim", x=x, y=y)
    check_reduction("ssim", reduction)
    if padding not in _PADDINGS:
        raise ValueError(f"ssim: padding must be one of {_PADDINGS}, got {padding!r}")
    if data_range <= 0:
        raise ValueError(f"ssim: data_range must be > 0, got {data_range}")
    h, w = x.shape[-2:]
    p = window_size // 2
    if padding == "reflect" and min(h, w) <= p:
        raise ValueError(f"ssim: reflect padding needs H, W > window_size // 2 = {p}, got {(h, w)}")
    if padding == "valid" and min(h, w) < window_size:
        raise ValueError(f"ssim: valid padding needs H, W >= window_size = {window_size}, got {(h, w)}")
    window = gaussian_window(window_size, sigma, gaussian=gaussian, dtype=x.dtype, device=x.device)
    mu_x, mu_y = _local_mean(x, window, padding), _local_mean(y, window, padding)
    var_x = _local_mean(x * x, window, padding) - mu_x**2
    var_y = _local_mean(y * y, window, padding) - mu_y**2
    cov = _local_mean(x * y, window, padding) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return reduce(ssim_map, reduction)


def ssim_loss(
    fused: torch.Tensor,
    ir: torch.Tensor,
    vi: torch.Tensor,
    *,
    weights: Sequence[float] = (0.5, 0.5),
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    padding: str = "zeros",
    reduction: str = "mean",
) -> torch.Tensor:
    r"""LKC-FUNet's L_ssim: one minus the weighted SSIM of the fused image with each source.

    .. math::

        L_{ssim} = 1 - \big(w_{ir}\,\mathrm{SSIM}(I_{ir}, F) + w_{vi}\,\mathrm{SSIM}(I_{vi}, F)\big),
        \quad (w_{ir}, w_{vi}) = (0.5, 0.5)

    (``losses/DMFNet_loss.py``; SSIM as in :func:`ssim`.) With ``reduction='none'`` the per-pixel map
    ``1 - (w_ir * map_ir + w_vi * map_vi)`` is returned, whose mean is the ``'mean'`` value.

    Args:
        fused, ir, vi: images of shape :math:`(B, C, H, W)` in [0, 1].
        weights: ``(w_ir, w_vi)``.

    Examples:
        >>> x = torch.rand(1, 1, 16, 16)
        >>> float(ssim_loss(x, x, x))
        0.0
    """
    check_images("ssim_loss", fused=fused, ir=ir, vi=vi)
    check_reduction("ssim_loss", reduction)
    if len(weights) != 2:
        raise ValueError(f"ssim_loss: weights must be (w_ir, w_vi), got {weights!r}")
    kw = dict(window_size=window_size, sigma=sigma, data_range=data_range, padding=padding, reduction="none")
    s = weights[0] * ssim(ir, fused, **kw) + weights[1] * ssim(vi, fused, **kw)
    return reduce(1.0 - s, reduction)


def kornia_ssim_loss_term(
    fused: torch.Tensor, src: torch.Tensor, *, window: int = 3, reduction: str = "mean"
) -> torch.Tensor:
    r"""RPFNet's SSIM term for one source: ``kornia.losses.ssim_loss(fused, src, window)``.

    .. math::

        \ell = \mathrm{clamp}\Big(\frac{1 - \mathrm{SSIM}_{k}(F, I)}{2}, 0, 1\Big)

    kornia's convention: Gaussian window of ``window`` taps with sigma 1.5, reflect padding,
    eps = 1e-12 in the denominator. RPFNet (``train.py``) uses ``kornia.losses.SSIMLoss(3)`` on
    (F, VIS) and on (F, IR), summed and weighted by 5 (lambda_2). Note the factor 1/2 compared
    with :func:`ssim_loss`.

    Args:
        fused, src: images of shape :math:`(B, C, H, W)` in [0, 1].
        window: odd Gaussian window size (3 in RPFNet).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (per-pixel map).

    Examples:
        >>> x = torch.rand(1, 1, 8, 8)
        >>> float(kornia_ssim_loss_term(x, x)) < 1e-6
        True
    """
    check_images("kornia_ssim_loss_term", fused=fused, src=src)
    check_reduction("kornia_ssim_loss_term", reduction)
    return kornia.losses.ssim_loss(fused, src, window, reduction=reduction)


class SSIM(nn.Module):
    """Module form of :func:`ssim`; ``forward(x, y)``."""

    def __init__(
        self,
        *,
        window_size: int = 11,
        sigma: float = 1.5,
        data_range: float = 1.0,
        gaussian: bool = True,
        padding: str = "zeros",
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        check_reduction("SSIM", reduction)
        self.kwargs = dict(
            window_size=window_size, sigma=sigma, data_range=data_range, gaussian=gaussian,
            padding=padding, reduction=reduction,
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ssim(x, y, **self.kwargs)


class SSIMLoss(nn.Module):
    """Module form of :func:`ssim_loss` (LKC-FUNet L_ssim); ``forward(fused, ir, vi)``."""

    def __init__(
        self,
        *,
        weights: Sequence[float] = (0.5, 0.5),
        window_size: int = 11,
        sigma: float = 1.5,
        data_range: float = 1.0,
        padding: str = "zeros",
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        check_reduction("SSIMLoss", reduction)
        self.kwargs = dict(
            weights=tuple(weights), window_size=window_size, sigma=sigma, data_range=data_range,
            padding=padding, reduction=reduction,
        )

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        return ssim_loss(fused, ir, vi, **self.kwargs)


class KorniaSSIMLossTerm(nn.Module):
    """Module form of :func:`kornia_ssim_loss_term` (RPFNet); ``forward(fused, src)``."""

    def __init__(self, *, window: int = 3, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction("KorniaSSIMLossTerm", reduction)
        self.window, self.reduction = window, reduction

    def forward(self, fused: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        return kornia_ssim_loss_term(fused, src, window=self.window, reduction=self.reduction)
