"""Checkpoint files: the one :class:`Checkpoint` type that train, resume, evaluate, infer and export read.

A checkpoint holds the keys listed in docs/training.md (``epoch``, ``model_state_dict``,
``optimizer_state_dict``, ``scheduler_state_dict``, ``scaler_state_dict``,
``train_stats``, ``val_stats``, ``best_sar_agreement``, ``config``) plus one ``axion``
key with its format tag, the versions and run identity that wrote it, and a SHA-256
checksum of the other keys, verified on every read, so a damaged file is refused
instead of loading garbage. It holds only
tensors, numbers, strings and containers of them, so it loads with
``torch.load(..., weights_only=True)``: opening one never runs code.
``model_state_dict`` holds the trainable weights only (LoRA adapters and the fusion
network); the frozen TerraMind base comes from its pretrained source. Weights that are
not finite are never written, and refused when read.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from axion.atomic import atomic_path
from axion.errors import ConfigError, DataError, TrainingError, load_weights_only

if TYPE_CHECKING:
    from axion.config import ModelConfig

#: The checkpoint keys of docs/training.md, in their order.
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
#: Keys a checkpoint may hold beyond those: ``training_state_dict``, the optimizer's raw trainable
#: weights when ``model_state_dict`` holds their moving average (``--ema-decay``).
OPTIONAL_KEYS: tuple[str, ...] = ("training_state_dict",)
#: The key of axion's own record: format tag and checksum.
META_KEY = "axion"
FORMAT = "axion-stage3-checkpoint/2"
EPOCH_FILE = "checkpoint_epoch_{epoch}.pt"
BEST_FILE = "best_model.pt"
INTERRUPTED_FILE = "checkpoint_interrupted.pt"
#: A checkpoint written mid-epoch (``--checkpoint-every-steps``, ``--max-steps``); N counts optimizer steps.
STEP_FILE = "checkpoint_step_{step}.pt"
_EPOCH_RE = re.compile(r"^checkpoint_epoch_(\d+)\.pt$")
_STEP_RE = re.compile(r"^checkpoint_step_(\d+)\.pt$")
#: Model settings the trainable weights depend on: a checkpoint fits only a model with the same values.
ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "generator",
    "model_size",
    "lora_rank",
    "lora_alpha",
    "s1_product",
    "correction_smoothing",
    "acquisition_input",
    "acquisition_modulation",
)
#: Model settings of checkpoints written before the setting existed: what those models were.
LEGACY_MODEL_SETTINGS: dict[str, Any] = {"acquisition_input": False, "acquisition_modulation": False}


def _feed(digest: Any, obj: Any) -> None:
    """Feed a nested structure of tensors, containers and plain values into a hash, deterministically."""
    if isinstance(obj, Tensor):
        tensor = obj.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(b"{")
        for key in sorted(obj, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, obj[key])
        digest.update(b"}")
    elif isinstance(obj, list | tuple):
        digest.update(b"[")
        for item in obj:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(repr(obj).encode())


def checksum(state: dict[str, Any]) -> str:
    """SHA-256 over every key of :data:`CHECKPOINT_KEYS` (and :data:`OPTIONAL_KEYS` present) in a checkpoint dict (tensors by their bytes)."""
    digest = hashlib.sha256()
    _feed(digest, {key: state[key] for key in (*CHECKPOINT_KEYS, *OPTIONAL_KEYS) if key in state})
    return digest.hexdigest()


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
    """Every tensor inside a nested structure, with a dotted name."""
    if isinstance(obj, Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}.{index}" if prefix else str(index))


def non_finite(state: dict[str, Any]) -> tuple[int, str] | None:
    """(count, first tensor name) of the non-finite values among the weights and optimizer state, or None."""
    count, first = 0, ""
    for name, tensor in _tensors(
        {
            key: state[key]
            for key in ("model_state_dict", "training_state_dict", "optimizer_state_dict")
            if key in state
        }
    ):
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad and not count:
                first = name
            count += bad
    return (count, first) if count else None


def _load(path: Path, **kwargs: Any) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    state = load_weights_only(path, DataError, "not a readable axion checkpoint", **kwargs)
    if not isinstance(state, dict):
        raise DataError(f"{path}: not an axion checkpoint (expected a dict of {', '.join(CHECKPOINT_KEYS)})")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise DataError(f"{path}: not an axion checkpoint: missing key(s) {', '.join(missing)}")
    if not isinstance(state["config"], dict):
        raise DataError(f"{path}: checkpoint configuration is not a mapping")
    return state


@dataclass
class Checkpoint:
    """One training checkpoint: the fields of :data:`CHECKPOINT_KEYS` plus where it was read from.

    Build one with :meth:`read` (verified) or from the trainer; :meth:`write` saves it atomically.
    """

    epoch: int
    model_state_dict: dict[str, Tensor]
    config: dict[str, Any]
    optimizer_state_dict: dict[str, Any] = field(default_factory=dict)
    scheduler_state_dict: dict[str, Any] = field(default_factory=dict)
    scaler_state_dict: dict[str, Any] = field(default_factory=dict)
    train_stats: dict[str, Any] = field(default_factory=dict)
    val_stats: dict[str, Any] = field(default_factory=dict)
    best_sar_agreement: float = -math.inf
    #: The raw trainable weights when ``model_state_dict`` holds their moving average; else None.
    training_state_dict: dict[str, Tensor] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    # --- reading ------------------------------------------------------------------------
    @classmethod
    def read(cls, path: Path) -> Checkpoint:
        """Load a checkpoint safely (``weights_only``), check its keys and verify its checksum.

        Raises:
            DataError: one line naming the file and what is wrong with it.
        """
        path = Path(path)
        state = _load(path)
        meta = state.get(META_KEY)
        if isinstance(meta, dict) and "sha256" in meta and checksum(state) != meta["sha256"]:
            raise DataError(f"{path}: checkpoint is damaged (its checksum does not match its contents)")
        bad = non_finite(state)
        if bad is not None:
            raise DataError(f"{path}: checkpoint holds {bad[0]} non-finite value(s) (first in {bad[1]})")
        provenance = meta.get("provenance", {}) if isinstance(meta, dict) else {}
        optional = {key: state[key] for key in OPTIONAL_KEYS if key in state}
        return cls(
            **{key: state[key] for key in CHECKPOINT_KEYS}, **optional, provenance=provenance, path=path
        )

    @staticmethod
    def read_epoch(path: Path) -> int | None:
        """The epoch a checkpoint file records (memory-mapped, not verified), or None if unreadable."""
        try:
            return int(_load(Path(path), mmap=True)["epoch"])
        except (DataError, TypeError, ValueError):
            return None

    @staticmethod
    def read_config(path: Path) -> dict[str, Any]:
        """Only the run configuration of a checkpoint (memory-mapped: tensors are not read)."""
        return _load(Path(path), mmap=True)["config"]

    # --- writing ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The dict that is saved: :data:`CHECKPOINT_KEYS` in order, the :data:`OPTIONAL_KEYS` it holds,
        then axion's record with the checksum."""
        state: dict[str, Any] = {key: getattr(self, key) for key in CHECKPOINT_KEYS}
        state.update({key: getattr(self, key) for key in OPTIONAL_KEYS if getattr(self, key) is not None})
        state[META_KEY] = {"format": FORMAT, "sha256": checksum(state), "provenance": self.provenance}
        return state

    def write(self, path: Path) -> Path:
        """Save atomically: a temporary file, flushed to disk, renamed over ``path``.

        Raises:
            TrainingError: a weight or optimizer value is not finite; nothing is written.
        """
        path = Path(path)
        state = self.to_dict()
        bad = non_finite(state)
        if bad is not None:
            raise TrainingError(
                f"{path}: not saved: {bad[0]} trainable or optimizer value(s) are not finite "
                f"(first in {bad[1]}); the earlier checkpoints are kept; lower --lr or use --precision 32"
            )
        with atomic_path(path, fsync=True) as tmp:
            torch.save(state, tmp)
        self.path = path
        return path

    # --- what the weights fit -----------------------------------------------------------
    @property
    def model_settings(self) -> dict[str, Any]:
        """The checkpoint's ``model`` settings (the section of its ``config``); a setting added
        since it was written has the value that reproduces its model (:data:`LEGACY_MODEL_SETTINGS`)."""
        model = self.config.get("model")
        if not isinstance(model, dict):
            raise DataError(f"{self.path}: checkpoint configuration has no 'model' section")
        return {**LEGACY_MODEL_SETTINGS, **model}

    def check_fits(self, model: ModelConfig) -> None:
        """The trainable weights only fit a model of the same generator, size, LoRA rank and alpha, and S1 product.

        Raises:
            ConfigError: naming the flag whose value differs from the checkpoint's.
        """
        saved = self.model_settings
        for name in ARCHITECTURE_FIELDS:
            if name in saved and saved[name] != getattr(model, name):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"{self.path}: checkpoint was trained with {flag} {saved[name]}, not {getattr(model, name)}"
                )


def progress_of(path: Path) -> tuple[int, int]:
    """(completed epochs, batches of the next epoch) a checkpoint was written after (memory-mapped read)."""
    state = _load(Path(path), mmap=True)
    return int(state["epoch"]), int(state["train_stats"].get("partial_batches", 0))


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint furthest into training in ``directory`` (epoch, step and interrupted checkpoints)."""
    candidates = list(rotating_checkpoints(directory))
    if (Path(directory) / INTERRUPTED_FILE).is_file():
        candidates.append(Path(directory) / INTERRUPTED_FILE)
    return max(candidates, key=progress_of, default=None)


def find_resume(value: Path, output_dir: Path | None) -> Path:
    """The checkpoint ``--resume`` means: a file, the latest in a run directory, or ``latest`` in ``--output-dir``.

    Raises:
        DataError: nothing to resume from, named with where it looked.
        ConfigError: ``latest`` without an output directory.
    """
    value = Path(value)
    if str(value) == "latest":
        if output_dir is None:
            raise ConfigError("--resume latest needs --output-dir (the run directory to continue)")
        directory = Path(output_dir)
    elif value.is_dir():
        directory = value
    elif value.exists() or value.suffix:
        if not value.is_file():
            raise DataError(f"{value}: checkpoint not found")
        return value
    else:
        raise DataError(f"{value}: checkpoint or run directory not found")
    latest = latest_checkpoint(directory)
    if latest is None:
        raise DataError(
            f"{directory}: no checkpoint to resume from "
            f"(checkpoint_epoch_N.pt, checkpoint_step_N.pt or {INTERRUPTED_FILE})"
        )
    return latest


def epoch_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``checkpoint_epoch_N.pt`` files in a directory, sorted by N."""
    return _numbered(directory, _EPOCH_RE)


def step_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``checkpoint_step_N.pt`` files in a directory, sorted by N (optimizer steps)."""
    return _numbered(directory, _STEP_RE)


def rotating_checkpoints(directory: Path) -> list[Path]:
    """The checkpoints ``--keep-last`` and ``--keep-best`` choose among: epoch and step checkpoints."""
    return [path for _, path in epoch_checkpoints(directory) + step_checkpoints(directory)]


def _numbered(directory: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    found = []
    for path in Path(directory).glob("checkpoint_*.pt"):
        match = pattern.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


@dataclass(frozen=True)
class _Record:
    """What rotation needs to know of a checkpoint file: how far into training, and its score."""

    progress: tuple[int, int, int]  # (completed epochs, batches of the next one, optimizer steps)
    score: float | None  # the monitored validation value; None when not validated or not finite


class CheckpointSaver:
    """Writes epoch, step, best and interrupt checkpoints into one directory, and rotates them.

    Rotation looks at the epoch and step checkpoints together: the newest ``keep_last`` (by
    progress) stay, and so do the ``keep_best`` ones with the best monitored score; a
    checkpoint kept for either reason stays. ``best_model.pt`` and the interrupt checkpoint
    are never rotated. A checkpoint without a validation of its own, or whose validation is
    not finite, never counts among the best.

    Args:
        directory: the run's output directory.
        keep_last: keep only the newest N (None: keep all, unless ``keep_best`` is given: then the newest one).
        keep_best: also keep the N best by ``score_key`` (None: by progress only).
        score_key: the validation statistic ``keep_best`` ranks by (a key of ``val_stats``).
        mode: ``max`` (higher is better) or ``min``.
    """

    def __init__(
        self,
        directory: Path,
        keep_last: int | None = None,
        keep_best: int | None = None,
        score_key: str = "sar_agreement",
        mode: str = "max",
    ) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.score_key, self.mode = score_key, mode
        self._records: dict[str, tuple[int, _Record]] = {}  # by file name, with its mtime

    def save_epoch(self, checkpoint: Checkpoint) -> Path:
        """Write ``checkpoint_epoch_N.pt``; rotate, and drop a superseded interrupt checkpoint."""
        return self._save(checkpoint, EPOCH_FILE.format(epoch=checkpoint.epoch))

    def save_step(self, checkpoint: Checkpoint) -> Path:
        """Write ``checkpoint_step_N.pt`` (N: its optimizer steps); rotate, and drop a superseded interrupt checkpoint."""
        return self._save(checkpoint, STEP_FILE.format(step=int(checkpoint.train_stats["optimizer_steps"])))

    def save_best(self, checkpoint: Checkpoint) -> Path:
        return checkpoint.write(self.directory / BEST_FILE)

    def save_interrupted(self, checkpoint: Checkpoint) -> Path:
        return checkpoint.write(self.directory / INTERRUPTED_FILE)

    def _save(self, checkpoint: Checkpoint, name: str) -> Path:
        path = checkpoint.write(self.directory / name)
        self.rotate()
        interrupted = self.directory / INTERRUPTED_FILE
        if interrupted.exists():
            # It stopped inside an epoch: a checkpoint further into training supersedes it.
            try:
                superseded = progress_of(interrupted) < progress_of(path)
            except DataError:
                superseded = False
            if superseded:
                interrupted.unlink(missing_ok=True)
        return path

    def rotate(self) -> None:
        """Delete the epoch and step checkpoints that neither ``keep_last`` nor ``keep_best`` keeps."""
        if self.keep_last is None and self.keep_best is None:
            return
        records = {}
        for path in rotating_checkpoints(self.directory):
            record = self._record(path)
            if record is not None:  # an unreadable file is left alone
                records[path] = record
        by_progress = sorted(records, key=lambda p: records[p].progress)
        keep = set(by_progress[-(self.keep_last or 1) :])
        if self.keep_best is not None:
            scored = [p for p in by_progress if records[p].score is not None]
            sign = -1.0 if self.mode == "max" else 1.0
            # Best first; between equal scores the earlier checkpoint (it reached the score first).
            scored.sort(key=lambda p: (sign * records[p].score, records[p].progress))  # type: ignore[operator]
            keep.update(scored[: self.keep_best])
        for path in by_progress:
            if path not in keep:
                path.unlink(missing_ok=True)
                self._records.pop(path.name, None)

    def _record(self, path: Path) -> _Record | None:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        cached = self._records.get(path.name)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            state = _load(path, mmap=True)
            train, val = state["train_stats"], state["val_stats"]
            progress = (
                int(state["epoch"]),
                int(train.get("partial_batches", 0)),
                int(train.get("optimizer_steps", 0)),
            )
        except (DataError, AttributeError, TypeError, ValueError):
            return None
        score = val.get(self.score_key) if isinstance(val, dict) else None
        numbers = [v for v in val.values() if isinstance(v, int | float)] if isinstance(val, dict) else []
        finite = isinstance(score, int | float) and all(math.isfinite(v) for v in numbers)
        record = _Record(progress=progress, score=float(score) if finite else None)  # type: ignore[arg-type]
        self._records[path.name] = (mtime, record)
        return record
