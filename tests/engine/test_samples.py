"""``--samples N``: N seeded generations per tile, their mean and per-pixel standard deviation.

The session's tiny model starts as the identity (its zero-initialised pieces make the
output independent of the diffusion noise), so those pieces are given small random
values here, as trained and pretrained weights would have, and restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from axion.prediction.predict import Predictor, tile_seeds
from axion.prediction.scene import Prediction, SceneOutputs, run_scene, validate_scene
from axion.runtime.device import resolve_precision
from tests.scenes import OPT_HOLE, floods_pair, read

pytestmark = pytest.mark.slow


@pytest.fixture
def noisy_predictor(tiny_model) -> Iterator[Predictor]:
    """A predictor over the tiny model with every all-zero weight woken up (restored afterwards)."""
    gen = torch.Generator().manual_seed(3)
    saved = {}
    with torch.no_grad():
        for name, param in tiny_model.named_parameters():
            if param.numel() and not bool(param.any()):
                saved[name] = param.detach().clone()
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    assert any("lora_B" in n for n in saved) and len(saved) > 10
    try:
        yield Predictor(
            model=tiny_model,
            checkpoint=Path("in-memory"),
            config={},
            epoch=0,
            timesteps=1,
            seed=5,
            precision=resolve_precision("auto", "cpu"),  # fp32 on a CPU without native bf16
            device=torch.device("cpu"),
        )
    finally:
        params = dict(tiny_model.named_parameters())
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)


def test_samples_are_seeded_draws_and_their_statistics(
    noisy_predictor: Predictor, sen1floods11: Path
) -> None:
    import rasterio

    with rasterio.open(sen1floods11 / "S1" / "Spain_7370579_S1Hand.tif") as src:
        s1 = torch.from_numpy(src.read(window=((0, 64), (0, 64))).astype(np.float32))[None]
    with rasterio.open(sen1floods11 / "S2" / "Spain_7370579_S2Hand.tif") as src:
        opt_v2 = torch.from_numpy(src.read([2, 3, 4, 8], window=((0, 64), (0, 64))).astype(np.float32))[None]
    names = ["tile"]
    draws = torch.stack([noisy_predictor(s1, opt_v2, names, sample=k).clamp_min(0) for k in range(3)])
    assert (draws[0] - draws[1]).abs().max() > 1.0  # the noise reaches the output
    mean, std, _ = noisy_predictor.samples(s1, opt_v2, names, 3)
    torch.testing.assert_close(mean, draws.mean(dim=0))
    torch.testing.assert_close(std, torch.from_numpy(np.std(draws.numpy(), axis=0, ddof=1)))
    one, none, _ = noisy_predictor.samples(s1, opt_v2, names, 1)
    assert none is None and torch.equal(one, draws[0])
    # Sample 0 is the draw evaluate makes; further samples have seeds of their own.
    assert tile_seeds(5, names, 0) == noisy_predictor.seeds(names)
    assert len({tile_seeds(5, names, k)[0] for k in range(3)}) == 3


def test_scene_spread_is_zero_without_data_and_positive_elsewhere(
    noisy_predictor: Predictor, sen1floods11: Path, tmp_path: Path
) -> None:
    pair = floods_pair(sen1floods11, tmp_path / "in", size=96)
    outputs = SceneOutputs.beside(tmp_path / "opt_v3.tif")
    info = validate_scene(pair.s1, pair.opt_v2, outputs.tif)

    def predict_fn(s1: np.ndarray, opt_v2: np.ndarray, names: list[str]) -> Prediction:
        mean, std, _ = noisy_predictor.samples(torch.from_numpy(s1), torch.from_numpy(opt_v2), names, 3)
        return Prediction(mean.numpy(), std.numpy())

    run_scene(info, outputs.tif, predict_fn, tile_size=64, overlap=32, batch_size=2, std_output=outputs.std)
    std, profile = read(outputs.std)
    mean, _ = read(outputs.tif)
    opt, _ = read(pair.opt_v2)
    assert std.shape == (4, 96, 96) and profile["nodata"] == 0
    nodata = np.isnan(mean).all(axis=0)
    assert nodata[OPT_HOLE].all() and np.isnan(opt[(slice(None), *OPT_HOLE)]).all()
    assert (std[:, nodata] == 0).all()
    assert (std[:, ~nodata] > 0).all()
