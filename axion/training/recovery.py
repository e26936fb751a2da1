"""A run directory after a crash: what may be started in it, and how its best model is repaired.

A run can be killed at any moment. What that leaves, and what the next start does:

- temporary files of a checkpoint being written: removed (:func:`axion.outputs.clean_stale`);
- ``config.json`` (and perhaps ``metrics.jsonl``) but no checkpoint: nothing to resume, so
  the run starts again from scratch, saying so (:func:`check_run_dir`);
- ``checkpoint_epoch_N.pt`` written but ``best_model.pt`` not yet (or stale): ``--resume``
  copies the checkpoint of the best epoch its early-stopping record names back to
  ``best_model.pt`` (:func:`restore_best`);
- a torn last line of ``metrics.jsonl``: dropped on resume (:mod:`axion.records.history`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from axion.atomic import atomic_path
from axion.errors import DataError
from axion.training.checkpoint import BEST_FILE, EPOCH_FILE, STEP_FILE, Checkpoint

CONFIG_FILE = "config.json"
#: What a run writes besides checkpoints; removed when a run without checkpoints starts again.
RUN_LOGS = ("metrics.jsonl", "tensorboard")


@dataclass(frozen=True)
class RunDir:
    """What a new (not resumed) run found in its output directory."""

    #: A run started here before and was stopped before its first checkpoint: start it again.
    restart: bool = False


def _checkpoints(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.pt"), key=lambda p: (p.stat().st_mtime, p.name))


def check_run_dir(output_dir: Path, resuming: bool) -> RunDir:
    """Refuse to mix a new run into a directory that holds checkpoints; allow restarting one that has none.

    Raises:
        DataError: the path is a file, or it holds checkpoints and ``--resume`` was not given
            (the message names the newest checkpoint to resume from).
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: output directory is a file")
    if resuming or not output_dir.is_dir():
        return RunDir()
    checkpoints = _checkpoints(output_dir)
    if checkpoints:
        listed = ", ".join(sorted(p.name for p in checkpoints)[:3])
        raise DataError(
            f"{output_dir}: already holds a training run ({listed}); continue it with "
            f"--resume {checkpoints[-1]} or choose another --output-dir"
        )
    return RunDir(restart=(output_dir / CONFIG_FILE).is_file())


def clear_run_logs(output_dir: Path) -> None:
    """Remove the logs of a run that wrote no checkpoint (it is being started again)."""
    for name in RUN_LOGS:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _best_source(epoch: int, step: int, candidates: list[Path], best_value: object) -> Path | None:
    """The first candidate that is a verified checkpoint of the best validation whose early
    stopping records the same best value: taken after ``step`` optimizer steps when the record
    has them (a validation may be mid-epoch), else at the end of ``epoch``."""
    for path in candidates:
        if not path.is_file():
            continue
        try:
            ckpt = Checkpoint.read(path)
        except DataError:
            continue
        recorded = (ckpt.val_stats.get("early_stopping") or {}).get("best")
        if step > 0:
            same = int(ckpt.train_stats.get("optimizer_steps", -1)) == step
        else:
            same = ckpt.epoch == epoch and int(ckpt.train_stats.get("partial_batches", 0)) == 0
        if same and recorded == best_value:
            return path
    return None


def restore_best(output_dir: Path, resume: Checkpoint) -> str | None:
    """Make ``best_model.pt`` the checkpoint of the best epoch that ``resume`` records.

    A run killed after ``checkpoint_epoch_N.pt`` but before ``best_model.pt`` (or while
    writing it) leaves a best model that is missing, damaged or from an earlier epoch;
    resuming would then never write it again, because the resumed early stopping
    already knows epoch N's value. The epoch checkpoint of the best epoch holds exactly
    what ``best_model.pt`` should, so it is copied (atomically).

    Returns:
        A line for the console saying what was done, or None when nothing needed doing.
    """
    record = resume.val_stats.get("early_stopping") or {}
    epoch, step = int(record.get("best_epoch", 0)), int(record.get("best_step", 0))
    if epoch <= 0:
        return None
    best = output_dir / BEST_FILE
    try:
        current = Checkpoint.read(best) if best.is_file() else None
    except DataError:
        current = None
    if current is not None and (
        int(current.train_stats.get("optimizer_steps", -1)) == step if step > 0 else current.epoch == epoch
    ):
        return None
    names = ([STEP_FILE.format(step=step)] if step > 0 else []) + [EPOCH_FILE.format(epoch=epoch)]
    candidates = [output_dir / name for name in names]
    if resume.path is not None:
        candidates += [resume.path.parent / name for name in names] + [resume.path]
    source = _best_source(epoch, step, candidates, record.get("best"))
    where = f"epoch {epoch}" + (f" (step {step})" if step > 0 else "")
    if source is None:
        return (
            f"note: {best} should hold {where}, the best so far, but no checkpoint of {where} "
            "is left to restore it from; the next improvement writes it"
        )
    with atomic_path(best, fsync=True) as tmp:
        shutil.copyfile(source, tmp)
    return f"Restored {best} from {source} (best {where}, as the checkpoint records)"
