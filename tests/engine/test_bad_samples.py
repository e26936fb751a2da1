"""Bad samples are skipped, counted and listed; a run stops only past --max-bad-fraction.

The real case: the BigEarthNet demo cut into 64 px windows (54 tiles), one of whose training
tiles has a constant B8 (every value 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from axion.cli import app
from axion.data.badsamples import IMPLAUSIBLE, UNREADABLE, BadSample
from axion.errors import TrainingError
from axion.records.badlog import BAD_FILE, BadSampleLog, check_bad_fraction
from tests.engine.conftest import FAST

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_54(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The 54-tile BigEarthNet set, its first training tile's B8 made constant: (tiles, bad tile)."""
    out = tmp_path_factory.mktemp("bad") / "tiles"
    args = ["stage3", "prepare", "--demo", "--tile-size", "64", "--stride", "28", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(list(out.rglob("*.npz"))) == 54
    bad = sorted((out / "train").glob("*.npz"))[0]
    with np.load(bad) as tile:
        arrays = {key: tile[key] for key in tile.files}
    arrays["s2_b8"] = np.ones_like(arrays["s2_b8"])
    np.savez(bad, **arrays)
    return out, bad


def _train(tiles: Path, out: Path, *extra: str):  # noqa: ANN202 (click's Result)
    args = ["stage3", "train", "--data-dir", str(tiles), "--output-dir", str(out), *FAST, *extra]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def skipping_run(demo_54: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two epochs on the first 4 tiles of each split (one bad): the run folder and the output."""
    tiles, _ = demo_54
    out = tmp_path_factory.mktemp("run") / "run"
    flags = ("--epochs", "2", "--max-samples", "4", "--grad-accum", "1", "--max-bad-fraction", "0.3")
    result = _train(tiles, out, *flags, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_training_skips_counts_and_names_the_bad_tile(
    demo_54: tuple[Path, Path], skipping_run: tuple[Path, str]
) -> None:
    _, bad = demo_54
    out, output = skipping_run
    lines = (out / BAD_FILE).read_text().splitlines()
    assert len(lines) == 1, lines  # listed once, though met in both epochs
    record = json.loads(lines[0])
    assert record["source"] == str(bad) and record["sample"] == bad.stem
    assert record["kind"] == IMPLAUSIBLE and "S2 B8 is constant" in record["reason"]
    assert record["split"] == "train" and record["epoch"] == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        assert row["train_samples"] == 3 and row["train_bad_samples"] == 1
        assert row["train_bad_implausible"] == 1 and row["train_bad_unreadable"] == 0
        assert row["val_bad_samples"] == 0
    assert "Bad train samples: 1 (implausible 1)" in output and "Train samples: 3" in output
    assert f"{bad}: S2 B8 is constant" in output and "skipped (bad sample)" in output


def test_bad_sample_counts_reach_tensorboard(skipping_run: tuple[Path, str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = skipping_run
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [s.value for s in events.Scalars("train/bad_samples")] == [1, 1]
    assert [s.value for s in events.Scalars("train/samples")] == [3, 3]


def test_evaluate_skips_and_lists_the_bad_tile(
    demo_54: tuple[Path, Path], skipping_run: tuple[Path, str], tmp_path: Path
) -> None:
    tiles, bad = demo_54
    run, _ = skipping_run
    out = tmp_path / "results"
    args = [
        "stage3", "evaluate", "--checkpoint", str(run / "checkpoint_epoch_2.pt"), "--data-dir", str(tiles),
        "--split", "train", "--max-samples", "4", "--max-bad-fraction", "0.3", "--lpips-weight", "0",
        "--output-dir", str(out), "--quiet",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tiles"] == 3
    assert [b["sample"] for b in summary["bad_samples"]] == [bad.stem]
    assert "1 bad tile skipped, not scored" in result.output


def test_too_many_bad_tiles_refuse_the_run_in_one_line(demo_54: tuple[Path, Path], tmp_path: Path) -> None:
    tiles, bad = demo_54
    out = tmp_path / "run"
    result = _train(tiles, out, "--max-samples", "6")  # 1 of 6 is above the default 0.05
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert str(bad) in lines[0] and "S2 B8 is constant" in lines[0]
    assert "1 of 6 train tiles are bad, more than --max-bad-fraction 0.05" in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_the_54_tile_set_trains_on_its_good_tiles(demo_54: tuple[Path, Path], tmp_path: Path) -> None:
    tiles, bad = demo_54
    out = tmp_path / "run"
    result = _train(tiles, out, "--epochs", "1", "--batch-size", "4", "--grad-accum", "1")
    assert result.exit_code == 0, result.output
    train_tiles = len(list((tiles / "train").glob("*.npz")))
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["train_samples"] == train_tiles - 1 and row["train_bad_samples"] == 1
    assert json.loads((out / BAD_FILE).read_text())["sample"] == bad.stem


def test_a_tile_broken_after_the_check_is_skipped_when_met(
    demo_54: tuple[Path, Path], tmp_path: Path
) -> None:
    """What the up-front check cannot see (a file that breaks later) is met, skipped and listed."""
    from axion.data.dataset import TileDataset, collate_tiles

    tiles, bad = demo_54
    dataset = TileDataset(tiles, "train", max_samples=3, skip_bad=True)
    broken = dataset.tiles[1].path
    saved = broken.read_bytes()
    try:
        broken.write_bytes(saved[: len(saved) // 2])  # truncated
        samples = [dataset[i] for i in range(3)]
    finally:
        broken.write_bytes(saved)
    assert isinstance(samples[0], BadSample) and samples[0].kind == IMPLAUSIBLE
    assert isinstance(samples[1], BadSample) and samples[1].kind == UNREADABLE
    assert samples[1].source == str(broken) and "unreadable NPZ" in samples[1].reason
    batch = collate_tiles(samples)
    assert batch["name"] == [dataset.tiles[2].name] and batch["s1"].shape[0] == 1
    assert [b.sample for b in batch["bad"]] == [bad.stem, broken.stem]
    assert collate_tiles(samples[:2]) == {"name": [], "bad": samples[:2]}
    log = BadSampleLog(tmp_path, "train")
    log.start()
    log.add(batch["bad"], epoch=3)
    log.add(batch["bad"], epoch=4)
    assert log.stats() == {"bad_samples": 4, "bad_unreadable": 2, "bad_non_finite": 0, "bad_implausible": 2}
    assert len((tmp_path / BAD_FILE).read_text().splitlines()) == 2
    again = BadSampleLog(tmp_path, "train")  # a resumed run lists nothing twice
    again.add(batch["bad"], epoch=5)
    assert len((tmp_path / BAD_FILE).read_text().splitlines()) == 2


def test_the_share_of_bad_samples_stops_training_in_one_line() -> None:
    first = BadSample("/data/s.tar", "x_001", IMPLAUSIBLE, "S2 B8 is constant: no signal")
    check_bad_fraction(5, 100, 0.05, where="epoch 1", first=first, path=None)  # at the limit: go on
    with pytest.raises(TrainingError) as caught:
        check_bad_fraction(6, 100, 0.05, where="epoch 2", first=first, path=Path("run/bad_samples.jsonl"))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        "6 of 100 training samples in epoch 2 are bad (6.0 %), more than --max-bad-fraction 0.05"
    )
    assert "/data/s.tar: S2 B8 is constant" in message and "run/bad_samples.jsonl" in message


def test_max_bad_fraction_is_a_share(tmp_path: Path) -> None:
    result = _train(tmp_path / "tiles", tmp_path / "run", "--max-bad-fraction", "1.5")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "max_bad_fraction" in lines[0].replace("-", "_")
    assert "less than or equal to 1" in lines[0]
