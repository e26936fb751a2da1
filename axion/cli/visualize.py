"""``axion stage3 visualize``: PNG figures from an ``evaluate`` results directory.

Writes ``tiles/<name>.png`` (six panels per tile), ``training_curves.png`` (from the
run's ``metrics.jsonl``, found next to the evaluated checkpoint) and
``metric_distributions.png`` into ``--output-dir``, and ``index.html``, a self-contained page
with the scores and every figure (see :func:`axion.viz.render.visualize`).
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
from axion.config import VisualizeConfig

_PANEL = "Options"


def _opt(name: str, **kwargs: Any) -> Any:
    return config_option(VisualizeConfig, name, panel=_PANEL, **kwargs)


@stage3_app.command(cls=Command, no_args_is_help=True)
@user_errors
def visualize(
    ctx: typer.Context,
    results: Path | None = _opt("results"),
    output_dir: Path | None = _opt("output_dir"),
    history: Path | None = _opt("history", show_default="next to the checkpoint recorded in summary.json"),
    max_tiles: int = _opt("max_tiles"),
    dpi: int = _opt("dpi"),
    config: Path | None = config_file_option(_PANEL),
    print_config: bool = print_config_option(_PANEL),
) -> None:
    """Draw tile panels, training curves and opt_v2-vs-opt_v3 metric distributions as PNG files, and
    index.html: one page with the summary table, the figures and every tile's scores.

    Tile panels: SAR false colour, opt_v2, opt_v3 and ground truth in true colour
    (one shared 2-98 % stretch of the ground truth), |opt_v3 - ground truth| and
    the SAR edges over opt_v3, with the tile's metrics in the title.
    """
    settings = resolve_settings(ctx, VisualizeConfig, locals(), config=config, print_config=print_config)

    from axion.console import make_console, plural
    from axion.viz.render import visualize as render

    console = make_console()
    done = render(settings)
    for note in done.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"Wrote {plural(len(done.figures), 'figure')} to {settings.output_dir}", markup=False)
    if done.page is not None:
        console.print(f"Results page: {done.page}", markup=False)
