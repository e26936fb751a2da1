"""The run's metrics history: one JSON line per epoch plus TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HISTORY_FILE = "metrics.jsonl"


def read_history(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` file (an absent file has none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsHistory:
    """Appends one row per epoch to ``metrics.jsonl`` and mirrors scalars to TensorBoard.

    On resume, rows after the resumed epoch (from the interrupted run) are dropped
    so the file describes the run that actually produced the weights.
    """

    def __init__(self, directory: Path, resume_epoch: int | None = None, tensorboard: bool = True) -> None:
        self.path = Path(directory) / HISTORY_FILE
        rows = read_history(self.path)
        if resume_epoch is not None:
            rows = [row for row in rows if row.get("epoch", 0) <= resume_epoch]
        else:
            rows = []
        self.path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(directory) / "tensorboard"))

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            epoch = int(row["epoch"])
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, epoch)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
