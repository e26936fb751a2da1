"""Training killed with SIGKILL at exact moments, then resumed or restarted through the real CLI.

The moments are set by tests/engine/crash_harness.py, which runs the real command line in a
separate process and kills it from inside the engine's own call (no timing races).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from axion.cli import app
from axion.training.checkpoint import Checkpoint

from .conftest import FAST

pytestmark = pytest.mark.slow
HARNESS = Path(__file__).with_name("crash_harness.py")
REPO = Path(__file__).resolve().parents[2]
ONE_TILE = ["--max-samples", "1", "--grad-accum", "1", "--lr", "1e-3"]


def killed_at(moment: str, tiles: Path, out: Path, *extra: str) -> str:
    """Run ``axion stage3 train`` under the harness; it must die by SIGKILL."""
    env = {
        **os.environ,
        "AXION_TEST_MOMENT": moment,
        "PYTHONPATH": str(REPO),
        "LIGHTLY_DID_VERSION_CHECK": "True",
    }
    cmd = [
        sys.executable,
        str(HARNESS),
        "stage3",
        "train",
        "--data-dir",
        str(tiles),
        "--output-dir",
        str(out),
    ]
    done = subprocess.run([*cmd, *FAST, *extra], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    return done.stdout + done.stderr


def train(tiles: Path, out: Path, *extra: str) -> str:
    args = ["stage3", "train", "--data-dir", str(tiles), "--output-dir", str(out), *FAST, *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and ".tmp" in p.name)


def test_killed_between_epoch_checkpoint_and_best_model_then_during_a_checkpoint(
    tiles_64: Path, tmp_path: Path
):
    out = tmp_path / "run"
    killed_at("before-best:1", tiles_64, out, "--epochs", "2", *ONE_TILE)
    assert (out / "checkpoint_epoch_1.pt").is_file() and not (out / "best_model.pt").exists()

    # Resumed, and killed again half-way through writing checkpoint_epoch_2.pt.
    resume = ["--resume", str(out / "checkpoint_epoch_1.pt")]
    killed_at("during-checkpoint:2", tiles_64, out, *resume)
    assert temporaries(out) and temporaries(out)[0].startswith(".checkpoint_epoch_2.pt.")
    assert not (out / "checkpoint_epoch_2.pt").exists()
    assert Checkpoint.read(out / "best_model.pt").epoch == 1  # restored by the first resume already

    (out / "best_model.pt").unlink()  # as the first kill left it: the resume must restore it again
    output = train(tiles_64, out, *resume)
    assert "Restored" in output and "checkpoint_epoch_1.pt" in output
    assert temporaries(out) == []  # the torn temporary of the killed writer is gone
    last = Checkpoint.read(out / "checkpoint_epoch_2.pt")
    best_epoch = last.val_stats["early_stopping"]["best_epoch"]
    assert Checkpoint.read(out / "best_model.pt").epoch == best_epoch
    done = next(line for line in output.splitlines() if line.startswith("Done:"))
    assert str(out / "best_model.pt") in done and (out / "best_model.pt").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]


def test_killed_before_the_first_checkpoint_restarts_without_manual_deletion(tiles_64: Path, tmp_path: Path):
    tiles = tmp_path / "tiles"
    shutil.copytree(tiles_64, tiles)
    # One training tile with a little negative reflectance: suspicious, so warned and recorded.
    first = sorted((tiles / "train").glob("*.npz"))[0]
    with np.load(first) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["s2_b2"] = arrays["s2_b2"].astype(np.float32)
    arrays["s2_b2"][:2, :2] = -20.0
    np.savez(first, **arrays)

    out = tmp_path / "run"
    killed_at("before-first-checkpoint", tiles, out, "--epochs", "1", *ONE_TILE)
    assert (out / "config.json").is_file() and not list(out.glob("*.pt"))
    output = train(tiles, out, "--epochs", "1", *ONE_TILE)
    assert "stopped before its first checkpoint; starting it again" in output
    assert (out / "checkpoint_epoch_1.pt").is_file() and (out / "best_model.pt").is_file()
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    assert "warning:" in output and "slightly negative" in output
    recorded = json.loads((out / "input_warnings.json").read_text())
    assert recorded == [{"file": str(first), "warning": recorded[0]["warning"]}]
    assert "slightly negative reflectance" in recorded[0]["warning"]


def test_nan_validation_never_makes_a_best_model(tiles_64: Path, tmp_path: Path, monkeypatch):
    from axion.training.trainer import Stage3Trainer

    real_step = Stage3Trainer.validation_step

    def nan_loss(self, batch):  # noqa: ANN001, ANN202 - a diverged model: every validation loss is NaN
        values = real_step(self, batch)
        values["total"] = values["total"] * float("nan")
        return values

    monkeypatch.setattr(Stage3Trainer, "validation_step", nan_loss)
    out = tmp_path / "run"
    output = train(tiles_64, out, "--epochs", "1", *ONE_TILE)
    # The first validation would always improve on -inf; a NaN one does not.
    assert "Validation of epoch 1 is not finite: not an improvement" in output, output
    assert "SAR agreement improved" not in output
    assert (out / "checkpoint_epoch_1.pt").is_file() and not (out / "best_model.pt").exists()
    assert "No validation improved, so no best_model.pt" in output
    for line in (out / "metrics.jsonl").read_text().splitlines():
        assert json.loads(line)["val_loss"] is None  # strict JSON: null, not NaN
