"""VIF: multi-scale pixel-domain visual information fidelity (VIFp; Sheikh & Bovik 2006).

The fusion toolboxes use LIVE's ``vifp_mscale.m`` unchanged: Tang calls it ``VIF``, CDDFuse
re-implements it line by line as ``compare_viff`` and calls the sum ``VIFF``; it is the same
number (the "F" is not Han et al.'s VIFF fusion metric). Both report the **sum** over the two
sources, ``VIF(A, F) + VIF(B, F)``.
"""

from __future__ import annotations

import math

import torch

from fusionlib.metrics._common import matlab_gaussian, sep_corr_valid, sep_corr_valid_of, warn_undefined

__all__ = ["vifp_mscale", "vif"]

_EPS = 1e-10
_LN10 = math.log(10.0)
_SIGMA_NSQ = 2.0


def _vif_terms(mu1, mu2, s11, s22, s12) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image sums of the numerator and denominator terms of ``vifp_mscale.m`` (same masking order).

    ``mu1, s11, s12``: ``(B, S, h, w)`` (one channel per reference); ``mu2, s22``: ``(B, 1, h, w)``.
    Done in place to keep the memory traffic down.
    """
    sigma1_sq = s11.sub_(mu1 * mu1).clamp_min_(0.0)
    sigma2_sq = s22.sub_(mu2 * mu2).clamp_min_(0.0).expand_as(sigma1_sq)
    sigma12 = s12.sub_(mu1 * mu2)
    g = sigma12 / (sigma1_sq + _EPS)
    sv_sq = sigma2_sq - g * sigma12
    small1 = sigma1_sq < _EPS
    g.masked_fill_(small1, 0.0)
    sv_sq = torch.where(small1, sigma2_sq, sv_sq)
    sigma1_sq.masked_fill_(small1, 0.0)
    small2 = sigma2_sq < _EPS
    g.masked_fill_(small2, 0.0)
    sv_sq.masked_fill_(small2, 0.0)
    neg = g < 0
    sv_sq = torch.where(neg, sigma2_sq, sv_sq)
    g.clamp_min_(0.0)
    sv_sq.clamp_min_(_EPS)  # sv_sq(sv_sq <= eps) = eps
    # log10(1 + x) summed; log1p is the same number without the 1 + x rounding
    num = torch.log1p(g.square_().mul_(sigma1_sq).div_(sv_sq.add_(_SIGMA_NSQ))).sum((-2, -1))
    den = torch.log1p(sigma1_sq.div_(_SIGMA_NSQ)).sum((-2, -1))
    return num / _LN10, den / _LN10


def _moment_maps(k: int):
    """``[R_1..R_k, D] -> [R, D, R^2, D^2, R D]`` on dim 1 (k references, one distorted image)."""

    def make(x: torch.Tensor) -> torch.Tensor:
        r, d = x[:, :k], x[:, k:]
        return torch.cat([r, d, r * r, d * d, r * d], dim=1)

    return make


def vifp_mscale(refs: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """VIFp of each reference against one distorted image, 4 scales: ``(B, S, H, W), (B, 1, H, W) -> (B, S)``.

    Per scale s = 1..4: Gaussian window N = 2^(5-s) + 1, sigma = N / 5 (``fspecial``); for s > 1 both
    images are first filtered ("valid") and sub-sampled by 2; local statistics use "valid"
    filtering; sigma_n^2 = 2. VIF = sum(num) / sum(den) over all scales. NaN when the reference
    has no variance anywhere (0 / 0).
    """
    ref, d = refs, dist
    num = torch.zeros(refs.shape[:2], dtype=refs.dtype, device=refs.device)
    den = torch.zeros_like(num)
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = matlab_gaussian(n, n / 5.0)
        if scale > 1:
            ref = sep_corr_valid(ref, win, stride=2)
            d = sep_corr_valid(d, win, stride=2)
        if min(ref.shape[-2:]) < n:
            raise ValueError(
                f"VIF: image too small for scale {scale} ({tuple(refs.shape[-2:])} at full size)"
            )
        # one batched filter call for every map of this scale, the product maps made block by block
        k = ref.shape[1]
        m = sep_corr_valid_of(_moment_maps(k), torch.cat([ref, d], dim=1), win)
        mu1, mu2 = m[:, :k], m[:, k : k + 1]
        s11, s22, s12 = m[:, k + 1 : 2 * k + 1], m[:, 2 * k + 1 : 2 * k + 2], m[:, 2 * k + 2 :]
        nu, de = _vif_terms(mu1, mu2, s11, s22, s12)
        num += nu
        den += de
    return num / den


def vif(
    fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, nan_as_one: bool = False
) -> torch.Tensor:
    """VIF = VIFp(A, F) + VIFp(B, F), a **sum** (Tang ``VIF``, CDDFuse ``VIFF``): ``(B,)``.

    ``nan_as_one=True`` reproduces CDDFuse's ``compare_viff``, which returns 1.0 for a source
    whose VIF is NaN (a constant source); Tang keeps the NaN. Either way a
    :class:`MetricWarning` is issued.
    """
    per = vifp_mscale(torch.cat([a, b], dim=1), fused)
    bad = torch.isnan(per)
    if nan_as_one:
        warn_undefined("VIF", bad.any(1), "a constant source gives 0/0; CDDFuse substitutes 1.0 per source")
        per = torch.where(bad, 1.0, per)
    else:
        warn_undefined("VIF", bad.any(1), "a constant source gives 0/0")
    return per.sum(1)
