"""User-facing errors.

Anything the user can fix (a bad flag, a broken tile, missing weights) is raised
as an :class:`AxionError`. The CLI prints its message as one line on stderr and
exits with :attr:`AxionError.exit_code`, without a traceback.
"""

from __future__ import annotations

import re
import warnings
from typing import Any


class AxionError(Exception):
    """An error caused by input the user controls."""

    exit_code: int = 2


class ConfigError(AxionError):
    """A setting is missing, unknown or out of range."""


class DataError(AxionError):
    """A tile, scene or directory is missing, unreadable or malformed."""


class WeightsError(AxionError):
    """Model or LPIPS weights are missing or do not match."""


class TrainingError(AxionError):
    """Training cannot go on (for example, the loss kept being non-finite)."""

    exit_code = 1


def torch_load_failure(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, short and safe to follow.

    torch's own text runs to hundreds of characters and suggests loading again with
    ``weights_only=False``: for a hostile file that runs whatever its pickle holds. This
    names the problem only.
    """
    text = str(exc)
    if "weights_only" in text or "Weights only load failed" in text:
        found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", text, re.IGNORECASE)
        held = f", such as {found.group(1).rstrip('.,')}," if found else ""
        return f"it holds objects other than tensors and plain data{held} which could run code; not loaded"
    if isinstance(exc, PermissionError):
        return "permission denied"
    # A cut zip fails to find its directory, or seeks past the end (EINVAL); a cut pickle ends early.
    if "central directory" in text or "zip archive" in text or isinstance(exc, (EOFError, OSError)):
        return "truncated or corrupted"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}"[:80] if first else type(exc).__name__


def load_weights_only(path: Any, error: type[AxionError], what: str, **kwargs: Any) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, or ``error`` in one short line.

    Opening the file never runs code, torch's notes on odd pickles are silenced (the error
    says what matters), and a file torch cannot read raises ``error("<path>: <what>
    (<reason>)")`` with :func:`torch_load_failure`'s reason. ``kwargs`` go to ``torch.load``.
    """
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except Exception as exc:  # torch raises many types for truncated, foreign or hostile files
        raise error(f"{path}: {what} ({torch_load_failure(exc)})") from None
