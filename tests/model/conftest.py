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
