"""The Typer apps: ``axion`` and its ``stage3`` sub-app. Commands register on :data:`stage3_app`."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from axion import __version__

#: Click's usage error (bad value, unknown option or command), from the click Typer runs on.
UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _FlagHelp:
    """``--help`` shown as the flag it is, without a ``<bool>`` type beside it."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class Command(_FlagHelp, TyperCommand):
    """Every ``axion stage3`` command: ``@stage3_app.command(cls=Command)``."""


class Group(_FlagHelp, TyperGroup):
    """The ``axion`` group."""


class OneLineErrors(_FlagHelp, TyperGroup):
    """A command group whose commands report a bad flag value in one line, like every other error.

    Click's own usage errors (``--batch-size abc``, an unknown option) would otherwise be
    drawn as a box of five lines.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command shows its help
                raise
            from axion.cli._common import fail

            message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
            where = getattr(exc, "ctx", None) or ctx
            raise fail(f"{message} (see '{where.command_path} --help')", exc.exit_code) from None  # type: ignore[attr-defined]


app = typer.Typer(
    cls=Group,
    name="axion",
    help="Axion-Sat toolkit: SAR-grounded optical refinement with TerraMind + LoRA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stage3_app = typer.Typer(
    cls=OneLineErrors,
    help="Stage 3: ground Stage 2 optical (opt_v2) in Sentinel-1 SAR structure -> opt_v3.",
    no_args_is_help=True,
)
app.add_typer(stage3_app, name="stage3")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"axion {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit.", metavar=""
    ),
) -> None:
    """Axion-Sat toolkit."""
