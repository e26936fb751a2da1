"""``axion stage3 infer`` with a trained checkpoint: tiles, GeoTIFFs, a whole scene, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from axion.data.proxy import degrade_to_proxy
from tests.commands.conftest import SCENES, half_cloud, run_cli, stage2_from_targets

pytestmark = pytest.mark.slow
SCENE_SIZE, TILE, OVERLAP = 112, 64, 16


def _read(path: Path):
    import rasterio

    with rasterio.open(path) as src:
        return src.read(), src.crs, src.transform, src.descriptions


@pytest.fixture(scope="module")
def tile_outputs(checkpoint: Path, tiles_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("infer") / "outputs"
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {tiles_dir / 'test'} --output-dir {out} "
        "--proxy-from-ground-truth --quiet"
    )
    assert result.exit_code == 0, result.output
    assert "opt_v2: proxy made from each tile's own ground truth (--proxy-from-ground-truth" in result.output
    assert "not a prediction for new data" in result.output
    return out


def test_tiles_get_npz_and_georeferenced_cogs_and_a_manifest(
    tile_outputs: Path, tiles_dir: Path, checkpoint: Path
) -> None:
    import hashlib

    import rasterio
    from rasterio.crs import CRS
    from rio_cogeo.cogeo import cog_validate

    tiles = sorted((tiles_dir / "test").glob("*.npz"))
    assert tiles
    for tile in tiles:
        with np.load(tile_outputs / f"{tile.stem}.npz") as npz:
            assert npz.files == ["opt_v3"]
            opt_v3 = npz["opt_v3"]
        assert opt_v3.shape == (4, 64, 64) and opt_v3.dtype == np.float32 and np.isfinite(opt_v3).all()
        assert (opt_v3 >= 0).all()
        tif = tile_outputs / f"{tile.stem}.tif"
        pixels, crs, transform, descriptions = _read(tif)
        meta = json.loads(tile.with_suffix(".json").read_text())
        assert crs == CRS.from_user_input(meta["crs"])
        assert tuple(transform)[:6] == pytest.approx(meta["transform"])
        assert descriptions == ("B2", "B3", "B4", "B8")
        assert np.array_equal(pixels, opt_v3)
        assert cog_validate(str(tif), strict=True)[0]
        with rasterio.open(tif) as src:
            tags = src.tags()
        assert tags["AXION_OPT_V2"] == "proxy-from-ground-truth"
        assert tags["AXION_CHECKPOINT"] == str(checkpoint.resolve())
        assert tags["AXION_CHECKPOINT_SHA256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    manifest = json.loads((tile_outputs / "infer.json").read_text())
    assert manifest["complete"] and manifest["opt_v2"] == "proxy-from-ground-truth"
    assert manifest["tiles"] == len(tiles)
    assert sorted(manifest["outputs"]) == sorted(
        p.name for p in tile_outputs.iterdir() if p.name != "infer.json"
    )
    assert not list(tile_outputs.glob(".*"))  # no temporary files left


def test_tile_mode_gives_the_network_cloudy_pixels_filled(
    untrained_checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    """Stage 2 files with an opt_v2_mask: the untrained model returns the opt_v2 it is given, which
    is the file on its clear pixels and a fill from them under the cloud (axion.cloudfill)."""
    stage2 = stage2_from_targets(tiles_dir, tmp_path / "stage2", half_cloud)
    out = tmp_path / "outputs"
    result = run_cli(
        f"stage3 infer --checkpoint {untrained_checkpoint} --input-dir {tiles_dir / 'test'} "
        f"--stage2-dir {stage2} --output-dir {out} --quiet"
    )
    assert result.exit_code == 0, result.output
    for file in sorted(stage2.glob("*.npz")):
        with np.load(file) as given, np.load(out / file.name) as written:
            opt_v2, clear, opt_v3 = given["opt_v2"], given["opt_v2_mask"] > 0, written["opt_v3"]
        assert np.allclose(opt_v3[:, clear], opt_v2[:, clear], rtol=1e-5)
        assert opt_v3[:, ~clear].max() < 9000.0 - 1000  # not the cloud: filled from the clear half


def test_tile_mode_needs_stage2_outputs_or_an_explicit_proxy(
    checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {tiles_dir / 'test'} --output-dir {out}"
    )
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "--stage2-dir" in result.output and "--proxy-from-ground-truth" in result.output
    assert not out.exists()


def test_an_output_directory_with_results_is_kept_unless_overwrite(
    checkpoint: Path, tiles_dir: Path, tile_outputs: Path
) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in tile_outputs.iterdir()}
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {tiles_dir / 'test'} --output-dir {tile_outputs} "
        "--proxy-from-ground-truth"
    )
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert (
        "holds the results of an earlier run (infer.json)" in result.output and "--overwrite" in result.output
    )
    assert {p.name: p.stat().st_mtime_ns for p in tile_outputs.iterdir()} == before


def test_missing_stage2_output_is_one_line_and_writes_nothing(
    checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    stage2 = tmp_path / "stage2"
    stage2.mkdir()
    tiles = sorted((tiles_dir / "test").glob("*.npz"))
    np.savez(stage2 / f"{tiles[0].stem}.npz", opt_v2=np.zeros((4, 64, 64), np.float32))  # the others missing
    out = tmp_path / "out"
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {tiles_dir / 'test'} --stage2-dir {stage2} --output-dir {out}"
    )
    assert result.exit_code == 2
    assert "no Stage 2 output" in result.output and tiles[1].stem in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_mismatched_stage2_output_is_one_line_and_writes_nothing(
    checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    stage2 = tmp_path / "stage2"
    stage2.mkdir()
    for tile in (tiles_dir / "test").glob("*.npz"):
        np.savez(stage2 / f"{tile.stem}.npz", opt_v2=np.zeros((4, 32, 64), np.float32))
    out = tmp_path / "out"
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {tiles_dir / 'test'} --stage2-dir {stage2} --output-dir {out}"
    )
    assert result.exit_code == 2
    assert "opt_v2 has shape (4, 32, 64), expected (4, 64, 64)" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_output_inside_the_input_is_refused(checkpoint: Path, tiles_dir: Path) -> None:
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {tiles_dir / 'test'} --output-dir {tiles_dir / 'test' / 'o'} "
        "--proxy-from-ground-truth"
    )
    assert result.exit_code == 2 and "overlaps --input-dir" in result.output
    assert not (tiles_dir / "test" / "o").exists()


# --- scene mode -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene_files(terramind_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 112 px real S1 scene and an opt_v2 scene (the training proxy of its S2), co-registered."""
    import rasterio
    from rasterio.windows import Window

    root = tmp_path_factory.mktemp("scene")
    scene = SCENES[1]
    window = Window(0, 0, SCENE_SIZE, SCENE_SIZE)
    with rasterio.open(terramind_examples / "S1RTC" / f"{scene}.tif") as s1f:
        s1, crs, transform = s1f.read(window=window).astype(np.float32), s1f.crs, s1f.window_transform(window)
    with rasterio.open(terramind_examples / "S2L2A" / f"{scene}.tif") as s2f:
        opt_v2 = degrade_to_proxy(s2f.read([2, 3, 4, 8], window=window).astype(np.float32), seed=7)
    files = {}
    for key, array in (("s1", s1), ("opt_v2", opt_v2)):
        profile = {"driver": "GTiff", "height": SCENE_SIZE, "width": SCENE_SIZE, "count": array.shape[0]}
        profile.update(dtype="float32", crs=crs, transform=transform)
        files[key] = root / f"{key}.tif"
        with rasterio.open(files[key], "w", **profile) as dst:
            dst.write(array)
    return files


@pytest.fixture(scope="module")
def scene_output(checkpoint: Path, scene_files: dict[str, Path]) -> Path:
    out = scene_files["s1"].with_name("opt_v3.tif")
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --s1-scene {scene_files['s1']} --opt-v2-scene {scene_files['opt_v2']} "
        f"--output-scene {out} --tile-size {TILE} --overlap {OVERLAP} --quiet"
    )
    assert result.exit_code == 0, result.output
    return out


def test_scene_keeps_the_grid_and_matches_per_tile_inference(
    checkpoint: Path, scene_files: dict[str, Path], scene_output: Path, tmp_path: Path
) -> None:
    """Away from tile borders the scene equals per-tile inference of the same windows."""
    scene, crs, transform, descriptions = _read(scene_output)
    _, s1_crs, s1_transform, _ = _read(scene_files["s1"])
    assert scene.shape == (4, SCENE_SIZE, SCENE_SIZE) and np.isfinite(scene).all()
    assert crs == s1_crs and transform == s1_transform and descriptions == ("B2", "B3", "B4", "B8")

    # The same windows as tiles (named like the scene's tiles, so they draw the same noise).
    s1, opt_v2 = _read(scene_files["s1"])[0], _read(scene_files["opt_v2"])[0]
    tiles, stage2, outputs = tmp_path / "tiles", tmp_path / "stage2", tmp_path / "outputs"
    tiles.mkdir()
    stage2.mkdir()
    stride = TILE - OVERLAP
    for y in (0, stride):
        for x in (0, stride):
            name = f"s1_y{y}_x{x}"
            window = (slice(y, y + TILE), slice(x, x + TILE))
            np.savez(tiles / f"{name}.npz", s1_vv=s1[0][window], s1_vh=s1[1][window])
            (tiles / f"{name}.json").write_text("{}")
            np.savez(stage2 / f"{name}.npz", opt_v2=opt_v2[(slice(None), *window)])
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {tiles} --stage2-dir {stage2} --output-dir {outputs} --quiet"
    )
    assert result.exit_code == 0, result.output
    assert "opt_v2: Stage 2 outputs" in result.output
    assert not list(outputs.glob("*.tif"))  # tiles without georeference get no GeoTIFF
    first = np.load(outputs / "s1_y0_x0.npz")["opt_v3"]
    last = np.load(outputs / f"s1_y{stride}_x{stride}.npz")["opt_v3"]
    # Pixels only one tile covers.
    np.testing.assert_allclose(scene[:, :stride, :stride], first[:, :stride, :stride], rtol=1e-5, atol=0.05)
    np.testing.assert_allclose(scene[:, TILE:, TILE:], last[:, OVERLAP:, OVERLAP:], rtol=1e-5, atol=0.05)


def test_scene_has_no_seams(scene_output: Path) -> None:
    """The jump between neighbouring pixels across tile borders is like the jump elsewhere."""
    scene = _read(scene_output)[0].astype(np.float64)
    borders = [TILE - OVERLAP, TILE]  # where the second tile starts and the first one ends
    for image in (scene, np.swapaxes(scene, 1, 2)):
        jumps = np.abs(np.diff(image, axis=2)).mean(axis=(0, 1))
        ratio = max(jumps[c - 1] for c in borders) / np.median(jumps)
        assert ratio < 1.5, f"seam: border jump {ratio:.2f} x the median jump"


def test_scenes_that_do_not_overlap_are_one_line_and_write_nothing(
    checkpoint: Path, scene_files: dict[str, Path], tmp_path: Path
) -> None:
    import rasterio

    other = tmp_path / "opt_v2_other_crs.tif"
    with rasterio.open(scene_files["opt_v2"]) as src:
        profile, data = src.profile, src.read()
    profile["crs"] = "EPSG:4326"
    with rasterio.open(other, "w", **profile) as dst:
        dst.write(data)
    out = tmp_path / "out.tif"
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --s1-scene {scene_files['s1']} --opt-v2-scene {other} "
        f"--output-scene {out} --tile-size {TILE}"
    )
    assert result.exit_code == 2
    assert "does not overlap" in result.output and len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]


def test_scene_with_a_band_missing_is_refused(
    checkpoint: Path, scene_files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.tif"
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --s1-scene {scene_files['opt_v2']} --opt-v2-scene {scene_files['opt_v2']} "
        f"--output-scene {out}"
    )
    assert result.exit_code == 2 and "S1 scene has 4 band(s), expected 2" in result.output
    assert not out.exists()


def test_save_generated_writes_what_the_fusion_network_was_given(
    checkpoint: Path, tile_outputs: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    import torch

    from axion.config import InferConfig
    from axion.prediction.predict import predictor_for
    from axion.training.trained import read_trained

    out = tmp_path / "with_generated"
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {tiles_dir / 'test'} --output-dir {out} "
        "--proxy-from-ground-truth --save-generated --quiet"
    )
    assert result.exit_code == 0, result.output
    tile = sorted((tiles_dir / "test").glob("*.npz"))[0]
    with np.load(out / f"{tile.stem}.npz") as npz, np.load(tile_outputs / f"{tile.stem}.npz") as plain:
        assert sorted(npz.files) == ["generated", "opt_v3"]
        generated = npz["generated"]
        # Asking for the generated bands does not change opt_v3: one generation feeds both.
        np.testing.assert_array_equal(npz["opt_v3"], plain["opt_v3"])
    assert generated.shape == (4, 64, 64) and np.isfinite(generated).all()
    assert (out / f"{tile.stem}_generated.tif").is_file()
    pixels, *_ = _read(out / f"{tile.stem}_generated.tif")
    np.testing.assert_allclose(pixels, np.clip(generated, 0, None), rtol=1e-6)

    # The same bands from the model's public method, with the same inputs and per-tile seed.
    from axion.data.dataset import TileDataset, collate_tiles
    from axion.prediction.predict import autocast_dtype

    dataset = TileDataset(tiles_dir / "test", None, with_target=True)
    batch = collate_tiles([dataset[[t.name for t in dataset.tiles].index(tile.stem)]])
    settings = InferConfig(checkpoint=checkpoint, input_dir=tiles_dir / "test", output_dir=tmp_path / "x")
    predictor = predictor_for(settings, read_trained(checkpoint))
    dtype = autocast_dtype(predictor.precision)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        direct = predictor.model.generated_bands(
            batch["s1"], batch["opt_v2"], seeds=predictor.seeds([tile.stem])
        )
    np.testing.assert_array_equal(direct[0].float().numpy(), generated)


def test_save_generated_needs_a_generator_and_tile_mode(checkpoint: Path, tmp_path: Path) -> None:
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --s1-scene a.tif --opt-v2-scene b.tif "
        f"--output-scene {tmp_path / 'o.tif'} --save-generated"
    )
    assert result.exit_code == 2 and "--save-generated applies to tile mode only" in result.output
