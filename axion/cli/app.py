"""The Typer apps: ``axion`` and its ``stage3`` sub-app. Commands register on :data:`stage3_app`."""

from __future__ import annotations

import typer

from axion import __version__

app = typer.Typer(
    name="axion",
    help="Axion-Sat toolkit: SAR-grounded optical refinement with TerraMind + LoRA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stage3_app = typer.Typer(
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
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Axion-Sat toolkit."""
