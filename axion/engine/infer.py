"""opt_v3 for new tiles or a whole scene: what ``axion stage3 infer`` runs.

Tile mode writes ``<name>.npz`` (key ``opt_v3``, (4, H, W) float32, tile units) and,
for georeferenced tiles, ``<name>.tif`` into the output directory. Scene mode writes
one blended GeoTIFF (see :mod:`axion.engine.scene`). Every input is checked before
anything is written, and every file is written to a temporary name first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axion.bands import S2_UNITS
from axion.config import InferConfig
from axion.console import plural
from axion.engine.export import read_trained
from axion.engine.reporter import Reporter
from axion.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

    from axion.engine.predict import Predictor


@dataclass
class InferResult:
    """What an inference wrote."""

    outputs: list[Path] = field(default_factory=list)
    georeferenced: int = 0


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def mode_of(settings: InferConfig) -> str:
    """``tiles`` or ``scene``, from which flags are given.

    Raises:
        ConfigError: a mix of both modes, or a mode with flags missing.
    """
    scene_args = (settings.s1_scene, settings.opt_v2_scene, settings.output_scene)
    if any(a is not None for a in scene_args):
        if (
            settings.input_dir is not None
            or settings.output_dir is not None
            or settings.stage2_dir is not None
        ):
            raise ConfigError(
                "use either tile mode (--input-dir ...) or scene mode (--s1-scene ...), not both"
            )
        if any(a is None for a in scene_args):
            raise ConfigError("scene mode needs --s1-scene, --opt-v2-scene and --output-scene")
        return "scene"
    if settings.input_dir is None or settings.output_dir is None:
        raise ConfigError(
            "give --input-dir and --output-dir (tile mode) or --s1-scene, --opt-v2-scene and --output-scene"
        )
    return "tiles"


def check_tile_inputs(input_dir: Path, output_dir: Path, stage2_dir: Path | None) -> str:
    """Check the tiles (and their opt_v2 source) and the output folder; return the opt_v2 source.

    Raises:
        DataError: a bad tile, a tile without S2 bands when no Stage 2 outputs are given,
            or an output folder that would mix outputs into the inputs.
    """
    from axion.bands import S2_KEYS
    from axion.data.check import validate_data_dir
    from axion.data.tilefile import find_npz, npz_header, sidecar
    from axion.outputs import check_writable_dir

    validate_data_dir(input_dir, require_target=False)
    check_writable_dir(output_dir)
    for folder, what in ((input_dir, "--input-dir"), (stage2_dir, "--stage2-dir")):
        if folder is not None and (_inside(output_dir, folder) or _inside(folder, output_dir)):
            raise DataError(
                f"{output_dir}: output directory overlaps {what} {folder}; choose a separate folder"
            )
    if stage2_dir is not None:
        return "stage2"
    for npz in find_npz(input_dir):
        if sidecar(npz).exists():
            missing = [key for key in S2_KEYS if key not in npz_header(npz)]
            if missing:
                raise DataError(
                    f"{npz}: no opt_v2 for this tile: give Stage 2 outputs with --stage2-dir "
                    f"(the tile has no S2 bands for the proxy: {missing[0]!r} missing)"
                )
    return "proxy"


def input_warnings(input_dir: Path, stage2_dir: Path | None, dataset: Any) -> list[Any]:
    """Suspicious values in the tiles and the Stage 2 outputs they use (bad ones raise DataError)."""
    from axion.data.check import inspect_tiles, validate_stage2

    warnings = inspect_tiles(input_dir, require_target=False).warnings
    if stage2_dir is not None:
        warnings += validate_stage2(stage2_dir, [(t.name, (t.height, t.width)) for t in dataset.tiles])
    return warnings


def output_tags(predictor: Predictor, source: str) -> dict[str, str]:
    """Provenance tags of every GeoTIFF inference writes."""
    return {
        "AXION_PRODUCT": "opt_v3",
        "AXION_UNITS": S2_UNITS,
        "AXION_CHECKPOINT": str(predictor.checkpoint),
        "AXION_EPOCH": str(predictor.epoch),
        "AXION_TIMESTEPS": str(predictor.timesteps),
        "AXION_SEED": str(predictor.seed),
        "AXION_OPT_V2": source,
    }


def infer(settings: InferConfig, reporter: Reporter | None = None) -> InferResult:
    """Run tile or scene inference (see :func:`mode_of`)."""
    reporter = reporter or Reporter.silent()
    if mode_of(settings) == "scene":
        return infer_scene(settings, reporter)
    return infer_tiles(settings, reporter)


def infer_tiles(settings: InferConfig, reporter: Reporter) -> InferResult:
    """opt_v3 for every tile below ``settings.input_dir``."""
    from axion.data.check import report_warnings
    from axion.data.dataset import TileDataset, collate_tiles
    from axion.data.tilefile import write_npz_atomic
    from axion.engine.predict import predictor_for, size_batches
    from axion.engine.scene import write_tile_geotiff
    from axion.outputs import clean_stale

    input_dir, output_dir = Path(settings.input_dir), Path(settings.output_dir)  # type: ignore[arg-type]
    checkpoint = read_trained(settings.checkpoint)
    source = check_tile_inputs(input_dir, output_dir, settings.stage2_dir)
    dataset = TileDataset(
        input_dir,
        None,
        stage2_dir=settings.stage2_dir,
        with_target=source == "proxy",
        max_samples=settings.max_samples,
    )
    warnings = input_warnings(input_dir, settings.stage2_dir, dataset)
    if source == "stage2":
        reporter.info(f"opt_v2: Stage 2 outputs from {settings.stage2_dir}")
    else:
        reporter.info(
            "opt_v2: proxy made from each tile's own S2 bands (blur, gain/offset, noise; as in training), "
            "no --stage2-dir given"
        )
    predictor = predictor_for(settings, checkpoint, log=reporter.info)
    reporter.info(
        f"Checkpoint: {settings.checkpoint} (epoch {predictor.epoch}); timesteps {predictor.timesteps}, "
        f"seed {predictor.seed}, {predictor.precision.label}; {plural(len(dataset), 'tile')}"
    )
    tags = output_tags(predictor, source)
    output_dir.mkdir(parents=True, exist_ok=True)
    clean_stale(output_dir)
    report_warnings(reporter.info, warnings, output_dir)
    result = InferResult()
    batches = size_batches([(t.height, t.width) for t in dataset.tiles], settings.batch_size)
    with reporter.bar("Infer", len(batches)) as bar:
        for indices in batches:
            batch = collate_tiles([dataset[i] for i in indices])
            opt_v3 = predictor(batch["s1"], batch["opt_v2"], batch["name"])
            for k, index in enumerate(indices):
                tile = dataset.tiles[index]
                array = opt_v3[k, :, : tile.height, : tile.width].numpy()
                write_npz_atomic(output_dir / f"{tile.name}.npz", {"opt_v3": array})
                result.outputs.append(output_dir / f"{tile.name}.npz")
                georef = tile.georef
                if georef is not None:
                    path = output_dir / f"{tile.name}.tif"
                    write_tile_geotiff(path, array, georef.rasterio_crs(), georef.affine(), tags)
                    result.outputs.append(path)
                    result.georeferenced += 1
            bar.advance()
    reporter.info(
        f"Wrote {len(dataset)} opt_v3 tiles to {output_dir} (.npz; .tif for {result.georeferenced} georeferenced tiles)"
    )
    return result


def infer_scene(settings: InferConfig, reporter: Reporter) -> InferResult:
    """One blended opt_v3 GeoTIFF for a whole co-registered scene."""
    import torch

    from axion.engine.predict import predictor_for
    from axion.engine.scene import make_grid, run_scene, validate_scene
    from axion.outputs import check_writable_file, clean_stale_file

    s1_scene, opt_v2_scene = Path(settings.s1_scene), Path(settings.opt_v2_scene)  # type: ignore[arg-type]
    output_scene = Path(settings.output_scene)  # type: ignore[arg-type]
    checkpoint = read_trained(settings.checkpoint)
    info = validate_scene(s1_scene, opt_v2_scene, output_scene)
    check_writable_file(output_scene, "output scene")
    clean_stale_file(output_scene)
    grid = make_grid(info.height, info.width, settings.tile_size, settings.overlap)
    if info.crs is None:
        reporter.info(f"note: {s1_scene} has no CRS; {output_scene} gets the same pixel grid without one")
    predictor = predictor_for(settings, checkpoint, log=reporter.info)
    reporter.info(
        f"Scene: {info.height}x{info.width} px -> {len(grid.rows)}x{len(grid.cols)} tiles of {settings.tile_size} px, "
        f"overlap {settings.overlap} px; timesteps {predictor.timesteps}, seed {predictor.seed}, "
        f"{predictor.precision.label}"
    )

    def predict_fn(s1: np.ndarray, opt_v2: np.ndarray, names: list[str]) -> np.ndarray:
        return predictor(torch.from_numpy(s1), torch.from_numpy(opt_v2), names).numpy()

    tags: dict[str, Any] = {
        **output_tags(predictor, "scene"),
        "AXION_TILE_SIZE": str(settings.tile_size),
        "AXION_OVERLAP": str(settings.overlap),
    }
    with reporter.bar("Scene tiles", len(grid)) as bar:
        run_scene(
            info,
            output_scene,
            predict_fn,
            tile_size=settings.tile_size,
            overlap=settings.overlap,
            batch_size=settings.batch_size,
            tags=tags,
            on_tile=bar.advance,
        )
    reporter.info(f"Wrote {output_scene}")
    return InferResult(outputs=[output_scene], georeferenced=1)
