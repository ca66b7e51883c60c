"""Fusion quality metrics with the conventions of the public toolboxes, batched, in torch.

Start with :func:`evaluate` and a preset (``"tang"``, ``"cddfuse"``, ``"lkc"``); see
:mod:`fusionlib.metrics.presets` for what each preset fixes (sum vs mean over the sources, log
base, rounding, data ranges, windows, PSNR). The per-metric functions live in ``basic``
(EN SD SF AG MSE PSNR CC SCD), ``information`` (MI, FMI with edge / DCT / wavelet features),
``vif``, ``qabf`` (Qabf, Nabf), ``ssim`` (SSIM, MEF-SSIM, MS-SSIM) and ``psd`` (RPFNet-style
spectra); they take ``(B, 1, H, W)`` images on the 0-255 scale and return ``(B,)``. (``vif.vif``
and ``qabf.qabf`` are reached through their modules, so that ``fusionlib.metrics.vif`` stays the
module.) ``wavelet`` holds the one-level dmey ``dwt2`` (MATLAB's, in torch) behind Tang's
``FMI_w`` (on MATLAB's 102-tap ``dmey`` filter; see :func:`fusionlib.metrics.information.fmi`); FMI_dct and FMI_w are slow (seconds per image)
and computed only when named or with ``metrics="all"``.

Command line: ``python -m fusionlib.metrics --fused DIR --a DIR --b DIR --preset tang``.

Examples:
    >>> import torch
    >>> from fusionlib.metrics import evaluate
    >>> x = torch.rand(1, 1, 64, 64)
    >>> round(float(evaluate(x, x, x, "cddfuse", ["SSIM"])["SSIM"]), 6)   # a sum over 2 sources
    2.0
"""

from __future__ import annotations

from fusionlib.metrics._common import MetricWarning, to_levels
from fusionlib.metrics.basic import average_gradient, cc, entropy, mse, psnr, scd, spatial_frequency, std
from fusionlib.metrics.information import fmi, mi_per_source, mutual_information
from fusionlib.metrics.presets import (
    PRESETS,
    Metric,
    Preset,
    evaluate,
    get_preset,
    higher_is_better,
    list_metrics,
)
from fusionlib.metrics.psd import psd_fidelity, spectral_entropy
from fusionlib.metrics.qabf import nabf
from fusionlib.metrics.ssim import (
    mef_ssim,
    ms_ssim_mef,
    ms_ssim_wang,
    ssim_matlab,
    ssim_matlab_per_source,
    ssim_skimage,
    ssim_skimage_per_source,
)
from fusionlib.metrics.vif import vifp_mscale

__all__ = [
    "evaluate", "list_metrics", "higher_is_better", "get_preset", "PRESETS", "Preset", "Metric",
    "MetricWarning", "to_levels",
    "entropy", "std", "spatial_frequency", "average_gradient", "mse", "psnr", "cc", "scd",
    "mutual_information", "mi_per_source", "fmi",
    "vifp_mscale", "nabf",
    "ssim_matlab", "ssim_matlab_per_source", "ssim_skimage", "ssim_skimage_per_source",
    "mef_ssim", "ms_ssim_mef", "ms_ssim_wang",
    "psd_fidelity", "spectral_entropy",
]
