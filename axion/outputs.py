"""Output locations: checked before any slow work, cleaned of what dead processes left.

Every command calls :func:`check_output_dir` (or :func:`check_writable_file`) for
each place it will write, before it builds a model or reads a scene, so a folder it
cannot write is one line and exit code 2 instead of a ``PermissionError`` traceback
after half a minute. The check creates nothing: it finds the nearest folder that
exists and tries to create an anonymous temporary file there, which vanishes when
closed. :func:`clean_stale` removes the temporary files of killed writers
(:mod:`axion.atomic`), and :func:`remove_stale_folders` the staging folders of killed
commands (:func:`staging_name`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from axion.atomic import process_alive, remove_stale_temporaries
from axion.errors import DataError


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (as whatever kind of file)."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_writable_dir(path: Path, what: str = "output directory") -> None:
    """Refuse an output directory that cannot be created or written into; create nothing.

    Args:
        path: the directory a command will write into (it may not exist yet).
        what: how the message names it.

    Raises:
        DataError: one line naming the path and the problem.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: {what} is a file, not a directory")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise DataError(f"{path}: cannot create the {what}: {existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = "" if existing == path.absolute() else f" (in {existing}, where it would be created)"
        raise DataError(f"{path}: {what} is not writable{where}: {reason}") from None


def check_writable_file(path: Path, what: str = "output file") -> None:
    """Refuse an output file whose folder cannot be created or written; create nothing.

    A missing folder is fine, as for output directories: the command creates it.

    Raises:
        DataError: one line naming the path and the problem.
    """
    path = Path(path)
    if path.exists() and path.is_dir():
        raise DataError(f"{path}: {what} is a directory")
    check_writable_dir(path.parent, f"folder of the {what}")


def clean_stale_file(path: Path) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left beside it."""
    path = Path(path)
    return remove_stale_temporaries(path.parent, path.name)


def clean_stale(*directories: Path) -> list[Path]:
    """Remove the temporary files that killed processes left in these directories; return them."""
    removed: list[Path] = []
    for directory in directories:
        removed += remove_stale_temporaries(Path(directory))
    return removed


def check_output_dir(
    path: Path,
    *,
    clean: Callable[[Path], object] = clean_stale,
    occupied: Callable[[Path], str | None] | None = None,
) -> None:
    """The output-folder check every command makes before any slow work; creates nothing.

    Refuses a file or a folder that cannot be created or written (:func:`check_writable_dir`),
    then, when the folder exists, removes what killed runs of the same command left there
    (``clean``) and asks ``occupied`` whether it holds something the command must not
    overwrite: its answer, if any, is the error.

    Args:
        path: the folder the command will write into (it may not exist yet).
        clean: removes a killed run's leftovers (default: temporary files).
        occupied: a reason to refuse the existing folder, or ``None`` to accept it; leave it
            out where anything may be overwritten (``--overwrite``).

    Raises:
        DataError: one line naming the folder and the problem.
    """
    path = Path(path)
    check_writable_dir(path)
    if not path.is_dir():
        return
    clean(path)
    if occupied is not None and (problem := occupied(path)) is not None:
        raise DataError(f"{path}: {problem}")


def staging_name(kind: str) -> str:
    """A hidden staging folder name that carries this process's id: ``.<kind>-<pid>-<random>``."""
    return f".{kind}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def remove_stale_folders(directory: Path, kind: str) -> list[Path]:
    """Remove the staging folders (:func:`staging_name`) of killed processes in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(kind)}-(?P<pid>\d+)-[0-9a-f]+$")
    removed = []
    for path in sorted(directory.iterdir()):
        match = pattern.match(path.name)
        if (
            match
            and path.is_dir()
            and int(match["pid"]) != os.getpid()
            and not process_alive(int(match["pid"]))
        ):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
