"""opt_v3 for new tiles or a whole scene: what ``axion stage3 infer`` runs.

Tile mode writes ``<name>.npz`` (key ``opt_v3``, (4, H, W) float32, tile units, NaN where
the tile's source pixels were invalid; ``opt_v3_std`` too with ``--samples`` >= 2) and, for
georeferenced tiles, ``<name>.tif`` (and ``<name>_std.tif``) as Cloud-Optimized GeoTIFFs,
then ``infer.json`` (the manifest) last. Scene mode writes one blended COG on opt_v2's
grid (see :mod:`axion.prediction.scene`), its standard deviation with ``--samples`` >= 2, and
a STAC Item ``<stem>.json`` last. A folder or scene without its manifest is from a run
that did not finish. ``--scenes`` writes the scenes of a list (:mod:`axion.prediction.scenes`)
one after the other, each as scene mode does, skipping those whose outputs are complete.

Every input and output path is checked before the model is built or anything is
written; every file is written under a temporary name and renamed. With ``--devices N``
tiles (tile mode), strips (scene mode) or whole scenes (``--scenes``) are shared out over N
processes, on each of ``--num-nodes`` nodes under torchrun (:mod:`axion.prediction.parallel`);
the outputs are the same as from one process.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axion.config import InferConfig
from axion.console import plural
from axion.errors import AxionError, ConfigError, DataError
from axion.runtime.reporter import Reporter
from axion.training.trained import read_trained

if TYPE_CHECKING:
    from axion.prediction.parallel import Shard
    from axion.prediction.predict import Predictor
    from axion.prediction.scene import SceneInfo
    from axion.prediction.scenes import SceneJob
    from axion.training.checkpoint import Checkpoint

#: The manifest of a tile-mode output directory, written when every tile is written.
MANIFEST = "infer.json"
#: Where opt_v2 comes from in tile mode: Stage 2 outputs, or the proxy of each tile's ground truth.
STAGE2, PROXY = "stage2", "proxy-from-ground-truth"


@dataclass
class InferResult:
    """What an inference wrote."""

    outputs: list[Path] = field(default_factory=list)
    georeferenced: int = 0
    #: ``--scenes``: scenes written, skipped (their outputs were complete) and failed, over all processes.
    done: int = 0
    skipped: int = 0
    failed: int = 0


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def mode_of(settings: InferConfig) -> str:
    """``tiles`` or ``scene``, from which flags are given.

    Raises:
        ConfigError: a mix of both modes, a mode with flags missing, or a flag of the other mode.
    """
    scene_args = (settings.s1_scene, settings.opt_v2_scene, settings.output_scene)
    if settings.scenes is not None:
        return _scenes_mode(settings)
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
        if settings.proxy_from_ground_truth:
            raise ConfigError(
                "--proxy-from-ground-truth applies to tile mode only (scenes bring their opt_v2)"
            )
        if settings.save_generated:
            raise ConfigError(
                "--save-generated applies to tile mode only: cut the scene with "
                "'axion stage3 prepare --s1 S1.tif --opt-v2 OPTV2.tif' and infer its tiles"
            )
        return "scene"
    if settings.opt_v2_mask_scene is not None:
        raise ConfigError(
            "--opt-v2-mask-scene applies to scene mode only (tile mode reads each Stage 2 file's opt_v2_mask)"
        )
    if settings.input_dir is None or settings.output_dir is None:
        raise ConfigError(
            "give --input-dir and --output-dir (tile mode), --s1-scene, --opt-v2-scene and --output-scene "
            "(scene mode) or --scenes LIST (many scenes)"
        )
    if settings.datetime is not None:
        raise ConfigError("--datetime applies to scene mode only (the STAC Item of the scene)")
    return "tiles"


def _scenes_mode(settings: InferConfig) -> str:
    """``scenes``, when no flag of one scene or of tile mode comes with ``--scenes``."""
    others = {
        "--s1-scene": settings.s1_scene,
        "--opt-v2-scene": settings.opt_v2_scene,
        "--opt-v2-mask-scene": settings.opt_v2_mask_scene,
        "--output-scene": settings.output_scene,
        "--input-dir": settings.input_dir,
        "--stage2-dir": settings.stage2_dir,
        "--max-samples": settings.max_samples,
        "--datetime": settings.datetime,
        "--proxy-from-ground-truth": settings.proxy_from_ground_truth or None,
        "--save-generated": settings.save_generated or None,
    }
    given = [flag for flag, value in others.items() if value is not None]
    if given:
        columns = {"--datetime": "a datetime", "--opt-v2-mask-scene": "an opt_v2_mask"}
        hint = f" (give each scene's in {columns[given[0]]} column)" if given[0] in columns else ""
        raise ConfigError(f"--scenes runs the scenes of its list: leave out {given[0]}{hint}")
    return "scenes"


# --- output directories ------------------------------------------------------------------------
def _previous_outputs(output_dir: Path) -> list[str]:
    """File names an earlier run's manifest lists (none if it has no readable manifest)."""
    try:
        names = json.loads((output_dir / MANIFEST).read_text()).get("outputs", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in names if isinstance(name, str) and Path(name).name == name]


def _earlier_results(output_dir: Path) -> str | None:
    """Why infer refuses a folder that holds anything (temporary files of killed runs removed)."""
    if not any(output_dir.iterdir()):
        return None
    if (output_dir / MANIFEST).exists():
        return f"output directory holds the results of an earlier run ({MANIFEST}); use --overwrite to replace them"
    return (
        f"output directory is not empty (no {MANIFEST}: an interrupted run, or other files); "
        "use --overwrite to write into it anyway"
    )


def check_tile_inputs(
    input_dir: Path,
    output_dir: Path,
    stage2_dir: Path | None,
    *,
    proxy: bool = False,
    overwrite: bool = False,
) -> str:
    """Check the tiles, their opt_v2 source and the output folder; return the opt_v2 source.

    Raises:
        ConfigError: no opt_v2 source (neither --stage2-dir nor --proxy-from-ground-truth), or both.
        DataError: a bad tile, a tile without ground truth for the proxy, or an output folder that
            holds results or would mix outputs into the inputs.
    """
    from axion.bands import S2_KEYS
    from axion.data.check import validate_data_dir
    from axion.data.tilefile import find_npz, is_inference_tile, npz_header, read_meta, sidecar
    from axion.outputs import check_output_dir

    if stage2_dir is not None and proxy:
        raise ConfigError("give either --stage2-dir or --proxy-from-ground-truth, not both")
    if stage2_dir is None and not proxy:
        raise ConfigError(
            "tile mode needs opt_v2: give Stage 2 outputs with --stage2-dir (or, to evaluate the pipeline on "
            "tiles with ground truth, --proxy-from-ground-truth)"
        )
    validate_data_dir(input_dir, require_target=False)
    for folder, what in ((input_dir, "--input-dir"), (stage2_dir, "--stage2-dir")):
        if folder is not None and (_inside(output_dir, folder) or _inside(folder, output_dir)):
            raise DataError(
                f"{output_dir}: output directory overlaps {what} {folder}; choose a separate folder"
            )
    check_output_dir(output_dir, occupied=None if overwrite else _earlier_results)
    if stage2_dir is not None:
        return STAGE2
    for npz in find_npz(input_dir):
        if sidecar(npz).exists():
            if is_inference_tile(read_meta(sidecar(npz))):
                raise DataError(f"{npz}: tile has no ground truth for --proxy-from-ground-truth")
            missing = [key for key in S2_KEYS if key not in npz_header(npz)]
            if missing:
                raise DataError(
                    f"{npz}: tile has no ground truth for --proxy-from-ground-truth ({missing[0]!r} missing)"
                )
    return PROXY


def input_warnings(input_dir: Path, stage2_dir: Path | None, dataset: Any) -> list[Any]:
    """Suspicious values in the tiles and the Stage 2 outputs they use (bad ones raise DataError)."""
    from axion.data.check import inspect_tiles, validate_stage2

    warnings = inspect_tiles(input_dir, require_target=False).warnings
    if stage2_dir is not None:
        warnings += validate_stage2(stage2_dir, [(t.name, (t.height, t.width)) for t in dataset.tiles])
    return warnings


def infer(settings: InferConfig, reporter: Reporter | None = None) -> InferResult:
    """Run tile, scene or scene-list inference (see :func:`mode_of`) in ``settings.devices`` processes
    (on each of ``settings.num_nodes`` nodes)."""
    from axion.runtime.device import launch_rank

    reporter = reporter or Reporter.silent()
    if launch_rank() != 0:  # under torchrun every process runs this: the first one speaks
        reporter.enabled = False
    mode = mode_of(settings)
    if mode == "scenes":
        return infer_scenes(settings, reporter)
    if mode == "scene":
        return infer_scene(settings, reporter)
    return infer_tiles(settings, reporter)


def _check_run(settings: InferConfig) -> Checkpoint:
    """The checkpoint (or exported adapters), and everything the model build would refuse (before any slow work)."""
    from axion.prediction.parallel import check_devices
    from axion.prediction.predict import check_prediction
    from axion.runtime.device import check_world

    check_world(settings.num_nodes, settings.devices)
    checkpoint = read_trained(settings.checkpoint)
    check_prediction(settings, checkpoint)
    check_devices(settings.devices)
    if settings.save_generated and checkpoint.model_settings.get("generator") == "none":
        raise ConfigError(
            f"{settings.checkpoint}: --save-generated needs a TerraMind model; this one was trained with "
            "--generator none (nothing is generated)"
        )
    return checkpoint


def _processes(settings: InferConfig) -> str:
    """``2 processes``, or ``2 processes on each of 3 nodes``."""
    text = plural(settings.devices, "process", "processes")
    return text if settings.num_nodes == 1 else f"{text} on each of {settings.num_nodes} nodes"


def note_equal_samples(settings: InferConfig, checkpoint: Checkpoint, reporter: Reporter) -> None:
    """A note when ``--samples`` >= 2 draws from a deterministic model: the samples are equal, the spread 0."""
    if settings.samples > 1 and checkpoint.model_settings.get("generator") == "none":
        reporter.info(
            f"note: {settings.checkpoint} was trained with --generator none (the fusion network alone, "
            f"deterministic): the {settings.samples} samples are equal and opt_v3_std is 0 everywhere"
        )


def _worker_reporter(shard: Shard, reporter: Reporter | None, settings: InferConfig) -> Reporter:
    """The caller's reporter in a single process; a terminal one on rank 0 of several, silent elsewhere."""
    if reporter is not None:
        return reporter
    made = Reporter.for_terminal(quiet=settings.quiet, log_format=settings.log_format)
    made.enabled = shard.rank == 0
    return made


def _predictor(settings: InferConfig, reporter: Reporter) -> Predictor:
    from axion.prediction.predict import predictor_for

    return predictor_for(settings, read_trained(settings.checkpoint), log=reporter.info)


# --- tile mode ---------------------------------------------------------------------------------
def infer_tiles(settings: InferConfig, reporter: Reporter) -> InferResult:
    """opt_v3 for every tile below ``settings.input_dir``."""
    from axion.data.check import report_warnings
    from axion.data.dataset import TileDataset, unrecorded_s1_product
    from axion.outputs import clean_stale

    input_dir, output_dir = Path(settings.input_dir), Path(settings.output_dir)  # type: ignore[arg-type]
    checkpoint = _check_run(settings)
    source = check_tile_inputs(
        input_dir,
        output_dir,
        settings.stage2_dir,
        proxy=settings.proxy_from_ground_truth,
        overwrite=settings.overwrite,
    )
    dataset = TileDataset(  # checks every Stage 2 output before anything is written
        input_dir,
        None,
        stage2_dir=settings.stage2_dir,
        with_target=source == PROXY,
        max_samples=settings.max_samples,
    )
    warnings = input_warnings(input_dir, settings.stage2_dir, dataset)
    warnings += unrecorded_s1_product(
        input_dir, dataset.tiles, checkpoint.model_settings.get("s1_product", "grd")
    )
    if source == STAGE2:
        reporter.info(f"opt_v2: Stage 2 outputs from {settings.stage2_dir}")
    else:
        reporter.info(
            "opt_v2: proxy made from each tile's own ground truth (--proxy-from-ground-truth: blur, gain/offset, "
            "noise, as in training); this evaluates the pipeline, it is not a prediction for new data"
        )
    reporter.info(
        f"Checkpoint: {settings.checkpoint} (epoch {checkpoint.epoch}); {plural(len(dataset), 'tile')}, "
        f"{plural(settings.samples, 'sample')} each, {_processes(settings)}"
    )
    note_equal_samples(settings, checkpoint, reporter)
    previous = _previous_outputs(output_dir) if settings.overwrite else []
    created = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    clean_stale(output_dir)
    report_warnings(reporter.warning, warnings, output_dir)
    (output_dir / MANIFEST).unlink(missing_ok=True)  # until this run completes, the folder is incomplete
    try:
        result = _run(
            settings, tiles_worker, settings, source, previous, reporter if _single(settings) else None
        )
    except BaseException:
        if created and not any(output_dir.iterdir()):
            output_dir.rmdir()  # a run that wrote nothing leaves no folder behind
        raise
    reporter.info(
        f"Wrote {len(dataset)} opt_v3 tiles to {output_dir} (.npz; COG .tif for {result.georeferenced} "
        f"georeferenced tiles); manifest {output_dir / MANIFEST}"
    )
    return result


def _single(settings: InferConfig) -> bool:
    return settings.devices * settings.num_nodes == 1


def _run(settings: InferConfig, fn: Any, *args: Any) -> InferResult:
    from axion.prediction.parallel import run_on_devices

    return run_on_devices(settings.devices, fn, *args, num_nodes=settings.num_nodes)


def tiles_worker(
    shard: Shard, settings: InferConfig, source: str, previous: list[str], reporter: Reporter | None
) -> InferResult:
    """This process's share of the tiles; the first process then writes the manifest."""
    from axion.cloudfill import network_opt_v2
    from axion.data.dataset import TileDataset, collate_tiles
    from axion.prediction.predict import size_batches
    from axion.provenance import output_provenance
    from axion.writers.tiles import tile_outputs, write_tile

    reporter = _worker_reporter(shard, reporter, settings)
    output_dir = Path(settings.output_dir)  # type: ignore[arg-type]
    dataset = TileDataset(
        Path(settings.input_dir),  # type: ignore[arg-type]
        None,
        stage2_dir=settings.stage2_dir,
        with_target=source == PROXY,
        max_samples=settings.max_samples,
    )
    predictor = _predictor(settings, reporter)
    _report_predictor(predictor, shard, reporter)
    record = output_provenance(predictor, samples=settings.samples, opt_v2=source)
    batches = size_batches([(t.height, t.width) for t in dataset.tiles], settings.batch_size)
    mine = batches[shard.rank :: shard.world_size]
    with reporter.bar("Infer", len(mine)) as bar:
        for indices in mine:
            batch = collate_tiles([dataset[i] for i in indices])
            drawn = predictor.samples(
                batch["s1"],
                network_opt_v2(batch),
                batch["name"],
                settings.samples,
                generated=settings.save_generated,
                acquired=batch.get("opt_v2_acquired"),
            )
            for k, index in enumerate(indices):
                tile = dataset.tiles[index]
                crop = (k, slice(None), slice(None, tile.height), slice(None, tile.width))
                invalid = batch["mask"][k, 0, : tile.height, : tile.width].numpy() == 0
                arrays = {
                    key: None if value is None else value[crop].numpy()
                    for key, value in drawn._asdict().items()
                }
                write_tile(
                    output_dir, tile.name, tile.georef, arrays, invalid, dtype=settings.dtype, record=record
                )
            bar.advance()
    shard.barrier()
    result = InferResult()
    for tile in dataset.tiles:
        names = tile_outputs(tile.name, tile.georef is not None, settings.samples, settings.save_generated)
        result.outputs += [output_dir / name for name in names]
        result.georeferenced += tile.georef is not None
    if shard.rank == 0:
        _finish_tiles(output_dir, result, previous, settings, source, record)
    return result


def _finish_tiles(
    output_dir: Path,
    result: InferResult,
    previous: list[str],
    settings: InferConfig,
    source: str,
    record: dict[str, str],
) -> None:
    """Remove what an overwritten run wrote and this one did not; then write the manifest."""
    from axion.atomic import write_json_atomic

    written = {path.name for path in result.outputs}
    for name in previous:
        if name not in written:
            (output_dir / name).unlink(missing_ok=True)
    manifest = {
        "mode": "tiles",
        "complete": True,
        "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input_dir": str(Path(settings.input_dir).resolve()),  # type: ignore[arg-type]
        "stage2_dir": str(Path(settings.stage2_dir).resolve()) if settings.stage2_dir else None,
        "opt_v2": source,
        "tiles": len([p for p in result.outputs if p.suffix == ".npz"]),
        "provenance": record,
        "settings": settings.model_dump(mode="json"),
        "outputs": sorted(written),
    }
    write_json_atomic(output_dir / MANIFEST, manifest)


# --- scene mode --------------------------------------------------------------------------------
def infer_scene(settings: InferConfig, reporter: Reporter, predictor: Predictor | None = None) -> InferResult:
    """One blended opt_v3 COG (and its STAC Item) on the grid of the opt_v2 scene.

    Args:
        settings: scene-mode settings.
        reporter: what the user sees.
        predictor: the checkpoint's model already built with these settings (one process only);
            None: built from ``settings.checkpoint``.
    """
    from axion.outputs import check_writable_file, clean_stale_file
    from axion.prediction.scene import SceneOutputs, make_grid, validate_scene
    from axion.writers.stac import acquisition_time

    s1_scene, opt_v2_scene = Path(settings.s1_scene), Path(settings.opt_v2_scene)  # type: ignore[arg-type]
    outputs = SceneOutputs.beside(Path(settings.output_scene))  # type: ignore[arg-type]
    info = validate_scene(
        s1_scene,
        opt_v2_scene,
        outputs.tif,
        overwrite=settings.overwrite,
        opt_v2_mask=settings.opt_v2_mask_scene,
    )
    for path in (outputs.tif, outputs.std, outputs.item):
        check_writable_file(path, "output scene")
        clean_stale_file(path)
    grid = make_grid(info.height, info.width, settings.tile_size, settings.overlap)
    checkpoint = _check_run(settings)
    acquired, when = acquisition_time(s1_scene, settings.datetime)
    if info.crs is None:
        reporter.info(f"note: {opt_v2_scene} has no CRS; {outputs.tif} gets the same pixel grid without one")
    if info.s1_reprojected:
        reporter.info(f"S1: {s1_scene} reprojected onto the grid of {opt_v2_scene} (bilinear, in dB)")
    if info.opt_v2_mask is not None:
        reporter.info(
            f"opt_v2: the pixels {info.opt_v2_mask} marks cloudy (0) are filled from each tile's clear ones"
        )
    reporter.info(
        f"Scene: {info.height}x{info.width} px -> {len(grid.rows)}x{len(grid.cols)} tiles of {settings.tile_size} px, "
        f"overlap {settings.overlap} px; {plural(settings.samples, 'sample')} per tile, "
        f"{_processes(settings)}"
    )
    note_equal_samples(settings, checkpoint, reporter)
    # Until the new Item is written this scene counts as incomplete; a stale spread goes with it.
    outputs.item.unlink(missing_ok=True)
    if settings.samples == 1:
        outputs.std.unlink(missing_ok=True)
    folder = outputs.tif.parent
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)  # as tile mode creates its output directory
    try:
        result = _run(
            settings,
            scene_worker,
            settings,
            info,
            (acquired, when),
            reporter if _single(settings) else None,
            predictor if _single(settings) else None,
        )
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # a run that wrote nothing leaves no folder behind
        raise
    reporter.info(f"Wrote {', '.join(str(p) for p in result.outputs)}")
    return result


def scene_worker(
    shard: Shard,
    settings: InferConfig,
    info: SceneInfo,
    acquired: tuple[dt.datetime, str],
    reporter: Reporter | None,
    predictor: Predictor | None = None,
) -> InferResult:
    """This process's strips; the first process blends and writes them, then the STAC Item."""
    reporter = _worker_reporter(shard, reporter, settings)
    predictor = predictor or _predictor(settings, reporter)
    _report_predictor(predictor, shard, reporter)
    written = write_scene(predictor, settings, info, acquired, shard, reporter)
    return InferResult(outputs=written, georeferenced=1)


def _report_predictor(predictor: Predictor, shard: Shard, reporter: Reporter) -> None:
    reporter.info(
        f"timesteps {predictor.timesteps}, seed {predictor.seed}, {predictor.precision.label}; "
        f"{shard.world_size} x {predictor.device.type}"
    )


def write_scene(
    predictor: Predictor,
    settings: InferConfig,
    info: SceneInfo,
    acquired: tuple[dt.datetime, str],
    shard: Shard,
    reporter: Reporter,
) -> list[Path]:
    """One scene (``settings.output_scene``): this process's strips; the first process blends and
    writes them, then the STAC Item. Returns the files of the scene."""
    from axion.prediction.scene import SceneOutputs, make_grid, run_scene
    from axion.prediction.scenes import mask_record
    from axion.provenance import geotiff_tags, output_provenance

    outputs = SceneOutputs.beside(Path(settings.output_scene))  # type: ignore[arg-type]
    record = output_provenance(
        predictor,
        samples=settings.samples,
        opt_v2="scene",
        s1_scene=info.s1.resolve(),
        opt_v2_scene=info.opt_v2.resolve(),
        opt_v2_mask_scene=mask_record(info.opt_v2_mask),
        s1_reprojected="yes" if info.s1_reprojected else "no",
        tile_size=settings.tile_size,
        overlap=settings.overlap,
        dtype=settings.dtype,
    )

    sampled = settings.samples > 1
    grid = make_grid(info.height, info.width, settings.tile_size, settings.overlap)
    with reporter.bar("Scene tiles", len(grid)) as bar:
        run_scene(
            info,
            outputs.tif,
            predictor.tiles_fn(settings.samples, acquired=info.opt_v2_mask is not None),
            tile_size=settings.tile_size,
            overlap=settings.overlap,
            batch_size=settings.batch_size,
            dtype=settings.dtype,
            tags=geotiff_tags(record, "opt_v3"),
            std_output=outputs.std if sampled else None,
            std_tags=geotiff_tags(record, "opt_v3_std"),
            shard=shard,
            on_tile=bar.advance,
        )
    if shard.rank == 0:
        _write_scene_item(outputs, info, settings, record, acquired)
    return [outputs.tif, *([outputs.std] if sampled else []), outputs.item]


def _write_scene_item(
    outputs: Any,
    info: SceneInfo,
    settings: InferConfig,
    record: dict[str, str],
    acquired: tuple[dt.datetime, str],
) -> None:
    """The STAC Item, last: its presence marks the scene complete."""
    from axion.provenance import stac_properties
    from axion.writers.cog import RasterSpec
    from axion.writers.stac import RasterAsset, scene_item, write_item

    assets = [
        RasterAsset("opt_v3", outputs.tif, RasterSpec(settings.dtype), "opt_v3: B2, B3, B4, B8", ("data",))
    ]
    if settings.samples > 1:
        title = f"Per-pixel standard deviation of opt_v3 over {settings.samples} samples"
        assets.append(
            RasterAsset("opt_v3_std", outputs.std, RasterSpec(settings.dtype, True), title, ("uncertainty",))
        )
    moment, source = acquired
    item = scene_item(
        outputs.item,
        assets,
        crs=info.crs,
        transform=info.transform,
        height=info.height,
        width=info.width,
        acquired=moment,
        properties={**stac_properties(record), "axion:datetime_source": source},
    )
    write_item(outputs.item, item)


# --- many scenes (--scenes) --------------------------------------------------------------------
#: How each scene of a list ended, per process (0: another process's scene).
_DONE, _SKIPPED, _FAILED = 1, 2, 3


def infer_scenes(settings: InferConfig, reporter: Reporter) -> InferResult:
    """Every scene of the list ``settings.scenes`` (:mod:`axion.prediction.scenes`), spread round-robin
    over the processes; scenes whose outputs are complete are skipped, a failed scene is named and
    the others go on. The result counts the scenes of all processes."""
    from axion.prediction.predict import run_identity
    from axion.prediction.scene import make_grid
    from axion.prediction.scenes import read_scene_list
    from axion.provenance import file_sha256

    jobs = read_scene_list(Path(settings.scenes), settings.output_dir)  # type: ignore[arg-type]
    # A bad --tile-size or --overlap is refused once, not once per scene.
    make_grid(settings.tile_size, settings.tile_size, settings.tile_size, settings.overlap)
    checkpoint = _check_run(settings)
    expected = {
        "checkpoint_sha256": file_sha256(Path(settings.checkpoint).resolve()),
        **run_identity(settings, checkpoint),
        "samples": str(settings.samples),
        "tile_size": str(settings.tile_size),
        "overlap": str(settings.overlap),
        "dtype": settings.dtype,
    }
    reporter.info(
        f"Scenes: {plural(len(jobs), 'scene')} from {settings.scenes}; tiles of {settings.tile_size} px, overlap "
        f"{settings.overlap} px, {plural(settings.samples, 'sample')} per tile, {_processes(settings)}"
    )
    note_equal_samples(settings, checkpoint, reporter)
    result = _run(settings, scenes_worker, settings, jobs, expected, reporter if _single(settings) else None)
    reporter.info(
        f"Scenes: {result.done} done, {result.skipped} skipped (complete), {result.failed} failed, "
        f"of {len(jobs)} in {settings.scenes}"
    )
    return result


def scenes_worker(
    shard: Shard,
    settings: InferConfig,
    jobs: list[SceneJob],
    expected: dict[str, str],
    reporter: Reporter | None,
) -> InferResult:
    """This process's scenes of the list (every ``world_size``-th); then every process's tally.

    Each process prints a line per scene it handles; the model is built at the first scene
    that needs it (a rerun of a finished list loads nothing).
    """
    import numpy as np

    from axion.prediction.parallel import LocalShard
    from axion.prediction.scene import SceneOutputs

    lines = reporter or Reporter.for_terminal(quiet=True, log_format=settings.log_format)
    setup = _worker_reporter(shard, reporter, settings)
    status = np.zeros(len(jobs), np.int64)
    predictor, errors = None, _scene_errors()
    for index in range(shard.rank, len(jobs), shard.world_size):
        job = jobs[index]
        scene = settings.model_copy(
            update={
                "s1_scene": job.s1,
                "opt_v2_scene": job.opt_v2,
                "opt_v2_mask_scene": job.opt_v2_mask,
                "output_scene": job.output,
                "datetime": job.datetime,
            }
        )
        try:
            info = _scene_to_do(scene, job, expected)
            if info is None:
                status[index] = _SKIPPED
                lines.info(f"skipped {job.name}: {job.output} is complete")
                continue
            if predictor is None:
                predictor = _predictor(settings, setup)
                _report_predictor(predictor, shard, setup)
            acquired = _acquired(scene)
            write_scene(predictor, scene, info, acquired, LocalShard(), setup)
        except errors as exc:
            status[index] = _FAILED
            lines.info(f"failed {job.name}: {_one_line(exc)}")
            continue
        status[index] = _DONE
        lines.info(f"done {job.name}: {job.output}")
    tally = np.max([part["status"] for part in shard.gather({"status": status})], axis=0)
    finished = [jobs[i] for i in np.flatnonzero((tally == _DONE) | (tally == _SKIPPED))]
    return InferResult(
        outputs=[SceneOutputs.beside(job.output).tif for job in finished],
        georeferenced=len(finished),
        done=int((tally == _DONE).sum()),
        skipped=int((tally == _SKIPPED).sum()),
        failed=int((tally == _FAILED).sum()),
    )


def _scene_errors() -> tuple[type[BaseException], ...]:
    """What fails one scene of a list: bad input the user controls, or a raster GDAL cannot read."""
    from rasterio.errors import CRSError, RasterioError

    return (AxionError, RasterioError, CRSError)


def _one_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return text if isinstance(exc, AxionError) else f"{type(exc).__name__}: {text}"


def _scene_to_do(scene: InferConfig, job: SceneJob, expected: dict[str, str]) -> SceneInfo | None:
    """The checked inputs of a scene to write; None when its outputs are complete for this run.

    Removes what killed writers of its files left, and the STAC Item of outputs that are not
    complete (so they stay incomplete until this run finishes them).

    Raises:
        DataError: bad inputs or outputs, or complete outputs of other settings (without ``--overwrite``).
    """
    from axion.outputs import check_writable_file, clean_stale_file
    from axion.prediction.scene import SceneOutputs, validate_scene
    from axion.prediction.scenes import completeness, expected_assets, mask_record

    outputs = SceneOutputs.beside(job.output)
    for path in (outputs.tif, outputs.std, outputs.item):
        check_writable_file(path, "output scene")
        for name in (path, path.with_name(path.name + ".strips")):  # the COG writer's strip file too
            clean_stale_file(name)
    record = {
        **expected,
        "s1_scene": str(job.s1.resolve()),
        "opt_v2_scene": str(job.opt_v2.resolve()),
        "opt_v2_mask_scene": mask_record(job.opt_v2_mask),
    }
    verdict = completeness(outputs.item, record, expected_assets(scene.samples))
    if verdict is None:
        return None
    if verdict.other_settings and not scene.overwrite:
        raise DataError(
            f"{outputs.item}: holds opt_v3 of other settings ({verdict.reason}); use --overwrite to replace it"
        )
    info = validate_scene(job.s1, job.opt_v2, job.output, overwrite=True, opt_v2_mask=job.opt_v2_mask)
    outputs.item.unlink(missing_ok=True)
    if scene.samples == 1:
        outputs.std.unlink(missing_ok=True)
    outputs.tif.parent.mkdir(parents=True, exist_ok=True)
    return info


def _acquired(scene: InferConfig) -> tuple[dt.datetime, str]:
    from axion.writers.stac import acquisition_time

    return acquisition_time(Path(scene.s1_scene), scene.datetime)  # type: ignore[arg-type]
