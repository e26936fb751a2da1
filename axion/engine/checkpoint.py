"""Checkpoint files: the guide's keys, atomic writes, safe loading, rotation.

A checkpoint holds only tensors, numbers, strings and containers of them, so it
loads with ``torch.load(..., weights_only=True)``: opening one never runs code.
``model_state_dict`` holds the trainable weights only (LoRA adapters and the
fusion head); the frozen TerraMind base comes from its pretrained source.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from axion.errors import DataError

#: Exactly the keys the training guide lists, in its order.
CHECKPOINT_KEYS: tuple[str, ...] = (
    "epoch",
    "model_state_dict",
    "optimizer_state_dict",
    "scheduler_state_dict",
    "scaler_state_dict",
    "train_stats",
    "val_stats",
    "best_sar_agreement",
    "config",
)
EPOCH_FILE = "checkpoint_epoch_{epoch}.pt"
BEST_FILE = "best_model.pt"
INTERRUPTED_FILE = "checkpoint_interrupted.pt"
_EPOCH_RE = re.compile(r"^checkpoint_epoch_(\d+)\.pt$")


def save_atomic(obj: Any, path: Path) -> None:
    """Write with ``torch.save`` to a temporary file, flush it to disk, then rename.

    A crash at any moment leaves either the old file or the new one, never a
    torn one; the rename is atomic on POSIX file systems.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only``) and check its keys.

    Raises:
        DataError: one line naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable axion checkpoint ({reason[:160]})") from None
    if not isinstance(state, dict):
        raise DataError(f"{path}: not an axion checkpoint (expected a dict of {', '.join(CHECKPOINT_KEYS)})")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise DataError(f"{path}: not an axion checkpoint: missing key(s) {', '.join(missing)}")
    return state


def epoch_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``checkpoint_epoch_N.pt`` files in a directory, sorted by N."""
    found = []
    for path in Path(directory).glob("checkpoint_epoch_*.pt"):
        match = _EPOCH_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


class CheckpointSaver:
    """Writes epoch, best and interrupt checkpoints into one directory.

    Args:
        directory: the run's output directory.
        keep_last: keep only the newest N epoch checkpoints (None keeps all, as
            the guide does). ``best_model.pt`` is never rotated.
    """

    def __init__(self, directory: Path, keep_last: int | None = None) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last

    def save_epoch(self, state: dict[str, Any]) -> Path:
        path = self.directory / EPOCH_FILE.format(epoch=state["epoch"])
        save_atomic(state, path)
        if self.keep_last is not None:
            for _, old in epoch_checkpoints(self.directory)[: -self.keep_last]:
                old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict[str, Any]) -> Path:
        path = self.directory / BEST_FILE
        save_atomic(state, path)
        return path

    def save_interrupted(self, state: dict[str, Any]) -> Path:
        path = self.directory / INTERRUPTED_FILE
        save_atomic(state, path)
        return path
