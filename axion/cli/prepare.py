"""``axion stage3 prepare``: real data in, tiles out (also ``--check`` and ``--demo``).

Parses the flags into :class:`axion.config.PrepareConfig` and runs
:func:`axion.data.prepare.api.prepare` (or :func:`~axion.data.prepare.api.check`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from axion.cli._common import (
    config_file_option,
    config_option,
    explicit_flags,
    print_config_option,
    resolve_settings,
    user_errors,
)
from axion.cli.app import Command, stage3_app
from axion.config import PrepareConfig
from axion.errors import ConfigError

_SOURCE, _SCENES, _OUT = "Source", "Scenes (--s1/--s2)", "Tiles and splits"


def _opt(name: str, *decls: str, panel: str = _OUT, **kwargs: Any) -> Any:
    return config_option(PrepareConfig, name, *decls, panel=panel, **kwargs)


@stage3_app.command(cls=Command, no_args_is_help=True)
@user_errors
def prepare(
    ctx: typer.Context,
    output_dir: Path | None = _opt("output_dir", "--output-dir", "-o"),
    check: Path | None = _opt("check", panel=_SOURCE),
    demo: bool = _opt("demo", panel=_SOURCE),
    from_tiles: Path | None = _opt("from_tiles", panel=_SOURCE),
    bigearthnet_s1: Path | None = _opt("bigearthnet_s1", panel=_SOURCE),
    bigearthnet_s2: Path | None = _opt("bigearthnet_s2", panel=_SOURCE),
    s1: list[Path] | None = _opt("s1", panel=_SCENES, default=None, show_default=False),
    s2: list[Path] | None = _opt("s2", panel=_SCENES, default=None, show_default=False),
    s2_cloudy: list[Path] | None = _opt("s2_cloudy", panel=_SCENES, default=None, show_default=False),
    opt_v2: list[Path] | None = _opt("opt_v2", panel=_SCENES, default=None, show_default=False),
    s1_units: str = _opt("s1_units", panel=_SCENES),
    s2_bands: str | None = _opt("s2_bands", panel=_SCENES, show_default="by band count"),
    s2_cloudy_bands: str | None = _opt(
        "s2_cloudy_bands", panel=_SCENES, show_default="--s2-bands or by count"
    ),
    s1_product: str = _opt("s1_product", panel=_SCENES),
    s2_level: str = _opt("s2_level", panel=_SCENES),
    tile_size: int = _opt("tile_size", panel=_SCENES),
    stride: int | None = _opt("stride", panel=_SCENES, show_default="tile size"),
    max_nodata: float = _opt("max_nodata"),
    split_ratios: str = _opt("split_ratios"),
    seed: int = _opt("seed"),
    block_size: int = _opt("block_size"),
    overwrite: bool = _opt("overwrite"),
    format: str = _opt("format"),
    shard_size: int = _opt("shard_size"),
    config: Path | None = config_file_option(_OUT),
    print_config: bool = print_config_option(_OUT),
) -> None:
    """Write training tiles from real Sentinel-1/Sentinel-2 data, or check existing tiles.

    Sources (pick one): --demo; --bigearthnet-s1 DIR --bigearthnet-s2 DIR; --s1 FILE --s2 FILE
    (repeatable); or --from-tiles DIR (with --format shards). Tiles: S1 VV, VH in dB and S2 B2, B3, B4, B8 as L2A reflectance x 10000,
    with a JSON naming the split and the georeference. --s1 without --s2 (with --opt-v2,
    or alone) makes tiles for inference only: no ground truth, no split.
    """
    values = {
        k: v for k, v in locals().items() if not (k in ("s1", "s2", "s2_cloudy", "opt_v2") and v is None)
    }
    settings = resolve_settings(ctx, PrepareConfig, values, config=config, print_config=print_config)

    from axion.data.prepare.api import SCENE_ONLY, source_of

    source = source_of(settings)
    if source == "check":
        check_report(settings.check)  # type: ignore[arg-type]
        return
    if source != "scenes":
        for name in explicit_flags(ctx, {name: values[name] for name in SCENE_ONLY}):
            raise ConfigError(f"--{name.replace('_', '-')} applies to --s1/--s2 scenes only")
    _write(settings)


def check_report(data_dir: Path) -> None:
    """Print every problem ``--check`` finds; exit 2 if there is any."""
    from axion.console import make_console, plural
    from axion.data.prepare.api import check

    console = make_console()
    report = check(data_dir)
    for problem in report.problems:
        console.print(str(problem), markup=False)
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False)
    verdict = (
        f"{report.bad_files} bad, {plural(len(report.problems), 'problem')}"
        if report.problems
        else "all good"
    )
    if report.warnings:
        verdict += f"; {plural(len(report.warnings), 'warning')}"
    from axion.data.shardsource import source_text

    where = source_text(data_dir)
    console.print(f"{plural(report.total, 'tile')} checked under {where}: {verdict}", markup=False)
    if report.problems:
        raise typer.Exit(2)


def _write(settings: PrepareConfig) -> None:
    """Run prepare under a progress bar (live on a terminal only) and print what it wrote."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from axion.console import make_console, plural
    from axion.data.prepare.api import prepare as run_prepare

    console = make_console()
    columns = (TextColumn("tiles"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=True) as progress:
        task = progress.add_task("tiles", total=None)
        report = run_prepare(
            settings,
            on_candidate=lambda: progress.advance(task),
            on_total=lambda total: progress.update(task, total=total),
        )
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False)
    console.print(f"Wrote {plural(report.written, 'tile')} to {report.output_dir}", markup=False)
    table = Table()
    table.add_column("split")
    table.add_column("tiles", justify="right")
    for split, count in report.counts.items():
        table.add_row(split, str(count))
    if report.stage2:
        what = "opt_v2 scenes" if "infer" in report.counts else "cloudy S2"
        table.add_row(f"stage2 (opt_v2 from {what})", str(report.stage2))
    for reason, count in report.skipped.most_common():
        table.add_row(f"skipped: {reason}", str(count), style="yellow")
    console.print(table)
    for kept in report.kept:
        console.print(f"note: kept {kept} (not written by prepare)", markup=False)
