"""DMNet's two training objectives (stage I: reconstruction, stage II: fusion), Eqs. 13-19 of the paper.

DMNet's loss code and training script are not public (``notebooks/released_code.md`` §DMNet). The **forms** are the
paper's (Eqs. 13-19, read from the prose: the OCR lost the symbols); the **weights** λ1, μ, λ2 are not
published, and the values below are ours:

- Stage I (Eq. 13): ``L_AE = L_vis + λ1 L_ir`` with (Eqs. 14-16) ``L_x = ‖x̂ − x‖₂² + μ (1 − SSIM(x̂, x))``
  (:func:`fusionlib.losses.reconstruction_loss`, per-pixel mean), plus the denoiser's ``L_dm`` (Eq. 17)
  trained in the same stage. Ours: λ1 = 1, μ = 1, ``λ_d = 1`` on ``L_dm``.
- Stage II (Eq. 18): ``L_total = L_int + L_dm + λ2 L_grad`` with ``L_int = (1/HW) ‖F − max(ir, vi)‖₁`` and
  (Eq. 19) ``L_grad = (1/HW) ‖|∇F| − max(|∇ir|, |∇vi|)‖₁``, ∇ = Sobel (``|Gx| + |Gy|``). The unit weights
  of L_int and L_dm are the paper's; λ2 = 10 is ours (CDDFuse's fusion-stage weight).
- ``grad_operator`` swaps ∇ for Table VI's alternatives (:func:`gradient_map`): Canny, LoG, Roberts.
- ``L_dm``: the SR3 noise-prediction loss (``fusionlib.diffusion``), computed by the model
  (``DMNet.diffusion_loss``) and passed in; per-element mean (SR3 sums).

Each function returns ``(total, terms)`` with the *unweighted* terms detached, for logging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusionlib.losses.gradient import gradient_max_loss
from fusionlib.losses.intensity import intensity_max_loss
from fusionlib.losses.reconstruction import reconstruction_loss
from fusionlib.ops.filters import sobel_l1, sobel_xy

__all__ = ["dmnet_stage1_loss", "dmnet_stage2_loss", "DMNetStage1Loss", "DMNetStage2Loss", "gradient_map",
           "GRAD_OPERATORS"]

#: Table VI's operators for ∇ in L_grad (Eq. 19); "sobel" is the paper's choice.
GRAD_OPERATORS = ("sobel", "canny", "log", "roberts")

_G5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0            # binomial ≈ Gaussian σ = 1, 5 taps
_GAUSS5 = torch.outer(_G5, _G5)
# the common 5x5 Laplacian-of-Gaussian stencil (σ ≈ 1.4), sign flipped so a bright spot is positive
_LOG5 = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 2.0, 1.0, 0.0], [1.0, 2.0, -16.0, 2.0, 1.0],
                      [0.0, 1.0, 2.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]]) * -1.0


def _conv_same(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise cross-correlation with reflect padding, ``(B, C, H, W) -> (B, C, H, W)``."""
    c, k = x.shape[1], kernel.shape[-1]
    w = kernel.to(dtype=x.dtype, device=x.device).expand(c, 1, k, k)
    return F.conv2d(F.pad(x, (k // 2,) * 4, mode="reflect"), w, groups=c)


def _non_max_suppression_mask(gx: torch.Tensor, gy: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """1 where ``mag`` is a local maximum along the gradient direction quantised to 0/45/90/135°, else 0."""
    with torch.no_grad():
        ang = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
        p = F.pad(mag, (1, 1, 1, 1), mode="replicate")
        h, w = mag.shape[-2:]

        def sh(dy: int, dx: int) -> torch.Tensor:
            return p[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

        pairs = [(sh(0, 1), sh(0, -1)), (sh(1, 1), sh(-1, -1)), (sh(1, 0), sh(-1, 0)), (sh(1, -1), sh(-1, 1))]
        bins = (((ang + 22.5) // 45.0) % 4).long()
        keep = torch.zeros_like(mag, dtype=torch.bool)
        for b, (n1, n2) in enumerate(pairs):
            keep |= (bins == b) & (mag >= n1) & (mag >= n2)
    return keep.to(mag.dtype)


def gradient_map(x: torch.Tensor, operator: str = "sobel") -> torch.Tensor:
    """The non-negative edge map ``|∇x|`` of L_grad, ``(B, C, H, W) -> (B, C, H, W)``.

    - ``"sobel"`` (Eq. 19, the paper's choice): ``|Gx| + |Gy|``, 3x3, zero padding.
    - ``"roberts"``: ``|x(i,j) − x(i+1,j+1)| + |x(i+1,j) − x(i,j+1)|`` (replicate padding right/bottom).
    - ``"log"``: ``|LoG * x|``, the 5x5 LoG stencil (σ ≈ 1.4), reflect padding.
    - ``"canny"``: Gaussian (5x5 binomial, σ ≈ 1), Sobel magnitude, non-maximum suppression along the
      gradient direction (the mask carries no gradient). Canny's two hysteresis thresholds are **left out**
      (our reading): they would make the map binary and the loss non-differentiable. The paper (Table VI)
      names the operators only.

    Examples:
        >>> x = torch.zeros(1, 1, 8, 8); x[..., 4:] = 1.0          # a vertical step edge
        >>> [int((gradient_map(x, op)[0, 0, 4, 1:-1] > 0).sum()) for op in ("sobel", "roberts", "canny", "log")]
        [2, 1, 2, 4]
    """
    if operator == "sobel":
        return sobel_l1(x)
    if operator == "roberts":
        p = F.pad(x, (0, 1, 0, 1), mode="replicate")
        return (p[..., :-1, :-1] - p[..., 1:, 1:]).abs() + (p[..., 1:, :-1] - p[..., :-1, 1:]).abs()
    if operator == "log":
        return _conv_same(x, _LOG5).abs()
    if operator == "canny":
        gx, gy = sobel_xy(_conv_same(x, _GAUSS5), padding="replicate")
        mag = gx.abs() + gy.abs()
        return mag * _non_max_suppression_mask(gx, gy, mag)
    raise ValueError(f"gradient_map: operator must be one of {GRAD_OPERATORS}, got {operator!r}")



def dmnet_stage1_loss(rec_ir: torch.Tensor, rec_vi: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor,
                      diff: torch.Tensor, *, w_diff: float = 1.0, ssim_weight: float = 1.0
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Stage I (Eq. 13, λ1 = 1, plus Eq. 17): :math:`L_{rec}(\hat{ir}, ir) + L_{rec}(\hat{vi}, vi) + \lambda_d L_{noise}`.

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
                      w_int: float = 1.0, w_grad: float = 10.0, w_diff: float = 1.0, grad_operator: str = "sobel"
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Stage II (Eq. 18; ``grad_operator`` as :func:`gradient_map`): :math:`\alpha_{int} \|F - \max(ir, vi)\|_1 + \alpha_{grad} \|S(F) - \max(S(ir), S(vi))\|_1
    + \lambda_d L_{noise}`.

    Examples:
        >>> ir, vi = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
        >>> total, terms = dmnet_stage2_loss(torch.maximum(ir, vi), ir, vi, torch.tensor(0.0))
        >>> float(terms["int"]), sorted(terms)
        (0.0, ['diff', 'grad', 'int'])
    """
    l_int = intensity_max_loss(fused, ir, vi)
    if grad_operator == "sobel":
        l_grad = gradient_max_loss(fused, ir, vi)
    else:
        target = torch.maximum(gradient_map(ir, grad_operator), gradient_map(vi, grad_operator))
        l_grad = (gradient_map(fused, grad_operator) - target).abs().mean()
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

    def __init__(self, *, w_int: float = 1.0, w_grad: float = 10.0, w_diff: float = 1.0,
                 grad_operator: str = "sobel") -> None:
        super().__init__()
        self.w_int, self.w_grad, self.w_diff, self.grad_operator = w_int, w_grad, w_diff, grad_operator

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, diff: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return dmnet_stage2_loss(fused, ir, vi, diff, w_int=self.w_int, w_grad=self.w_grad,
                                 w_diff=self.w_diff, grad_operator=self.grad_operator)
