"""``prepare`` on bad or unusual real inputs: cloudy footprints, empty splits, product levels,
band layouts, implausible values, ``--overwrite`` and leftovers of killed runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from axion.bands import S2L2A_SLOTS

from .conftest import snapshot, tile_files, write_like
from .test_bad_inputs import assert_one_line_error

CLEAR = "38D_378R_2_3"
REPO = Path(__file__).resolve().parents[2]


def scene(root: Path, name: str = CLEAR) -> tuple[Path, Path]:
    return root / "S1RTC" / f"{name}.tif", root / "S2L2A" / f"{name}.tif"


def tiles_meta(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*/*.json")}


def test_cloudy_pixels_outside_its_footprint_are_invalid(
    terramind_examples: Path, tmp_path: Path, prepare_cli
):
    s1, s2 = scene(terramind_examples)
    with rasterio.open(s2) as src:
        clear, shifted = src.read(), src.transform @ Affine.translation(32, 0)
    cloudy = write_like(tmp_path / "cloudy_shifted.tif", s2, clear, transform=shifted)  # 32 px further east
    args = ["--s1", s1, "--s2", s2, "--s2-cloudy", cloudy, "--tile-size", 64, "--split-ratios", "1,0,0"]
    out = tmp_path / "strict"
    result = prepare_cli(*args, "-o", out)
    assert result.exit_code == 0, result.output
    # The left tile column lies half outside the cloudy scene: skipped like S1 gaps, and said so.
    names = tile_files(out)["train"]
    assert len(names) == 6 and all(not n.endswith("_c00000") for n in names)
    assert "too many invalid pixels" in result.output
    out = tmp_path / "kept"
    result = prepare_cli(*args, "--max-nodata", 0.6, "-o", out)
    assert result.exit_code == 0, result.output
    name = f"{CLEAR}_r00064_c00000"
    meta = tiles_meta(out)[name]
    assert 0.45 < meta["valid_fraction"] < 0.55  # not 1.0: half the opt_v2 was never seen
    with np.load(out / "train" / f"{name}.npz") as tile:
        assert tile["valid"][:, :31].sum() == 0 and tile["valid"][:, 33:].all()
    with np.load(out / "stage2" / f"{name}.npz") as f:
        assert (f["opt_v2"][:, :, :32] > 0).all()  # filled with the band median, not 0


def test_cloudy_scene_of_another_place_writes_nothing(
    terramind_examples: Path, shared_data: Path, tmp_path: Path, prepare_cli
):
    s1, s2 = scene(terramind_examples)
    elsewhere = shared_data / "sen12mscr-sample" / "s2_cloudy" / "ROIs1970_fall_139_p839.tif"
    out = tmp_path / "out"
    result = prepare_cli("--s1", s1, "--s2", s2, "--s2-cloudy", elsewhere, "--tile-size", 64, "-o", out)
    assert_one_line_error(result, "no tile to write", "9 too many invalid pixels")
    assert not out.exists()


def test_single_scene_with_default_blocks_refuses_empty_splits(
    sen1floods11: Path, tmp_path: Path, prepare_cli
):
    s1, s2 = (
        sen1floods11 / "S1" / "Spain_7370579_S1Hand.tif",
        sen1floods11 / "S2" / "Spain_7370579_S2Hand.tif",
    )
    out = tmp_path / "out"
    result = prepare_cli("--s1", s1, "--s2", s2, "--tile-size", 128, "-o", out)  # 4 x 4 tiles = 1 block
    line = assert_one_line_error(result, "'val' and 'test' would be empty", "train 16, val 0, test 0")
    assert "--block-size (now 4)" in line and "--split-ratios 1,0,0" in line
    assert not out.exists()
    result = prepare_cli("--s1", s1, "--s2", s2, "--tile-size", 128, "--block-size", 1, "-o", out)
    assert result.exit_code == 0, result.output
    assert all(tile_files(out).values())
    asked = tmp_path / "asked"
    result = prepare_cli("--s1", s1, "--s2", s2, "--tile-size", 128, "--split-ratios", "1,0,0", "-o", asked)
    assert result.exit_code == 0 and len(tile_files(asked)["train"]) == 16
    # Training on them then says why there is no validation split, and what to change.
    from typer.testing import CliRunner

    from axion.cli import app

    train = ["stage3", "train", "--data-dir", str(asked), "--output-dir", str(tmp_path / "run"), "--no-pretrained",
             "--model-size", "tiny", "--lpips-weight", "0"]  # fmt: skip
    line = assert_one_line_error(CliRunner().invoke(app, train), "no tiles for split 'val'", "train 16")
    assert "--split-ratios" in line and "--block-size" in line and "sidecar" not in line


def test_product_levels_recorded_and_l1c_warned(
    sen1floods11: Path, terramind_examples: Path, tmp_path: Path, prepare_cli
):
    s1, s2 = (
        sen1floods11 / "S1" / "Spain_7370579_S1Hand.tif",
        sen1floods11 / "S2" / "Spain_7370579_S2Hand.tif",
    )
    out = tmp_path / "l1c"
    result = prepare_cli("--s1", s1, "--s2", s2, "--tile-size", 256, "--split-ratios", "1,0,0", "-o", out)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "L1C (top of atmosphere)" in result.output
    manifest = json.loads((out / "prepare.json").read_text())
    assert (manifest["s1_product"], manifest["s2_level"]) == ("grd", "L1C")
    assert any("L1C" in w for w in manifest["warnings"])
    assert {(m["s1_product"], m["s2_level"]) for m in tiles_meta(out).values()} == {("grd", "L1C")}
    checked = prepare_cli("--check", out)  # the level stays visible when the tiles are checked
    assert checked.exit_code == 0 and "warning:" in checked.output and "L1C" in checked.output

    rtc_s1, l2a_s2 = scene(terramind_examples)
    out = tmp_path / "l2a"
    result = prepare_cli("--s1", rtc_s1, "--s2", l2a_s2, "--s1-product", "rtc", "--tile-size", 112,
                         "--split-ratios", "1,0,0", "-o", out)  # fmt: skip
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    manifest = json.loads((out / "prepare.json").read_text())
    assert (manifest["s1_product"], manifest["s2_level"]) == ("rtc", "L2A")
    assert {(m["s1_product"], m["s2_level"]) for m in tiles_meta(out).values()} == {("rtc", "L2A")}
    # Mixing levels in one tile set is refused; a bad level value is one line.
    both = [
        "--s1",
        s1,
        "--s2",
        s2,
        "--s1",
        rtc_s1,
        "--s2",
        l2a_s2,
        "--tile-size",
        64,
        "-o",
        tmp_path / "mixed",
    ]
    assert_one_line_error(prepare_cli(*both), "mix product levels", "L1C", "L2A")
    assert_one_line_error(
        prepare_cli("--s1", s1, "--s2", s2, "--s2-level", "L3", "-o", tmp_path / "x"), "s2_level"
    )


def test_cloudy_file_with_its_own_band_layout(terramind_examples: Path, tmp_path: Path, prepare_cli):
    s1, s2 = scene(terramind_examples)
    with rasterio.open(s2) as src:
        optical = src.read([i + 1 for i in S2L2A_SLOTS])  # B2, B3, B4, B8
    cloudy = optical[::-1].copy()  # stored as B8, B4, B3, B2
    cloudy[:, 10:40, 10:40] = 8000  # a cloud
    path = write_like(tmp_path / "cloudy4.tif", s2, cloudy)
    args = ["--s1", s1, "--s2", s2, "--s2-cloudy", path, "--tile-size", 112, "--split-ratios", "1,0,0"]
    assert_one_line_error(prepare_cli(*args, "-o", tmp_path / "a"), "cloudy4.tif", "--s2-cloudy-bands")
    out = tmp_path / "b"
    result = prepare_cli(*args, "--s2-cloudy-bands", "B8,B4,B3,B2", "-o", out)
    assert result.exit_code == 0, result.output
    with np.load(out / "stage2" / f"{CLEAR}_r00000_c00000.npz") as f:
        np.testing.assert_array_equal(f["opt_v2"], cloudy[::-1, :112, :112].astype(np.float32))
    meta = tiles_meta(out)[f"{CLEAR}_r00000_c00000"]
    assert meta["source"]["s2_cloudy_bands"] == ["B08", "B04", "B03", "B02"]


def test_s1_in_linear_power_is_refused_with_the_flag_to_use(sen1floods11: Path, tmp_path: Path, prepare_cli):
    s1_path, s2 = (
        sen1floods11 / "S1" / "Spain_7370579_S1Hand.tif",
        sen1floods11 / "S2" / "Spain_7370579_S2Hand.tif",
    )
    with rasterio.open(s1_path) as src:
        linear = (10.0 ** (src.read() / 10.0)).astype(np.float32)
    s1 = write_like(tmp_path / "s1_linear.tif", s1_path, linear)
    args = ["--s1", s1, "--s2", s2, "--tile-size", 256, "--split-ratios", "1,0,0"]
    assert_one_line_error(prepare_cli(*args, "-o", tmp_path / "a"), "linear power", "use --s1-units linear")
    result = prepare_cli(*args, "--s1-units", "linear", "-o", tmp_path / "b")
    assert result.exit_code == 0, result.output


def test_tiles_with_impossible_values_are_skipped_and_counted(
    terramind_examples: Path, tmp_path: Path, prepare_cli
):
    s1, s2 = scene(terramind_examples)
    with rasterio.open(s2) as src:
        data = src.read().astype(np.float32)
    data[:, 5:15, 5:15] = 1e30  # an overflow in the top-left tile
    spiked = write_like(tmp_path / "s2_spiked.tif", s2, data)
    out = tmp_path / "out"
    result = prepare_cli("--s1", s1, "--s2", spiked, "--tile-size", 112, "--split-ratios", "1,0,0", "-o", out)
    assert result.exit_code == 0, result.output
    assert "implausible values: S2 above the reflectance ceiling" in result.output
    assert tile_files(out)["train"] == [
        "s2_spiked_r00000_c00112",
        "s2_spiked_r00112_c00000",
        "s2_spiked_r00112_c00112",
    ]
    skipped = json.loads((out / "prepare.json").read_text())["skipped"]
    assert skipped == {"implausible values: S2 above the reflectance ceiling": 1}


def test_overwrite_removes_only_what_prepare_wrote(tmp_path: Path, prepare_cli):
    out = tmp_path / "out"
    assert prepare_cli("--demo", "-o", out).exit_code == 0
    (out / "train" / "my_notes.txt").write_text("mine")
    (out / "val" / "mine").mkdir()
    (out / "val" / "mine" / "labels.csv").write_text("a,b")
    (out / "train" / "orphan.json").write_text("{}")
    result = prepare_cli("--demo", "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "train" / "my_notes.txt").read_text() == "mine"
    assert (out / "val" / "mine" / "labels.csv").read_text() == "a,b"
    assert (out / "train" / "orphan.json").exists()
    assert "kept" in result.output and "my_notes.txt" in result.output
    assert sum(len(v) for v in tile_files(out).values()) == 6


def _killed_staging(out: Path) -> None:
    code = (
        "import os, signal, sys; from pathlib import Path\n"
        "from axion.data.prepare.output import Staging\n"
        "from axion.atomic import write_json_atomic, atomic_path\n"
        "out = Path(sys.argv[1]); staging = Staging(out)\n"
        "(staging.root / 'tile.npz').write_bytes(b'staged')\n"
        "with atomic_path(out / 'prepare.json') as tmp:\n"
        "    tmp.write_text('{'); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, str(out)], env=env)
    assert done.returncode == -signal.SIGKILL


def test_leftovers_of_a_killed_prepare_are_removed(tmp_path: Path, prepare_cli):
    out = tmp_path / "out"
    _killed_staging(out)
    leftovers = sorted(p.name for p in out.iterdir())
    assert (
        len(leftovers) == 2
        and leftovers[0].startswith(".prepare.json.")
        and leftovers[1].startswith(".staging-")
    )
    result = prepare_cli("--demo", "-o", out)  # not "not empty": those were prepare's own
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["prepare.json", "test", "train", "val"]


def test_output_under_a_file_is_one_line_and_writes_nothing(tmp_path: Path, prepare_cli):
    (tmp_path / "a_file").write_text("x")
    before = snapshot(tmp_path)
    result = prepare_cli("--demo", "-o", tmp_path / "a_file" / "tiles")
    assert_one_line_error(result, "a_file/tiles", "cannot create the output directory", "is a file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("flag", ["--s1-product", "--s2-level", "--s2-cloudy-bands"])
def test_scene_flags_are_refused_with_the_demo(flag: str, tmp_path: Path, prepare_cli):
    value = {"--s1-product": "rtc", "--s2-level": "L1C", "--s2-cloudy-bands": "B2,B3,B4,B8"}[flag]
    assert_one_line_error(prepare_cli("--demo", flag, value, "-o", tmp_path / "o"), flag, "scenes only")
