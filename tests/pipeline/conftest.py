"""Fixtures of the Python API tests: a run folder with a tiny model that changes its input, and a
real window of a TerraMind example scene (S1 RTC in dB, S2 L2A B2, B3, B4, B8 as opt_v2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SCENE = "282D_485L_3_3"
#: A window that is neither square nor a multiple of 16 px: it must be tiled and blended.
ROWS, COLS = 80, 72
TILE, OVERLAP = 48, 16


@pytest.fixture(scope="session")
def run_dir(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training run's folder whose ``best_model.pt`` holds the tiny model's weights, perturbed
    (the untrained model returns opt_v2 unchanged; this one does not)."""
    import torch

    from axion.config import ModelConfig
    from axion.training.checkpoint import BEST_FILE, Checkpoint

    cfg = ModelConfig(model_size="tiny", pretrained=False, timesteps=1, lora_rank=8, lora_alpha=16)
    generator = torch.Generator().manual_seed(0)
    state = {
        key: value + 0.05 * torch.randn(value.shape, generator=generator)
        if value.is_floating_point()
        else value
        for key, value in tiny_model.trainable_state_dict().items()
    }
    folder = tmp_path_factory.mktemp("run")
    Checkpoint(
        epoch=3, model_state_dict=state, config={"model": cfg.model_dump(mode="json"), "other": {"seed": 0}}
    ).write(folder / BEST_FILE)
    return folder


@pytest.fixture(scope="session")
def pipe(run_dir: Path):
    """The run's model as a pipeline (fp32, 48 px tiles overlapping by 16 px)."""
    from axion import Stage3Pipeline

    return Stage3Pipeline.from_pretrained(
        run_dir, device="cpu", precision="32", tile_size=TILE, overlap=OVERLAP
    )


@pytest.fixture(scope="session")
def window(terramind_examples: Path) -> dict:
    """s1 (2, 80, 72) dB and opt_v2 (4, 80, 72) tile units, float32, with their CRS and transform."""
    import rasterio
    from rasterio.windows import Window

    area = Window(0, 0, COLS, ROWS)
    with rasterio.open(terramind_examples / "S1RTC" / f"{SCENE}.tif") as src:
        s1 = src.read(window=area).astype(np.float32)
        crs, transform = src.crs, src.window_transform(area)
    with rasterio.open(terramind_examples / "S2L2A" / f"{SCENE}.tif") as src:
        opt_v2 = src.read([2, 3, 4, 8], window=area).astype(np.float32)
    return {"s1": s1, "opt_v2": opt_v2, "crs": crs, "transform": transform}
