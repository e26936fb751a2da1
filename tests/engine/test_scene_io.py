"""Scene inference on any grid, with stand-in models: reprojection, nodata, COG and STAC outputs.

The real Sen1Floods11 S1 chip (EPSG:4326) is put under an opt_v2 on a 10 m UTM grid
(see tests/scenes.py). Stand-in models make the checks exact: one returns a function of
S1 alone, so the output shows the S1 that reached the model; one returns opt_v2 with a
fixed spread.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from axion.errors import DataError
from axion.prediction.scene import Prediction, SceneOutputs, run_scene, validate_scene
from axion.writers.cog import RasterSpec
from tests.scenes import OPT_HOLE, eroded, floods_pair, read, s1_on_grid_of

TILE, OVERLAP = 64, 16


def _s1_model(s1: np.ndarray, opt_v2: np.ndarray, names: list[str]) -> np.ndarray:
    """A stand-in whose 'reflectance' is S1 (dB) shifted positive: VV, VH, VV, VH."""
    return (s1[:, [0, 1, 0, 1]] + 60.0) * 50.0


def _spread_model(s1: np.ndarray, opt_v2: np.ndarray, names: list[str]) -> Prediction:
    """opt_v2 itself, with a spread of 10 reflectance units everywhere."""
    return Prediction(mean=opt_v2, std=np.full_like(opt_v2, 10.0))


@pytest.fixture(scope="module")
def pair(sen1floods11: Path, tmp_path_factory: pytest.TempPathFactory):
    return floods_pair(sen1floods11, tmp_path_factory.mktemp("floods"), size=160)


def test_s1_is_reprojected_onto_the_opt_v2_grid(pair, tmp_path: Path) -> None:
    info = validate_scene(pair.s1, pair.opt_v2, tmp_path / "out.tif")
    assert info.s1_reprojected
    run_scene(info, tmp_path / "out.tif", _s1_model, tile_size=TILE, overlap=OVERLAP, batch_size=2)
    out, profile = read(tmp_path / "out.tif")
    _, opt_profile = read(pair.opt_v2)
    assert (profile["height"], profile["width"]) == (opt_profile["height"], opt_profile["width"])
    assert profile["crs"] == opt_profile["crs"] and profile["transform"] == opt_profile["transform"]

    expected_s1 = s1_on_grid_of(pair)
    expected = (expected_s1[[0, 1, 0, 1]] + 60.0) * 50.0
    opt, _ = read(pair.opt_v2)
    valid = np.isfinite(expected).all(axis=0) & np.isfinite(opt).all(axis=0)
    inner = eroded(valid, 2)
    assert inner.sum() > 0.8 * valid.size
    # The model saw S1 as the independent reprojection gives it, to a few hundredths of a dB.
    error_db = np.abs(out[:, inner] - expected[:, inner]) / 50.0
    assert np.median(error_db) < 0.005 and error_db.max() < 0.1, (np.median(error_db), error_db.max())
    # Nodata of either input is nodata in the output: the S1 hole and the opt_v2 hole.
    s1_hole = ~np.isfinite(expected_s1).all(axis=0)
    assert s1_hole.sum() > 100 and np.isnan(out[:, s1_hole]).all()
    assert np.isnan(out[(slice(None), *OPT_HOLE)]).all()
    assert np.isfinite(out[:, valid]).all()


def test_outputs_are_cloud_optimized_geotiffs_with_band_metadata(pair, tmp_path: Path) -> None:
    import rasterio
    from rasterio.enums import ColorInterp
    from rio_cogeo.cogeo import cog_validate

    info = validate_scene(pair.s1, pair.opt_v2, tmp_path / "out.tif")
    opt, _ = read(pair.opt_v2)
    for dtype in ("float32", "uint16"):
        outputs = SceneOutputs.beside(tmp_path / f"{dtype}.tif")
        run_scene(
            info, outputs.tif, _spread_model, tile_size=TILE, overlap=OVERLAP, dtype=dtype,
            tags={"AXION_PRODUCT": "opt_v3"}, std_output=outputs.std, std_tags={"AXION_PRODUCT": "opt_v3_std"},
        )  # fmt: skip
        for path, spread in ((outputs.tif, False), (outputs.std, True)):
            valid, errors, warnings = cog_validate(str(path), strict=True)
            assert valid and not errors and not warnings, (path, errors, warnings)
            with rasterio.open(path) as src:
                assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
                assert src.profile["tiled"] and src.block_shapes[0] == (512, 512)
                assert src.compression.name == "deflate"
                assert src.descriptions == ("B2", "B3", "B4", "B8")
                assert src.colorinterp == (
                    ColorInterp.blue,
                    ColorInterp.green,
                    ColorInterp.red,
                    ColorInterp.undefined,
                )
                assert (
                    src.scales == (1e-4,) * 4
                    and src.offsets == (0.0,) * 4
                    and src.units == ("reflectance",) * 4
                )
                assert src.dtypes[0] == dtype and src.tags()["AXION_PRODUCT"] == (
                    "opt_v3_std" if spread else "opt_v3"
                )
                pixels, nodata = src.read(), src.nodata
            spec = RasterSpec(dtype, spread)
            assert nodata == spec.nodata or (np.isnan(nodata) and np.isnan(spec.nodata))
            hole = (slice(None), *OPT_HOLE)
            if spread:
                assert (pixels[hole] == 0).all()  # no spread where there is no data
                assert np.allclose(pixels[:, np.isfinite(opt).all(axis=0)], 10.0, atol=1e-3)
            elif dtype == "uint16":
                valid = np.isfinite(opt).all(axis=0)
                assert (pixels[hole] == 0).all() and (pixels[:, valid] >= 1).all()
                # Reflectance x 10000 rounded (a blended x.5 may round either way).
                diff = np.abs(pixels[:, valid].astype(np.int64) - np.clip(np.rint(opt[:, valid]), 1, 65535))
                assert diff.max() <= 1 and (diff == 0).mean() > 0.999
            else:
                assert np.isnan(pixels[hole]).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "float32.tif",
        "float32_std.tif",
        "uint16.tif",
        "uint16_std.tif",
    ]


def test_a_scene_larger_than_one_cog_tile_gets_overviews(pair, sen1floods11: Path, tmp_path: Path) -> None:
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    big = floods_pair(sen1floods11, tmp_path / "in", s1_hole=False, pixel=5.0)  # the whole chip at 5 m
    info = validate_scene(big.s1, big.opt_v2, tmp_path / "out.tif")
    assert max(info.height, info.width) > 512
    run_scene(info, tmp_path / "out.tif", lambda s1, o, n: o, tile_size=256, overlap=32)
    with rasterio.open(tmp_path / "out.tif") as src:
        assert src.overviews(1) == [2]
    assert cog_validate(str(tmp_path / "out.tif"), strict=True)[0]


def test_negative_reflectance_is_clipped_and_nonfinite_output_refused(pair, tmp_path: Path) -> None:
    info = validate_scene(pair.s1, pair.opt_v2, tmp_path / "out.tif")
    run_scene(info, tmp_path / "out.tif", lambda s1, o, n: o - 2000.0, tile_size=TILE, overlap=OVERLAP)
    out, _ = read(tmp_path / "out.tif")
    opt, _ = read(pair.opt_v2)
    valid = np.isfinite(opt).all(axis=0)
    assert (opt[:, valid] < 2000).any() and (out[:, valid] >= 0).all()
    np.testing.assert_allclose(out[:, valid], np.maximum(opt[:, valid] - 2000.0, 0.0), atol=1e-3)

    def broken(s1: np.ndarray, o: np.ndarray, n: list[str]) -> np.ndarray:
        return np.full_like(o, np.nan)

    with pytest.raises(ValueError, match="non-finite"):
        run_scene(info, tmp_path / "never.tif", broken, tile_size=TILE, overlap=OVERLAP)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]  # nothing else, no temporaries


def test_stac_item_describes_the_scene(pair, tmp_path: Path) -> None:
    import datetime as dt

    import pystac
    from pystac.extensions.eo import EOExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension
    from pystac.validation import JsonSchemaSTACValidator
    from rasterio.warp import transform_bounds

    from axion.writers.stac import RasterAsset, scene_item, write_item

    outputs = SceneOutputs.beside(tmp_path / "scene.tif")
    info = validate_scene(pair.s1, pair.opt_v2, outputs.tif)
    run_scene(info, outputs.tif, _spread_model, tile_size=TILE, overlap=OVERLAP, std_output=outputs.std)
    assets = [
        RasterAsset("opt_v3", outputs.tif, RasterSpec("float32"), "opt_v3", ("data",)),
        RasterAsset("opt_v3_std", outputs.std, RasterSpec("float32", True), "spread", ("uncertainty",)),
    ]
    when = dt.datetime(2019, 9, 17, 18, 0, tzinfo=dt.UTC)
    item = scene_item(
        outputs.item, assets, crs=info.crs, transform=info.transform, height=info.height, width=info.width,
        acquired=when, properties={"axion:seed": "0"},
    )  # fmt: skip
    write_item(outputs.item, item)
    data = json.loads(outputs.item.read_text())
    # STAC 1.1 core schema, shipped with pystac (the extension schemas need the network).
    JsonSchemaSTACValidator().validate_core(data, pystac.STACObjectType.ITEM, data["stac_version"])

    read_back = pystac.Item.from_file(str(outputs.item))
    assert read_back.id == "scene" and read_back.datetime == when
    west, south, east, north = transform_bounds(info.crs, "EPSG:4326", *_bounds(info), densify_pts=21)
    assert read_back.bbox == pytest.approx([west, south, east, north], abs=1e-7)
    ring = np.array(read_back.geometry["coordinates"][0])
    assert ring.shape[0] > 5 and (ring[0] == ring[-1]).all()
    assert ring[:, 0].min() == pytest.approx(west, abs=1e-7) and ring[:, 1].max() == pytest.approx(
        north, abs=1e-7
    )
    proj = ProjectionExtension.ext(read_back)
    assert proj.code == "EPSG:32630" and proj.shape == [info.height, info.width]
    assert proj.transform == pytest.approx(list(info.transform)[:6])
    assert {k: a.roles for k, a in read_back.assets.items()} == {
        "opt_v3": ["data"],
        "opt_v3_std": ["uncertainty"],
    }
    for key, asset in read_back.assets.items():
        assert asset.href == f"./{Path(asset.href).name}" and (tmp_path / asset.href).is_file()
        assert asset.media_type == pystac.MediaType.COG
        bands = EOExtension.ext(asset).bands
        assert [b.name for b in bands] == ["B2", "B3", "B4", "B8"]
        assert [b.common_name for b in bands] == ["blue", "green", "red", "nir"]
        raster = RasterExtension.ext(asset).bands
        assert [r.scale for r in raster] == [1e-4] * 4 and raster[0].unit == "reflectance"
        assert raster[0].nodata == ("nan" if key == "opt_v3" else 0)
    assert read_back.properties["axion:seed"] == "0"


def _bounds(info) -> tuple[float, float, float, float]:  # noqa: ANN001
    left, top = info.transform @ (0, 0)
    right, bottom = info.transform @ (info.width, info.height)
    return left, bottom, right, top


def test_inputs_that_cannot_meet_and_outputs_that_exist_are_refused(pair, tmp_path: Path) -> None:
    from tests.scenes import write_raster

    s1, s1_profile = read(pair.s1)
    far = write_raster(tmp_path / "far.tif", s1, "EPSG:32610", s1_profile["transform"])  # Pacific, not Spain
    with pytest.raises(DataError, match="does not overlap"):
        validate_scene(far, pair.opt_v2, tmp_path / "out.tif")
    no_crs = write_raster(tmp_path / "no_crs.tif", s1, None, s1_profile["transform"])
    with pytest.raises(DataError, match="no CRS"):
        validate_scene(no_crs, pair.opt_v2, tmp_path / "out.tif")
    outputs = SceneOutputs.beside(tmp_path / "out.tif")
    outputs.std.write_text("earlier")
    with pytest.raises(DataError, match="already exists.*incomplete run.*--overwrite"):
        validate_scene(pair.s1, pair.opt_v2, outputs.tif)
    validate_scene(pair.s1, pair.opt_v2, outputs.tif, overwrite=True)
    with pytest.raises(DataError, match="overwrite an input"):
        validate_scene(pair.s1, pair.opt_v2, pair.opt_v2)


def test_the_item_datetime_comes_from_the_flag_then_the_s1_file(terramind_examples: Path, pair) -> None:
    import datetime as dt

    from axion.writers.stac import acquisition_time

    tagged = (
        terramind_examples / "S1RTC" / "282D_485L_3_3.tif"
    )  # carries datetime=2021-07-21T08:40:10.000000000
    assert acquisition_time(tagged, None) == (dt.datetime(2021, 7, 21, 8, 40, 10, tzinfo=dt.UTC), "s1")
    given = acquisition_time(tagged, "2020-01-02T03:04:05+01:00")
    assert given == (dt.datetime(2020, 1, 2, 2, 4, 5, tzinfo=dt.UTC), "given")
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    moment, source = acquisition_time(pair.s1, None)  # no date tag in this file
    assert source == "processing" and before <= moment <= dt.datetime.now(dt.UTC)
