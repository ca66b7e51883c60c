"""Information-theoretic fusion metrics: MI and FMI (feature mutual information).

Images are ``(B, 1, H, W)`` on the 0-255 scale; results are ``(B,)`` float64.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from fusionlib.metrics._common import DTYPE
from fusionlib.metrics.wavelet import dwt2

__all__ = ["mutual_information", "mi_per_source", "fmi", "octave_sobel_edges", "dct2", "dwt_feature"]


# ------------------------------------------------------------------------------------------ MI
def _joint_hist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """256 x 256 joint histogram of integer levels per image: ``(B, 256, 256)`` counts (x rows)."""
    b = x.shape[0]
    xi = x.reshape(b, -1)
    yi = y.reshape(b, -1)
    idx = xi * 256 + yi + (65536 * torch.arange(b, device=x.device))[:, None]
    return torch.bincount(idx.flatten(), minlength=65536 * b).view(b, 256, 256).to(DTYPE)


def _plogp_sum(counts: torch.Tensor, n: int, dims: tuple[int, ...]) -> torch.Tensor:
    p = counts / n
    return -torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), 0.0).sum(dims)


def mi_per_source(
    fused: torch.Tensor,
    source: torch.Tensor,
    *,
    base: float = 2.0,
    merge_top_levels: bool = False,
) -> torch.Tensor:
    """MI(F; S) = H(F) + H(S) - H(F, S) over 256 grey levels: ``(B, 1, H, W) x2 -> (B,)``.

    * Tang (``MI_evaluation.m`` + ``Hab.m``): ``base=2`` (bits) and ``merge_top_levels=True``:
      ``Hab`` indexes its joint histogram with ``uint8(level) + 1``, which saturates, so levels 254
      and 255 share a bin in the joint histogram only (the marginals use ``entropy``, unmerged).
    * CDDFuse (``sklearn.metrics.mutual_info_score`` on the pixel values as labels):
      ``base=e`` (nats), no merge; sklearn clips a negative round-off result to 0, so do we.

    Levels are rounded (half to even) and clipped to 0..255 first.
    """
    f = torch.round(fused).clamp_(0, 255).long()
    s = torch.round(source).clamp_(0, 255).long()
    n = f[0].numel()
    joint = _joint_hist(f, s)  # (B, 256 F levels, 256 S levels)
    hf = _plogp_sum(joint.sum(2), n, (1,))
    hs = _plogp_sum(joint.sum(1), n, (1,))
    if merge_top_levels:  # fold level 255 into 254 along both axes (joint histogram only)
        joint = joint.clone()
        joint[:, 254, :] += joint[:, 255, :]
        joint[:, 255, :] = 0
        joint[:, :, 254] += joint[:, :, 255]
        joint[:, :, 255] = 0
    hfs = _plogp_sum(joint, n, (1, 2))
    mi = (hf + hs - hfs) / math.log(base)
    return mi if merge_top_levels else mi.clamp_min(0.0)


def mutual_information(
    fused: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    base: float = 2.0,
    merge_top_levels: bool = False,
) -> torch.Tensor:
    """MI = MI(F; A) + MI(F; B), a **sum** over the sources in both toolboxes.

    See :func:`mi_per_source` for ``base`` (Tang: 2, bits; CDDFuse: e, nats) and the Tang joint
    histogram's 254/255 merge.

    Examples:
        >>> x = torch.arange(256.0).view(1, 1, 16, 16)
        >>> round(float(mutual_information(x, x, x)), 6)     # 2 * H(x) = 2 * 8 bits
        16.0
    """
    kw = dict(base=base, merge_top_levels=merge_top_levels)
    return mi_per_source(fused, a, **kw) + mi_per_source(fused, b, **kw)


# ----------------------------------------------------------------------------------------- FMI
def octave_sobel_edges(x: torch.Tensor) -> torch.Tensor:
    """Binary edge map of GNU Octave's ``edge(im)`` (image package; Sobel, default threshold, thinning).

    ``h = fspecial('sobel') / 8``; strength^2 = ``imfilter(im, h, 'replicate')^2 + imfilter(im, h',
    'replicate')^2``; threshold^2 = 4 mean(strength^2); values at or below it are zeroed; a pixel
    is an edge if its strength exceeds both horizontal neighbours or both vertical neighbours
    (zero outside the image). MATLAB's own ``edge`` thins differently, so Tang's FMI_pixel under
    MATLAB can differ slightly from these (Octave) numbers. ``(B, 1, H, W) -> (B, 1, H, W)`` bool.
    """
    p = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    # correlation with [1 2 1; 0 0 0; -1 -2 -1] / 8 (vertical derivative) and its transpose
    sm_h = p[..., :, :-2] + 2 * p[..., :, 1:-1] + p[..., :, 2:]  # horizontal smoothing
    gv = (sm_h[..., :-2, :] - sm_h[..., 2:, :]) / 8
    sm_v = p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]
    gh = (sm_v[..., :, :-2] - sm_v[..., :, 2:]) / 8
    s2 = gv.square() + gh.square()
    thr = 4 * s2.mean(dim=(-2, -1), keepdim=True)
    s2 = torch.where(s2 <= thr, 0.0, s2)
    z = torch.nn.functional.pad(s2, (1, 1, 1, 1))
    c = z[..., 1:-1, 1:-1]
    horiz = (c > z[..., 1:-1, :-2]) & (c > z[..., 1:-1, 2:])
    vert = (c > z[..., :-2, 1:-1]) & (c > z[..., 2:, 1:-1])
    return horiz | vert


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two dims (MATLAB ``dct2``)."""

    def mat(n: int) -> torch.Tensor:
        k = torch.arange(n, dtype=DTYPE, device=x.device)
        m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
        m[0] /= math.sqrt(2.0)
        return m

    h, w = x.shape[-2:]
    return mat(h) @ x.to(DTYPE) @ mat(w).T


def dwt_feature(x: torch.Tensor) -> torch.Tensor:
    """FMI_w's feature image: ``rerange([cA, cH; cV, cD])`` of ``analysis_fmi.m`` (feature ``'wavelet'``).

    The four sub-bands of one level of MATLAB ``dwt2(x, 'dmey')`` (extension ``'sym'``, see
    :func:`fusionlib.metrics.wavelet.dwt2`) tiled as ``[[cA, cH], [cV, cD]]`` and rescaled
    to [0, 1] by the image's own minimum and maximum (all ones if it is flat):
    ``(B, 1, H, W) -> (B, 1, 2 floor((H + 101) / 2), 2 floor((W + 101) / 2))``, e.g. 256 -> 356
    (MATLAB's 102-tap ``dmey``).
    """
    ca, ch, cv, cd = dwt2(x)
    feat = torch.cat([torch.cat([ca, ch], -1), torch.cat([cv, cd], -1)], -2)
    lo = feat.amin((-2, -1), keepdim=True)
    hi = feat.amax((-2, -1), keepdim=True)
    flat = hi == lo
    return torch.where(flat, 1.0, (feat - lo) / torch.where(flat, 1.0, hi - lo))


def _windows(feat: torch.Tensor, w: int) -> torch.Tensor:
    """All ``w x w`` windows of ``(B, 1, H, W)``, MATLAB column-major flattening: ``(B, L, w*w)``."""
    u = torch.nn.functional.unfold(feat, w)  # (B, w*w, L), row-major within the window
    order = [r * w + c for c in range(w) for r in range(w)]  # MATLAB's aSub(:) is column-major
    return u[:, order, :].transpose(1, 2)


def _normalise_window(v: torch.Tensor) -> torch.Tensor:
    """Tang/Haghighat: (v - min) / (max - min), or all ones for a flat window. ``(N, l)``."""
    vmax = v.amax(1, keepdim=True)
    vmin = v.amin(1, keepdim=True)
    flat = vmax == vmin
    rng = torch.where(flat, 1.0, vmax - vmin)
    return torch.where(flat, 1.0, (v - vmin) / rng)


def _fmi_core(a: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Fast-FMI of Haghighat & Razian (2014) for window pairs ``(N, l)`` (already normalised, not equal).

    Follows ``analysis_fmi.m`` step by step: PDFs, CDFs, Pearson correlation c of the PDFs,
    Nelsen's upper (c >= 0) or lower (c < 0) Frechet bound mixed with the independent joint
    PDF, joint and marginal entropies (log2), and ``2 MI / (H_a + H_f)``.
    """
    l = a.shape[1]
    ap = a / a.sum(1, keepdim=True)
    fp = f / f.sum(1, keepdim=True)
    acdf = ap.cumsum(1)
    fcdf = fp.cumsum(1)
    at = ap - ap.mean(1, keepdim=True)
    ft = fp - fp.mean(1, keepdim=True)
    s_af = (at * ft).sum(1)
    c = torch.where(s_af == 0, 0.0, s_af / torch.sqrt((at * at).sum(1) * (ft * ft).sum(1)))
    i = torch.arange(1, l + 1, dtype=DTYPE, device=a.device)
    a_sd = torch.sqrt(((i * i) * ap).sum(1) - ((i * ap).sum(1)) ** 2)
    f_sd = torch.sqrt(((i * i) * fp).sum(1) - ((i * fp).sum(1)) ** 2)
    fi = fcdf[:, :, None]  # rows: i (fused CDF), columns: j (source CDF)
    aj = acdf[:, None, :]
    up = 0.5 * (fi + aj - (fi - aj).abs())  # Frechet upper bound min(F_i, A_j)
    lo = 0.5 * (fi + aj - 1 + (fi + aj - 1).abs())  # lower bound max(F_i + A_j - 1, 0)
    outer = fi * aj
    pos = c >= 0
    bound = torch.where(pos[:, None, None], up, lo)
    cov = (bound - outer).sum((1, 2))
    degenerate = (a_sd == 0) | (f_sd == 0) | (pos & (c == 0))
    mix = torch.where(degenerate, 0.0, c / (cov / (f_sd * a_sd)))
    # 2-D differences of the bound give its joint PDF (first row / column: 1-D differences)
    jb = bound.clone()
    jb[:, 1:, :] -= bound[:, :-1, :]
    jb[:, :, 1:] -= bound[:, :, :-1]
    jb[:, 1:, 1:] += bound[:, :-1, :-1]
    indep = fp[:, :, None] * ap[:, None, :]
    jpdf = mix[:, None, None] * jb + (1 - mix[:, None, None]) * indep
    # real(-p log2 p): a negative p contributes -p log2 |p|
    jmag = jpdf.abs()
    h_joint = torch.where(jpdf != 0, -jpdf * torch.log2(jmag.clamp_min(1e-300)), 0.0).sum((1, 2))
    h_a = torch.where(ap != 0, -ap * torch.log2(ap.clamp_min(1e-300)), 0.0).sum(1)
    h_f = torch.where(fp != 0, -fp * torch.log2(fp.clamp_min(1e-300)), 0.0).sum(1)
    mi = h_a + h_f - h_joint
    return torch.where(mi == 0, 0.0, 2 * mi / (h_a + h_f))


def _fmi_pairs(a: torch.Tensor, f: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """FMI of raw window pairs ``(N, l)``: 1 where the windows are equal, else the core formula."""
    out = torch.ones(a.shape[0], dtype=DTYPE, device=a.device)
    neq = ~(a == f).all(1)
    idx = neq.nonzero().flatten()
    for s in range(0, idx.numel(), chunk):
        k = idx[s : s + chunk]
        out[k] = _fmi_core(_normalise_window(a[k]), _normalise_window(f[k]))
    return out


def _window_codes(edges: torch.Tensor, w: int) -> torch.Tensor:
    """Bit pattern of every ``w x w`` window of a binary map, bit ``col * w + row`` (MATLAB's
    column-major ``aSub(:)``): ``(B, 1, H, W)`` bool -> ``(B, H - w + 1, W - w + 1)`` int64."""
    e = edges[:, 0].to(torch.int64)
    h, wd = e.shape[-2] - w + 1, e.shape[-1] - w + 1
    code = torch.zeros(e.shape[0], h, wd, dtype=torch.int64, device=e.device)
    for dc in range(w):
        for dr in range(w):
            code |= e[:, dr : dr + h, dc : dc + wd] << (dc * w + dr)
    return code


def _fmi_binary(fa: torch.Tensor, fb: torch.Tensor, ff: torch.Tensor, w: int) -> torch.Tensor:
    """FMI for binary feature maps: a window is a bit pattern, so the score of a (source, fused)
    window pair depends on two codes only; count the pairs, score each distinct pair once."""
    bsz = fa.shape[0]
    l = w * w
    ca, cb, cf = (_window_codes(m, w).flatten(1) for m in (fa, fb, ff))
    n_win = ca.shape[1]
    pairs = torch.cat([(ca << l) | cf, (cb << l) | cf], dim=1)  # (B, 2 n_win), codes < 2^(2l)
    n_codes = 1 << (2 * l)
    if bsz > 1:
        pairs = pairs + (n_codes * torch.arange(bsz, device=fa.device))[:, None]
    counts = torch.bincount(pairs.flatten(), minlength=n_codes * bsz).view(bsz, n_codes)
    present = counts.any(0).nonzero().flatten()  # the pairs that occur in any image
    counts = counts[:, present]
    bits = ((present[:, None] >> torch.arange(2 * l, device=fa.device)) & 1).to(DTYPE)
    vals = _fmi_pairs(bits[:, l:], bits[:, :l])  # high bits: source pattern, low bits: fused
    return (counts.to(DTYPE) @ vals) / (2 * n_win)


def _fmi_general(fa: torch.Tensor, fb: torch.Tensor, ff: torch.Tensor, w: int) -> torch.Tensor:
    bsz = fa.shape[0]
    wa, wb, wf = (_windows(m.to(DTYPE), w) for m in (fa, fb, ff))
    res = [(0.5 * (_fmi_pairs(wa[k], wf[k]) + _fmi_pairs(wb[k], wf[k]))).mean() for k in range(bsz)]
    return torch.stack(res)


def fmi(
    fused: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    feature: Literal["edge", "dct", "wavelet", "none"] = "edge",
    window: int = 3,
) -> torch.Tensor:
    """FMI (Haghighat et al. 2011; fast-FMI, 2014) as in Tang's ``analysis_fmi.m``: ``(B,)``.

    The mean over all ``window x window`` sliding windows (valid region) of
    ``(FMI(A, F) + FMI(B, F)) / 2``. ``feature``:

    * ``"edge"``: **FMI_pixel**, features are binary edge maps from :func:`octave_sobel_edges`
      (the reference numbers were produced with GNU Octave's ``edge``);
    * ``"dct"``: **FMI_dct**, features are the orthonormal 2-D DCT of each image;
    * ``"wavelet"``: **FMI_w**, features are :func:`dwt_feature` (one level of MATLAB
      ``dwt2(x, 'dmey')``, sub-bands tiled ``[cA, cH; cV, cD]``, rescaled to [0, 1]); a
      256 x 256 pair gives 356 x 356 features, so it is slower than FMI_dct. It follows
      MATLAB's algorithm on MATLAB's 102-tap ``dmey`` filter (``pywt.dwt2`` with that filter bank
      and ``mode='symmetric'`` agrees to 1e-12; PyWavelets' own 62-tap ``dmey`` does not) and
      matches the GNU Octave reference numbers to ~1e-7 relative
      (``tests/test_metrics_reference.py::test_tang_fmi_w``); the filter's provenance caveat is in
      :mod:`fusionlib.metrics.wavelet`;
    * ``"none"``: raw pixels.

    Each source-fused window pair is scored independently (a window pair that is identical
    scores 1), which is what the reference numbers show.
    """
    if feature == "edge":
        fa, fb, ff = (octave_sobel_edges(x) for x in (a, b, fused))
        return _fmi_binary(fa, fb, ff, window)
    if feature == "dct":
        fa, fb, ff = (dct2(x) for x in (a, b, fused))
    elif feature == "wavelet":
        fa, fb, ff = (dwt_feature(x) for x in (a, b, fused))
    elif feature == "none":
        fa, fb, ff = a, b, fused
    else:
        raise ValueError(f"unknown FMI feature {feature!r}; use 'edge', 'dct', 'wavelet' or 'none'")
    return _fmi_general(fa, fb, ff, window)
