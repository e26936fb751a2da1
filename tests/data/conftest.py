"""Helpers for the data tests: run the real CLI, write small tiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from axion.bands import S1_KEYS, S2_KEYS
from axion.cli import app


class Cli:
    """``axion stage3 prepare ...`` through Typer's runner (stdout and stderr together)."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: Any) -> Any:
        return self.runner.invoke(app, ["stage3", "prepare", *map(str, args)])


@pytest.fixture
def prepare_cli() -> Cli:
    return Cli()


def write_tile(
    folder: Path,
    name: str,
    split: str = "train",
    *,
    size: tuple[int, int] = (20, 24),
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """A synthetic but plausible tile (S1 dB around -15, S2 reflectance x 10000 around 1500)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {key: rng.normal(-15, 3, size).astype(np.float32) for key in S1_KEYS}
    data |= {key: rng.uniform(200, 3000, size).astype(np.uint16) for key in S2_KEYS}
    data |= arrays or {}
    path = folder / f"{name}.npz"
    np.savez(path, **data)
    (folder / f"{name}.json").write_text(json.dumps({"split": split, **(meta or {})}))
    return path


def tile_files(root: Path) -> dict[str, list[str]]:
    """Tile names per split folder."""
    return {split: sorted(p.stem for p in (root / split).glob("*.npz")) for split in ("train", "val", "test")}


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes (to prove nothing was touched)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_like(path: Path, src_path: Path, data: np.ndarray, **changes: Any) -> Path:
    """A GeoTIFF with ``src_path``'s profile (CRS, transform, nodata) and new pixels or settings."""
    import rasterio

    with rasterio.open(src_path) as src:
        profile = src.profile
    profile.update(count=data.shape[0], dtype=data.dtype.name, **changes)
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path
