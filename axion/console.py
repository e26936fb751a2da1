"""The one place consoles are made: what people and log files see.

On a terminal, rich draws live bars and tables at the terminal's width. Anywhere
else (CI, ``| tee``, ``nohup``) lines are never wrapped, so a log line stays one
line however long it is, and tables get room instead of being squeezed to 80
columns.
"""

from __future__ import annotations

from rich.console import Console

#: Width given to tables when the output is not a terminal.
LOG_WIDTH = 160


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that never wraps lines when it is not a terminal."""
    console = Console(stderr=stderr, highlight=False)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=LOG_WIDTH)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 tile``, ``2 tiles`` (``many`` for irregular plurals)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"
