"""The differentiable half of generation: soft FSQ codes and an unrolled DDIM loop.

terratorch's own generation samples discrete tokens and runs its diffusion
pipeline under ``no_grad``, so nothing upstream of the pixels can learn through
it. Here the decoder's token distribution becomes a soft code (the expected
codebook vector) and the tokenizer's UNet denoiser is called step by step with
the same DDIM update, keeping gradients. Each step is checkpointed so memory
does not grow with the number of steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def soft_latent(logits: Tensor, codebook: Tensor, grid: tuple[int, int]) -> Tensor:
    """Expected FSQ code per token: softmax(logits) @ codebook.

    Args:
        logits: (B, N, V) token logits, in raster order of the token grid.
        codebook: (V, D) FSQ code of every vocabulary entry.
        grid: (h, w) token grid with h * w == N.

    Returns:
        (B, D, h, w) float32 latent, the UNet's conditioning.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        probs = logits.float().softmax(dim=-1)
        codes = probs @ codebook.float()
    b, n, d = codes.shape
    if n != grid[0] * grid[1]:
        raise ValueError(f"{n} tokens do not fill a {grid[0]}x{grid[1]} grid")
    return codes.transpose(1, 2).reshape(b, d, grid[0], grid[1])


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

    def __call__(self, noise: Tensor, latent: Tensor, timesteps: int) -> Tensor:
        """Denoise ``noise`` (B, C, H, W) conditioned on ``latent`` -> standardised sample, float32."""
        sched = self.scheduler(timesteps)
        x = noise.float()
        for t in sched.timesteps.tolist():  # type: ignore[attr-defined]
            step = partial(self._step, scheduler=sched, t=int(t))
            if torch.is_grad_enabled():
                x = checkpoint(step, x, latent, use_reentrant=False)
            else:
                x = step(x, latent)
        return x
