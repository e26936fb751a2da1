"""Step-based control of ``axion stage3 train`` through the real CLI: --max-steps,
--val-every-steps, --checkpoint-every-steps, --keep-best, and the TensorBoard image panels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from axion.cli import app
from axion.records.history import MetricsHistory, read_history
from axion.training.checkpoint import Checkpoint, CheckpointSaver, latest_checkpoint, rotating_checkpoints
from axion.viz.panels import GAP, Stretch, validation_panel

from .conftest import FAST

runner = CliRunner()

#: 3 train tiles, no accumulation: 3 optimizer steps per epoch; 4 steps end the run inside epoch 2.
STEPS = [
    "--max-samples", "3", "--grad-accum", "1", "--epochs", "2", "--max-steps", "4",
    "--val-every-steps", "3", "--checkpoint-every-steps", "2", "--head-lr", "3e-3",
]  # fmt: skip


def train(tiles: Path, out: Path, *extra: str) -> str:
    args = ["stage3", "train", "--data-dir", str(tiles), "--output-dir", str(out), *FAST, *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def stepped(tiles_64: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("steps") / "a"
    return out, train(tiles_64, out, *STEPS)


def test_max_steps_stops_inside_an_epoch_and_ends_the_schedule(stepped: tuple[Path, str]) -> None:
    out, output = stepped
    last = Checkpoint.read(out / "checkpoint_step_4.pt")
    assert last.train_stats["optimizer_steps"] == 4
    assert (last.epoch, last.train_stats["partial_batches"]) == (1, 1)  # 1 batch into epoch 2
    assert not (out / "checkpoint_epoch_2.pt").exists()
    # The schedule spans min(2 epochs x 3 steps, 4) steps and has decayed to 0 at the last one.
    assert last.scheduler_state_dict["lr_lambdas"][0]["total_steps"] == 4
    assert last.scheduler_state_dict["last_epoch"] == 4
    assert all(group["lr"] == 0.0 for group in last.optimizer_state_dict["param_groups"])
    assert "Reached --max-steps 4 in epoch 2: stopping" in output
    assert "Done: 1 epoch + 1 batch (4 optimizer steps)" in output
    assert f"Last checkpoint: {out / 'checkpoint_step_4.pt'}" in output


def test_schedule_follows_the_epochs_without_max_steps() -> None:
    from axion.config import TrainingConfig
    from axion.training.fit import schedule_length

    assert schedule_length(TrainingConfig(epochs=2), 4) == 8
    assert schedule_length(TrainingConfig(epochs=2, max_steps=7), 4) == 7
    assert schedule_length(TrainingConfig(epochs=2, max_steps=100), 4) == 8


def test_val_every_steps_validates_once_where_an_epoch_ends(stepped: tuple[Path, str]) -> None:
    out, output = stepped
    history = rows(out)
    # Step 3 is both the 3rd step and the end of epoch 1 (validated once); 4 is where --max-steps ends.
    assert [row["step"] for row in history] == [3, 4]
    assert [row["epoch"] for row in history] == [1, 1.3333]
    assert all({"train_loss", "val_loss", "val_sar_agreement", "lr"} <= set(row) for row in history)
    assert "Epoch 1 Summary:" in output and "Step 4 (epoch 1.33) Summary:" in output
    assert output.count("Summary:") == 2
    # Each validation updates early stopping: the best model is the last row that beat the best
    # before it by more than --early-stop-delta (1e-4).
    best = history[0]
    for row in history[1:]:
        if row["val_sar_agreement"] > best["val_sar_agreement"] + 1e-4:
            best = row
    saved = Checkpoint.read(out / "best_model.pt")
    assert saved.train_stats["optimizer_steps"] == best["step"]
    assert saved.val_stats["early_stopping"]["best_step"] == best["step"]


def test_checkpoint_every_steps_writes_resumable_step_checkpoints(stepped: tuple[Path, str]) -> None:
    out, _ = stepped
    names = sorted(path.name for path in rotating_checkpoints(out))
    # Step 2 by the flag, 3 is epoch 1's own checkpoint, 4 where --max-steps ends.
    assert names == ["checkpoint_epoch_1.pt", "checkpoint_step_2.pt", "checkpoint_step_4.pt"]
    ckpt = Checkpoint.read(out / "checkpoint_step_2.pt")
    assert (ckpt.epoch, ckpt.train_stats["partial_batches"], ckpt.train_stats["optimizer_steps"]) == (0, 2, 2)
    assert latest_checkpoint(out) == out / "checkpoint_step_4.pt"  # what --resume latest picks


@pytest.mark.slow
def test_resume_from_a_step_checkpoint_gives_the_same_weights(
    stepped: tuple[Path, str], tiles_64: Path, tmp_path: Path
) -> None:
    out, _ = stepped
    resumed = tmp_path / "b"
    output = train(tiles_64, resumed, "--resume", str(out / "checkpoint_step_2.pt"))
    assert "(epoch 0 + 2 batches)" in output
    expected = Checkpoint.read(out / "checkpoint_step_4.pt")
    got = Checkpoint.read(resumed / "checkpoint_step_4.pt")
    assert got.model_state_dict.keys() == expected.model_state_dict.keys()
    for name, tensor in expected.model_state_dict.items():
        torch.testing.assert_close(got.model_state_dict[name], tensor, rtol=1e-5, atol=1e-6)
    assert got.val_stats["early_stopping"] == expected.val_stats["early_stopping"]
    assert [row["step"] for row in rows(resumed)] == [3, 4]
    # The resumed epoch's training means cover all its batches, not only those after the resume.
    for got_row, want_row in zip(rows(resumed), rows(out), strict=True):
        for key in ("train_loss", "train_spectral", "train_sar"):
            assert got_row[key] == pytest.approx(want_row[key], rel=1e-4), key


def test_image_panels_of_the_first_validation_tiles_in_tensorboard(
    stepped: tuple[Path, str], tiles_64: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = stepped
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    first = sorted(path.stem for path in (tiles_64 / "val").glob("*.npz"))[:4]
    tags = events.Tags()["images"]
    assert sorted(tags) == [f"val_images/{name}" for name in first]
    for tag in tags:
        (image,) = events.Images(tag)  # once: the end of epoch 1 (epoch 2 was cut by --max-steps)
        assert image.step == 3
        assert (image.width, image.height) == (4 * 64 + 3 * GAP, 64)
    # The scalars' x-axis is the optimizer step.
    assert [e.step for e in events.Scalars("val/sar_agreement")] == [3, 4]


@pytest.mark.slow
def test_keep_best_keeps_the_best_and_the_newest(tiles_64: Path, tmp_path: Path) -> None:
    out = tmp_path / "keep"
    train(
        tiles_64, out, "--max-samples", "2", "--grad-accum", "1", "--epochs", "2", "--head-lr", "3e-3",
        "--val-every-steps", "1", "--checkpoint-every-steps", "1", "--keep-last", "1", "--keep-best", "2",
        "--monitor", "val_loss", "--log-images-every", "0",
    )  # fmt: skip
    history = rows(out)
    # Every step validated: two inside the epochs, two at their ends.
    assert [(row["epoch"], row["step"]) for row in history] == [(0.5, 1), (1, 2), (1.5, 3), (2, 4)]
    file_of = {
        1: "checkpoint_step_1.pt",
        2: "checkpoint_epoch_1.pt",
        3: "checkpoint_step_3.pt",
        4: "checkpoint_epoch_2.pt",
    }
    best_two = sorted(history, key=lambda row: (row["val_loss"], row["step"]))[:2]
    expected = {file_of[row["step"]] for row in best_two} | {"checkpoint_epoch_2.pt"}
    assert {path.name for path in rotating_checkpoints(out)} == expected
    assert (out / "best_model.pt").is_file()
    assert not _has_images(out)  # --log-images-every 0


def _has_images(out: Path) -> bool:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return bool(events.Tags()["images"])


def _ckpt(epoch: int, partial: int, steps: int, score: float | None) -> Checkpoint:
    return Checkpoint(
        epoch=epoch,
        model_state_dict={"w": torch.zeros(1)},
        train_stats={"partial_batches": partial, "optimizer_steps": steps},
        val_stats={} if score is None else {"loss": score, "sar_agreement": score},
        config={"model": {}},
    )


def test_rotation_ranks_step_and_epoch_checkpoints_together(tmp_path: Path) -> None:
    saver = CheckpointSaver(tmp_path, keep_last=1, keep_best=2)
    saver.save_step(_ckpt(0, 1, 1, 0.7))
    saver.save_step(_ckpt(0, 2, 2, None))  # not validated: never among the best
    saver.save_epoch(_ckpt(1, 0, 3, math.nan))  # not finite: never among the best
    saver.save_step(_ckpt(1, 1, 4, 0.9))
    saver.save_step(_ckpt(1, 2, 5, 0.5))
    saver.save_best(_ckpt(1, 1, 4, 0.9))
    names = {path.name for path in rotating_checkpoints(tmp_path)}
    assert names == {"checkpoint_step_1.pt", "checkpoint_step_4.pt", "checkpoint_step_5.pt"}
    assert (tmp_path / "best_model.pt").is_file()
    # Lower is better for a loss; keep-best alone keeps the newest too.
    low = tmp_path / "low"
    low.mkdir()
    saver = CheckpointSaver(low, keep_best=1, score_key="loss", mode="min")
    for steps, score in ((1, 0.3), (2, 0.1), (3, 0.2)):
        saver.save_step(_ckpt(0, steps, steps, score))
    assert {p.name for p in rotating_checkpoints(low)} == {"checkpoint_step_2.pt", "checkpoint_step_3.pt"}


def test_history_resumed_inside_an_epoch_keeps_rows_up_to_its_step(tmp_path: Path) -> None:
    history = MetricsHistory(tmp_path, tensorboard=False)
    for epoch, step in ((0.5, 2), (1, 4), (1.5, 6)):
        history.append({"epoch": epoch, "step": step, "val_loss": 0.1})
    history.close()
    MetricsHistory(tmp_path, resume_epoch=1, resume_step=5, tensorboard=False).close()
    assert [row["step"] for row in read_history(tmp_path / "metrics.jsonl")] == [2, 4]


def test_panel_stretch_comes_from_the_target_alone() -> None:
    rng = np.random.default_rng(0)
    s1 = rng.normal(-12, 3, (2, 8, 8))
    target = rng.uniform(200, 3000, (4, 8, 8))
    stretch = Stretch.of(s1, target, np.ones((8, 8), bool))
    first = validation_panel(s1, target * 0.5, target, target, stretch)
    second = validation_panel(s1, target * 2.0, target * 0.1, target, stretch)
    assert first.shape == (8, 4 * 8 + 3 * GAP, 3) and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    sar, target_column = slice(0, 8), slice(3 * (8 + GAP), 4 * 8 + 3 * GAP)
    np.testing.assert_array_equal(first[:, target_column], second[:, target_column])
    np.testing.assert_array_equal(first[:, sar], second[:, sar])
    assert np.allclose(first[:, sar, 0], first[:, sar, 1])  # SAR VV as grey


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-steps", "0"),
        ("--val-every-steps", "-1"),
        ("--checkpoint-every-steps", "0"),
        ("--keep-best", "0"),
        ("--log-images-every", "-1"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(tmp_path: Path, flag: str, value: str) -> None:
    args = ["stage3", "train", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o"), flag, value]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and flag in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()
