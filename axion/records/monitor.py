"""Early stopping on a monitored validation score (higher or lower is better).

A value that is not finite (or a validation whose other values are not) never counts
as an improvement, whatever is monitored: a diverged epoch never becomes the best model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Monitor:
    """One validation score early stopping and ``best_model.pt`` may watch (``--monitor``).

    Attributes:
        name: the ``--monitor`` value.
        key: its key in a validation's statistics (``val_<key>`` in metrics.jsonl).
        mode: ``max`` (higher is better) or ``min``.
        label: how the console names it.
        quantity: how a figure names it, with its unit.
        meaning: what it measures, where its name does not say (the ``--monitor`` help).
    """

    name: str
    key: str
    mode: Literal["max", "min"]
    label: str
    quantity: str
    meaning: str = ""

    @property
    def better(self) -> str:
        """``higher`` or ``lower``: which way is better, in words."""
        return "higher" if self.mode == "max" else "lower"

    @property
    def history_key(self) -> str:
        """The score's column in metrics.jsonl."""
        return f"val_{self.key}"


#: Every monitor by its ``--monitor`` name; the config's choices and the flag's help come from here.
MONITORS: dict[str, Monitor] = {
    m.name: m
    for m in (
        Monitor(
            "sar_agreement",
            "sar_agreement",
            "max",
            "SAR agreement",
            "SAR agreement",
            meaning="opt_v3's structure against the ground truth's where the radar sees structure",
        ),
        Monitor("psnr", "psnr", "max", "validation PSNR", "PSNR (dB)"),
        Monitor("val_loss", "loss", "min", "validation loss", "loss"),
    )
}
#: The monitor a run watches unless told otherwise.
DEFAULT_MONITOR = "sar_agreement"
#: The ``--monitor`` choices, as the config's type.
MonitorName = Literal[tuple(MONITORS)]  # type: ignore[valid-type]


def monitor_help() -> str:
    """The ``--monitor`` help: the choices grouped by which way is better."""
    groups = []
    for mode in ("max", "min"):
        chosen = [m for m in MONITORS.values() if m.mode == mode]
        if chosen:
            names = [f"{m.name} ({m.meaning})" if m.meaning else m.name for m in chosen]
            groups.append(f"{' or '.join(names)} ({chosen[0].better} is better)")
    return "Validation score for early stopping and best_model.pt: " + ", ".join(groups) + "."


@dataclass
class EarlyStopping:
    """Counts validations without an improvement larger than ``delta``.

    Attributes:
        patience: validations without improvement after which to stop.
        delta: an improvement must beat the best value by more than this.
        mode: ``max`` (higher is better) or ``min``.
        best: best value seen so far.
        best_epoch: epoch of the best value (0: none yet); for a validation inside an epoch
            (``--val-every-steps``), the epoch it was in.
        best_step: optimizer steps done at the best value (0: none yet, or not recorded).
        wait: validations since the last improvement.
    """

    patience: int
    delta: float
    mode: Literal["max", "min"] = "max"
    best: float = math.nan
    best_epoch: int = 0
    best_step: int = 0
    wait: int = 0

    def __post_init__(self) -> None:
        if math.isnan(self.best):
            self.best = -math.inf if self.mode == "max" else math.inf

    def update(self, value: float, epoch: int, *, step: int = 0, finite: bool = True) -> bool:
        """Record one validation; return whether it improved on the best.

        Args:
            value: the monitored value.
            epoch: the epoch it belongs to.
            step: the optimizer steps done when it was taken.
            finite: False when anything else of the validation (its loss) was not finite.
        """
        if not finite or not math.isfinite(value):
            self.wait += 1
            return False
        better = value > self.best + self.delta if self.mode == "max" else value < self.best - self.delta
        if better:
            self.best, self.best_epoch, self.best_step, self.wait = value, epoch, step, 0
            return True
        self.wait += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.wait >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in {"patience", "delta"}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.best_step = int(state.get("best_step", 0))
        self.wait = int(state["wait"])


def all_finite(stats: dict[str, Any]) -> bool:
    """Whether every number in a validation's statistics is finite."""
    return all(math.isfinite(v) for v in stats.values() if isinstance(v, int | float))
