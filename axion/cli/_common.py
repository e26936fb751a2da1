"""Pieces every command shares: error handling, explicit-flag detection, consoles.

Commands import heavy libraries (torch, terratorch) inside their bodies, never at
module level, so that ``axion --help`` answers in well under two seconds.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import typer
from rich.console import Console

from axion.config import field_default, field_help
from axion.errors import AxionError

F = TypeVar("F", bound=Callable[..., Any])

#: Console for results and progress (stdout).
console = Console(highlight=False)
#: Console for errors (stderr), never wrapped so an error stays on one line.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


def user_errors(func: F) -> F:
    """Turn :class:`AxionError` into a one-line message and its exit code, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AxionError as exc:
            raise fail(str(exc), exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def explicit_flags(ctx: typer.Context, values: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the values the user typed on the command line.

    Defaults shown in ``--help`` come from the config models; only flags given
    explicitly may override a config file or ``AXION_*`` variable.
    """
    return {
        name: value
        for name, value in values.items()
        # Typer ships its own click, so compare the source by name, not by enum class.
        if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"
    }


def is_interactive() -> bool:
    """Whether live progress bars make sense (a terminal on stdout)."""
    return sys.stdout.isatty()


def config_option(section: type, name: str, *decls: str, panel: str, **kwargs: Any) -> Any:
    """A Typer option whose help (and default, unless given) come from a config model field.

    The config models stay the one source of every default that ``--help`` shows.
    """
    flag = "--" + name.replace("_", "-")
    default = kwargs.pop("default", field_default(section, name))
    help_text = kwargs.pop("help", field_help(section, name))
    kwargs.setdefault("show_default", True)
    return typer.Option(default, *(decls or (flag,)), help=help_text, rich_help_panel=panel, **kwargs)
