"""From the decoder's token logits to the FSQ code that conditions the diffusion UNet.

TerraMind's own generation picks one token per position (top-p sampling by default;
argmax at temperature 0) and looks up its exact FSQ code, a point of the 8-8-8-6-5
lattice: the only codes its UNet was trained on. Training here feeds the UNet the very
same codes (:func:`straight_through_codes`): the forward pass uses the chosen token's
exact code, and the backward pass uses the gradient of the expected code
``softmax(logits / T) @ codebook`` (the straight-through estimator), which is the only
way a gradient reaches the decoder through a discrete choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

TokenSampling = Literal["argmax", "top-p"]
#: terratorch's ``TerraMindGeneration`` default nucleus.
DEFAULT_TOP_P = 0.8


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Nucleus filtering over the last dimension, as terratorch's ``top_k_top_p_filtering`` does it.

    Keeps the most probable tokens whose cumulative probability stays within ``top_p``, plus
    the first token above it (so at least one survives); the others get ``-inf``.
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative > top_p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    return logits.masked_fill(remove.gather(-1, order.argsort(dim=-1)), float("-inf"))


def choose_tokens(
    logits: Tensor,
    sampling: TokenSampling,
    *,
    top_p: float = DEFAULT_TOP_P,
    seeds: Sequence[int] | None = None,
) -> Tensor:
    """One token per position: (B, N, V) logits -> (B, N) indices.

    Args:
        logits: decoder logits.
        sampling: ``argmax`` (deterministic) or ``top-p`` (a draw from the nucleus at temperature 1).
        top_p: the nucleus for ``top-p``.
        seeds: one seed per sample for ``top-p``: each sample's draw comes from its own CPU
            generator (Gumbel-max over the filtered logits), so it does not depend on batch
            mates or the device. None draws from torch's global generator.
    """
    if sampling == "argmax":
        return logits.argmax(dim=-1)
    if sampling != "top-p":
        raise ValueError(f"unknown token sampling {sampling!r} (expected argmax or top-p)")
    filtered = top_p_filter(logits.detach().float(), top_p)
    if seeds is None:
        gumbel = -torch.empty_like(filtered).exponential_().log()
    else:
        if len(seeds) != logits.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for a batch of {logits.shape[0]}")
        draws = [
            -torch.empty(filtered.shape[1:])
            .exponential_(generator=torch.Generator().manual_seed(int(s)))
            .log()
            for s in seeds
        ]
        gumbel = torch.stack(draws).to(filtered.device)
    return (filtered + gumbel).argmax(dim=-1)


def straight_through_codes(
    logits: Tensor, tokens: Tensor, codebook: Tensor, *, grad_temperature: float = 1.0
) -> Tensor:
    """The chosen tokens' exact codes, carrying the gradient of the expected code.

    Args:
        logits: (B, N, V) decoder logits.
        tokens: (B, N) chosen token indices.
        codebook: (V, D) FSQ code of every vocabulary entry.
        grad_temperature: temperature of the softmax whose gradient is passed back; above 1 it
            spreads the gradient over more tokens when the logits are confident.

    Returns:
        (B, N, D) float32: equal to ``codebook[tokens]`` in value; differentiable in ``logits``.
    """
    codebook = codebook.float()
    hard = codebook[tokens]
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return hard
    with torch.autocast(device_type=logits.device.type, enabled=False):
        soft = (logits.float() / grad_temperature).softmax(dim=-1) @ codebook
    return hard + (soft - soft.detach())


def codes_to_latent(codes: Tensor, grid: tuple[int, int]) -> Tensor:
    """(B, N, D) codes in raster order -> the UNet's conditioning latent (B, D, h, w)."""
    b, n, d = codes.shape
    if n != grid[0] * grid[1]:
        raise ValueError(f"{n} tokens do not fill a {grid[0]}x{grid[1]} grid")
    return codes.transpose(1, 2).reshape(b, d, grid[0], grid[1])
