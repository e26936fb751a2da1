"""train and evaluate on the project's shards: same samples, same figures, bad shards skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from axion.cli import app
from axion.records.badlog import BAD_FILE
from tests.engine.conftest import FAST

runner = CliRunner()


@pytest.fixture(scope="module")
def shards_64(tiles_64: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engine's real 64 px tiles as shards of 2 samples."""
    out = tmp_path_factory.mktemp("shards") / "shards"
    args = ["stage3", "prepare", "--from-tiles", str(tiles_64), "--format", "shards", "--shard-size", "2"]
    result = runner.invoke(app, [*args, "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def shard_run(shards_64: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One epoch on shards whose second training shard is cut short: (run, cut shard, output)."""
    data = tmp_path_factory.mktemp("cut") / "shards"
    shutil.copytree(shards_64, data)
    cut = data / "train" / "train-000001.tar"
    cut.write_bytes(cut.read_bytes()[:3000])
    out = tmp_path_factory.mktemp("run") / "run"
    args = ["stage3", "train", "--data-dir", str(data), "--output-dir", str(out), *FAST]
    result = runner.invoke(
        app, [*args, "--epochs", "1", "--max-samples", "6", "--grad-accum", "1", "--max-bad-fraction", "0.5"]
    )
    assert result.exit_code == 0, result.output
    return out, cut, result.output


def test_training_streams_shards_and_skips_a_truncated_one(shard_run: tuple[Path, Path, str]) -> None:
    out, cut, output = shard_run
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["train_samples"] == 4  # 6 listed, the cut shard's 2 lost
    records = [json.loads(line) for line in (out / BAD_FILE).read_text().splitlines()]
    assert row["train_bad_unreadable"] == row["train_bad_samples"] == len(records) >= 1
    assert all(r["source"].startswith(str(cut)) for r in records)  # the cut shard, and only it
    reason = records[-1]["reason"]  # how the shard ends depends on where the cut falls
    assert "of the 2 samples its index lists" in reason or "shard unreadable after" in reason
    assert "Train samples: 4" in output and "Bad train samples:" in output
    assert not list(out.rglob("*.npz")) and not list(out.rglob("*.tar"))  # nothing from a shard is written


def test_evaluate_on_shards_gives_the_figures_of_their_tile_folder(
    shard_run: tuple[Path, Path, str], tiles_64: Path, shards_64: Path, tmp_path: Path
) -> None:
    run, _, _ = shard_run
    summaries, tables = [], []
    for source in (tiles_64, shards_64):
        out = tmp_path / source.name
        args = [
            "stage3", "evaluate", "--checkpoint", str(run / "checkpoint_epoch_1.pt"), "--data-dir", str(source),
            "--split", "val", "--lpips-weight", "0", "--output-dir", str(out), "--quiet", "--num-workers", "0",
        ]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        summaries.append(json.loads((out / "summary.json").read_text()))
        tables.append((out / "per_tile.csv").read_text())
    assert summaries[0]["tiles"] == summaries[1]["tiles"] > 0
    assert summaries[0]["metrics"] == summaries[1]["metrics"]
    assert tables[0] == tables[1]
    assert summaries[1]["data_dir"] == str(shards_64)


@pytest.mark.slow
def test_two_processes_train_on_shards_each_sample_once(shards_64: Path, tmp_path: Path) -> None:
    """--devices 2 on shards of 2: each rank reads its own two shards; the epoch counts all 8 samples."""
    from tests.engine.test_train_cli import _spawn

    out = tmp_path / "ddp-shards"
    proc = _spawn(
        shards_64, out, "--generator", "none", "--epochs", "1", "--max-samples", "8", "--batch-size", "1",
        "--grad-accum", "1", "--devices", "2",
    )  # fmt: skip
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["train_samples"] == 8 and row["train_bad_samples"] == 0 and row["step"] == 4


@pytest.mark.slow
def test_resume_inside_an_epoch_on_shards_reads_the_rest_of_it(shards_64: Path, tmp_path: Path) -> None:
    """Stopped after 3 of 8 samples (--max-steps), the resumed epoch trains on the other 5 only."""
    out = tmp_path / "run"
    args = ["stage3", "train", "--data-dir", str(shards_64), "--output-dir", str(out), *FAST]
    first = [
        "--epochs",
        "1",
        "--max-samples",
        "8",
        "--batch-size",
        "1",
        "--grad-accum",
        "1",
        "--max-steps",
        "3",
    ]
    result = runner.invoke(app, [*args, *first])
    assert result.exit_code == 0, result.output
    resume = [
        "stage3",
        "train",
        "--resume",
        str(out / "checkpoint_step_3.pt"),
        "--max-steps",
        "100",
        "--quiet",
    ]
    result = runner.invoke(app, resume)
    assert result.exit_code == 0, result.output
    assert "Resumed from" in result.output and "Epoch 1: 5/5" in result.output  # 5 batches left, not 8
    row = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert row["epoch"] == 1 and row["step"] == 8 and row["train_samples"] == 8


@pytest.mark.slow
def test_two_processes_stay_in_step_when_one_meets_only_bad_samples(shards_64: Path, tmp_path: Path) -> None:
    """A rank whose batch is all bad takes a step of weight 0, so the other rank's gradients are exchanged."""
    import io
    import tarfile

    import numpy as np

    from tests.engine.test_train_cli import _spawn

    data = tmp_path / "shards"
    shutil.copytree(shards_64, data)
    second = data / "train" / "train-000000.tar"  # rank 0's first shard
    with tarfile.open(second) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    name = sorted(n for n in members if n.endswith(".npz"))[1]
    with np.load(io.BytesIO(members[name])) as tile:
        arrays = {k: tile[k] for k in tile.files}
    arrays["s2_b8"] = np.ones_like(arrays["s2_b8"])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    members[name] = buffer.getvalue()
    with tarfile.open(second, "w") as tar:
        for member, payload in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    out = tmp_path / "ddp-bad"
    proc = _spawn(
        data, out, "--generator", "none", "--epochs", "1", "--max-samples", "8", "--batch-size", "1",
        "--grad-accum", "1", "--devices", "2", "--max-bad-fraction", "0.2",
    )  # fmt: skip
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["train_samples"] == 7 and row["train_bad_samples"] == 1 and row["step"] == 4
    (record,) = [json.loads(line) for line in (out / BAD_FILE).read_text().splitlines()]
    assert record["sample"] == Path(name).stem and "S2 B8 is constant" in record["reason"]
