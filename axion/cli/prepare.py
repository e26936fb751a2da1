"""``axion stage3 prepare``: real data in, tiles out (also ``--check`` and ``--demo``).

Heavy libraries (rasterio, numpy's readers) are imported inside the command so that
``axion --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from axion.cli._common import console, explicit_flags, is_interactive, user_errors
from axion.cli.app import stage3_app
from axion.errors import ConfigError

if TYPE_CHECKING:
    from axion.data.prepare.run import PrepareReport, TileSource

DEFAULT_TILE_SIZE = 256


@stage3_app.command()
@user_errors
def prepare(
    ctx: typer.Context,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir", "-o", help="Where tiles go: <output-dir>/{train,val,test}/<name>.npz + .json."
        ),
    ] = None,
    check: Annotated[
        Path | None,
        typer.Option(
            "--check",
            help="Only check the tiles below this directory: list every bad tile and why; exit 2 if any.",
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Write the 6 real BigEarthNet example pairs shipped in bigearthnet-common (120x120 px).",
        ),
    ] = False,
    bigearthnet_s1: Annotated[
        Path | None,
        typer.Option(help="BigEarthNet-MM S1 root: patch folders with *_VV.tif, *_VH.tif (dB) and a JSON."),
    ] = None,
    bigearthnet_s2: Annotated[
        Path | None,
        typer.Option(
            help="BigEarthNet-MM S2 root: L2A patch folders with *_B02.tif ... (reflectance x 10000)."
        ),
    ] = None,
    s1: Annotated[
        list[Path] | None,
        typer.Option("--s1", help="S1 scene GeoTIFF, bands VV, VH (repeat with --s2 for several scenes)."),
    ] = None,
    s2: Annotated[
        list[Path] | None,
        typer.Option(
            "--s2", help="S2 scene GeoTIFF (L2A or L1C, reflectance x 10000); defines the tile grid."
        ),
    ] = None,
    s2_cloudy: Annotated[
        list[Path] | None,
        typer.Option(
            "--s2-cloudy",
            help="Cloudy S2 of the same scene (one per --s2): written as real opt_v2 to <output-dir>/stage2/.",
        ),
    ] = None,
    s1_units: Annotated[
        str, typer.Option(help="Units of the S1 scene: db, or linear power (converted to dB, floor -50 dB).")
    ] = "db",
    s2_bands: Annotated[
        str | None,
        typer.Option(
            help="Band order of the S2 file, e.g. B1,B2,...,B12. Default by band count: 12 = L2A "
            "B01..B12 without B10, 13 = L1C B01..B12.",
            show_default="by band count",
        ),
    ] = None,
    tile_size: Annotated[
        int, typer.Option(help="Tile height and width in pixels (scenes only; 16-multiples avoid padding).")
    ] = DEFAULT_TILE_SIZE,
    stride: Annotated[
        int | None,
        typer.Option(help="Pixels between tile origins (scenes only).", show_default="tile size"),
    ] = None,
    max_nodata: Annotated[
        float, typer.Option(help="Skip tiles with more than this fraction (0-1) of invalid pixels.")
    ] = 0.1,
    split_ratios: Annotated[
        str, typer.Option(help="train,val,test fractions of spatial blocks; non-negative, summing to 1.")
    ] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed of the split assignment.")] = 42,
    block_size: Annotated[
        int,
        typer.Option(
            help="Spatial block side in tiles (k x k tiles, or BigEarthNet patches) kept in one split."
        ),
    ] = 4,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace train/, val/, test/, stage2/ and prepare.json of a non-empty output directory."
        ),
    ] = False,
) -> None:
    """Write training tiles from real Sentinel-1/Sentinel-2 data, or check existing tiles.

    Sources (pick one): --demo; --bigearthnet-s1 DIR --bigearthnet-s2 DIR; or --s1 FILE --s2 FILE
    (repeatable). Tiles: S1 VV, VH in dB and S2 B2, B3, B4, B8 as L2A reflectance x 10000,
    with a JSON naming the split and the georeference.
    """
    scene_mode = bool(s1 or s2 or s2_cloudy)
    ben_mode = bigearthnet_s1 is not None or bigearthnet_s2 is not None
    chosen = [
        name
        for name, on in (("--demo", demo), ("--bigearthnet-s1/-s2", ben_mode), ("--s1/--s2", scene_mode))
        if on
    ]
    if check is not None:
        if chosen or output_dir is not None:
            raise ConfigError("--check takes no source and no --output-dir")
        _run_check(check)
        return
    if len(chosen) != 1:
        raise ConfigError(
            "pick one source: --demo, --bigearthnet-s1/--bigearthnet-s2, or --s1/--s2"
            + (f" (got {' and '.join(chosen)})" if chosen else "")
        )
    if output_dir is None:
        raise ConfigError("missing --output-dir")
    if not scene_mode:
        scene_only = {"tile_size": tile_size, "stride": stride, "s1_units": s1_units, "s2_bands": s2_bands}
        for name in explicit_flags(ctx, scene_only):
            raise ConfigError(f"--{name.replace('_', '-')} applies to --s1/--s2 scenes only")
    settings = _split_settings(split_ratios, seed, max_nodata, block_size)
    manifest: dict[str, Any] = {"max_nodata": max_nodata, "block_size": block_size}
    if demo:
        report = _run_demo(output_dir, settings, max_nodata, block_size, overwrite, manifest)
    elif ben_mode:
        report = _run_bigearthnet(
            bigearthnet_s1, bigearthnet_s2, output_dir, settings, max_nodata, block_size, overwrite, manifest
        )
    else:
        report = _run_scenes(
            s1 or [], s2 or [], s2_cloudy or [], output_dir, settings, overwrite, manifest,
            s1_units=s1_units, s2_bands=s2_bands, tile_size=tile_size, stride=stride,
            max_nodata=max_nodata, block_size=block_size,
        )  # fmt: skip
    _print_report(report)


def _split_settings(split_ratios: str, seed: int, max_nodata: float, block_size: int) -> Any:
    from axion.data.prepare.run import SplitSettings
    from axion.data.prepare.splits import parse_ratios

    try:
        ratios = parse_ratios(split_ratios)
    except ValueError as exc:
        raise ConfigError(f"invalid --split-ratios {split_ratios!r}: {exc}") from None
    if seed < 0:
        raise ConfigError(f"invalid --seed {seed}: must be >= 0")
    if not 0.0 <= max_nodata <= 1.0:
        raise ConfigError(f"invalid --max-nodata {max_nodata}: must be a fraction between 0 and 1")
    if block_size < 1:
        raise ConfigError(f"invalid --block-size {block_size}: must be >= 1")
    return SplitSettings(ratios=ratios, seed=seed)


def _run_check(data_dir: Path) -> None:
    from axion.data.check import check_tiles, ensure_dir, tile_paths

    ensure_dir(data_dir)
    total = len(tile_paths(data_dir))
    problems = check_tiles(data_dir)
    for problem in problems:
        console.print(str(problem), markup=False, soft_wrap=True)
    bad = len({p.path for p in problems})
    verdict = f"{bad} bad, {len(problems)} problems" if problems else "all good"
    console.print(f"{total} tiles checked under {data_dir}: {verdict}", markup=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)


def _write(
    sources: list[TileSource], output_dir: Path, settings: Any, overwrite: bool, manifest: dict[str, Any]
) -> PrepareReport:
    """Run the sources into ``output_dir`` under a progress bar (live on a terminal only)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from axion.data.prepare.run import run_prepare

    total = sum(source.total for source in sources)
    columns = (TextColumn("tiles"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not is_interactive(), transient=True) as progress:
        task = progress.add_task("tiles", total=total)
        return run_prepare(
            sources,
            output_dir,
            settings,
            overwrite=overwrite,
            manifest=manifest,
            on_candidate=lambda: progress.advance(task),
        )


def _run_demo(
    output_dir: Path,
    settings: Any,
    max_nodata: float,
    block_size: int,
    overwrite: bool,
    manifest: dict[str, Any],
) -> PrepareReport:
    import tempfile

    from axion.data.prepare.bigearthnet import DEMO_PACKAGE, extracted_demo
    from axion.data.prepare.output import check_output_dir

    check_output_dir(output_dir, overwrite)
    record = {**manifest, "source": f"demo: BigEarthNet-MM examples from {DEMO_PACKAGE}"}
    with (
        tempfile.TemporaryDirectory(prefix="axion-demo-") as tmp,
        extracted_demo(Path(tmp)) as (s1_root, s2_root),
    ):
        return _run_bigearthnet(
            s1_root, s2_root, output_dir, settings, max_nodata, block_size, overwrite, record
        )


def _run_bigearthnet(
    s1_root: Path | None,
    s2_root: Path | None,
    output_dir: Path,
    settings: Any,
    max_nodata: float,
    block_size: int,
    overwrite: bool,
    manifest: dict[str, Any],
) -> PrepareReport:
    from axion.data.prepare.bigearthnet import BigEarthNetSource
    from axion.data.prepare.output import check_output_dir

    if s1_root is None or s2_root is None:
        raise ConfigError("BigEarthNet needs both --bigearthnet-s1 and --bigearthnet-s2")
    check_output_dir(output_dir, overwrite)
    source = BigEarthNetSource(s1_root, s2_root, max_nodata=max_nodata, block_size=block_size)
    manifest.setdefault("source", {"bigearthnet_s1": str(s1_root), "bigearthnet_s2": str(s2_root)})
    return _write([source], output_dir, settings, overwrite, manifest)


def _run_scenes(
    s1: list[Path],
    s2: list[Path],
    s2_cloudy: list[Path],
    output_dir: Path,
    settings: Any,
    overwrite: bool,
    manifest: dict[str, Any],
    *,
    s1_units: str,
    s2_bands: str | None,
    tile_size: int,
    stride: int | None,
    max_nodata: float,
    block_size: int,
) -> PrepareReport:
    from axion.data.prepare.bandmap import parse_band_list
    from axion.data.prepare.output import check_output_dir
    from axion.data.prepare.scene import SceneOptions, ScenePair, SceneSource

    if len(s1) != len(s2):
        raise ConfigError(f"give one --s1 per --s2 (got {len(s1)} --s1 and {len(s2)} --s2)")
    if s2_cloudy and len(s2_cloudy) != len(s2):
        raise ConfigError(f"give one --s2-cloudy per --s2 (got {len(s2_cloudy)} and {len(s2)})")
    if s1_units.lower() not in ("db", "linear"):
        raise ConfigError(f"invalid --s1-units {s1_units!r}: expected db or linear")
    if tile_size < 1:
        raise ConfigError(f"invalid --tile-size {tile_size}: must be >= 1 pixel")
    stride = tile_size if stride is None else stride
    if stride < 1:
        raise ConfigError(f"invalid --stride {stride}: must be >= 1 pixel")
    try:
        bands = parse_band_list(s2_bands) if s2_bands is not None else None
    except ValueError as exc:
        raise ConfigError(f"invalid --s2-bands: {exc}") from None
    check_output_dir(output_dir, overwrite)
    options = SceneOptions(
        tile_size=tile_size, stride=stride, max_nodata=max_nodata, s1_linear=s1_units.lower() == "linear",
        s2_bands=bands, block_size=block_size,
    )  # fmt: skip
    cloudy: list[Path | None] = list(s2_cloudy) if s2_cloudy else [None] * len(s2)
    sources = [SceneSource(ScenePair(a, b, c), options) for a, b, c in zip(s1, s2, cloudy, strict=True)]
    record = {
        **manifest,
        "source": {
            "s1": [str(p) for p in s1],
            "s2": [str(p) for p in s2],
            "s2_cloudy": [str(p) for p in s2_cloudy],
        },
        "tile_size": tile_size,
        "stride": stride,
        "s1_units": s1_units.lower(),
        "s2_bands": list(bands) if bands else "by band count",
    }
    return _write(list(sources), output_dir, settings, overwrite, record)


def _print_report(report: PrepareReport) -> None:
    from rich.table import Table

    console.print(f"Wrote {report.written} tiles to {report.output_dir}", markup=False, soft_wrap=True)
    table = Table()
    table.add_column("split")
    table.add_column("tiles", justify="right")
    for split, count in report.counts.items():
        table.add_row(split, str(count))
    if report.stage2:
        table.add_row("stage2 (opt_v2 from cloudy S2)", str(report.stage2))
    for reason, count in report.skipped.most_common():
        table.add_row(f"skipped: {reason}", str(count), style="yellow")
    console.print(table)
