"""User-facing errors.

Anything the user can fix (a bad flag, a broken tile, missing weights) is raised
as an :class:`AxionError`. The CLI prints its message as one line on stderr and
exits with :attr:`AxionError.exit_code`, without a traceback.
"""

from __future__ import annotations


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
