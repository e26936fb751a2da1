"""``--resume`` resolved once: which checkpoint, its settings, and what the new flags change.

``axion stage3 train --resume X`` takes the run's own settings and folder from the
checkpoint unless given again; :func:`resume_point` finds the checkpoint and reads its
settings (memory-mapped, no tensors), :func:`overrides` names the settings given again that
differ. The weights and optimizer state are read once, later, by
:func:`axion.training.fit.check_run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axion.config import FIELD_SECTION, TrainConfig, resolve_config
from axion.training.checkpoint import Checkpoint, find_resume


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run resumes from and the settings it was written with.

    Attributes:
        path: the checkpoint file (``--resume`` as a file, a run folder or ``latest``).
        base: its settings as a config layer, with ``output_dir`` set to its folder.
        saved: those settings resolved on their own (no flags, no environment).
    """

    path: Path
    base: dict[str, Any]
    saved: TrainConfig


def resume_point(value: Path, output_dir: Path | None) -> ResumePoint:
    """Find the checkpoint ``--resume`` names and read its settings (like diffusers' resume).

    Raises:
        DataError: nothing to resume from, or an unreadable checkpoint.
        ConfigError: ``latest`` without an output directory.
    """
    path = find_resume(Path(value), output_dir)
    settings = Checkpoint.read_config(path)
    base = {**settings, "data": {**settings.get("data", {}), "output_dir": str(path.parent)}}
    return ResumePoint(path=path, base=base, saved=resolve_config(TrainConfig, environ={}, base=base))


def overrides(cfg: TrainConfig, point: ResumePoint, given: dict[str, Any]) -> list[str]:
    """One line per setting given again that differs from the resumed checkpoint's."""
    notes = []
    for name, section in FIELD_SECTION.items():
        now, before = getattr(getattr(cfg, section), name), getattr(getattr(point.saved, section), name)
        if name != "resume" and name in given and now != before:
            notes.append(f"Resuming with {name} = {now} (the checkpoint had {before})")
    return notes
