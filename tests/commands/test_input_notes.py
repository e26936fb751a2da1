"""Inputs the commands take, but not as the user may think: each is named once, in one warning line.

A tile filed under one split folder whose JSON declares another, a tile smaller than TerraMind's
patch and the SSIM window, tiles that do not record their S1 product. Built from real tiles.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import Result

from tests.commands.conftest import run_cli

SMALL = 8


def _edit_json(npz: Path, **changes: object) -> None:
    meta = json.loads(npz.with_suffix(".json").read_text())
    meta.update(changes)
    npz.with_suffix(".json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))


def _small_copy(npz: Path, name: str) -> Path:
    """An 8 x 8 px crop of a real tile, with its JSON, beside it."""
    with np.load(npz) as f:
        arrays = {key: f[key][:SMALL, :SMALL] for key in f.files}
    small = npz.with_name(f"{name}.npz")
    np.savez(small, **arrays)
    shutil.copy(npz.with_suffix(".json"), small.with_suffix(".json"))
    _edit_json(small, name=name, height=SMALL, width=SMALL)
    return small


@pytest.fixture(scope="module")
def quirky(tiles_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real tiles (three train, one val, one test) without 's1_product' in their JSON; a train/ tile
    declared val; an 8 x 8 px train tile."""
    root = tmp_path_factory.mktemp("quirky") / "tiles"
    for split, count in (("train", 3), ("val", 1), ("test", 1)):
        (root / split).mkdir(parents=True)
        for npz in sorted((tiles_dir / split).glob("*.npz"))[:count]:
            shutil.copy(npz, root / split / npz.name)
            shutil.copy(npz.with_suffix(".json"), root / split / npz.with_suffix(".json").name)
    tiles = sorted(root.rglob("*.npz"))
    for npz in tiles:
        _edit_json(npz, s1_product=None)
    train = sorted((root / "train").glob("*.npz"))
    _edit_json(train[1], split="val")
    return {"root": root, "misfiled": train[1], "small": _small_copy(train[0], "small_tile")}


@pytest.fixture(scope="module")
def trained(quirky: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Result:
    out = tmp_path_factory.mktemp("quirky-run") / "run"
    result = run_cli(
        f"stage3 train --data-dir {quirky['root']} --output-dir {out} --generator none --lpips-weight 0 "
        "--epochs 1 --grad-accum 1 --num-workers 0 --quiet"
    )
    assert result.exit_code == 0, result.output
    return result


def _warnings(result: Result, needle: str) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("warning:") and needle in line]


def test_a_tile_filed_under_another_split_is_named(quirky: dict[str, Path], trained: Result) -> None:
    (line,) = _warnings(trained, "filed under")
    assert str(quirky["misfiled"]) in line
    assert "filed under train/ but its JSON declares split 'val': used as a val tile" in line


def test_a_tile_smaller_than_the_patch_and_the_ssim_window_is_named(
    quirky: dict[str, Path], trained: Result
) -> None:
    (line,) = _warnings(trained, "smaller than")
    assert str(quirky["small"]) in line
    assert f"{SMALL} x {SMALL} px" in line and "16 px patch" in line and "11 px SSIM window" in line


def test_tiles_without_their_s1_product_are_named_once(quirky: dict[str, Path], trained: Result) -> None:
    (line,) = _warnings(trained, "S1 product")
    # Train and val tiles, all of them without 's1_product', in one line.
    assert "5 tiles record no S1 product" in line and "read as GRD" in line
    assert quirky["misfiled"].name in line and quirky["small"].name in line
