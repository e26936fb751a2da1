"""Fixtures of the command tests: real tiles, one tiny model trained once, evaluation results.

Everything runs through the real CLI (``typer.testing.CliRunner`` on :data:`axion.cli.app`).
Tiles are 64 px windows of two real TerraMind example scenes, with their georeference.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from axion.cli import app

#: The example scenes the tiles come from.
SCENES = ("282D_485L_3_3", "433D_629L_3_1")
#: The example scenes cut into small scenes for ``infer --scenes``, and their side in pixels.
SCENE_NAMES = ("282D_485L_3_3", "433D_629L_3_1", "637U_59R_1_3")
SCENE_SIZE = 64


def run_cli(args: str | list[str]) -> Result:
    """Invoke ``axion`` in-process (the real CLI, exceptions not swallowed)."""
    argv = shlex.split(args) if isinstance(args, str) else [str(a) for a in args]
    return CliRunner().invoke(app, argv, catch_exceptions=False)


@pytest.fixture(scope="session")
def tiles_dir(terramind_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 px train/val/test tiles of two real scenes, written by ``axion stage3 prepare``."""
    out = tmp_path_factory.mktemp("commands") / "tiles"
    args = ["stage3", "prepare", "--output-dir", out, "--tile-size", "64", "--block-size", "1"]
    for scene in SCENES:
        args += [
            "--s1",
            terramind_examples / "S1RTC" / f"{scene}.tif",
            "--s2",
            terramind_examples / "S2L2A" / f"{scene}.tif",
        ]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["test", "train", "val"]
    return out


@pytest.fixture(scope="session")
def trained_run(tiles_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained one epoch with ``axion stage3 train``: its output directory."""
    out = tmp_path_factory.mktemp("run") / "checkpoints"
    result = run_cli(
        f"stage3 train --data-dir {tiles_dir} --output-dir {out} --model-size tiny --no-pretrained "
        "--lpips-weight 0 --timesteps 1 --epochs 1 --grad-accum 1 --max-samples 1 --num-workers 0 --quiet"
    )
    assert result.exit_code == 0, result.output
    assert (out / "best_model.pt").is_file()
    return out


@pytest.fixture(scope="session")
def checkpoint(trained_run: Path) -> Path:
    return trained_run / "best_model.pt"


@pytest.fixture(scope="session")
def evaluation(
    checkpoint: Path, tiles_dir: Path, lpips_weights: Path, tmp_path_factory: pytest.TempPathFactory
):
    """``axion stage3 evaluate`` on the test split (LPIPS on): (results directory, CLI result)."""
    out = tmp_path_factory.mktemp("eval") / "results"
    result = run_cli(
        f"stage3 evaluate --checkpoint {checkpoint} --data-dir {tiles_dir} --output-dir {out} "
        f"--lpips-weights {lpips_weights} --batch-size 2 --num-workers 0 --quiet"
    )
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture(scope="session")
def scene_crops(terramind_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<name>_s1.tif`` (VV, VH in dB) and ``<name>_opt_v2.tif`` (S2 L2A's B2, B3, B4, B8) for each of
    :data:`SCENE_NAMES`: :data:`SCENE_SIZE` px windows of the real scenes, with their georeference."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window, transform

    from tests.scenes import write_raster

    root = tmp_path_factory.mktemp("scene-list") / "inputs"
    root.mkdir()
    window = Window(80, 80, SCENE_SIZE, SCENE_SIZE)
    for name in SCENE_NAMES:
        for folder, bands, kind in (("S1RTC", [1, 2], "s1"), ("S2L2A", [2, 3, 4, 8], "opt_v2")):
            with rasterio.open(terramind_examples / folder / f"{name}.tif") as src:
                pixels = src.read(bands, window=window).astype(np.float32)
                write_raster(root / f"{name}_{kind}.tif", pixels, src.crs, transform(window, src.transform))
    return root


def stage2_from_targets(tiles_dir: Path, folder: Path, make) -> Path:  # noqa: ANN001 (a callable)
    """Stage 2 files for the test tiles: ``make(target, width)`` -> the arrays of one file."""
    from axion.data.dataset import TileDataset

    dataset = TileDataset(tiles_dir, "test")
    folder.mkdir()
    for i, tile in enumerate(dataset.tiles):
        target = dataset[i]["target"][:, : tile.height, : tile.width].numpy().copy()
        np.savez(folder / f"{tile.name}.npz", **make(target, tile.width))
    return folder


def half_cloud(target: np.ndarray, width: int) -> dict[str, np.ndarray]:
    """A "cloud" over the left half of opt_v2, and the mask that says so."""
    target[:, :, : width // 2] = 9000.0
    clear = np.ones(target.shape[1:], np.uint8)
    clear[:, : width // 2] = 0
    return {"opt_v2": target, "opt_v2_mask": clear}
