"""Early stopping on validation SAR agreement (higher is better)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EarlyStopping:
    """Counts validations without an improvement larger than ``delta``.

    Attributes:
        patience: validations without improvement after which to stop.
        delta: an improvement must exceed the best value by more than this.
        best: best value seen so far.
        best_epoch: epoch of the best value (0: none yet).
        wait: validations since the last improvement.
    """

    patience: int
    delta: float
    best: float = -math.inf
    best_epoch: int = 0
    wait: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record one validation; return whether it improved on the best."""
        if value > self.best + self.delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
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
        self.wait = int(state["wait"])
