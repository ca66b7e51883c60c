"""Edge-based fusion metrics of Xydeas & Petrovic: Qabf, and the artefact measure Nabf.

Images are ``(B, 1, H, W)`` on the 0-255 scale; results ``(B,)`` float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fusionlib.metrics._common import warn_undefined

__all__ = ["qabf", "nabf", "nabf_gradients", "petrovic_q"]


def _sobel_zero_pad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv2(x, h3, 'same')`` and ``conv2(x, h1, 'same')`` (zero padding) of ``analysis_Qabf.m``.

    h3 = [-1 0 1; -2 0 2; -1 0 1], h1 = [1 2 1; 0 0 0; -1 -2 -1]. Convolution flips both kernels,
    which negates both responses; only |g| and the ratio Sy/Sx are used, so correlation gives the
    same metric. Returns (Sx, Sy).
    """
    p = F.pad(x, (1, 1, 1, 1))
    sm_v = p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]
    sx = sm_v[..., :, 2:] - sm_v[..., :, :-2]
    sm_h = p[..., :, :-2] + 2 * p[..., :, 1:-1] + p[..., :, 2:]
    sy = sm_h[..., :-2, :] - sm_h[..., 2:, :]
    return sx, sy


def _strength_angle_qabf(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sx, sy = _sobel_zero_pad(x)
    g = torch.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    a = torch.atan(sy / sx.masked_fill(zero, 1.0)).masked_fill_(zero, math.pi / 2)
    return g, a


def _q_af(g_s, a_s, g_f, a_f) -> torch.Tensor:
    tg, kg, dg = 0.9994, -15.0, 0.5
    ta, ka, da = 0.9879, -22.0, 0.8
    # the toolboxes' relative strength: min/max, but gF itself (not 1) where gA == gF
    ratio = torch.minimum(g_s, g_f).div_(torch.maximum(g_s, g_f).clamp_min_(1e-300))
    gaf = torch.where(g_s == g_f, g_f, ratio)
    aaf = (a_s - a_f).abs_().mul_(-2 / math.pi).add_(1.0)  # 1 - |aA - aF| / (pi / 2)
    qg = gaf.sub_(dg).mul_(kg).exp_().add_(1.0).reciprocal_().mul_(tg)
    qa = aaf.sub_(da).mul_(ka).exp_().add_(1.0).reciprocal_().mul_(ta)
    return qg.mul_(qa)


def qabf(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Qabf (Xydeas & Petrovic 2000) as in Tang ``analysis_Qabf.m`` and CDDFuse ``Qabf`` (identical).

    Sobel with zero padding ("same"), orientation ``atan(Sy / Sx)`` (pi/2 where Sx = 0; not
    ``atan2``), Tg = 0.9994, kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8, weights
    ``g_A`` and ``g_B`` (L = 1). Both toolboxes set the strength ratio to ``g_F`` (not 1) where
    ``g_A == g_F``, so the value depends on the 0-255 scale; this is reproduced. NaN, with a
    warning, when both sources are constant (no edges).
    """
    g, ang = _strength_angle_qabf(torch.cat([a, b, fused], dim=1))
    ga, gb, gf = g[:, 0:1], g[:, 1:2], g[:, 2:3]
    aa, ab, af = ang[:, 0:1], ang[:, 1:2], ang[:, 2:3]
    qa = _q_af(ga, aa, gf, af)
    qb = _q_af(gb, ab, gf, af)
    den = (ga + gb).sum((-3, -2, -1))
    num = (qa * ga + qb * gb).sum((-3, -2, -1))
    out = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), float("nan"))
    warn_undefined("Qabf", torch.isnan(out), "both sources are constant (no edge strength)")
    return out


def _sobel_reflect_eighth(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sobel_fn.m``: correlation with [-1 0 1; -2 0 2; -1 0 1]/8 (gv) and its transpose with the
    sign of [-1 -2 -1; 0 0 0; 1 2 1]/8 (gh), on the image extended by ``per_extn_im_fn`` (a mirror
    without repeating the edge, i.e. "reflect")."""
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    sm_v = p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]
    gv = (sm_v[..., :, 2:] - sm_v[..., :, :-2]) / 8
    sm_h = p[..., :, :-2] + 2 * p[..., :, 1:-1] + p[..., :, 2:]
    gh = (sm_h[..., 2:, :] - sm_h[..., :-2, :]) / 8
    return gv, gh


def petrovic_q(g_s, a_s, g_f, a_f) -> torch.Tensor:
    """Edge preservation Q^{SF} of ``analysis_nabf.m`` (Petrovic's parameters, sqrt of the product).

    Symmetric, bit for bit, in (S, F): min / max and ``|a_S - a_F|`` do not depend on the order.
    """
    nrg, kg, sg = 0.9999, 19.0, 0.5
    nra, ka, sa = 0.9995, 22.0, 0.5
    zero = (g_s == 0) | (g_f == 0)
    big = torch.maximum(g_s, g_f)
    small = torch.minimum(g_s, g_f)
    g_sf = torch.where(zero, 0.0, small / torch.where(zero, 1.0, big))
    a_sf = ((a_s - a_f).abs() - math.pi / 2).abs() * 2 / math.pi
    qg = nrg / (1 + torch.exp(-kg * (g_sf - sg)))
    qa = nra / (1 + torch.exp(-ka * (a_sf - sa)))
    return torch.sqrt(qg * qa)


def nabf_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge strength and orientation of ``analysis_nabf.m`` for ``(B, C, H, W)``: ``(g, alpha)``.

    ``g = sqrt(gh^2 + gv^2)``, ``alpha = atan(gv / gh)`` (0 where both are 0, +-pi/2 where gh = 0).
    """
    gv, gh = _sobel_reflect_eighth(x)
    g = torch.sqrt(gh * gh + gv * gv)
    both0 = (gv == 0) & (gh == 0)
    alpha = torch.atan(gv / torch.where(both0, 1.0, gh)).masked_fill_(both0, 0.0)
    return g, alpha


def nabf(
    f: torch.Tensor,
    s1: torch.Tensor,
    s2: torch.Tensor,
    *,
    grads: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None,
    q: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Nabf, fusion artefacts as modified by B. K. Shreyamsha Kumar (``analysis_nabf.m``); lower is better.

    Argument order is the function's own signature ``(fused, source1, source2)``. Tang's
    evaluator calls it as ``analysis_nabf(A, B, F)``, i.e. with A in the fused slot; the presets
    expose both: ``Nabf`` (the toolbox call) and ``Nabf_argfix`` (``nabf(F, A, B)``).

    Sobel /8 on a mirror-extended image; Td = 2, wt_min = 0.001, Lg = 1.5, Nrg = 0.9999,
    kg = 19, sigma_g = 0.5, Nra = 0.9995, ka = 22, sigma_a = 0.5;
    ``NABF = sum(na * ((1 - Q1F) w1 + (1 - Q2F) w2)) / sum(w1 + w2)`` with
    ``na = gF > g1 and gF > g2``. ``grads`` may supply :func:`nabf_gradients` of (f, s1, s2), and
    ``q`` the edge preservation maps ``(Q^{1F}, Q^{2F})`` (:func:`petrovic_q`, symmetric in its two
    images, so the presets share Q^{AF} between ``Nabf`` and ``Nabf_argfix``).
    """
    if grads is None:
        grads = tuple(nabf_gradients(x) for x in (f, s1, s2))
    (g_f, a_f), (g1, a1), (g2, a2) = grads
    na = (g_f > g1) & (g_f > g2)
    num = torch.zeros(f.shape[0], dtype=g_f.dtype, device=g_f.device)
    den = torch.zeros_like(num)
    for i, (g, a) in enumerate(((g1, a1), (g2, a2))):
        w = torch.where(g >= 2.0, g * torch.sqrt(g), 0.001)  # g ** 1.5
        den += w.sum((-3, -2, -1))
        q_sf = petrovic_q(g, a, g_f, a_f) if q is None else q[i]
        num += torch.where(na, (1 - q_sf) * w, 0.0).sum((-3, -2, -1))
    return num / den
