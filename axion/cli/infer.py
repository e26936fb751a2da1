"""``axion stage3 infer``: opt_v3 for new tiles, or for a whole co-registered scene.

Parses the flags into :class:`axion.config.InferConfig` and runs
:func:`axion.prediction.infer.infer` (tile mode or scene mode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from axion.cli._common import (
    config_file_option,
    config_option,
    prediction_option,
    print_config_option,
    resolve_settings,
    user_errors,
)
from axion.cli.app import Command, stage3_app
from axion.config import InferConfig

_TILES, _SCENE, _OUT, _RUN = "Tile mode", "Scene mode", "Outputs", "Run"
_SCENES = "Many scenes"


def _opt(name: str, panel: str, **kwargs: Any) -> Any:
    return config_option(InferConfig, name, panel=panel, **kwargs)


@stage3_app.command(cls=Command, no_args_is_help=True)
@user_errors
def infer(
    ctx: typer.Context,
    checkpoint: Path | None = prediction_option("checkpoint"),
    input_dir: Path | None = _opt("input_dir", _TILES),
    output_dir: Path | None = _opt("output_dir", _TILES),
    stage2_dir: Path | None = _opt("stage2_dir", _TILES),
    proxy_from_ground_truth: bool = _opt("proxy_from_ground_truth", _TILES),
    max_samples: int | None = _opt("max_samples", _TILES),
    s1_scene: Path | None = _opt("s1_scene", _SCENE),
    opt_v2_scene: Path | None = _opt("opt_v2_scene", _SCENE),
    opt_v2_mask_scene: Path | None = _opt("opt_v2_mask_scene", _SCENE),
    output_scene: Path | None = _opt("output_scene", _SCENE),
    scenes: Path | None = _opt("scenes", _SCENES),
    tile_size: int = _opt("tile_size", _SCENE),
    overlap: int = _opt("overlap", _SCENE),
    datetime: str | None = _opt("datetime", _SCENE, show_default="the S1 file's datetime tag"),
    samples: int = _opt("samples", _OUT),
    save_generated: bool = _opt("save_generated", _OUT),
    dtype: str = _opt("dtype", _OUT),
    overwrite: bool = _opt("overwrite", _OUT),
    timesteps: int | None = prediction_option("timesteps"),
    seed: int | None = prediction_option("seed"),
    precision: str = prediction_option("precision"),
    pretrained: bool | None = prediction_option("pretrained", "--pretrained/--no-pretrained"),
    weights_dir: Path | None = prediction_option("weights_dir"),
    batch_size: int = prediction_option("batch_size", panel=_RUN),
    devices: int = _opt("devices", _RUN),
    num_nodes: int = _opt("num_nodes", _RUN),
    quiet: bool = prediction_option("quiet", panel=_RUN),
    log_format: str = prediction_option("log_format", panel=_RUN),
    config: Path | None = config_file_option(_RUN),
    print_config: bool = print_config_option(_RUN),
) -> None:
    """Predict opt_v3 (B2, B3, B4, B8, reflectance x 10000) for new tiles or a whole scene.

    Tile mode: --input-dir, --output-dir and --stage2-dir. Scene mode: --s1-scene,
    --opt-v2-scene and --output-scene: S1 is reprojected onto opt_v2's grid, tiled with
    --tile-size and --overlap, read and written strip by strip (scenes larger than
    memory work); --opt-v2-mask-scene marks opt_v2's cloudy pixels (filled before the model). GeoTIFFs are Cloud-Optimized; a scene gets a STAC Item beside it.
    Many scenes: --scenes LIST (a CSV or a STAC ItemCollection), shared out over the
    processes; a rerun skips the scenes that are complete; exit 1 if any scene failed.
    """
    settings = resolve_settings(ctx, InferConfig, locals(), config=config, print_config=print_config)

    from axion.prediction.infer import infer as run_inference
    from axion.prediction.infer import mode_of
    from axion.runtime.reporter import Reporter

    mode_of(settings)  # a wrong mix of flags fails before anything is loaded
    result = run_inference(
        settings, Reporter.for_terminal(quiet=settings.quiet, log_format=settings.log_format)
    )
    if result.failed:
        raise typer.Exit(1)
