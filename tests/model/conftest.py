"""Model test helpers: real 64 px inputs, and a way to wake up the pieces that start at zero."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from axion import bands

SCENES = ("38D_378R_2_3", "433D_629L_3_1")
SIZE = 64


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()[:, :SIZE, :SIZE].astype(np.float32)


@pytest.fixture(scope="session")
def real_batch(terramind_examples: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Two real co-registered 64 px crops: s1 (2, 2, 64, 64) dB and optical (2, 4, 64, 64) tile units."""
    s1 = np.stack([_read(terramind_examples / "S1RTC" / f"{s}.tif") for s in SCENES])
    s2 = np.stack([_read(terramind_examples / "S2L2A" / f"{s}.tif") for s in SCENES])
    assert np.isfinite(s1).all() and np.isfinite(s2).all()
    return torch.from_numpy(s1), torch.from_numpy(s2[:, list(bands.S2L2A_SLOTS)])


def denoiser(model) -> torch.nn.Module:
    """The tokenizer's diffusion UNet inside the Stage 3 model."""
    return model.generator.tokenizer["tok_sen2l2a@224"].decoder


def zero_weights(module: torch.nn.Module) -> list[str]:
    """Frozen weight tensors that are entirely zero (zero-initialised layers of random TerraMind)."""
    return [
        n
        for n, p in module.named_parameters()
        if "lora_" not in n and n.endswith("weight") and not p.requires_grad and not bool(p.any())
    ]


@pytest.fixture(scope="session")
def unet_zero_weights(tiny_model) -> list[str]:
    """The UNet's zero-initialised weights: its final conv, every attention proj_out, every
    residual block's last conv. Pretrained weights have none of these zeros."""
    names = zero_weights(denoiser(tiny_model))
    assert "out.2.weight" in names
    return names


def make_pretrained_like(model, names: list[str], seed: int = 1) -> None:
    """Give the UNet's zero-initialised weights small random values, as pretrained ones would be."""
    params = dict(denoiser(model).named_parameters())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in names:
            params[name].copy_(torch.randn(params[name].shape, generator=gen) * 0.02)


@contextmanager
def preserved(model, unet_names: list[str]) -> Iterator[None]:
    """Restore every trainable weight and the UNet's zero-initialised weights afterwards; clear gradients."""
    saved = model.trainable_state_dict()
    try:
        yield
    finally:
        model.load_trainable_state_dict(saved)
        params = dict(denoiser(model).named_parameters())
        with torch.no_grad():
            for name in unet_names:
                params[name].zero_()
        for p in model.parameters():
            p.grad = None


@pytest.fixture
def wake(tiny_model, unet_zero_weights) -> Iterator[Callable[[], None]]:
    """Give every piece that starts at zero small random values (restored after the test).

    Pieces at zero by design: LoRA B matrices and the head's last conv. With random
    TerraMind weights, the UNet's zero-initialised layers (its final conv above all)
    also make the generated image constant and block every gradient behind them.
    """

    def _wake() -> None:
        make_pretrained_like(tiny_model, unet_zero_weights)
        gen = torch.Generator().manual_seed(0)
        pieces = [p for n, p in tiny_model.named_parameters() if "lora_B" in n]
        pieces += list(tiny_model.fusion.out.parameters())
        with torch.no_grad():
            for p in pieces:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)

    with preserved(tiny_model, unet_zero_weights):
        yield _wake


# --- a base that behaves like a trained one, and a planted teacher ----------------------------

#: Regexes of the two adapter groups, as parameter names of the Stage 3 model.
ADAPTER_GROUPS = {
    "decoder": r"\.sampler\.model\.decoder\.\d+\.cross_attn\.(q|kv|proj)\.lora_[AB]\.",
    "unet": r"\.tokenizer\.tok_sen2l2a@224\.decoder\..*\.(qkv|proj_out)\.lora_[AB]\.",
}


def token_head(model) -> torch.nn.Module:
    """The decoder's S2L2A output embedding (its ``to_logits`` turns decoder states into logits)."""
    return model.generator.sampler.model.decoder_embeddings["tok_sen2l2a@224"]


def make_trained_like(
    model,
    unet_names: list[str],
    s1: torch.Tensor,
    opt_v2: torch.Tensor,
    *,
    logit_scale: float = 500.0,
    cond_scale: float = 10.0,
    noise_scale: float = 1.0,
) -> None:
    """Turn the random base into one that behaves like a trained generator, in place.

    1. The UNet's zero-initialised weights get random values (:func:`make_pretrained_like`).
    2. Confident, position-dependent token logits: a random decoder gives every position the
       same large common state (after its final norm), so every position argmaxes to one token
       and the logits are nearly flat. The token head becomes ``logit_scale * W (I - u u^T)``,
       ``u`` the unit mean decoder state over ``s1``/``opt_v2``: the common part is projected out
       and a trained model's confidence (top-1 probability near 1) comes back.
    3. The UNet's first convolution reads the 5 latent (token code) channels ``cond_scale`` times
       more strongly: a trained denoiser takes its content from the tokens, a random one from
       the noise.
    """
    from axion.model import standardize as std

    make_pretrained_like(model, unet_names)
    states: dict[str, torch.Tensor] = {}
    sampler_model = model.generator.sampler.model
    handle = sampler_model.decoder_norm.register_forward_hook(
        lambda _m, _i, out: states.__setitem__("y", out.detach())
    )
    try:
        with torch.no_grad():
            model.arm.token_logits(
                std.standardize_s1(s1), std.optical_to_s2l2a(std.standardize_optical(opt_v2))
            )
    finally:
        handle.remove()
    u = states["y"].reshape(-1, states["y"].shape[-1]).mean(0)
    u = u / u.norm()
    head = token_head(model).to_logits.weight
    conv_in = dict(denoiser(model).named_parameters())["input_blocks.0.0.weight"]
    with torch.no_grad():
        head.copy_(logit_scale * head @ (torch.eye(u.numel()) - torch.outer(u, u)))
        conv_in[:, -5:].mul_(cond_scale)
        conv_in[:, :-5].mul_(noise_scale)


def adapter_params(model, group: str) -> dict[str, torch.nn.Parameter]:
    """The LoRA A and B matrices of one adapter group (``decoder`` or ``unet``), by name."""
    import re

    pattern = re.compile(ADAPTER_GROUPS[group])
    found = {n: p for n, p in model.named_parameters() if pattern.search(n)}
    assert found, f"no {group} adapters"
    return found


def planted_delta(model, group: str, seed: int, a_std: float, b_std: float) -> dict[str, torch.Tensor]:
    """Random A and B for one adapter group: a known LoRA delta (name -> tensor)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        n: torch.randn(p.shape, generator=gen) * (a_std if ".lora_A." in n else b_std)
        for n, p in sorted(adapter_params(model, group).items())
    }


@contextmanager
def loaded(model, state: dict[str, torch.Tensor]) -> Iterator[None]:
    """Parameters from ``state`` for the duration of the block (restored afterwards)."""
    params = dict(model.named_parameters())
    saved = {n: params[n].detach().clone() for n in state}
    with torch.no_grad():
        for n, v in state.items():
            params[n].copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for n, v in saved.items():
                params[n].copy_(v)
