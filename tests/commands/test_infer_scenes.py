"""``axion stage3 infer --scenes``: many scenes in one resumable job, through the real CLI.

The scenes are 64 px windows of real TerraMind example scenes (S1 RTC in dB and S2 L2A's
B2, B3, B4, B8 as opt_v2), written once per module; one 64 px tile each keeps a scene to
one model call. The untrained checkpoint returns opt_v2, so the outputs can be checked exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.commands.conftest import SCENE_NAMES as NAMES
from tests.commands.conftest import SCENE_SIZE, run_cli
from tests.conftest import killed_writer_leftover
from tests.scenes import read, write_raster

FLAGS = ["--tile-size", SCENE_SIZE, "--overlap", 0, "--quiet"]


@pytest.fixture
def scenes(scene_crops: Path) -> Path:
    return scene_crops


def _csv(path: Path, rows: list[tuple[str, ...]], header: str = "s1,opt_v2,output,datetime") -> Path:
    path.write_text("\n".join([header, *(",".join(row) for row in rows)]) + "\n")
    return path


def _infer(checkpoint: Path, scene_list: Path, *extra: object):
    return run_cli(["stage3", "infer", "--checkpoint", checkpoint, "--scenes", scene_list, *FLAGS, *extra])


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder``: (inode, modification time), to tell a rewrite from a skip."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def _summary(output: str) -> str:
    (line,) = [line for line in output.splitlines() if " done, " in line and " skipped " in line]
    return line


def _csv_list(scenes: Path, folder: Path) -> Path:
    """The scenes of :data:`NAMES` in a CSV with paths relative to it; outputs in ``out/``."""
    inputs = os.path.relpath(scenes, folder)
    rows = [
        (
            f"{inputs}/{n}_s1.tif",
            f"{inputs}/{n}_opt_v2.tif",
            f"out/{n}.tif",
            "2021-07-21T08:40:10Z" if i == 0 else "",
        )
        for i, n in enumerate(NAMES)
    ]
    return _csv(folder / "scenes.csv", rows)


def _run_all(checkpoint: Path, scene_list: Path) -> dict[str, tuple[int, int]]:
    first = _infer(checkpoint, scene_list)
    assert first.exit_code == 0, first.output
    assert "3 done, 0 skipped (complete), 0 failed, of 3" in _summary(first.output)
    return _state(scene_list.parent / "out")


def test_a_csv_list_is_written_then_a_rerun_skips_every_scene(
    untrained_checkpoint: Path, scenes: Path, tmp_path: Path
) -> None:
    scene_list = _csv_list(scenes, tmp_path)
    before = _run_all(untrained_checkpoint, scene_list)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}.{ext}" for n in NAMES for ext in ("json", "tif")
    )
    for name in NAMES:  # the untrained model returns opt_v2
        np.testing.assert_allclose(
            read(out / f"{name}.tif")[0], read(scenes / f"{name}_opt_v2.tif")[0], atol=0.5
        )
        item = json.loads((out / f"{name}.json").read_text())
        assert item["properties"]["axion:s1_scene"] == str((scenes / f"{name}_s1.tif").resolve())
    assert (
        json.loads((out / f"{NAMES[0]}.json").read_text())["properties"]["datetime"] == "2021-07-21T08:40:10Z"
    )

    again = _infer(untrained_checkpoint, scene_list)
    assert again.exit_code == 0, again.output
    assert "0 done, 3 skipped (complete), 0 failed" in _summary(again.output)
    assert "timesteps" not in again.output  # no model was built
    assert _state(out) == before  # nothing rewritten: same inodes, same times


def test_a_scene_of_a_killed_run_is_redone_and_the_finished_ones_kept(
    untrained_checkpoint: Path, scenes: Path, tmp_path: Path
) -> None:
    scene_list = _csv_list(scenes, tmp_path)
    before = _run_all(untrained_checkpoint, scene_list)
    out = tmp_path / "out"
    # A run killed while writing the second scene: its Item was removed at the start, a
    # temporary file of its COG is left behind, its old COG is still there.
    killed = NAMES[1]
    (out / f"{killed}.json").unlink()
    leftover = killed_writer_leftover(out / f"{killed}.tif")
    redo = _infer(untrained_checkpoint, scene_list)
    assert redo.exit_code == 0, redo.output
    assert "1 done, 2 skipped (complete), 0 failed" in _summary(redo.output)
    assert not leftover.exists() and (out / f"{killed}.json").is_file()
    after = _state(out)
    for name in (NAMES[0], NAMES[2]):
        for ext in ("tif", "json"):
            assert after[f"{name}.{ext}"] == before[f"{name}.{ext}"]
    assert after[f"{killed}.tif"] != before[f"{killed}.tif"]
    assert sorted(after) == sorted(before)  # no temporary file left


def test_complete_outputs_of_other_settings_need_overwrite(
    untrained_checkpoint: Path, scenes: Path, tmp_path: Path
) -> None:
    scene_list = _csv_list(scenes, tmp_path)
    before = _run_all(untrained_checkpoint, scene_list)
    other = _infer(untrained_checkpoint, scene_list, "--samples", "2")
    assert other.exit_code == 1
    assert other.output.count("use --overwrite") == 3 and "samples is 1, this run's is 2" in other.output
    assert "0 done, 0 skipped (complete), 3 failed" in _summary(other.output)
    assert _state(tmp_path / "out") == before
    replaced = _infer(untrained_checkpoint, scene_list, "--samples", "2", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert "3 done, 0 skipped" in _summary(replaced.output)
    assert len(list((tmp_path / "out").glob("*_std.tif"))) == 3


def test_a_stac_item_collection_writes_one_scene_per_item(
    untrained_checkpoint: Path, scenes: Path, tmp_path: Path
) -> None:
    import pystac

    items = []
    for name in NAMES[:2]:
        item = pystac.Item(
            id=f"scene-{name}",
            geometry=None,
            bbox=None,
            datetime=pystac.utils.str_to_datetime("2020-05-06T10:20:30Z"),
            properties={},
        )
        # One href relative to the list's folder, one absolute (file:// URL).
        item.add_asset("s1", pystac.Asset(href=os.path.relpath(scenes / f"{name}_s1.tif", tmp_path)))
        item.add_asset("opt_v2", pystac.Asset(href=(scenes / f"{name}_opt_v2.tif").as_uri()))
        items.append(item)
    scene_list = tmp_path / "items.json"
    scene_list.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))

    refused = _infer(untrained_checkpoint, scene_list)
    assert refused.exit_code == 2 and "needs --output-dir" in refused.output
    assert len(refused.output.strip().splitlines()) == 1

    out = tmp_path / "outputs"
    result = _infer(untrained_checkpoint, scene_list, "--output-dir", out)
    assert result.exit_code == 0, result.output
    assert "2 done, 0 skipped (complete), 0 failed, of 2" in _summary(result.output)
    for name in NAMES[:2]:
        item = json.loads((out / f"scene-{name}.json").read_text())
        assert item["properties"]["datetime"] == "2020-05-06T10:20:30Z"
        assert item["assets"]["opt_v3"]["href"] == f"./scene-{name}.tif"
        assert item["properties"]["axion:opt_v2_scene"] == str((scenes / f"{name}_opt_v2.tif").resolve())
    before = _state(out)
    again = _infer(untrained_checkpoint, scene_list, "--output-dir", out)
    assert "0 done, 2 skipped" in _summary(again.output) and _state(out) == before


def test_bad_scenes_are_named_and_the_others_finish(
    untrained_checkpoint: Path, scenes: Path, tmp_path: Path
) -> None:
    good = NAMES[0]
    # S1 on another grid than opt_v2 and without a CRS: it cannot be reprojected.
    s1, profile = read(scenes / f"{NAMES[2]}_s1.tif")
    shifted = profile["transform"] @ profile["transform"].translation(8, 8)
    no_crs = write_raster(tmp_path / "no_crs_s1.tif", s1, None, shifted)
    rows = [
        (str(tmp_path / "missing_s1.tif"), str(scenes / f"{good}_opt_v2.tif"), "out/missing.tif"),
        (
            str(scenes / f"{good}_s1.tif"),
            str(scenes / f"{good}_s1.tif"),
            "out/bands.tif",
        ),  # 2 bands as opt_v2
        (str(no_crs), str(scenes / f"{NAMES[2]}_opt_v2.tif"), "out/no_crs.tif"),
        (str(scenes / f"{good}_s1.tif"), str(scenes / f"{good}_opt_v2.tif"), "out/good.tif"),
    ]
    result = _infer(untrained_checkpoint, _csv(tmp_path / "scenes.csv", rows, "s1,opt_v2,output"))
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("failed ")]
    assert len(failed) == 3, result.output
    assert failed[0].startswith("failed row 2:") and "missing_s1.tif: S1 scene not found" in failed[0]
    assert failed[1].startswith("failed row 3:") and "opt_v2 scene has 2 band(s), expected 4" in failed[1]
    assert failed[2].startswith("failed row 4:") and "no CRS" in failed[2]
    assert "1 done, 0 skipped (complete), 3 failed, of 4" in _summary(result.output)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.json", "good.tif"]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "s1,opt_v2\na.tif,b.tif\n",
            "header must be s1,opt_v2,output[,opt_v2_mask][,datetime] (column 'output' missing",
        ),
        ("s1,opt_v2,output,when\na,b,c.tif,x\n", "unknown column 'when'"),
        ("s1,opt_v2,output\na.tif,,c.tif\n", "row 2: empty 'opt_v2'"),
        ("s1,opt_v2,output\na.tif,b.tif,c.tif\nd.tif,e.tif,c.tif\n", "row 3 and row 2 both write"),
        ("s1,opt_v2,output\na.tif,b.tif,a.tif\n", "is an input scene of the list"),
        ("s1,opt_v2,output\na.tif,b.tif,c.png\n", "must be a .tif or .tiff file"),
        ("s1,opt_v2,output,datetime\na.tif,b.tif,c.tif,yesterday\n", "datetime 'yesterday' is not ISO 8601"),
        ("s1,opt_v2,output\n", "holds no scenes"),
    ],
)
def test_a_bad_list_is_one_line_and_runs_nothing(
    untrained_checkpoint: Path, tmp_path: Path, content: str, message: str
) -> None:
    scene_list = tmp_path / "scenes.csv"
    scene_list.write_text(content)
    result = _infer(untrained_checkpoint, scene_list)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and str(scene_list) in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes.csv"]


def test_scenes_refuses_flags_of_one_scene_and_a_list_of_another_kind(
    untrained_checkpoint: Path, tmp_path: Path
) -> None:
    scene_list = _csv(tmp_path / "scenes.csv", [("a.tif", "b.tif", "c.tif")], "s1,opt_v2,output")
    mixed = _infer(untrained_checkpoint, scene_list, "--s1-scene", "a.tif")
    assert mixed.exit_code == 2 and "leave out --s1-scene" in mixed.output
    dated = _infer(untrained_checkpoint, scene_list, "--datetime", "2020-01-01T00:00:00Z")
    assert dated.exit_code == 2 and "datetime column" in dated.output
    with_dir = _infer(untrained_checkpoint, scene_list, "--output-dir", tmp_path / "o")
    assert with_dir.exit_code == 2 and "leave out --output-dir" in with_dir.output
    (tmp_path / "list.txt").write_text("x")
    other = _infer(untrained_checkpoint, tmp_path / "list.txt")
    assert other.exit_code == 2 and "must be a .csv file or a STAC ItemCollection" in other.output
    (tmp_path / "bad.json").write_text('{"type": "Feature"}')
    not_stac = _infer(untrained_checkpoint, tmp_path / "bad.json", "--output-dir", tmp_path / "o")
    assert not_stac.exit_code == 2 and "not a STAC ItemCollection" in not_stac.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_job_killed_by_sigkill_is_finished_by_the_same_command(
    untrained_checkpoint: Path, scenes: Path, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    scene_list = _csv_list(scenes, tmp_path)
    command = [sys.executable, "-m", "axion", "stage3", "infer", "--checkpoint", untrained_checkpoint]
    command += ["--scenes", scene_list, *FLAGS]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(list(map(str, command)), env=env, stdout=subprocess.PIPE, text=True)
    assert job.stdout is not None
    for line in job.stdout:
        if line.startswith("done row 2:"):
            job.send_signal(signal.SIGKILL)  # while the next scene is on its way
            break
    job.wait(timeout=120)
    assert job.returncode == -signal.SIGKILL
    out = tmp_path / "out"
    first = _state(out)[f"{NAMES[0]}.tif"]
    again = _infer(untrained_checkpoint, scene_list)
    assert again.exit_code == 0, again.output
    summary = _summary(again.output)
    done, skipped = (int(summary.split(word)[0].split()[-1]) for word in (" done", " skipped"))
    assert skipped >= 1 and done + skipped == 3 and "0 failed" in summary
    after = _state(out)
    assert after[f"{NAMES[0]}.tif"] == first  # the finished scene was not written again
    assert sorted(after) == sorted(f"{n}.{ext}" for n in NAMES for ext in ("json", "tif"))  # no leftovers
