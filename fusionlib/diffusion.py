"""The forward (noising) process of a DDPM with SR3's continuous noise level, for DMNet's denoiser.

SR3 (Saharia et al., "Image Super-Resolution via Iterative Refinement", 2021) conditions its U-Net on
the *continuous* noise level ``γ = √ᾱ`` rather than on the integer step ``t``. With the linear schedule
``β_1 .. β_T`` (DMNet's ``config/diffusion.json``: 1e-6 → 1e-2, T = 2000):

    α_t = 1 − β_t,   ᾱ_t = Π_{s ≤ t} α_s,   ᾱ_0 = 1
    γ_t ~ U(√ᾱ_{t−1}, √ᾱ_t)                                   (SR3's sampled noise level for step t)
    x_t = γ · x_0 + √(1 − γ²) · ε,   ε ~ N(0, I)                (``q_sample``)
    L_noise = ‖ε − ε_θ(x_t, γ)‖²                               (``noise_loss``; SR3 sums, "l2")

Images enter the diffusion in [−1, 1] (``x_0 = 2·x − 1``), SR3's convention. The schedule is kept in
float64 on the CPU; only the sampled γ (one per sample) travels to the images' device, so the same code
runs on CPU, CUDA and the meta device (FLOP counting).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["linear_beta_schedule", "NoiseSchedule", "q_sample", "noise_loss", "diffusion_training_loss",
           "randn", "rand"]


def linear_beta_schedule(n_steps: int = 2000, start: float = 1e-6, end: float = 1e-2) -> torch.Tensor:
    """``β_t`` for ``t = 1 .. n_steps``, evenly spaced from ``start`` to ``end`` (float64, ``(T,)``).

    DMNet / SR3 ``"linear"`` schedule (``np.linspace(linear_start, linear_end, n_timestep)``).

    Examples:
        >>> b = linear_beta_schedule()
        >>> b.shape, float(b[0]), float(b[-1])
        (torch.Size([2000]), 1e-06, 0.01)
    """
    if n_steps < 1:
        raise ValueError(f"linear_beta_schedule: n_steps must be >= 1, got {n_steps}")
    if not 0 < start <= end < 1:
        raise ValueError(f"linear_beta_schedule: need 0 < start <= end < 1, got start={start}, end={end}")
    return torch.linspace(start, end, n_steps, dtype=torch.float64)


def randn(shape: tuple[int, ...], like: torch.Tensor,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``like``'s device/dtype, from ``generator`` when given.

    The generator may live on another device (a CPU generator for CUDA tensors): the noise is drawn on
    the generator's device and moved. Without a generator the global RNG is used (also on meta).
    """
    if generator is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(like)


def rand(shape: tuple[int, ...], like: torch.Tensor,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform [0, 1) samples, as :func:`randn`."""
    if generator is None:
        return torch.rand(shape, device=like.device, dtype=like.dtype)
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float32).to(like)


@dataclass(frozen=True)
class NoiseSchedule:
    """The linear-β schedule and SR3's continuous noise levels.

    Attributes (float64, CPU): ``betas (T,)``, ``alphas_cumprod (T,)`` = ᾱ_1..ᾱ_T and
    ``sqrt_alphas_cumprod_prev (T + 1,)`` = √ᾱ_0 .. √ᾱ_T with ᾱ_0 = 1 (SR3's name), so step ``t``
    (1-based) draws its γ between entries ``t − 1`` and ``t``.

    Examples:
        >>> s = NoiseSchedule()
        >>> s.num_steps, round(s.gamma(100), 4), s.gamma_range(5)[0] > s.gamma_range(5)[1]
        (2000, 0.9876, True)
    """

    num_steps: int = 2000
    beta_start: float = 1e-6
    beta_end: float = 1e-2
    betas: torch.Tensor = field(init=False, repr=False, compare=False)
    alphas_cumprod: torch.Tensor = field(init=False, repr=False, compare=False)
    sqrt_alphas_cumprod_prev: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        betas = linear_beta_schedule(self.num_steps, self.beta_start, self.beta_end)
        acp = torch.cumprod(1.0 - betas, dim=0)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", acp)
        object.__setattr__(self, "sqrt_alphas_cumprod_prev",
                           torch.cat([torch.ones(1, dtype=torch.float64), acp.sqrt()]))

    def _check_t(self, t: int) -> int:
        if isinstance(t, bool) or int(t) != t or not 1 <= int(t) <= self.num_steps:
            raise ValueError(f"NoiseSchedule: step t must be an integer in [1, {self.num_steps}], got {t!r}")
        return int(t)

    def gamma(self, t: int) -> float:
        """``√ᾱ_t`` (the noise level at the end of step ``t``), a Python float."""
        return float(self.sqrt_alphas_cumprod_prev[self._check_t(t)])

    def gamma_range(self, t: int) -> tuple[float, float]:
        """``(√ᾱ_{t−1}, √ᾱ_t)``: the interval SR3 samples step ``t``'s noise level from (first > second)."""
        t = self._check_t(t)
        return float(self.sqrt_alphas_cumprod_prev[t - 1]), float(self.sqrt_alphas_cumprod_prev[t])

    def snr_db(self, t: int) -> float:
        """Signal-to-noise ratio ``10 log10(ᾱ_t / (1 − ᾱ_t))`` of ``x_t`` in dB."""
        a = float(self.alphas_cumprod[self._check_t(t) - 1])
        return 10.0 * torch.log10(torch.tensor(a / (1.0 - a))).item()

    def sample_gamma(self, t: int | torch.Tensor, like: torch.Tensor, *,
                     generator: torch.Generator | None = None, fixed: bool = False) -> torch.Tensor:
        """Noise levels ``(B,)`` for steps ``t`` (an int, or ``(B,)`` ints on the CPU), on ``like``'s device.

        ``fixed=False``: ``γ ~ U(√ᾱ_{t−1}, √ᾱ_t)`` (SR3 training and DMNet's feature extraction);
        ``fixed=True``: ``γ = √ᾱ_t``.
        """
        b = like.shape[0]
        if isinstance(t, torch.Tensor):
            ts = t.detach().to("cpu", torch.long).reshape(-1)
            if ts.numel() != b:
                raise ValueError(f"NoiseSchedule.sample_gamma: t has {ts.numel()} steps for a batch of {b}")
            if int(ts.min()) < 1 or int(ts.max()) > self.num_steps:
                raise ValueError(f"NoiseSchedule.sample_gamma: steps must lie in [1, {self.num_steps}]")
        else:
            ts = torch.full((b,), self._check_t(t), dtype=torch.long)
        hi_g = self.sqrt_alphas_cumprod_prev[ts]          # √ᾱ_t   (smaller)
        lo_g = self.sqrt_alphas_cumprod_prev[ts - 1]      # √ᾱ_{t−1}
        if fixed:
            return hi_g.to(device=like.device, dtype=like.dtype)
        u = rand((b,), like, generator)
        return lo_g.to(like) + (hi_g - lo_g).to(like) * u


def q_sample(x0: torch.Tensor, gamma: torch.Tensor | float, noise: torch.Tensor) -> torch.Tensor:
    """The forward process ``x_t = γ x_0 + √(1 − γ²) ε`` (SR3 ``q_sample`` with a continuous γ).

    Args:
        x0: clean images ``(B, C, H, W)`` in [−1, 1].
        gamma: noise level ``√ᾱ`` in [0, 1]: a float or ``(B,)``.
        noise: ``ε``, same shape as ``x0``.

    Returns:
        ``x_t`` ``(B, C, H, W)``.

    Examples:
        >>> x, e = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
        >>> q_sample(x, torch.tensor([0.6]), e)[0, 0, 0, 0].item(), q_sample(x, 0.0, e + 1).max().item()
        (0.6000000238418579, 1.0)
    """
    if noise.shape != x0.shape:
        raise ValueError(f"q_sample: noise {tuple(noise.shape)} must match x0 {tuple(x0.shape)}")
    g = torch.as_tensor(gamma, dtype=x0.dtype, device=x0.device)
    if g.ndim == 1:
        if g.shape[0] != x0.shape[0]:
            raise ValueError(f"q_sample: gamma has {g.shape[0]} levels for a batch of {x0.shape[0]}")
        g = g.view(-1, *([1] * (x0.ndim - 1)))
    elif g.ndim != 0:
        raise ValueError(f"q_sample: gamma must be a scalar or (B,), got shape {tuple(g.shape)}")
    return g * x0 + (1.0 - g * g).clamp(min=0).sqrt() * noise


def noise_loss(eps_pred: torch.Tensor, eps: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """``‖ε − ε_θ‖²``: SR3's ``l2`` loss is ``reduction="sum"``; ``"mean"`` divides by the element count.

    Examples:
        >>> zero, one = torch.zeros(2, 2), torch.ones(2, 2)
        >>> noise_loss(zero, one).item(), noise_loss(zero, one, reduction="sum").item()
        (1.0, 4.0)
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"noise_loss: reduction must be 'mean' or 'sum', got {reduction!r}")
    return F.mse_loss(eps_pred, eps, reduction=reduction)


def diffusion_training_loss(denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
                            schedule: NoiseSchedule, *, generator: torch.Generator | None = None,
                            reduction: str = "mean") -> torch.Tensor:
    """One SR3 training term: ``t ~ U{1..T}``, ``γ ~ U(√ᾱ_{t−1}, √ᾱ_t)``, ``ε ~ N(0, I)``,
    ``L = ‖ε − denoiser(q_sample(x0, γ, ε), γ)‖²``.

    Args:
        denoiser: ``(x_t (B, C, H, W), γ (B,)) -> ε̂ (B, C, H, W)``.
        x0: clean inputs in [−1, 1].
        schedule: the noise schedule.
        generator: RNG for t, γ and ε (default: the global RNG).
        reduction: see :func:`noise_loss`.
    """
    b = x0.shape[0]
    if generator is None:
        t = torch.randint(1, schedule.num_steps + 1, (b,))
    else:
        t = torch.randint(1, schedule.num_steps + 1, (b,), generator=generator, device=generator.device).cpu()
    gamma = schedule.sample_gamma(t, x0, generator=generator)
    eps = randn(tuple(x0.shape), x0, generator)
    return noise_loss(denoiser(q_sample(x0, gamma, eps), gamma), eps, reduction=reduction)

