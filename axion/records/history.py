"""The run's metrics history: one JSON line per validation plus TensorBoard events.

``metrics.jsonl`` is strict JSON Lines: a value that is not finite is written as
``null`` (JSON has no NaN), and read back as NaN. Each row has ``epoch`` (a fraction for a
validation inside an epoch, ``--val-every-steps``) and ``step`` (optimizer steps done);
TensorBoard's x-axis is ``step``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from axion.atomic import write_text_atomic
from axion.errors import DataError

HISTORY_FILE = "metrics.jsonl"


def json_row(row: dict[str, Any]) -> str:
    """One row as a strict JSON line: non-finite numbers become ``null``."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    return json.dumps(clean, allow_nan=False)


def _parse(line: str) -> dict[str, Any]:
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    return {k: (math.nan if v is None else v) for k, v in row.items()}


def read_history(path: Path, *, torn_tail_ok: bool = False) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` file (an absent file has none); ``null`` values become NaN.

    Args:
        path: the file.
        torn_tail_ok: drop an unreadable *last* line (a run killed while appending it).

    Raises:
        DataError: a line that is not a JSON object with a numeric ``epoch``, naming the line.
    """
    if not path.is_file():
        return []
    try:
        lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable training history ({type(exc).__name__})") from None
    rows = []
    for position, (number, line) in enumerate(lines):
        try:
            row = _parse(line)
            if not isinstance(row.get("epoch"), int | float) or isinstance(row.get("epoch"), bool):
                raise ValueError("no numeric 'epoch'")
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            if torn_tail_ok and position == len(lines) - 1:
                break
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise DataError(f"{path}: line {number} is not a metrics row ({reason})") from None
        rows.append(row)
    return rows


def _after(row: Mapping[str, Any], epoch: int, step: int | None) -> bool:
    """Whether a row was written after the point a run resumes from (by step when both know it)."""
    if step is not None and isinstance(row.get("step"), int | float):
        return row["step"] > step
    return row.get("epoch", 0) > epoch


class MetricsHistory:
    """Appends one row per validation to ``metrics.jsonl`` and mirrors scalars to TensorBoard.

    On resume, rows after the resumed checkpoint (from the interrupted run) are dropped
    so the file describes the run that actually produced the weights; so is a last
    line torn by a kill.

    Args:
        directory: the run's output directory.
        resume_epoch: the completed epochs of the checkpoint resumed from (None: a new run).
        resume_step: its optimizer steps (rows of older runs without ``step`` go by epoch).
        tensorboard: also write TensorBoard events under ``tensorboard/``.
    """

    def __init__(
        self,
        directory: Path,
        resume_epoch: int | None = None,
        tensorboard: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(directory) / HISTORY_FILE
        rows = read_history(self.path, torn_tail_ok=True) if resume_epoch is not None else []
        rows = [row for row in rows if not _after(row, resume_epoch or 0, resume_step)]
        write_text_atomic(self.path, "".join(json_row(row) + "\n" for row in rows))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(directory) / "tensorboard"))

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json_row(row) + "\n")
        if self.writer is not None:
            step = int(row.get("step", row["epoch"]))
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, step)
            self.writer.flush()

    def add_images(self, panels: Mapping[str, np.ndarray], step: int) -> None:
        """TensorBoard images ``val_images/<tile>`` of (H, W, 3) panels in [0, 1] at ``step``."""
        if self.writer is None:
            return
        for name, panel in panels.items():
            self.writer.add_image(f"val_images/{name}", panel, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
