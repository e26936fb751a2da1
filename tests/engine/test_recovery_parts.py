"""Crash-safety pieces in isolation: early stopping on NaN, finite checkpoints, best-model repair,
interrupted checkpoints, run directories, strict metrics.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from axion.errors import DataError, TrainingError
from axion.records.history import MetricsHistory, read_history
from axion.records.monitor import EarlyStopping, all_finite
from axion.training.checkpoint import (
    BEST_FILE,
    INTERRUPTED_FILE,
    Checkpoint,
    CheckpointSaver,
    checksum,
)
from axion.training.recovery import check_run_dir, restore_best


def test_non_finite_never_improves_whatever_is_monitored() -> None:
    stopper = EarlyStopping(patience=3, delta=0.0)
    assert stopper.update(math.nan, 1) is False  # not even the first validation
    assert stopper.best_epoch == 0 and stopper.wait == 1
    assert stopper.update(0.6, 2) is True
    assert stopper.update(math.inf, 3) is False
    # A finite monitored value from a validation whose loss was NaN (1e30 inputs) does not count.
    stats = {"loss": math.nan, "sar_agreement": 0.9}
    assert not all_finite(stats)
    assert stopper.update(stats["sar_agreement"], 4, finite=all_finite(stats)) is False
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (0.6, 2, 2)
    assert stopper.update(-math.inf, 5) is False and stopper.should_stop


def _ckpt(
    epoch: int, best: float, best_epoch: int, *, weight: float | None = None, partial: int = 0
) -> Checkpoint:
    return Checkpoint(
        epoch=epoch,
        model_state_dict={"head.w": torch.full((3,), float(epoch) if weight is None else weight)},
        optimizer_state_dict={"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []},
        train_stats={"loss": 0.1, "partial_batches": partial},
        val_stats={
            "sar_agreement": best,
            "early_stopping": {"best": best, "best_epoch": best_epoch, "wait": 0},
        },
        best_sar_agreement=best,
        config={"model": {}},
    )


def test_non_finite_weights_are_never_written(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_epoch_1.pt"
    with pytest.raises(TrainingError, match="not saved: 3 trainable or optimizer value"):
        _ckpt(1, 0.5, 1, weight=math.nan).write(path)
    assert not list(tmp_path.iterdir())
    poisoned = _ckpt(1, 0.5, 1)
    poisoned.optimizer_state_dict["state"][0]["exp_avg"][1] = math.inf
    with pytest.raises(TrainingError, match="optimizer_state_dict.state.0.exp_avg"):
        poisoned.write(path)
    assert not list(tmp_path.iterdir())


def test_non_finite_weights_with_a_valid_checksum_are_refused(tmp_path: Path) -> None:
    state = _ckpt(1, 0.5, 1, weight=math.nan).to_dict()
    assert state["axion"]["sha256"] == checksum(state)  # intact, but holds NaN
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(DataError, match="nan.pt: checkpoint holds 3 non-finite value"):
        Checkpoint.read(tmp_path / "nan.pt")


def test_interrupted_checkpoint_is_removed_once_superseded(tmp_path: Path) -> None:
    saver = CheckpointSaver(tmp_path)
    saver.save_epoch(_ckpt(1, 0.5, 1))
    saver.save_interrupted(_ckpt(1, 0.5, 1, partial=2))  # stopped inside epoch 2
    saver.save_epoch(_ckpt(1, 0.5, 1))  # an older epoch checkpoint does not supersede it
    assert (tmp_path / INTERRUPTED_FILE).exists()
    saver.save_epoch(_ckpt(2, 0.6, 2))
    assert not (tmp_path / INTERRUPTED_FILE).exists()


def test_restore_best_from_the_checkpoints_records(tmp_path: Path) -> None:
    saver = CheckpointSaver(tmp_path)
    first, second, third = _ckpt(1, 0.5, 1), _ckpt(2, 0.6, 2), _ckpt(3, 0.6, 2)
    for ckpt in (first, second, third):
        saver.save_epoch(ckpt)
    saver.save_best(first)  # killed between checkpoint_epoch_2.pt and best_model.pt: best is stale
    resume = Checkpoint.read(tmp_path / "checkpoint_epoch_3.pt")
    message = restore_best(tmp_path, resume)
    assert message and "checkpoint_epoch_2.pt" in message
    assert (tmp_path / BEST_FILE).read_bytes() == (tmp_path / "checkpoint_epoch_2.pt").read_bytes()
    assert restore_best(tmp_path, resume) is None  # already right: nothing to do
    (tmp_path / BEST_FILE).unlink()  # killed before best_model.pt was ever written
    assert restore_best(tmp_path, resume) is not None
    assert Checkpoint.read(tmp_path / BEST_FILE).epoch == 2
    (tmp_path / BEST_FILE).write_bytes(b"damaged")  # a damaged best model is replaced too
    restore_best(tmp_path, resume)
    assert Checkpoint.read(tmp_path / BEST_FILE).epoch == 2
    (tmp_path / BEST_FILE).unlink()
    (tmp_path / "checkpoint_epoch_2.pt").unlink()  # rotated away (--keep-last): said, not invented
    message = restore_best(tmp_path, resume)
    assert message and "no checkpoint of epoch 2" in message and not (tmp_path / BEST_FILE).exists()


def test_run_dir_with_config_and_no_checkpoint_restarts(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert check_run_dir(tmp_path, resuming=False).restart
    _ckpt(1, 0.5, 1).write(tmp_path / "checkpoint_epoch_1.pt")
    with pytest.raises(DataError, match="--resume .*checkpoint_epoch_1.pt"):
        check_run_dir(tmp_path, resuming=False)
    assert not check_run_dir(tmp_path / "new", resuming=False).restart


def _strict_json(line: str):  # noqa: ANN202
    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_metrics_jsonl_is_strict_and_survives_a_torn_line(tmp_path: Path) -> None:
    history = MetricsHistory(tmp_path, tensorboard=False)
    history.append({"epoch": 1, "train_loss": math.nan, "val_sar_agreement": 0.5})
    history.append({"epoch": 2, "train_loss": 0.2, "val_sar_agreement": math.inf})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    rows = [_strict_json(line) for line in lines]
    assert rows[0]["train_loss"] is None and rows[1]["val_sar_agreement"] is None
    assert math.isnan(read_history(tmp_path / "metrics.jsonl")[0]["train_loss"])
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 3, "train_lo')  # killed while appending
    with pytest.raises(DataError, match="metrics.jsonl: line 3 is not a metrics row"):
        read_history(tmp_path / "metrics.jsonl")
    MetricsHistory(tmp_path, resume_epoch=2, tensorboard=False)  # resuming drops the torn line
    assert [row["epoch"] for row in read_history(tmp_path / "metrics.jsonl")] == [1, 2]


def test_stale_temporary_of_a_killed_writer_is_real(tmp_path: Path) -> None:
    """A process killed inside an atomic write leaves exactly the kind of file the next start removes."""
    from axion.outputs import clean_stale
    from tests.conftest import killed_writer_leftover

    leftover = killed_writer_leftover(tmp_path / "checkpoint_epoch_1.pt")
    assert leftover.name.startswith(".checkpoint_epoch_1.pt.") and leftover.name.endswith(".tmp")
    assert clean_stale(tmp_path) == [leftover] and not leftover.exists()
