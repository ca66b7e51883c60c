"""Generic loss terms of the five fusion papers, kornia-style (a function and an ``nn.Module`` each).

Argument order is always ``(fused, ir, vi)`` with ``(B, C, H, W)`` images in [0, 1] (the papers use
C = 1, ``vi`` = the visible Y channel). Paper-specific composites (SIBA's weighted sum, RPFNet's
frequency contrastive loss and L_SS, AIDFusion's L_ACF) live in ``fusionlib.losses.<paper>`` (or,
for DIILS, ``fusionlib.diils``); the composites that are a plain sum of the terms below are exported here.

=========================  =============================================  ==============================
term                        definition                                     used by
=========================  =============================================  ==============================
intensity_max_loss          L1(F, max(ir, vi))                             SIBA, LKC-FUNet, DMNet II
gradient_max_loss           L1(S(F), max(S(ir), S(vi))), S = |Gx| + |Gy|   SIBA, LKC-FUNet, DMNet II
laplacian_select_loss       L1(ΔF, Δ of the source with larger |Δ|)        SIBA (from CHITNet)
ssim_loss                   1 - (0.5 SSIM(ir, F) + 0.5 SSIM(vi, F))        LKC-FUNet
kornia_ssim_loss_term       (1 - SSIM_3x3(F, src)) / 2                     RPFNet (x2 sources, weight 5)
correlation_loss            1 - (r(F, ir) + r(F, vi)) / 2                  AIDFusion (form is ours)
reconstruction_loss         MSE + (1 - SSIM)                               DMNet I (form is ours)
=========================  =============================================  ==============================
"""

from fusionlib.losses.correlation import CorrelationLoss, correlation_loss, pearson_correlation
from fusionlib.losses.gradient import GradientMaxLoss, gradient_max_loss
from fusionlib.losses.intensity import IntensityMaxLoss, intensity_max_loss
from fusionlib.losses.laplacian import LaplacianSelectLoss, laplacian_select_loss, laplacian_select_target
from fusionlib.losses.dmnet import DMNetStage1Loss, DMNetStage2Loss, dmnet_stage1_loss, dmnet_stage2_loss
from fusionlib.losses.lkc import LKCLoss, lkc_loss
from fusionlib.losses.rpfnet import (
    FrequencyContrastiveLoss,
    RPFNetLoss,
    SaliencyStructureLoss,
    frequency_contrastive_loss,
    rpfnet_mask,
    saliency_structure_loss,
)
from fusionlib.losses.reconstruction import ReconstructionLoss, reconstruction_loss
from fusionlib.losses.ssim import (
    SSIM,
    KorniaSSIMLossTerm,
    SSIMLoss,
    gaussian_window,
    kornia_ssim_loss_term,
    ssim,
    ssim_loss,
)

__all__ = [
    "intensity_max_loss",
    "IntensityMaxLoss",
    "gradient_max_loss",
    "GradientMaxLoss",
    "laplacian_select_target",
    "laplacian_select_loss",
    "LaplacianSelectLoss",
    "gaussian_window",
    "ssim",
    "SSIM",
    "ssim_loss",
    "SSIMLoss",
    "kornia_ssim_loss_term",
    "KorniaSSIMLossTerm",
    "pearson_correlation",
    "correlation_loss",
    "CorrelationLoss",
    "reconstruction_loss",
    "ReconstructionLoss",
    "lkc_loss",
    "LKCLoss",
    "rpfnet_mask",
    "frequency_contrastive_loss",
    "FrequencyContrastiveLoss",
    "saliency_structure_loss",
    "SaliencyStructureLoss",
    "RPFNetLoss",
    "dmnet_stage1_loss",
    "DMNetStage1Loss",
    "dmnet_stage2_loss",
    "DMNetStage2Loss",
]
