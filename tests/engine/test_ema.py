"""The moving average of the trainable weights: its arithmetic, its swap, and what train saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from axion.cli import app
from axion.errors import WeightsError
from axion.training.checkpoint import Checkpoint
from axion.training.ema import WeightAverage

from .conftest import FAST


def _model() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model[1].weight.requires_grad_(False)  # frozen weights are not shadowed
    return model


def test_only_trainable_weights_are_shadowed_and_the_decay_warms_up() -> None:
    average = WeightAverage(_model(), decay=0.999)
    assert set(average.shadow) == {"0.weight", "0.bias", "1.bias"}
    assert average.decay_at(0) == pytest.approx(0.1)
    assert average.decay_at(10**6) == pytest.approx(0.999)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_model(), decay=1.0)


def test_update_follows_the_formula_and_applied_restores_the_raw_weights() -> None:
    model = _model()
    average = WeightAverage(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update()  # decay 0.1 at the first update: 0.1 * start + 0.9 * (start + 1)
    torch.testing.assert_close(average.shadow["0.weight"], start + 0.9)
    raw = model[0].weight.detach().clone()
    with average.applied():
        torch.testing.assert_close(model[0].weight.detach(), start + 0.9)
    assert torch.equal(model[0].weight.detach(), raw)


def test_the_average_of_noisy_steps_is_nearer_the_centre_than_the_last_step() -> None:
    model = nn.Linear(64, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    average = WeightAverage(model, decay=0.95)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        with torch.no_grad():
            model.weight.copy_(torch.randn(model.weight.shape, generator=gen))  # noise around 0
        average.update()
    assert average.shadow["weight"].norm() < 0.3 * model.weight.detach().norm()


def test_off_keeps_the_raw_weights() -> None:
    model = _model()
    average = WeightAverage(model, decay=0.0)
    with torch.no_grad():
        model[0].bias.add_(5.0)
    average.update()
    raw = model[0].bias.detach().clone()
    with average.applied():
        assert torch.equal(model[0].bias.detach(), raw)  # not the start the shadow was taken at
    assert not average.enabled and average.updates == 0
    assert not torch.equal(average.shadow["0.bias"], raw)


def test_a_saved_average_must_fit_the_model() -> None:
    average = WeightAverage(_model(), decay=0.9)
    state = average.state_dict()
    average.load_state_dict(state, updates=7)
    assert average.updates == 7
    with pytest.raises(WeightsError, match="does not fit"):
        average.load_state_dict({"other": torch.zeros(1)}, updates=0)
    state["0.bias"] = torch.zeros(5)
    with pytest.raises(WeightsError, match="shape"):
        average.load_state_dict(state, updates=0)


def test_train_validates_and_saves_the_average(tiles_64: Path, tmp_path: Path) -> None:
    """model_state_dict (what evaluate, infer and export load) is the average; the raw weights ride beside it."""
    runner = CliRunner()
    common = ["stage3", "train", "--data-dir", str(tiles_64), *FAST, "--epochs", "2", "--max-samples", "2"]
    common += ["--grad-accum", "1", "--head-lr", "3e-3"]
    out = tmp_path / "ema"
    result = runner.invoke(app, [*common, "--output-dir", str(out), "--ema-decay", "0.5"])
    assert result.exit_code == 0, result.output
    ckpt = Checkpoint.read(out / "checkpoint_epoch_2.pt")
    assert ckpt.training_state_dict is not None and ckpt.train_stats["ema_updates"] == 4
    head = [name for name in ckpt.model_state_dict if name.startswith("fusion.")]
    assert any(not torch.equal(ckpt.model_state_dict[n], ckpt.training_state_dict[n]) for n in head)

    plain = tmp_path / "plain"
    result = runner.invoke(app, [*common, "--output-dir", str(plain), "--ema-decay", "0"])
    assert result.exit_code == 0, result.output
    raw = Checkpoint.read(plain / "checkpoint_epoch_2.pt")
    assert raw.training_state_dict is None
    # Same seed, same steps: the optimizer's weights are the same with or without the average ...
    for name in head:
        torch.testing.assert_close(raw.model_state_dict[name], ckpt.training_state_dict[name])
    # ... and validation scored the average, not them.
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows_raw = [json.loads(line) for line in (plain / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_psnr"] != pytest.approx(rows_raw[-1]["val_psnr"], abs=1e-9)
    assert rows[-1]["train_loss"] == pytest.approx(rows_raw[-1]["train_loss"], rel=1e-5)
