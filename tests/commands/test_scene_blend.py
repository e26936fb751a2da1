"""Scene tiling and blending, with a stand-in model whose tiles disagree on purpose.

Each tile's "prediction" is opt_v2 plus a tile-specific offset, the worst case for
seams. Blended, the border columns must jump no more than the rest of the image;
a hard mosaic (overlap 0) must show the jumps, so the measure can see seams.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from axion.errors import ConfigError
from axion.prediction.scene import make_grid, ramp, run_scene, tile_starts, validate_scene

SIZE, TILE = 112, 64


def _write(path: Path, array: np.ndarray, crs: str | None = "EPSG:32633") -> Path:
    import rasterio
    from affine import Affine

    profile = {"driver": "GTiff", "height": array.shape[1], "width": array.shape[2], "count": array.shape[0]}
    profile.update(dtype="float32", transform=Affine(10, 0, 500000, 0, -10, 5000000))
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array.astype(np.float32))
    return path


@pytest.fixture()
def scene(tmp_path: Path):
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    opt = np.stack([1000 + 5 * x + 3 * y + 200 * np.sin(x / 7) * np.cos(y / 9) + 100 * b for b in range(4)])
    s1 = np.stack([-12 + 0.01 * x, -20 + 0.01 * y])
    return validate_scene(
        _write(tmp_path / "s1.tif", s1), _write(tmp_path / "opt.tif", opt), tmp_path / "out.tif"
    )


def _offset_model(s1: np.ndarray, opt_v2: np.ndarray, names: list[str]) -> np.ndarray:
    # Each tile is shifted by an amount that grows with its position (names end in _y<row>_x<col>),
    # so any two neighbouring tiles disagree by hundreds of reflectance units, in every run.
    offsets = np.array(
        [20.0 * int(n.rsplit("_x", 1)[1]) + 13.0 * int(n.rsplit("_y", 1)[1].split("_")[0]) for n in names]
    )
    return opt_v2 + offsets[:, None, None, None]


def _border_jump_ratio(image: np.ndarray, borders: list[int]) -> float:
    """Mean jump between neighbouring columns at tile borders / median jump over all columns."""
    jumps = np.abs(np.diff(image, axis=2)).mean(axis=(0, 1))  # (W - 1,)
    return float(max(jumps[c - 1] for c in borders) / np.median(jumps))


def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read()


def test_grid_covers_the_scene_and_ramps_form_a_partition_of_unity() -> None:
    assert tile_starts(112, 64, 48) == (0, 48)
    assert tile_starts(130, 64, 48) == (0, 48, 66)
    assert tile_starts(40, 64, 48) == (0,)
    left, right = ramp(64, 16, False, True), ramp(64, 16, True, False)
    assert np.allclose(left[48:] + right[:16], 1.0) and left.min() > 0 and right.min() > 0
    with pytest.raises(ConfigError, match="multiple of 16"):
        make_grid(112, 112, 60, 16)
    with pytest.raises(ConfigError, match="overlap"):
        make_grid(112, 112, 64, 64)


def test_blending_hides_disagreeing_tiles(scene, tmp_path: Path) -> None:
    blended = tmp_path / "blended.tif"
    run_scene(scene, blended, _offset_model, tile_size=TILE, overlap=16, batch_size=2)
    hard = tmp_path / "hard.tif"
    run_scene(scene, hard, _offset_model, tile_size=TILE, overlap=0, batch_size=2)
    out_blended, out_hard = _read(blended), _read(hard)
    assert out_blended.shape == (4, SIZE, SIZE) and np.isfinite(out_blended).all()
    # Hard mosaic: tiles at 0, 64 and 48 (the last, shifted to end on the border): seams at 48 and 64.
    assert _border_jump_ratio(out_hard, [48, 64]) > 5.0
    # Blended: every border column is as smooth as the image elsewhere.
    assert _border_jump_ratio(out_blended, [48, 64]) < 1.5
    assert _border_jump_ratio(np.swapaxes(out_blended, 1, 2), [48, 64]) < 1.5


def test_strips_write_the_same_result_as_one_pass(scene, tmp_path: Path) -> None:
    """A scene of 3 tile rows is written in 3 strips; a single tile taller than the scene is one."""
    one = tmp_path / "one.tif"
    run_scene(scene, one, lambda s1, o, n: o * 1.5, tile_size=128, overlap=16)
    many = tmp_path / "many.tif"
    run_scene(scene, many, lambda s1, o, n: o * 1.5, tile_size=48, overlap=16)
    assert np.allclose(_read(one), _read(many), rtol=1e-6)
    assert np.allclose(_read(one), _read(scene.opt_v2) * 1.5, rtol=1e-6)


def test_a_failing_model_leaves_no_file(scene, tmp_path: Path) -> None:
    def broken(s1: np.ndarray, opt_v2: np.ndarray, names: list[str]) -> np.ndarray:
        raise RuntimeError("model failed")

    out = tmp_path / "never.tif"
    with pytest.raises(RuntimeError):
        run_scene(scene, out, broken, tile_size=TILE, overlap=16)
    assert not out.exists() and not list(tmp_path.glob(".never.tif*"))
