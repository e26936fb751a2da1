"""The training-curves figure marks the epoch the run's own ``--monitor`` chose."""

from __future__ import annotations

import math

import pytest

from axion.viz.figures import monitored_best

HISTORY = [
    {"epoch": 1, "val_loss": 0.30, "val_psnr": 30.0, "val_sar_agreement": 0.70},
    {"epoch": 2, "val_loss": 0.20, "val_psnr": 31.0, "val_sar_agreement": 0.60},
    {"epoch": 3, "val_loss": 0.25, "val_psnr": 31.00005, "val_sar_agreement": 0.50},
    {"epoch": 4, "val_loss": math.nan, "val_psnr": 99.0, "val_sar_agreement": 0.99},
]


@pytest.mark.parametrize(
    ("monitor", "delta", "epoch"),
    [
        ("sar_agreement", 0.0, 1),
        ("val_loss", 0.0, 2),
        ("psnr", 0.0, 3),  # the higher value wins when no margin is asked for ...
        ("psnr", 1e-4, 2),  # ... and not when it beats the best by less than --early-stop-delta
    ],
)
def test_best_epoch_follows_the_monitor_like_training_does(monitor: str, delta: float, epoch: int) -> None:
    best = monitored_best(HISTORY, monitor, delta)
    assert best is not None
    assert best[0] == epoch  # epoch 4's loss is NaN: a diverged validation is never the best


def test_no_validation_no_best() -> None:
    assert monitored_best([{"epoch": 1, "train_loss": 0.1}], "psnr") is None
