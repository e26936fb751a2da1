"""``axion stage3 infer --opt-v2-mask-scene``: a cloudy opt_v2 scene filled before the model.

The scene is a 128 px window of SEN12MS-CR's autumn patch (real, about half cloudy): its S1, its
cloudy acquisition's B2, B3, B4, B8 as opt_v2 and the project's clear-sky mask of it as the mask.
The untrained checkpoint returns what it is given, so the output is the opt_v2 the model saw.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.commands.conftest import run_cli
from tests.conftest import fusion_checkpoint
from tests.scenes import read, write_raster

pytestmark = pytest.mark.slow
PATCH = "ROIs1970_fall_139_p839"
FLAGS = ["--tile-size", 128, "--overlap", 0, "--quiet"]  # one tile: one model call
#: The window of the patch: rows 128-255, columns 64-191.
WINDOW = (128, 64, 128)


@pytest.fixture(scope="module")
def cloudy_scene(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """S1, cloudy opt_v2 and its mask (1 clear, 0 cloudy) as GeoTIFFs on one grid, and the clear image."""
    import rasterio
    from rasterio.windows import Window

    from axion.data.cloudmask import clear_sky_mask

    root, out = shared_data / "sen12mscr-sample", tmp_path_factory.mktemp("cloudy-scene")
    row, col, size = WINDOW
    window = Window(col, row, size, size)
    with rasterio.open(root / "s2_cloudy" / f"{PATCH}.tif") as src:
        cloudy, crs, transform = (
            src.read([2, 3, 4, 8], window=window).astype(np.float32),
            src.crs,
            src.window_transform(window),
        )
    with rasterio.open(root / "s2_cloudfree" / f"{PATCH}.tif") as src:
        clear = src.read([2, 3, 4, 8], window=window).astype(np.float32)
    with rasterio.open(root / "s1" / f"{PATCH}.tif") as src:
        s1 = src.read(window=window)
    mask = clear_sky_mask(cloudy)[None]
    assert 0.3 < mask.mean() < 0.7  # both kinds of pixel
    return {
        "s1": write_raster(out / "s1.tif", s1, crs, transform),
        "opt_v2": write_raster(out / "opt_v2.tif", cloudy, crs, transform),
        "mask": write_raster(out / "mask.tif", mask, crs, transform),
        "clear": write_raster(out / "clear.tif", clear, crs, transform),
        "two_bands": write_raster(out / "two_bands.tif", np.concatenate([mask, mask]), crs, transform),
        "cropped": write_raster(out / "cropped.tif", mask[:, :96, :96], crs, transform),
    }


def _infer(checkpoint: Path, scene: dict[str, Path], output: Path, *extra: object):
    args = ["stage3", "infer", "--checkpoint", checkpoint, "--s1-scene", scene["s1"]]
    return run_cli([*args, "--opt-v2-scene", scene["opt_v2"], "--output-scene", output, *FLAGS, *extra])


def test_the_cloudy_pixels_reach_the_model_filled_from_the_clear_ones(
    untrained_checkpoint: Path, cloudy_scene: dict[str, Path], tmp_path: Path
) -> None:
    masked = _infer(
        untrained_checkpoint,
        cloudy_scene,
        tmp_path / "masked.tif",
        "--opt-v2-mask-scene",
        cloudy_scene["mask"],
    )
    assert masked.exit_code == 0, masked.output
    plain = _infer(untrained_checkpoint, cloudy_scene, tmp_path / "plain.tif")
    assert plain.exit_code == 0, plain.output

    cloudy, clear = read(cloudy_scene["opt_v2"])[0], read(cloudy_scene["clear"])[0]
    under = read(cloudy_scene["mask"])[0][0] == 0
    filled, unfilled = read(tmp_path / "masked.tif")[0], read(tmp_path / "plain.tif")[0]
    # Without the mask the model is given the clouds; with it, a fill far closer to the clear image.
    np.testing.assert_allclose(unfilled, cloudy, atol=0.05)
    before = np.abs(cloudy - clear)[:, under].mean()
    after = np.abs(filled - clear)[:, under].mean()
    assert after < 0.5 * before, (before, after)
    np.testing.assert_allclose(filled[:, ~under], cloudy[:, ~under], atol=0.05)  # clear pixels as given
    assert np.isfinite(filled).all()

    properties = json.loads((tmp_path / "masked.json").read_text())["properties"]
    assert properties["axion:opt_v2_mask_scene"] == str(cloudy_scene["mask"].resolve())
    assert (
        json.loads((tmp_path / "plain.json").read_text())["properties"]["axion:opt_v2_mask_scene"] == "none"
    )


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ("two_bands", "opt_v2 mask scene has 2 bands, expected 1"),
        ("cropped", "opt_v2 mask scene is not on the pixel grid of the opt_v2 scene"),
        ("missing", "opt_v2 mask scene not found"),
    ],
)
def test_a_bad_mask_is_one_line_and_writes_nothing(
    untrained_checkpoint: Path, cloudy_scene: dict[str, Path], tmp_path: Path, mask: str, message: str
) -> None:
    path = cloudy_scene.get(mask, tmp_path / "no-such-mask.tif")
    result = _infer(
        untrained_checkpoint, cloudy_scene, tmp_path / "out" / "opt_v3.tif", "--opt-v2-mask-scene", path
    )
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert f"{path}: {message}" in line
    assert not (tmp_path / "out").exists()


def test_a_mask_in_tile_mode_is_refused(
    untrained_checkpoint: Path, cloudy_scene: dict[str, Path], tmp_path: Path
) -> None:
    result = run_cli(
        [
            "stage3", "infer", "--checkpoint", untrained_checkpoint, "--input-dir", tmp_path, "--output-dir",
            tmp_path / "out", "--proxy-from-ground-truth", "--opt-v2-mask-scene", cloudy_scene["mask"],
        ]
    )  # fmt: skip
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "--opt-v2-mask-scene applies to scene mode only" in result.output


def test_a_scene_list_gives_each_scene_its_mask_and_a_changed_mask_is_new_work(
    untrained_checkpoint: Path, cloudy_scene: dict[str, Path], tmp_path: Path
) -> None:
    rows = f"{cloudy_scene['s1']},{cloudy_scene['opt_v2']},out/a.tif,{cloudy_scene['mask']}"
    listed = tmp_path / "scenes.csv"
    listed.write_text(f"s1,opt_v2,output,opt_v2_mask\n{rows}\n")
    args = ["stage3", "infer", "--checkpoint", untrained_checkpoint, "--scenes", listed, *FLAGS]
    first = run_cli(args)
    assert first.exit_code == 0, first.output
    one = _infer(
        untrained_checkpoint, cloudy_scene, tmp_path / "one.tif", "--opt-v2-mask-scene", cloudy_scene["mask"]
    )
    assert one.exit_code == 0, one.output
    np.testing.assert_array_equal(read(tmp_path / "out" / "a.tif")[0], read(tmp_path / "one.tif")[0])

    again = run_cli(args)
    assert again.exit_code == 0 and "0 done, 1 skipped (complete)" in again.output
    # The same scene without its mask: complete outputs of other settings, kept unless --overwrite.
    listed.write_text(f"s1,opt_v2,output\n{rows.rsplit(',', 1)[0]}\n")
    refused = run_cli(args)
    assert (
        refused.exit_code == 1
        and "opt_v2_mask_scene is" in refused.output
        and "--overwrite" in refused.output
    )


def test_scene_lists_name_masks_in_a_column_or_an_asset(tmp_path: Path) -> None:
    import pystac

    from axion.prediction.scenes import read_scene_list

    listed = tmp_path / "scenes.csv"
    listed.write_text("s1,opt_v2,output,opt_v2_mask\na.tif,b.tif,out/1.tif,m.tif\na.tif,b.tif,out/2.tif,\n")
    assert [job.opt_v2_mask for job in read_scene_list(listed)] == [tmp_path.resolve() / "m.tif", None]

    items = []
    for index in range(2):
        item = pystac.Item(
            id=f"s{index}", geometry=None, bbox=None, datetime=pystac.utils.str_to_datetime("2020-05-06T10:20:30Z"),
            properties={},
        )  # fmt: skip
        item.add_asset("s1", pystac.Asset(href="a.tif"))
        item.add_asset("opt_v2", pystac.Asset(href="b.tif"))
        if index == 0:
            item.add_asset("opt_v2_mask", pystac.Asset(href=(tmp_path / "m.tif").as_uri()))
        items.append(item)
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    jobs = read_scene_list(collection, tmp_path / "out")
    assert [job.opt_v2_mask for job in jobs] == [tmp_path.resolve() / "m.tif", None]


def test_a_scene_with_a_mask_is_predicted_as_a_real_acquisition(
    cloudy_scene: dict[str, Path], tmp_path: Path
) -> None:
    """Even an all-clear mask (nothing to fill) tells the model opt_v2 is a real acquisition: a
    trained network answers differently than for a Stage 2 estimate."""
    checkpoint = fusion_checkpoint(tmp_path / "trained.pt")
    clear = read(cloudy_scene["mask"])[1]
    all_clear = write_raster(
        tmp_path / "clear.tif", np.ones((1, 128, 128), np.uint8), clear["crs"], clear["transform"]
    )
    told = _infer(checkpoint, cloudy_scene, tmp_path / "told.tif", "--opt-v2-mask-scene", all_clear)
    assert told.exit_code == 0, told.output
    assert _infer(checkpoint, cloudy_scene, tmp_path / "untold.tif").exit_code == 0
    difference = np.abs(read(tmp_path / "told.tif")[0] - read(tmp_path / "untold.tif")[0])
    assert difference.mean() > 1.0, difference.mean()
