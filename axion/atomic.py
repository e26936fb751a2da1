"""Atomic file writes: write beside the target under a temporary name, flush, rename.

A crash at any moment leaves either the old file or the new one, never a torn one
(the rename is atomic on POSIX file systems). Temporary names are hidden and carry the
writer's process id (``.<name>.<pid>.tmp``), so leftovers of a dead process can be
recognised and removed (:func:`remove_stale_temporaries`) and never match a pattern like
``*.pt``. Writers that pick a format from the extension (matplotlib) ask for the
target's suffix to be kept (``.<name>.<pid>.tmp.png``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp(\.[^.]*)?$")


def temporary_path(path: Path, keep_suffix: bool = False) -> Path:
    """The temporary name this process writes ``path`` under."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix if keep_suffix else ''}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, *, fsync: bool = False, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed.

    Args:
        path: the file to write.
        fsync: flush the file to disk before the rename (checkpoints: survive a power cut).
        keep_suffix: end the temporary name with ``path``'s suffix (for writers that need it).
    """
    path = Path(path)
    tmp = temporary_path(path, keep_suffix)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write an object as indented JSON atomically (non-finite numbers are refused, not written as NaN)."""
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temporaries(directory: Path, name: str | None = None) -> list[Path]:
    """Temporary files in ``directory`` left by processes that are no longer running.

    Args:
        directory: where to look.
        name: only the temporaries of this target file name (None: of any).
    """
    if not Path(directory).is_dir():
        return []
    found = []
    for path in Path(directory).iterdir():
        match = _TEMPORARY.match(path.name)
        if (
            match
            and (name is None or match["name"] == name)
            and path.is_file()
            and int(match["pid"]) != os.getpid()
            and not process_alive(int(match["pid"]))
        ):
            found.append(path)
    return sorted(found)


def remove_stale_temporaries(directory: Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files of dead processes in ``directory`` (of target ``name`` only, if
    given); returns what was removed."""
    removed = stale_temporaries(directory, name)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
