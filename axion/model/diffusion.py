"""The diffusion half of generation: the tokenizer's UNet unrolled for T DDIM steps.

terratorch runs its diffusion pipeline under ``no_grad``, so nothing upstream of
the pixels could learn through it. Here the tokenizer's UNet denoiser is called
step by step with the tokenizer's own DDIM scheduler (the same update, the same
thresholding), so the output equals terratorch's for the same conditioning and
noise wherever terratorch runs T steps (:func:`ddim_timesteps`), and the last
``grad_steps`` steps keep their gradients (truncated backpropagation through the
sampler, DRaFT-K: Clark et al., "Directly Fine-Tuning Diffusion Models on
Differentiable Rewards", ICLR 2024). Earlier steps run without
gradients: their cost is one UNet call each, not three.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def initial_noise(
    shape: tuple[int, int, int, int], device: torch.device, seeds: Sequence[int] | None = None
) -> Tensor:
    """Gaussian noise to start the DDIM loop.

    Args:
        shape: (B, C, H, W).
        device: where the noise goes.
        seeds: one seed per sample. Each sample's noise is drawn on the CPU from
            its own generator, so it does not depend on batch mates or device.
            None draws from torch's global RNG on ``device``.
    """
    if seeds is None:
        return torch.randn(shape, device=device)
    if len(seeds) != shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {shape[0]}")
    noise = [torch.randn(shape[1:], generator=torch.Generator().manual_seed(int(seed))) for seed in seeds]
    return torch.stack(noise).to(device)


def ddim_timesteps(scheduler: object, timesteps: int) -> list[int]:
    """The UNet timesteps of a ``timesteps``-step DDIM run: exactly ``timesteps`` of them.

    The tokenizer's "trailing" spacing (999, 999 - s, ... with s = 1000 // T) holds T + 1
    steps when 1000 is not a multiple of T (T = 3: 999, 666, 333, 0); terratorch runs them
    all. Here the first T are run, so ``--timesteps`` is the number of UNet calls; where
    the spacing holds exactly T steps this is terratorch's schedule.
    """
    return [int(t) for t in scheduler.timesteps.tolist()][:timesteps]  # type: ignore[attr-defined]


class DDIMUnroll:
    """The tokenizer's denoiser run for T DDIM steps, differentiably.

    A plain object, not a module: the denoiser stays registered once, inside the
    generator, so parameters and state dicts list it only there.

    Args:
        denoiser: the tokenizer's UNet, ``denoiser(x_t, t, latent)`` -> predicted clean sample.
        scheduler: the tokenizer's DDIM scheduler; copied per step count, never mutated.
    """

    def __init__(self, denoiser: nn.Module, scheduler: object) -> None:
        self.denoiser = denoiser
        self._base_scheduler = scheduler
        self._schedulers: dict[int, object] = {}

    def scheduler(self, timesteps: int) -> object:
        """A scheduler set to ``timesteps`` steps (cached: its state must not change under a backward)."""
        if timesteps not in self._schedulers:
            base = self._base_scheduler
            sched = type(base).from_config(base.config)  # type: ignore[attr-defined]
            sched.set_timesteps(timesteps)
            self._schedulers[timesteps] = sched
        return self._schedulers[timesteps]

    def _step(self, x: Tensor, latent: Tensor, *, scheduler: object, t: int) -> Tensor:
        predicted = self.denoiser(x, t, latent)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return scheduler.step(predicted.float(), t, x.float()).prev_sample  # type: ignore[attr-defined]

    def __call__(
        self, noise: Tensor, latent: Tensor, timesteps: int, grad_steps: int | None = None
    ) -> Tensor:
        """Denoise ``noise`` (B, C, H, W) conditioned on ``latent`` -> standardised sample, float32.

        Args:
            noise: the starting noise.
            latent: the conditioning (B, D, h, w).
            timesteps: DDIM steps, exactly this many UNet calls (:func:`ddim_timesteps`).
            grad_steps: how many of the last steps carry gradients (None, or ``timesteps`` and
                more: all, full backpropagation). Steps before
                them run under ``no_grad``. With more than one gradient step each is
                checkpointed, so memory does not grow with their number.
        """
        sched = self.scheduler(timesteps)
        steps = ddim_timesteps(sched, timesteps)
        with_grad = len(steps) if grad_steps is None else min(grad_steps, len(steps))
        x = noise.float()
        for index, t in enumerate(steps):
            # The last step goes to the clean sample (the final alpha), as in every schedule
            # terratorch runs to the end; the one-step scheduler's stride reaches past t = 0.
            last = self.scheduler(1) if index == len(steps) - 1 else sched
            step = partial(self._step, scheduler=last, t=t)
            if not torch.is_grad_enabled() or index < len(steps) - with_grad:
                with torch.no_grad():
                    x = step(x, latent)
            elif with_grad > 1:
                x = checkpoint(step, x, latent, use_reentrant=False)
            else:
                x = step(x, latent)
        return x
