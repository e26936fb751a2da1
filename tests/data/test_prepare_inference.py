"""``prepare --s1 [--opt-v2]`` without ``--s2``: tiles for inference only, without ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from axion.bands import S1_KEYS, S2_KEYS
from axion.data.check import check_tiles
from axion.data.dataset import TileDataset
from axion.data.tilefile import OPT_V2_KEY, VALID_KEY
from axion.errors import DataError
from tests.scenes import floods_pair, read, s1_on_grid_of

SIZE = 64


@pytest.fixture(scope="module")
def pair(sen1floods11: Path, tmp_path_factory: pytest.TempPathFactory):
    return floods_pair(sen1floods11, tmp_path_factory.mktemp("floods"), size=160)


@pytest.fixture(scope="module")
def inference_tiles(pair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from axion.cli import app

    out = tmp_path_factory.mktemp("prepared") / "tiles"
    args = [
        "stage3",
        "prepare",
        "--s1",
        pair.s1,
        "--opt-v2",
        pair.opt_v2,
        "--tile-size",
        SIZE,
        "--stride",
        48,
    ]
    result = CliRunner().invoke(app, [*map(str, args), "--max-nodata", "0.5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "infer" in result.output and "opt_v2 from opt_v2 scenes" in result.output
    return out


def test_tiles_carry_s1_only_and_opt_v2_goes_to_stage2(pair, inference_tiles: Path) -> None:
    assert sorted(p.name for p in inference_tiles.iterdir()) == ["infer", "prepare.json", "stage2"]
    manifest = json.loads((inference_tiles / "prepare.json").read_text())
    assert manifest["ground_truth"] is False and manifest["tiles"] == {"infer": 9}
    opt, profile = read(pair.opt_v2)
    s1 = s1_on_grid_of(pair)
    holes = 0
    for npz in sorted((inference_tiles / "infer").glob("*.npz")):
        meta = json.loads(npz.with_suffix(".json").read_text())
        assert meta["ground_truth"] is False and "split" not in meta
        assert meta["crs"] == "EPSG:32630" and meta["name"] == npz.stem
        row, col = meta["source"]["row"], meta["source"]["col"]
        t = profile["transform"]
        assert meta["transform"] == pytest.approx([10.0, 0.0, t.c + 10 * col, 0.0, -10.0, t.f - 10 * row])
        window = (slice(row, row + SIZE), slice(col, col + SIZE))
        with np.load(npz) as tile:
            assert not set(S2_KEYS) & set(tile.files)
            tile_s1 = np.stack([tile[k] for k in S1_KEYS])
            valid = tile[VALID_KEY].astype(bool) if VALID_KEY in tile.files else np.ones((SIZE, SIZE), bool)
        expected_valid = np.isfinite(opt[(slice(None), *window)]).all(0) & np.isfinite(
            s1[(slice(None), *window)]
        ).all(0)
        np.testing.assert_array_equal(valid, expected_valid)
        holes += int((~valid).sum())
        # S1 on the opt_v2 grid, as an independent reprojection gives it (to a few hundredths of a dB).
        assert np.median(np.abs(tile_s1[:, valid] - s1[(slice(None), *window)][:, valid])) < 0.01
        with np.load(inference_tiles / "stage2" / npz.name) as stage2:
            opt_v2 = stage2[OPT_V2_KEY]
        assert opt_v2.shape == (4, SIZE, SIZE) and np.isfinite(opt_v2).all()
        np.testing.assert_array_equal(opt_v2[:, valid], opt[(slice(None), *window)][:, valid])
    assert holes > 0  # the opt_v2 and S1 holes reached some tiles


def test_check_accepts_them_and_training_never_sees_them(inference_tiles: Path) -> None:
    assert check_tiles(inference_tiles) == []
    with pytest.raises(DataError, match="no tiles for split 'train'"):
        TileDataset(inference_tiles, "train")
    tiles = TileDataset(
        inference_tiles / "infer", None, stage2_dir=inference_tiles / "stage2", with_target=False
    )
    sample = tiles[0]
    assert "target" not in sample and sample["s1"].shape == (2, SIZE, SIZE)


def test_s1_alone_makes_tiles_on_its_own_grid(pair, prepare_cli, tmp_path: Path) -> None:
    out = tmp_path / "tiles"
    result = prepare_cli("--s1", pair.s1, "--tile-size", 256, "-o", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["infer", "prepare.json"]  # no stage2: it comes later
    names = sorted(p.stem for p in (out / "infer").glob("*.npz"))
    assert names == [f"s1_4326_r{r:05d}_c{c:05d}" for r in (0, 256) for c in (0, 256)]
    meta = json.loads((out / "infer" / f"{names[0]}.json").read_text())
    assert meta["crs"] == "EPSG:4326" and meta["ground_truth"] is False
    with np.load(out / "infer" / f"{names[0]}.npz") as tile:
        assert sorted(tile.files) == sorted(S1_KEYS)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (lambda p: ["--opt-v2", p.opt_v2, "--s2", p.opt_v2], "--opt-v2 makes tiles for inference only"),
        (lambda p: ["--opt-v2", p.opt_v2, "--opt-v2", p.opt_v2], "give one --opt-v2 per --s1"),
        (lambda p: ["--s2-bands", "B1,B2,B3,B4"], "--s2-bands applies to --s2 scenes"),
        (lambda p: ["--opt-v2", p.s1], "opt_v2 scene has 2 band(s), expected 4"),
    ],
)
def test_bad_inference_inputs_are_one_line(pair, prepare_cli, tmp_path: Path, extra, message) -> None:
    result = prepare_cli("--s1", pair.s1, *extra(pair), "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
