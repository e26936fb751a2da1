"""``axion stage3 prepare`` on real data (../shared, read in place) and the packaged demo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import calculate_default_transform, reproject

from axion.bands import S1_KEYS, S2_KEYS, TILE_KEYS
from axion.data.check import check_tiles
from axion.data.tilefile import VALID_KEY

from .conftest import tile_files
from .conftest import write_like as _write_like

TM_NAMES = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3")


def terramind_args(root: Path, names=TM_NAMES) -> list[str]:
    args: list[str] = []
    for name in names:
        args += ["--s1", str(root / "S1RTC" / f"{name}.tif"), "--s2", str(root / "S2L2A" / f"{name}.tif")]
    return args


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from typer.testing import CliRunner

    from axion.cli import app

    out = tmp_path_factory.mktemp("demo") / "tiles"
    result = CliRunner().invoke(app, ["stage3", "prepare", "--demo", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_demo_writes_six_real_pairs_with_every_split(demo_dir: Path):
    files = tile_files(demo_dir)
    assert sum(len(v) for v in files.values()) == 6
    assert all(files[split] for split in ("train", "val", "test"))
    assert check_tiles(demo_dir) == []
    for npz in demo_dir.rglob("*.npz"):
        meta = json.loads(npz.with_suffix(".json").read_text())
        assert meta["split"] == npz.parent.name
        assert meta["crs"].startswith("EPSG:326")
        assert meta["transform"][0] == 10.0 and meta["transform"][4] == -10.0
        with np.load(npz) as tile:
            assert set(TILE_KEYS) <= set(tile.files)
            assert all(tile[k].shape == (120, 120) for k in TILE_KEYS)
            s1 = np.stack([tile[k] for k in S1_KEYS])
            s2 = np.stack([tile[k] for k in S2_KEYS]).astype(np.float64)
        # dB backscatter over land is mostly between -35 and +5; L2A x 10000 in the hundreds to thousands.
        assert -35 < np.median(s1) < 5
        assert 50 < np.median(s2) < 6000


@pytest.mark.parametrize("python_filter", [True, False], ids=["data-filter", "older-3.11"])
def test_archives_extract_only_files_inside_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python_filter: bool
) -> None:
    """Plain files land inside the target; a member reaching outside it is refused in one line, with
    Python's ``data`` filter and without it (Python 3.11 before 3.11.4)."""
    import io
    import tarfile

    from axion.data.prepare.bigearthnet import _extract
    from axion.errors import DataError

    if not python_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)

    def archive(name: str) -> tarfile.TarFile:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            member = tarfile.TarInfo(name)
            member.size = 3
            tar.addfile(member, io.BytesIO(b"abc"))
        buffer.seek(0)
        return tarfile.open(fileobj=buffer, mode="r")

    with archive("patch/band.tif") as tar:
        _extract(tar, tmp_path / "out", "demo.tar")
    assert (tmp_path / "out" / "patch" / "band.tif").read_bytes() == b"abc"
    with archive("../escaped.tif") as tar, pytest.raises((DataError, tarfile.TarError)):
        _extract(tar, tmp_path / "out", "demo.tar")
    assert not (tmp_path / "escaped.tif").exists()


def test_demo_cut_into_windows_keeps_each_patch_in_one_split(tmp_path: Path, demo_dir: Path, prepare_cli):
    out = tmp_path / "windows"
    result = prepare_cli("--demo", "--tile-size", 64, "--stride", 28, "-o", out)
    assert result.exit_code == 0, result.output
    files = tile_files(out)
    # 120 px patches: windows at 0, 28 and 56 on each axis, 9 per patch, 54 in all.
    assert sum(len(v) for v in files.values()) == 54
    assert check_tiles(out) == []
    splits_of_patch: dict[str, set[str]] = {}
    for split, names in files.items():
        for name in names:
            npz = out / split / f"{name}.npz"
            patch, row, col = name.rsplit("_", 2)
            splits_of_patch.setdefault(patch, set()).add(split)
            meta = json.loads(npz.with_suffix(".json").read_text())
            r, c = int(row[1:]), int(col[1:])
            assert (meta["source"]["row"], meta["source"]["col"]) == (r, c) and r in (0, 28, 56)
            (whole,) = demo_dir.rglob(f"{patch}.npz")
            whole_meta = json.loads(whole.with_suffix(".json").read_text())
            origin = whole_meta["transform"]
            assert (
                meta["transform"][2] == origin[2] + 10.0 * c and meta["transform"][5] == origin[5] - 10.0 * r
            )
            with np.load(npz) as tile, np.load(whole) as full:
                np.testing.assert_array_equal(tile["s2_b4"], full["s2_b4"][r : r + 64, c : c + 64])
    assert all(len(splits) == 1 for splits in splits_of_patch.values()) and len(splits_of_patch) == 6


def test_demo_tiles_match_the_packaged_geotiffs(demo_dir: Path, tmp_path: Path):
    from axion.data.prepare.bigearthnet import extracted_demo

    npz = sorted(demo_dir.rglob("*.npz"))[0]
    with extracted_demo(tmp_path) as (_, s2_root):
        (b08,) = s2_root.rglob(f"{npz.stem}_B08.tif")
        with rasterio.open(b08) as src:
            expected = src.read(1)
    with np.load(npz) as tile:
        np.testing.assert_array_equal(tile["s2_b8"], expected)


def test_terramind_scenes_tiles_units_and_georeference(terramind_examples: Path, tmp_path: Path, prepare_cli):
    out = tmp_path / "tiles"
    result = prepare_cli(*terramind_args(terramind_examples), "--tile-size", 96, "--output-dir", out)
    assert result.exit_code == 0, result.output
    files = tile_files(out)
    # 224 px scenes hold 2 x 2 full 96 px windows; one scene = one spatial block (4 tiles < 4 x 4).
    assert sum(len(v) for v in files.values()) == 5 * 4
    assert all(len(v) % 4 == 0 and v for v in files.values())
    name = "282D_485L_3_3_r00096_c00000"
    (npz,) = out.rglob(f"{name}.npz")
    meta = json.loads(npz.with_suffix(".json").read_text())
    with rasterio.open(terramind_examples / "S2L2A" / "282D_485L_3_3.tif") as s2:
        expected_b4 = s2.read(4)[96:192, 0:96]
        assert meta["crs"] == s2.crs.to_string()
        assert meta["transform"] == list(s2.transform @ Affine.translation(0, 96))[:6]
    with rasterio.open(terramind_examples / "S1RTC" / "282D_485L_3_3.tif") as s1:
        expected_vh = s1.read(2)[96:192, 0:96]
    with np.load(npz) as tile:
        np.testing.assert_array_equal(tile["s2_b4"], expected_b4)
        np.testing.assert_allclose(tile["s1_vh"], expected_vh, rtol=1e-6)
    assert meta["units"] == {"s1": "dB", "s2": "reflectance*10000"}


def test_splits_are_deterministic_and_spatially_blocked(
    terramind_examples: Path, tmp_path: Path, prepare_cli
):
    runs = []
    for i, seed in enumerate((7, 7, 8)):
        out = tmp_path / f"run{i}"
        args = terramind_args(terramind_examples)
        result = prepare_cli(*args, "--tile-size", 64, "--seed", seed, "--output-dir", out)
        assert result.exit_code == 0, result.output
        runs.append(tile_files(out))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    for split_files in runs:
        scene_split = {}
        for split, names in split_files.items():
            for name in names:
                scene = name.rsplit("_r", 1)[0]
                assert scene_split.setdefault(scene, split) == split  # a scene never straddles splits


def test_sen1floods11_l1c_band_map_and_blocks(sen1floods11: Path, tmp_path: Path, prepare_cli):
    s1 = sen1floods11 / "S1" / "Spain_7370579_S1Hand.tif"
    s2 = sen1floods11 / "S2" / "Spain_7370579_S2Hand.tif"
    out = tmp_path / "tiles"
    result = prepare_cli("--s1", s1, "--s2", s2, "--tile-size", 64, "--block-size", 2, "--output-dir", out)
    assert result.exit_code == 0, result.output
    files = tile_files(out)
    assert sum(len(v) for v in files.values()) == 64
    # Blocks of 2 x 2 tiles: all four tiles of a block share a split.
    by_block: dict[tuple[int, int], set[str]] = {}
    for split, names in files.items():
        for name in names:
            row, col = (int(part[1:]) for part in name.rsplit("_", 2)[1:])
            by_block.setdefault((row // 128, col // 128), set()).add(split)
    assert len(by_block) == 16 and all(len(s) == 1 for s in by_block.values())
    (npz,) = out.rglob("Spain_7370579_S2Hand_r00064_c00128.npz")
    with rasterio.open(s2) as src, np.load(npz) as tile:
        assert src.descriptions[7] == "B8"  # 13-band L1C: B8 is band 8
        np.testing.assert_array_equal(tile["s2_b8"], src.read(8)[64:128, 128:192])
        np.testing.assert_array_equal(tile["s2_b2"], src.read(2)[64:128, 128:192])
    meta = json.loads(npz.with_suffix(".json").read_text())
    assert meta["crs"] == "EPSG:4326"
    # An explicit band map that moves B8 elsewhere is honoured.
    order = "B1,B2,B3,B4,B5,B6,B7,B8A,B8,B9,B10,B11,B12"
    out2 = tmp_path / "tiles2"
    result = prepare_cli(
        "--s1", s1, "--s2", s2, "--tile-size", 256, "--s2-bands", order, "--split-ratios", "1,0,0", "-o", out2
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (npz2,) = out2.rglob("Spain_7370579_S2Hand_r00000_c00000.npz")
    with rasterio.open(s2) as src, np.load(npz2) as tile:
        np.testing.assert_array_equal(tile["s2_b8"], src.read(9)[:256, :256])


def test_s1_on_another_grid_is_resampled_and_nodata_tiles_skipped(
    terramind_examples: Path, tmp_path: Path, prepare_cli
):
    name = "609U_541L_3_0"
    s1_path, s2_path = (
        terramind_examples / "S1RTC" / f"{name}.tif",
        terramind_examples / "S2L2A" / f"{name}.tif",
    )
    with rasterio.open(s1_path) as src:
        s1 = src.read()
        shifted = src.transform @ Affine.translation(64, 0)  # S1 starts 64 px further east
    moved = _write_like(tmp_path / "s1_shift.tif", s1_path, s1, transform=shifted)
    out = tmp_path / "tiles"
    result = prepare_cli("--s1", moved, "--s2", s2_path, "--tile-size", 32, "--output-dir", out)
    assert result.exit_code == 0, result.output
    names = {n for v in tile_files(out).values() for n in v}
    # The two leftmost tile columns (x < 64 px) have no S1: skipped, and reported.
    assert names and all(int(n.rsplit("_c", 1)[1]) >= 64 for n in names)
    assert len(names) == 7 * 5
    assert "too many invalid pixels" in result.output
    (npz,) = out.rglob(f"{name}_r00032_c00096.npz")
    with np.load(npz) as tile:
        np.testing.assert_allclose(tile["s1_vv"], s1[0, 32:64, 32:64], atol=1e-4)

    # A reprojected S1 (UTM -> EPSG:4326) is warped back onto the S2 grid.
    with rasterio.open(s1_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds
        )
        dest = np.full((2, height, width), np.nan, np.float32)
        reproject(s1.astype(np.float32), dest, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs="EPSG:4326", dst_nodata=np.nan)  # fmt: skip
    geo = _write_like(tmp_path / "s1_4326.tif", s1_path, dest, crs="EPSG:4326", transform=transform,
                      width=width, height=height, nodata=np.nan)  # fmt: skip
    out2 = tmp_path / "tiles2"
    result = prepare_cli("--s1", geo, "--s2", s2_path, "--tile-size", 64, "--max-nodata", 0.5,
                         "--split-ratios", "1,0,0", "-o", out2)  # fmt: skip
    assert result.exit_code == 0, result.output
    (npz,) = out2.rglob(f"{name}_r00064_c00064.npz")
    with np.load(npz) as tile:
        # Two resamplings blur a little; the scene structure must survive.
        corr = np.corrcoef(tile["s1_vv"].ravel(), s1[0, 64:128, 64:128].ravel())[0, 1]
        assert corr > 0.8


def test_partial_nodata_is_filled_and_marked_invalid(sen1floods11: Path, tmp_path: Path, prepare_cli):
    s1_path = sen1floods11 / "S1" / "Spain_7370579_S1Hand.tif"
    with rasterio.open(s1_path) as src:
        s1 = src.read()
    s1[:, :10, :] = np.nan  # 10 of 128 rows in the first tile row lost (7.8 %)
    holed = _write_like(tmp_path / "s1.tif", s1_path, s1)
    out = tmp_path / "tiles"
    s2 = sen1floods11 / "S2" / "Spain_7370579_S2Hand.tif"
    one_block = ("--split-ratios", "1,0,0")  # a 4 x 4 tile scene is one spatial block
    result = prepare_cli(
        "--s1", holed, "--s2", s2, "--tile-size", 128, "--max-nodata", 0.05, *one_block, "-o", out
    )
    assert result.exit_code == 0, result.output
    assert sum(len(v) for v in tile_files(out).values()) == 12  # the top row of 4 tiles is skipped
    out2 = tmp_path / "tiles2"
    result = prepare_cli(
        "--s1", holed, "--s2", s2, "--tile-size", 128, "--max-nodata", 0.1, *one_block, "-o", out2
    )
    assert result.exit_code == 0, result.output
    (npz,) = out2.rglob("*_r00000_c00000.npz")
    with np.load(npz) as tile:
        assert np.isfinite(tile["s1_vv"]).all()
        assert tile[VALID_KEY][:10].sum() == 0 and tile[VALID_KEY][10:].all()
    assert check_tiles(out2) == []


def test_cloudy_s2_becomes_stage2_opt_v2(terramind_examples: Path, tmp_path: Path, prepare_cli):
    from axion.data.dataset import TileDataset

    name = "38D_378R_2_3"
    s2_path = terramind_examples / "S2L2A" / f"{name}.tif"
    with rasterio.open(s2_path) as src:
        clear = src.read()
    cloudy = clear.copy()
    cloudy[:, 20:80, 30:120] = 9000  # a bright cloud
    cloudy_path = _write_like(tmp_path / "cloudy.tif", s2_path, cloudy)
    out = tmp_path / "tiles"
    result = prepare_cli("--s1", terramind_examples / "S1RTC" / f"{name}.tif", "--s2", s2_path,
                         "--s2-cloudy", cloudy_path, "--tile-size", 112, "--block-size", 1, "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    stage2 = sorted((out / "stage2").glob("*.npz"))
    assert [p.stem for p in stage2] == sorted(n for v in tile_files(out).values() for n in v)
    with np.load(out / "stage2" / f"{name}_r00000_c00000.npz") as f:
        opt_v2, clear_mask = f["opt_v2"], f["opt_v2_mask"]
    assert opt_v2.shape == (4, 112, 112)
    # The clear-sky mask: the bright block, grown by 5 px, is not clear; the rest of this clear scene is.
    assert (clear[1, :112, :112] < 2000).all()  # B2 of the clear scene: below the cloud threshold
    expected = np.ones((112, 112), np.uint8)
    expected[15:85, 25:112] = 0
    np.testing.assert_array_equal(clear_mask, expected)
    (tile_json,) = out.rglob(f"{name}_r00000_c00000.json")
    assert json.loads(tile_json.read_text())["opt_v2_clear_fraction"] == round(float(expected.mean()), 6)
    np.testing.assert_array_equal(opt_v2[:, 20:80, 30:112], 9000)
    np.testing.assert_array_equal(opt_v2[2, 90:, :], clear[3, 90:112, :112])  # B4 outside the cloud
    split = next(s for s, v in tile_files(out).items() if f"{name}_r00000_c00000" in v)
    ds = TileDataset(out, split, stage2_dir=out / "stage2")
    sample = ds[ds.names.index(f"{name}_r00000_c00000")]
    assert float(sample["opt_v2"][0, 50, 50]) == 9000.0
    assert float(sample["opt_v2_mask"][0, 50, 50]) == 0.0 and float(sample["opt_v2_mask"][0, 100, 10]) == 1.0
