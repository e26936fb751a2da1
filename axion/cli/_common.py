"""Pieces every command shares: settings from flags, shared options, error handling, consoles.

A command's flags are declared with :func:`config_option`, so help text and defaults
come from the command's settings model; :func:`resolve_settings` then builds the
settings from the flags typed on the command line, ``--config`` and ``AXION_*``.
Commands import heavy libraries (torch, terratorch) inside their bodies, never at
module level, so that ``axion --help`` answers in well under two seconds.
"""

from __future__ import annotations

import errno
import functools
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel

from axion.config import field_default, field_help, field_required, flat_fields, resolve_config, settings_yaml
from axion.errors import AxionError

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error on stderr and return the ``typer.Exit`` to raise."""
    from axion.console import make_console

    make_console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


#: errno values of a location that cannot be written (exit 2: the user picks another) and of
#: a full disk (exit 1): one line each, whenever they happen, instead of a traceback.
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
_FULL = {errno.ENOSPC, errno.EDQUOT}


def user_errors(func: F) -> F:
    """Turn :class:`AxionError`, and an unwritable location or a full disk met while writing,
    into a one-line message and its exit code, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AxionError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except OSError as exc:
            if exc.errno not in _UNWRITABLE | _FULL:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(f"{where}cannot write: {exc.strerror}", 2 if exc.errno in _UNWRITABLE else 1) from None

    return wrapper  # type: ignore[return-value]


def explicit_flags(ctx: typer.Context, values: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the values the user typed on the command line.

    Defaults shown in ``--help`` come from the settings models; only flags given
    explicitly may override a config file or ``AXION_*`` variable.
    """
    return {
        name: value
        for name, value in values.items()
        # Typer ships its own click, so compare the source by name, not by enum class.
        if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"
    }


def metavar(annotation: Any) -> str:
    """How a settings field's value reads in ``--help``: ``[a|b]`` for choices, nothing for flags."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return "[" + "|".join(str(a) for a in args) + "]"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return "|".join(metavar(a).strip("[]") for a in args) if len(args) > 1 else metavar(args[0])
    if typing.get_origin(annotation) is typing.Annotated:
        return metavar(args[0])
    if typing.get_origin(annotation) is list:
        return metavar(args[0])
    names = {bool: "", int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH"}
    return names.get(annotation, "VALUE")


def config_option(section: type, name: str, *decls: str, panel: str, **kwargs: Any) -> Any:
    """A Typer option whose help, metavar (and default, unless given) come from a settings model field.

    A required field gets no default on the command line (it may come from ``--config``
    or ``AXION_*``) and its help says so.
    """
    flag = "--" + name.replace("_", "-")
    help_text = kwargs.pop("help", field_help(section, name))
    kwargs.setdefault("metavar", metavar(section.model_fields[name].annotation))
    if field_required(section, name):
        kwargs.setdefault("show_default", False)
        help_text += " (required)"
    default = kwargs.pop("default", field_default(section, name))
    kwargs.setdefault("show_default", True)
    return typer.Option(default, *(decls or (flag,)), help=help_text, rich_help_panel=panel, **kwargs)


def config_file_option(panel: str) -> Any:
    return typer.Option(
        None,
        "--config",
        help="YAML, TOML or JSON file of settings (flat or grouped; other commands' settings are ignored). "
        "Precedence: defaults < file < AXION_* environment < flags.",
        rich_help_panel=panel,
        metavar="PATH",
    )


def print_config_option(panel: str) -> Any:
    return typer.Option(
        False,
        "--print-config",
        help="Print the resolved settings as YAML and exit.",
        rich_help_panel=panel,
        metavar="",
    )


def resolve_settings(
    ctx: typer.Context,
    model: type[M],
    values: Mapping[str, Any],
    *,
    config: Path | None = None,
    print_config: bool = False,
    base: Mapping[str, Any] | None = None,
) -> M:
    """Settings of a command from its flags (only those typed), ``--config`` and ``AXION_*``.

    With ``print_config`` the resolved settings are printed as YAML and the command exits.
    """
    fields = flat_fields(model)
    flags = explicit_flags(ctx, {k: v for k, v in values.items() if k in fields})
    settings = resolve_config(model, config_file=config, flags=flags, base=base)
    if print_config:
        typer.echo(settings_yaml(settings), nl=False)
        raise typer.Exit(0)
    return settings


# --- options that evaluate and infer share (from PredictionSettings) ---------------------------
_MODEL_PANEL = "Model"


def prediction_option(name: str, *decls: str, **kwargs: Any) -> Any:
    """An option of :class:`~axion.config.PredictionSettings` (the checkpoint and how its model runs)."""
    from axion.config import PredictionSettings

    if name in ("timesteps", "seed"):
        kwargs.setdefault("show_default", "the checkpoint's")
    if name in ("pretrained", "weights_dir"):
        kwargs.setdefault("show_default", "as in training")
    return config_option(PredictionSettings, name, *decls, panel=kwargs.pop("panel", _MODEL_PANEL), **kwargs)
