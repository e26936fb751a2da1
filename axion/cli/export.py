"""``axion stage3 export``: a checkpoint's weights as a shareable folder in peft's layout.

Parses the flags into :class:`axion.config.ExportConfig` and runs
:func:`axion.writers.export.export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from axion.cli._common import (
    config_file_option,
    config_option,
    print_config_option,
    resolve_settings,
    user_errors,
)
from axion.cli.app import Command, stage3_app
from axion.config import ExportConfig

_PANEL = "Options"


def _opt(name: str, *decls: str, **kwargs: Any) -> Any:
    return config_option(ExportConfig, name, *decls, panel=_PANEL, **kwargs)


@stage3_app.command(cls=Command, no_args_is_help=True)
@user_errors
def export(
    ctx: typer.Context,
    checkpoint: Path | None = _opt("checkpoint"),
    output_dir: Path | None = _opt("output_dir"),
    merge: bool = _opt("merge"),
    overwrite: bool = _opt("overwrite"),
    config: Path | None = config_file_option(_PANEL),
    print_config: bool = print_config_option(_PANEL),
) -> None:
    """Export trained weights: LoRA adapters in peft's layout, the fusion network, and their settings.

    Load the adapters onto terratorch's TerraMind generator with
    peft.PeftModel.from_pretrained(generator, OUTPUT_DIR); evaluate and infer take the folder
    as --checkpoint.
    """
    settings = resolve_settings(ctx, ExportConfig, locals(), config=config, print_config=print_config)

    from axion.console import make_console
    from axion.writers.export import export as run_export

    done = run_export(
        settings.checkpoint, settings.output_dir, merge=settings.merge, overwrite=settings.overwrite
    )
    console = make_console()
    for path in done.files:
        console.print(f"  {path}", markup=False)
    console.print(f"Exported {settings.checkpoint} to {done.directory}", markup=False)
