"""SSIM and its multi-scale variants, one function per convention.

* :func:`ssim_matlab`: MATLAB ``ssim`` defaults (Tang's evaluator: mean over the two sources);
* :func:`ssim_skimage`: scikit-image ``structural_similarity`` defaults (CDDFuse: sum over the
  sources, with the float32 arithmetic and the ``data_range`` it really used);
* :func:`ms_ssim_mef`: Tang's ``MS_SSIM`` = ``analysis_ms_ssim.m``, the 3-scale **MEF-SSIM** of Ma,
  Zeng & Wang (2015) that takes both sources at once; it is not Wang's MS-SSIM;
* :func:`ms_ssim_wang`: Wang, Simoncelli & Bovik (2003) multi-scale SSIM (``msssim.m``), per source.

Images ``(B, 1, H, W)`` on the 0-255 scale; results ``(B,)`` float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fusionlib.metrics._common import (
    box_mean_valid,
    corr_valid_cols,
    corr_valid_rows,
    matlab_gaussian,
    sep_corr_valid,
    sep_corr_valid_of,
)

__all__ = [
    "ssim_matlab",
    "ssim_matlab_per_source",
    "gauss11_replicate_maps",
    "ssim_skimage",
    "ssim_skimage_per_source",
    "mef_ssim",
    "ms_ssim_mef",
    "ms_ssim_wang",
]

_EPS = 2.220446049250313e-16  # MATLAB eps
_G11 = matlab_gaussian(11, 1.5)


def ssim_matlab(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """MATLAB ``ssim(x, y)`` with its defaults: Gaussian sigma = 1.5 (11 x 11), 'replicate' padding,
    the map averaged over all pixels, C1 = (0.01 L)^2, C2 = (0.03 L)^2, exponents 1.

    ``data_range`` is MATLAB's ``DynamicRange``; for double input it defaults to 1 even when the
    data are on 0-255, which is how Tang's evaluator calls it (so C1, C2 are nearly 0).
    """
    return ssim_matlab_per_source(x, y, data_range=data_range)[:, 0]


def gauss11_replicate_maps(sources: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Gaussian (11 x 11, sigma 1.5) means of ``[S_k, F, S_i S_j, S_k F, F^2]`` with 'replicate'
    padding, full size: ``(B, n, H, W)``. The interior ``[..., 5:-5, 5:-5]`` is the "valid" result,
    so MATLAB ``ssim`` and the MEF-SSIM first scale share these maps."""
    n_src = sources.shape[1]
    padded = F.pad(torch.cat([sources, fused], 1), (5, 5, 5, 5), mode="replicate")
    return sep_corr_valid_of(lambda x: _mef_gauss_inputs(x[:, :n_src], x[:, n_src:]), padded, _G11)


def ssim_matlab_per_source(
    fused: torch.Tensor, sources: torch.Tensor, *, data_range: float = 1.0, maps: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`ssim_matlab` ``(F, S_k)`` for every source channel: ``(B, 1, H, W), (B, S, H, W) -> (B, S)``.

    ``maps`` may supply :func:`gauss11_replicate_maps` ``(sources, fused)``.
    """
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    n = sources.shape[1]
    m = gauss11_replicate_maps(sources, fused) if maps is None else maps
    mx, sxx = m[:, n], m[:, -1]
    out = []
    pair_idx = {pr: t for t, pr in enumerate((i, j) for i in range(n) for j in range(i, n))}
    for k in range(n):
        my = m[:, k]
        syy = m[:, n + 1 + pair_idx[k, k]]
        sxy = m[:, n + 1 + len(pair_idx) + k]
        vx, vy, cxy = sxx - mx * mx, syy - my * my, sxy - mx * my
        num = (2 * mx * my + c1) * (2 * cxy + c2)
        den = (mx * mx + my * my + c1) * (vx + vy + c2)
        out.append((num / den).flatten(1).mean(1))
    return torch.stack(out, 1)


def _uniform_valid_f32(x32: torch.Tensor, size: int) -> torch.Tensor:
    """scipy ``uniform_filter`` on float32 data, interior ("valid") region only.

    scipy filters axis 0 then axis 1, accumulates each 1-D mean in double and stores it as
    float32 between the passes; the border mode never reaches the region skimage keeps. The
    window sums here are exact in double (float32 inputs), so each stored mean is the correctly
    rounded one, as scipy's.
    """
    taps = [1.0] * size
    h_out = x32.shape[-2] - size + 1
    w_out = x32.shape[-1] - size + 1
    out = torch.empty(*x32.shape[:-2], h_out, w_out, dtype=torch.float32, device=x32.device)
    bs = max(8, (1 << 19) // max(1, x32[..., 0, :].numel()))
    for r0 in range(0, h_out, bs):
        r1 = min(h_out, r0 + bs)
        x = x32[..., r0 : r1 + size - 1, :].to(torch.float64)
        m = corr_valid_rows(x, taps).div_(size).to(torch.float32).to(torch.float64)
        out[..., r0:r1, :] = corr_valid_cols(m, taps).div_(size)
    return out


def ssim_skimage(
    x: torch.Tensor, y: torch.Tensor, *, data_range: float, win_size: int = 7, float32: bool = True
) -> torch.Tensor:
    """scikit-image ``structural_similarity(x, y, data_range=...)`` with its defaults.

    7 x 7 uniform window, sample covariance (N / (N - 1)), K1 = 0.01, K2 = 0.03, the mean of the
    map after cropping ``(win_size - 1) // 2`` pixels at each border.

    * CDDFuse passes no ``data_range``; scikit-image 0.19.2 (its pinned version) then used the
      float dtype's range, **2** (``data_range=2.0`` here); >= 0.20 raises instead.
      LKC-FUNet passes ``data_range=255``.
    * ``float32=True`` reproduces the arithmetic for float32 images (what ``cv2`` reading gives):
      scipy's filters store float32 between passes and the SSIM formula runs in float32. With
      ``data_range=2`` the constants are tiny, so float32 rounding of the local variances
      visibly changes the result; this flag is what makes the numbers match.
    """
    return ssim_skimage_per_source(x, y, data_range=data_range, win_size=win_size, float32=float32)[:, 0]


def ssim_skimage_per_source(
    fused: torch.Tensor, sources: torch.Tensor, *, data_range: float, win_size: int = 7, float32: bool = True
) -> torch.Tensor:
    """:func:`ssim_skimage` ``(F, S_k)`` for every source channel (F's maps computed once): ``(B, S)``."""
    if min(fused.shape[-2:]) < win_size:
        raise ValueError(f"SSIM: image {tuple(fused.shape[-2:])} smaller than the {win_size}-pixel window")
    np_ = win_size * win_size
    cov_norm = np_ / (np_ - 1)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    n = sources.shape[1]
    x, ys = fused, sources
    if float32:
        x, ys = x.to(torch.float32), ys.to(torch.float32)
        cn = torch.tensor(cov_norm, dtype=torch.float32).item()
    else:
        cn = cov_norm
    maps = torch.cat([x, x * x, ys, ys * ys, ys * x], dim=1)
    m = _uniform_valid_f32(maps, win_size) if float32 else box_mean_valid(maps, win_size)
    ux, uxx = m[:, 0], m[:, 1]
    vx = cn * (uxx - ux * ux)
    out = []
    for k in range(n):
        uy, uyy, uxy = m[:, 2 + k], m[:, 2 + n + k], m[:, 2 + 2 * n + k]
        vy = cn * (uyy - uy * uy)
        vxy = cn * (uxy - ux * uy)
        a1 = 2 * ux * uy + c1
        a2 = 2 * vxy + c2
        b1 = ux**2 + uy**2 + c1
        b2 = vx + vy + c2
        s_map = (a1 * a2) / (b1 * b2)
        out.append(s_map.to(torch.float64).flatten(1).mean(1))
    return torch.stack(out, 1)


# --------------------------------------------------------------------------- MEF-SSIM (Tang)
def mef_ssim(
    sources: torch.Tensor,
    fused: torch.Tensor,
    *,
    k: float = 0.03,
    return_map: bool = False,
    gauss_maps: torch.Tensor | None = None,
) -> torch.Tensor:
    """MEF-SSIM of Ma, Zeng & Wang (``mef_ssim.m``), one scale: ``(B, S, H, W), (B, 1, H, W) -> (B,)``.

    In each 11 x 11 window the sources' mean-removed patches are combined into one reference
    patch (signal strength = the largest patch contrast, structure = a contrast-weighted mix with
    weights ``(c_k / 11) ** p``, ``p = tan(pi R / 2)`` capped at 10, R the structural consistency),
    which is compared with the fused patch by the SSIM contrast-structure term under a Gaussian
    window (sigma 1.5), ``C = (k 255)^2``. Written in closed form over local moments (box and
    Gaussian filtered products), so there is no per-window loop.

    ``gauss_maps`` may supply the "valid" Gaussian-filtered maps in :func:`_mef_gauss_inputs` order.
    """
    n_src = sources.shape[1]
    wsz = 11
    pairs = [(i, j) for i in range(n_src) for j in range(i, n_src)]

    def box_inputs(x: torch.Tensor) -> torch.Tensor:  # [S_1..S_n, S_i S_j (i <= j)]
        return torch.cat([x] + [x[:, i : i + 1] * x[:, j : j + 1] for i, j in pairs], 1)

    # box-window moments (filter2 with ones(11)/121, 'valid')
    box = sep_corr_valid_of(box_inputs, sources, [1.0] * wsz).div_(float(wsz * wsz))
    # Gaussian-window moments of sources, fused and their products
    if gauss_maps is None:
        g = sep_corr_valid_of(lambda x: _mef_gauss_inputs(x[:, :n_src], x[:, n_src:]), torch.cat([sources, fused], 1), _G11)
    else:
        g = gauss_maps
    # the rest is pointwise: run it on blocks of rows so the ~100 temporaries stay in cache
    h = box.shape[-2]
    bs = max(8, _POINTWISE_BLOCK // max(1, box[:, 0, 0, :].numel()))
    qs = [_mef_q(box[..., r : r + bs, :], g[..., r : r + bs, :], n_src, pairs, k) for r in range(0, h, bs)]
    q = torch.cat(qs, -2) if len(qs) > 1 else qs[0]
    return q if return_map else q.flatten(1).mean(1)


_POINTWISE_BLOCK = 1 << 15  # elements per block (x ~100 temporaries of float64: within L2)


def _mef_q(box: torch.Tensor, g: torch.Tensor, n_src: int, pairs: list[tuple[int, int]], k: float) -> torch.Tensor:
    """MEF-SSIM map from the box moments ``[S_k, S_i S_j]`` and Gaussian moments (rows of a block)."""
    wsz = 11
    npx = float(wsz * wsz)
    mu = [box[:, i] for i in range(n_src)]
    cov = {}
    for t, (i, j) in enumerate(pairs):
        cov[i, j] = box[:, n_src + t] - mu[i] * mu[j]
    norm = [torch.sqrt((npx * cov[i, i]).clamp_min(0.0)) for i in range(n_src)]  # ||x_k - mu_k||
    ed = [n + 0.001 for n in norm]
    tot = sum(cov[i, j] * (1.0 if i == j else 2.0) for i, j in pairs)
    num = torch.sqrt((npx * tot).clamp_min(0.0))  # ||sum_k x_k - its mean||
    r = (num + _EPS) / (sum(norm) + _EPS)
    r = torch.where(r > 1, 1 - _EPS, r)
    r = torch.where(r < 0, _EPS, r)
    p = torch.tan(math.pi / 2 * r).clamp_(max=10.0)
    wts = [torch.pow(e / wsz, p).add_(_EPS) for e in ed]
    wsum = sum(wts)
    coef = [w / (wsum * e) for w, e in zip(wts, ed)]  # weight / contrast: coefficient of (x_k - mu_k)
    max_ed = ed[0]
    for e in ed[1:]:
        max_ed = torch.maximum(max_ed, e)
    n2 = npx * sum(coef[i] * coef[j] * cov[i, j] * (1.0 if i == j else 2.0) for i, j in pairs)
    scale = torch.where(n2 > 0, max_ed / torch.sqrt(n2.clamp_min(1e-300)), 0.0)
    g_src = [g[:, i] for i in range(n_src)]
    g_f = g[:, n_src]
    g_pair = {pr: g[:, n_src + 1 + t] for t, pr in enumerate(pairs)}
    g_sf = [g[:, n_src + 1 + len(pairs) + i] for i in range(n_src)]
    g_ff = g[:, -1]
    mu1 = scale * sum(c * (gs - m) for c, gs, m in zip(coef, g_src, mu))
    e_rr = 0.0
    for i, j in pairs:
        m_ij = g_pair[i, j] - mu[j] * g_src[i] - mu[i] * g_src[j] + mu[i] * mu[j]
        e_rr = e_rr + (1.0 if i == j else 2.0) * coef[i] * coef[j] * m_ij
    sigma1_sq = scale * scale * e_rr - mu1 * mu1
    sigma2_sq = g_ff - g_f * g_f
    sigma12 = scale * sum(c * (gsf - m * g_f) for c, gsf, m in zip(coef, g_sf, mu)) - mu1 * g_f
    c = (k * 255.0) ** 2
    return (2 * sigma12 + c) / (sigma1_sq + sigma2_sq + c)


def _mef_gauss_inputs(sources: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """``[S_1..S_n, F, S_i S_j (i <= j), S_1 F..S_n F, F F]`` stacked on dim 1."""
    n_src = sources.shape[1]
    src = [sources[:, i : i + 1] for i in range(n_src)]
    prods = [src[i] * src[j] for i in range(n_src) for j in range(i, n_src)]
    return torch.cat(src + [fused] + prods + [s * fused for s in src] + [fused * fused], dim=1)


def _pair_moments(xy: torch.Tensor) -> torch.Tensor:
    """``[X, Y] -> [X, Y, X^2, Y^2, X Y]`` on dim 1."""
    x, y = xy[:, 0:1], xy[:, 1:2]
    return torch.cat([x, y, x * x, y * y, x * y], dim=1)


def _down2_symmetric(x: torch.Tensor) -> torch.Tensor:
    """``imfilter(x, ones(2)/4, 'symmetric', 'same')`` then ``x(1:2:end, 1:2:end)`` (MATLAB and Octave)."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(x, 2)


def ms_ssim_mef(
    sources: torch.Tensor,
    fused: torch.Tensor,
    *,
    weights: Sequence[float] = (0.0448, 0.2856, 0.3001),
    k: float = 0.03,
    scale1_gauss: torch.Tensor | None = None,
) -> torch.Tensor:
    """Tang's ``MS_SSIM`` = ``analysis_ms_ssim(imgSeq, F)``: MEF-SSIM over ``len(weights)`` scales.

    ``prod(Q_l ** w_l)`` with the weights normalised to sum 1 (default 3 scales,
    [0.0448, 0.2856, 0.3001]); 2 x 2 mean + decimation between scales. ``(B, S, H, W)`` sources
    (S = 2 for fusion), ``(B, 1, H, W)`` fused -> ``(B,)``. ``scale1_gauss`` may supply the
    first scale's "valid" Gaussian maps (e.g. the interior of :func:`gauss11_replicate_maps`).
    """
    wts = torch.tensor(weights, dtype=torch.float64)
    wts = wts / wts.sum()
    level = len(weights)
    if min(sources.shape[-2:]) / 2 ** (level - 1) < 11:
        raise ValueError(f"MS_SSIM (MEF): image {tuple(sources.shape[-2:])} too small for {level} scales")
    out = torch.ones(sources.shape[0], dtype=torch.float64, device=sources.device)
    s, f = sources, fused
    for lv in range(level):
        q = mef_ssim(s, f, k=k, gauss_maps=scale1_gauss if lv == 0 else None)
        out = out * q ** float(wts[lv])
        if lv < level - 1:
            s, f = _down2_symmetric(s), _down2_symmetric(f)
    return out


def ms_ssim_wang(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 255.0,
    weights: Sequence[float] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
) -> torch.Tensor:
    """Multi-scale SSIM of Wang, Simoncelli & Bovik (2003), as in their ``msssim.m``: ``(B,)``.

    Gaussian window 11 x 11, sigma 1.5, "valid" filtering, K = (0.01, 0.03), L = ``data_range``;
    contrast-structure at scales 1..M-1, full SSIM at scale M, ``prod(cs_l ** w_l) * ssim_M ** w_M``;
    2 x 2 mean + decimation between scales. Negative per-scale terms are clipped to 0 (as
    ``pytorch_msssim`` does) so the fractional powers stay real.
    """
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    level = len(weights)
    if min(x.shape[-2:]) / 2 ** (level - 1) < 11:
        raise ValueError(
            f"MS-SSIM (Wang): image {tuple(x.shape[-2:])} too small for {level} scales "
            f"(needs >= {11 * 2 ** (level - 1)} px)"
        )
    out = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    for lv in range(level):
        m = sep_corr_valid_of(_pair_moments, torch.cat([x, y], dim=1), _G11)
        mx, my, sxx, syy, sxy = m.unbind(1)
        vx, vy, cxy = sxx - mx * mx, syy - my * my, sxy - mx * my
        cs = ((2 * cxy + c2) / (vx + vy + c2)).flatten(1).mean(1)
        if lv < level - 1:
            out = out * cs.clamp_min(0.0) ** weights[lv]
            x, y = _down2_symmetric(x), _down2_symmetric(y)
        else:
            lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
            full = (lum * (2 * cxy + c2) / (vx + vy + c2)).flatten(1).mean(1)
            out = out * full.clamp_min(0.0) ** weights[lv]
    return out
