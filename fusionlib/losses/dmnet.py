"""DMNet's two training objectives (stage I: reconstruction, stage II: fusion), our reading.

DMNet's loss code and training script are not public (``authors_code.md`` §5); the paper gives the
two stages (15 + 30 epochs) and what each one optimises. The forms and weights below are ours and
stated as such:

- Stage I (auto-encoder + denoiser): each source is reconstructed from its own features,
  ``L_I = L_rec(ir_hat, ir) + L_rec(vi_hat, vi) + λ_d L_noise`` with
  ``L_rec = MSE + (1 − SSIM)`` (:func:`fusionlib.losses.reconstruction_loss`).
- Stage II (fusion): ``L_II = α_int L_int + α_grad L_grad + λ_d L_noise`` with
  ``L_int = ‖F − max(ir, vi)‖₁`` and ``L_grad = ‖S(F) − max(S(ir), S(vi))‖₁`` (Sobel, ``|Gx| + |Gy|``).
  α_int = 1, α_grad = 10 are CDDFuse's fusion-stage weights (DMNet's blocks are CDDFuse's).
- ``L_noise``: the SR3 noise-prediction loss (``fusionlib.diffusion``), computed by the model
  (``DMNet.diffusion_loss``) and passed in; ``λ_d = 1`` on its per-element mean.

Each function returns ``(total, terms)`` with the *unweighted* terms detached, for logging.
"""

from __future__ import annotations

import torch
from torch import nn

from fusionlib.losses.gradient import gradient_max_loss
from fusionlib.losses.intensity import intensity_max_loss
from fusionlib.losses.reconstruction import reconstruction_loss

__all__ = ["dmnet_stage1_loss", "dmnet_stage2_loss", "DMNetStage1Loss", "DMNetStage2Loss"]


def dmnet_stage1_loss(rec_ir: torch.Tensor, rec_vi: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor,
                      diff: torch.Tensor, *, w_diff: float = 1.0, ssim_weight: float = 1.0
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Stage I: :math:`L_{rec}(\hat{ir}, ir) + L_{rec}(\hat{vi}, vi) + \lambda_d L_{noise}`.

    Args:
        rec_ir, rec_vi: reconstructions ``(B, 1, H, W)``.
        ir, vi: the sources ``(B, 1, H, W)`` in [0, 1].
        diff: the denoiser's noise loss (a scalar tensor).
        w_diff: λ_d.
        ssim_weight: weight of ``1 − SSIM`` inside ``L_rec``.

    Examples:
        >>> x = torch.rand(1, 1, 16, 16)
        >>> total, terms = dmnet_stage1_loss(x, x, x, x, torch.tensor(0.5))
        >>> round(float(total), 4), sorted(terms)
        (0.5, ['diff', 'rec_ir', 'rec_vi'])
    """
    r_ir = reconstruction_loss(rec_ir, ir, ssim_weight=ssim_weight)
    r_vi = reconstruction_loss(rec_vi, vi, ssim_weight=ssim_weight)
    total = r_ir + r_vi + w_diff * diff
    return total, {"rec_ir": r_ir.detach(), "rec_vi": r_vi.detach(), "diff": diff.detach()}


def dmnet_stage2_loss(fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, diff: torch.Tensor, *,
                      w_int: float = 1.0, w_grad: float = 10.0, w_diff: float = 1.0
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Stage II: :math:`\alpha_{int} \|F - \max(ir, vi)\|_1 + \alpha_{grad} \|S(F) - \max(S(ir), S(vi))\|_1
    + \lambda_d L_{noise}`.

    Examples:
        >>> ir, vi = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
        >>> total, terms = dmnet_stage2_loss(torch.maximum(ir, vi), ir, vi, torch.tensor(0.0))
        >>> float(terms["int"]), sorted(terms)
        (0.0, ['diff', 'grad', 'int'])
    """
    l_int = intensity_max_loss(fused, ir, vi)
    l_grad = gradient_max_loss(fused, ir, vi)
    total = w_int * l_int + w_grad * l_grad + w_diff * diff
    return total, {"int": l_int.detach(), "grad": l_grad.detach(), "diff": diff.detach()}


class DMNetStage1Loss(nn.Module):
    """Module form of :func:`dmnet_stage1_loss`; ``forward(rec_ir, rec_vi, ir, vi, diff)``."""

    def __init__(self, *, w_diff: float = 1.0, ssim_weight: float = 1.0) -> None:
        super().__init__()
        self.w_diff, self.ssim_weight = w_diff, ssim_weight

    def forward(self, rec_ir: torch.Tensor, rec_vi: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor,
                diff: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return dmnet_stage1_loss(rec_ir, rec_vi, ir, vi, diff, w_diff=self.w_diff,
                                 ssim_weight=self.ssim_weight)


class DMNetStage2Loss(nn.Module):
    """Module form of :func:`dmnet_stage2_loss`; ``forward(fused, ir, vi, diff)``."""

    def __init__(self, *, w_int: float = 1.0, w_grad: float = 10.0, w_diff: float = 1.0) -> None:
        super().__init__()
        self.w_int, self.w_grad, self.w_diff = w_int, w_grad, w_diff

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, diff: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return dmnet_stage2_loss(fused, ir, vi, diff, w_int=self.w_int, w_grad=self.w_grad,
                                 w_diff=self.w_diff)
