"""``axion stage3 infer``: opt_v3 for new tiles, or for a whole co-registered scene.

Tile mode (``--input-dir``) writes ``<name>.npz`` (key ``opt_v3``, (4, H, W) float32,
tile units) and, for georeferenced tiles, ``<name>.tif`` into ``--output-dir``.
Scene mode (``--s1-scene``, ``--opt-v2-scene``, ``--output-scene``) writes one
blended GeoTIFF (see :mod:`axion.engine.scene`). Every input is checked before
anything is written, and every file is written to a temporary name first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from axion.cli._common import config_option, console, is_interactive, user_errors
from axion.cli.app import stage3_app
from axion.cli.evaluate import (
    checkpoint_option,
    precision_option,
    pretrained_option,
    seed_option,
    timesteps_option,
    validated,
    weights_dir_option,
)
from axion.config import DataConfig, OtherConfig, TrainingConfig
from axion.errors import ConfigError, DataError

_TILES, _SCENE, _RUN = "Tile mode", "Scene mode", "Run"


@stage3_app.command()
@user_errors
def infer(
    checkpoint: Path = checkpoint_option(),
    input_dir: Path | None = typer.Option(
        None,
        "--input-dir",
        help="Tiles <name>.npz + <name>.json (S1 keys s1_vv, s1_vh in dB; any split or none).",
        rich_help_panel=_TILES,
    ),
    output_dir: Path | None = typer.Option(
        None,
        "--output-dir",
        help="Where <name>.npz (opt_v3) and <name>.tif (georeferenced tiles) go; created if missing.",
        rich_help_panel=_TILES,
    ),
    stage2_dir: Path | None = config_option(
        DataConfig,
        "stage2_dir",
        panel=_TILES,
        help="Stage 2 outputs <name>.npz (key opt_v2). Without it the tiles' own S2 bands give the training proxy.",
    ),
    s1_scene: Path | None = typer.Option(
        None, "--s1-scene", help="S1 GeoTIFF: 2 bands, VV and VH in dB.", rich_help_panel=_SCENE
    ),
    opt_v2_scene: Path | None = typer.Option(
        None,
        "--opt-v2-scene",
        help="opt_v2 GeoTIFF: 4 bands B2, B3, B4, B8 (reflectance x 10000), same grid as --s1-scene.",
        rich_help_panel=_SCENE,
    ),
    output_scene: Path | None = typer.Option(
        None, "--output-scene", help="opt_v3 GeoTIFF to write (float32, 4 bands).", rich_help_panel=_SCENE
    ),
    tile_size: int = typer.Option(
        224, "--tile-size", help="Scene tile side in pixels (multiple of 16).", rich_help_panel=_SCENE
    ),
    overlap: int = typer.Option(
        32,
        "--overlap",
        help="Pixels shared by neighbouring scene tiles, blended with a raised-cosine window.",
        rich_help_panel=_SCENE,
    ),
    timesteps: int | None = timesteps_option(),
    seed: int | None = seed_option(),
    precision: str = precision_option(),
    pretrained: bool | None = pretrained_option(),
    weights_dir: Path | None = weights_dir_option(),
    batch_size: int = config_option(TrainingConfig, "batch_size", panel=_RUN),
    max_samples: int | None = config_option(OtherConfig, "max_samples", panel=_RUN),
    quiet: bool = config_option(OtherConfig, "quiet", panel=_RUN),
) -> None:
    """Predict opt_v3 (B2, B3, B4, B8, reflectance x 10000) for new tiles or a whole scene.

    Tile mode: --input-dir and --output-dir. Scene mode: --s1-scene, --opt-v2-scene
    and --output-scene (tiled with --tile-size and --overlap, read and written strip
    by strip, so scenes larger than memory work).
    """
    opts = validated(
        batch_size=batch_size, precision=precision, max_samples=max_samples, seed=seed, timesteps=timesteps
    )
    scene_args = (s1_scene, opt_v2_scene, output_scene)
    common: dict[str, Any] = {
        "checkpoint": checkpoint,
        "timesteps": opts["timesteps"],
        "seed": opts["seed"],
        "precision": opts["precision"],
        "pretrained": pretrained,
        "weights_dir": weights_dir,
        "batch_size": opts["batch_size"],
        "live": not quiet and is_interactive(),
    }
    if any(a is not None for a in scene_args):
        if input_dir is not None or output_dir is not None or stage2_dir is not None:
            raise ConfigError(
                "use either tile mode (--input-dir ...) or scene mode (--s1-scene ...), not both"
            )
        if any(a is None for a in scene_args):
            raise ConfigError("scene mode needs --s1-scene, --opt-v2-scene and --output-scene")
        _scene(s1_scene, opt_v2_scene, output_scene, tile_size=tile_size, overlap=overlap, **common)  # type: ignore[arg-type]
        return
    if input_dir is None or output_dir is None:
        raise ConfigError(
            "give --input-dir and --output-dir (tile mode) or --s1-scene, --opt-v2-scene and --output-scene"
        )
    _tiles(input_dir, output_dir, stage2_dir, max_samples=opts["max_samples"], **common)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_tile_inputs(input_dir: Path, output_dir: Path, stage2_dir: Path | None) -> str:
    """Check the tiles (and their opt_v2 source) and the output folder; return the opt_v2 source.

    Raises:
        DataError: a bad tile, a tile without S2 bands when no Stage 2 outputs are given,
            or an output folder that would mix outputs into the inputs.
    """
    from axion.bands import S2_KEYS
    from axion.data.check import validate_data_dir
    from axion.data.tilefile import find_npz, npz_header, sidecar

    validate_data_dir(input_dir, require_target=False)
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: output directory is a file")
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


def _tiles(
    input_dir: Path,
    output_dir: Path,
    stage2_dir: Path | None,
    *,
    checkpoint: Path,
    max_samples: int | None,
    batch_size: int,
    live: bool,
    **model_args: Any,
) -> None:
    from axion.data.dataset import TileDataset, collate_tiles
    from axion.data.tilefile import write_npz_atomic
    from axion.engine.checkpoint import load_checkpoint
    from axion.engine.predict import load_predictor, size_batches
    from axion.engine.reporter import Reporter
    from axion.engine.scene import write_tile_geotiff

    reporter = Reporter(console, live=live)
    state = load_checkpoint(checkpoint)
    source = check_tile_inputs(input_dir, output_dir, stage2_dir)
    dataset = TileDataset(
        input_dir, None, stage2_dir=stage2_dir, with_target=source == "proxy", max_samples=max_samples
    )
    if source == "stage2":
        reporter.info(f"opt_v2: Stage 2 outputs from {stage2_dir}")
    else:
        reporter.info(
            "opt_v2: proxy made from each tile's own S2 bands (blur, gain/offset, noise; as in training), "
            "no --stage2-dir given"
        )
    predictor = load_predictor(checkpoint, log=reporter.info, state=state, **model_args)
    reporter.info(
        f"Checkpoint: {checkpoint} (epoch {predictor.epoch}); timesteps {predictor.timesteps}, "
        f"seed {predictor.seed}, {predictor.precision.label}; {len(dataset)} tiles"
    )
    tags = _tags(predictor, source)
    output_dir.mkdir(parents=True, exist_ok=True)
    georeferenced = 0
    batches = size_batches([(t.height, t.width) for t in dataset.tiles], batch_size)
    with reporter.bar("Infer", len(batches)) as bar:
        for indices in batches:
            batch = collate_tiles([dataset[i] for i in indices])
            opt_v3 = predictor(batch["s1"], batch["opt_v2"], batch["name"])
            for k, index in enumerate(indices):
                tile = dataset.tiles[index]
                array = opt_v3[k, :, : tile.height, : tile.width].numpy()
                write_npz_atomic(output_dir / f"{tile.name}.npz", {"opt_v3": array})
                georef = tile.georef
                if georef is not None:
                    write_tile_geotiff(
                        output_dir / f"{tile.name}.tif", array, georef.rasterio_crs(), georef.affine(), tags
                    )
                    georeferenced += 1
            bar.advance()
    reporter.info(
        f"Wrote {len(dataset)} opt_v3 tiles to {output_dir} (.npz; .tif for {georeferenced} georeferenced tiles)"
    )


def _tags(predictor: Any, source: str) -> dict[str, str]:
    return {
        "AXION_PRODUCT": "opt_v3",
        "AXION_UNITS": "reflectance*10000",
        "AXION_CHECKPOINT": str(predictor.checkpoint),
        "AXION_EPOCH": str(predictor.epoch),
        "AXION_TIMESTEPS": str(predictor.timesteps),
        "AXION_SEED": str(predictor.seed),
        "AXION_OPT_V2": source,
    }


def _scene(
    s1_scene: Path,
    opt_v2_scene: Path,
    output_scene: Path,
    *,
    checkpoint: Path,
    tile_size: int,
    overlap: int,
    batch_size: int,
    live: bool,
    **model_args: Any,
) -> None:
    import numpy as np
    import torch

    from axion.engine.checkpoint import load_checkpoint
    from axion.engine.predict import load_predictor
    from axion.engine.reporter import Reporter
    from axion.engine.scene import make_grid, run_scene, validate_scene

    reporter = Reporter(console, live=live)
    state = load_checkpoint(checkpoint)
    info = validate_scene(s1_scene, opt_v2_scene, output_scene)
    grid = make_grid(info.height, info.width, tile_size, overlap)
    if info.crs is None:
        reporter.info(f"note: {s1_scene} has no CRS; {output_scene} gets the same pixel grid without one")
    predictor = load_predictor(checkpoint, log=reporter.info, state=state, **model_args)
    reporter.info(
        f"Scene: {info.height}x{info.width} px -> {len(grid.rows)}x{len(grid.cols)} tiles of {tile_size} px, "
        f"overlap {overlap} px; timesteps {predictor.timesteps}, seed {predictor.seed}, {predictor.precision.label}"
    )

    def predict_fn(s1: np.ndarray, opt_v2: np.ndarray, names: list[str]) -> np.ndarray:
        return predictor(torch.from_numpy(s1), torch.from_numpy(opt_v2), names).numpy()

    tags = {**_tags(predictor, "scene"), "AXION_TILE_SIZE": str(tile_size), "AXION_OVERLAP": str(overlap)}
    with reporter.bar("Scene tiles", len(grid)) as bar:
        run_scene(
            info,
            output_scene,
            predict_fn,
            tile_size=tile_size,
            overlap=overlap,
            batch_size=batch_size,
            tags=tags,
            on_tile=bar.advance,
        )
    reporter.info(f"Wrote {output_scene}")
