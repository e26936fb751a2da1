"""Bad tiles, bad flags and bad files: one-line errors, exit code 2, nothing of the user's touched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from axion.data.check import check_tiles, validate_data_dir
from axion.errors import DataError

from .conftest import snapshot, write_tile


def assert_one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write_tile(root / "train", "good", "train")
    truncated = write_tile(root / "train", "truncated", "train")
    truncated.write_bytes(truncated.read_bytes()[:-200])
    missing = write_tile(root / "train", "missing_key", "train")
    with np.load(missing) as f:
        np.savez(missing, **{k: f[k] for k in f.files if k != "s2_b3"})
    write_tile(root / "val", "nan", "val", arrays={"s1_vh": np.full((20, 24), np.nan, np.float32)})
    write_tile(root / "val", "shapes", "val", arrays={"s2_b8": np.zeros((10, 24), np.uint16)})
    write_tile(root / "test", "bad_json", "test").with_suffix(".json").write_text('{"split": "test",')
    write_tile(root / "test", "bad_split", "holdout")
    write_tile(
        root / "test", "bad_crs", "test", meta={"crs": "EPSG:999999", "transform": [10, 0, 0, 0, -10, 0]}
    )
    write_tile(root / "test", "bad_units", "test", meta={"units": {"s1": "amplitude"}})
    write_tile(root / "test", "no_json", "test").with_suffix(".json").unlink()
    return root


EXPECTED = {
    "truncated": "unreadable NPZ",
    "missing_key": "missing key 's2_b3'",
    "nan": "'s1_vh' has 480 NaN/inf",
    "shapes": "shape mismatch",
    "bad_json": "invalid JSON",
    "bad_split": "unknown split 'holdout'",
    "bad_crs": "unknown or unparseable 'crs'",
    "bad_units": "unknown S1 units 'amplitude'",
    "no_json": "sidecar JSON is missing",
}


def test_check_reports_every_bad_tile(corpus: Path, prepare_cli):
    problems = check_tiles(corpus)
    by_file = {p.path.stem: p.reason for p in problems}
    assert set(by_file) == set(EXPECTED)
    for stem, reason in EXPECTED.items():
        assert reason in by_file[stem]
    result = prepare_cli("--check", corpus)
    assert result.exit_code == 2 and "Traceback" not in result.output
    for stem, reason in EXPECTED.items():
        assert any(f"{stem}.npz: " in line and reason in line for line in result.output.splitlines()), stem
    assert "10 tiles checked" in result.output and "9 bad" in result.output


def test_validate_names_first_bad_file_and_count(corpus: Path):
    with pytest.raises(DataError) as err:
        validate_data_dir(corpus)
    message = str(err.value)
    assert "\n" not in message and ".npz: " in message and "9 bad files" in message


def test_check_passes_a_good_directory(tmp_path: Path, prepare_cli):
    write_tile(tmp_path / "t", "one", "train")
    validate_data_dir(tmp_path / "t")
    result = prepare_cli("--check", tmp_path / "t")
    assert result.exit_code == 0 and "all good" in result.output


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--check", "/nonexistent/tiles"], ["/nonexistent/tiles", "not found"]),
        (["--demo", "-o", "{out}", "--split-ratios", "0.5,0.5,0.5"], ["--split-ratios", "sum to 1"]),
        (["--demo", "-o", "{out}", "--split-ratios", "0.8,0.2"], ["--split-ratios", "3 numbers"]),
        (["--demo", "-o", "{out}", "--max-nodata", "1.5"], ["--max-nodata"]),
        (["--demo", "-o", "{out}", "--stride", "32"], ["--stride needs --tile-size"]),
        (["--demo", "-o", "{out}", "--tile-size", "128"], ["120x120 px, smaller than --tile-size 128"]),
        (["--s1", "{s1}", "--s2", "{s2}", "-o", "{out}", "--tile-size", "0"], ["--tile-size", "= 0"]),
        (["--s1", "{s1}", "--s2", "{s2}", "-o", "{out}", "--s1-units", "amplitude"], ["--s1-units"]),
        (["--s1", "{s1}", "--s2", "{s2}", "-o", "{out}", "--s2-bands", "B2,B3,B4"], ["13 bands", "names 3"]),
        (["--s1", "{s1}", "--s2", "{s2}", "-o", "{out}", "--s2-bands", "B2,X9"], ["--s2-bands", "X9"]),
        (
            ["--s1", "{s1}", "--s2", "{s2}", "-o", "{out}", "--tile-size", "1024"],
            ["smaller than --tile-size"],
        ),
        (["--s1", "{s1}", "--s2", "{missing}", "-o", "{out}"], ["missing.tif", "not found"]),
        (["--s1", "{notatif}", "--s2", "{s2}", "-o", "{out}"], ["notatif.tif", "not a readable GeoTIFF"]),
        (["--s1", "{s1}", "--s2", "{s2}", "--s1", "{s1}", "-o", "{out}"], ["one --s1 per --s2"]),
        (["-o", "{out}"], ["pick one source"]),
        (["--bigearthnet-s1", "{tmp}", "--bigearthnet-s2", "{tmp}", "-o", "{out}"], ["no BigEarthNet S1"]),
    ],
)
def test_bad_flags_and_files(args, needles, sen1floods11: Path, tmp_path: Path, prepare_cli):
    (tmp_path / "notatif.tif").write_text("not a tiff")
    values = {
        "s1": sen1floods11 / "S1" / "Spain_7370579_S1Hand.tif",
        "s2": sen1floods11 / "S2" / "Spain_7370579_S2Hand.tif",
        "out": tmp_path / "out",
        "missing": tmp_path / "missing.tif",
        "notatif": tmp_path / "notatif.tif",
        "tmp": tmp_path,
    }
    result = prepare_cli(*(arg.format(**values) for arg in args))
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "out").exists()


def test_non_empty_output_is_left_byte_identical(tmp_path: Path, prepare_cli):
    out = tmp_path / "out"
    write_tile(out / "train", "mine", "train")
    (out / "notes.txt").write_text("keep me")
    before = snapshot(out)
    assert_one_line_error(prepare_cli("--demo", "-o", out), str(out), "--overwrite")
    assert snapshot(out) == before
    result = prepare_cli("--demo", "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (out / "train" / "mine.npz").exists() and (out / "notes.txt").read_text() == "keep me"
    assert len(list(out.rglob("*.npz"))) == 6


def test_failure_midway_leaves_outputs_untouched(tmp_path: Path, sen1floods11: Path, prepare_cli):
    out = tmp_path / "out"
    assert prepare_cli("--demo", "-o", out).exit_code == 0
    before = snapshot(out)
    s1 = sen1floods11 / "S1" / "Spain_7370579_S1Hand.tif"
    s2 = sen1floods11 / "S2" / "Spain_7370579_S2Hand.tif"
    # The same scene twice: the clash is found while staging, after some tiles were staged.
    result = prepare_cli("--s1", s1, "--s2", s2, "--s1", s1, "--s2", s2, "-o", out, "--overwrite")
    assert_one_line_error(result, "two tiles named")
    assert snapshot(out) == before
    # dB values read as linear power are mostly <= 0: all four 256 px tiles are invalid.
    result = prepare_cli("--s1", s1, "--s2", s2, "--s1-units", "linear", "-o", out, "--overwrite")
    assert_one_line_error(result, "no tile to write", "4 too many invalid pixels")
    assert snapshot(out) == before


def test_bigearthnet_patch_without_partner_json(tmp_path: Path, prepare_cli):
    s1_root = tmp_path / "s1" / "patch_a"
    s1_root.mkdir(parents=True)
    (s1_root / "patch_a_VV.tif").write_bytes(b"")
    (s1_root / "patch_a_labels_metadata.json").write_text(json.dumps({"labels": []}))
    (tmp_path / "s2").mkdir()
    result = prepare_cli(
        "--bigearthnet-s1", tmp_path / "s1", "--bigearthnet-s2", tmp_path / "s2", "-o", tmp_path / "o"
    )
    assert_one_line_error(result, "patch_a", "corresponding_s2_patch")
