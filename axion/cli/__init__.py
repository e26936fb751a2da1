"""The ``axion`` command line.

One Typer app (:mod:`axion.cli.app`) with a ``stage3`` sub-app; each command lives
in its own module and registers itself on import. Command modules import nothing
heavy at import time, so ``--help`` is fast.

May import: every other package (each command calls its library function, see
docs/layout.md); nothing imports this package but ``axion.__main__``.
"""

from __future__ import annotations

from axion.cli import evaluate as _evaluate  # noqa: F401
from axion.cli import export as _export  # noqa: F401
from axion.cli import infer as _infer  # noqa: F401
from axion.cli import prepare as _prepare  # noqa: F401  (registers the command)
from axion.cli import train as _train  # noqa: F401
from axion.cli import visualize as _visualize  # noqa: F401
from axion.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()
