"""Score a checkpoint on a split: opt_v2 (the input) against opt_v3 (the output), tile by tile.

:func:`evaluate` is what ``axion stage3 evaluate`` runs: checks first (seconds), then
the model, then the loop. It writes the results directory laid out in
:mod:`axion.records.results` and returns the per-tile rows and the summary.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axion.config import EvaluateConfig
from axion.console import plural
from axion.runtime.reporter import Reporter
from axion.training.trained import read_trained

if TYPE_CHECKING:
    from torch import Tensor

    from axion.data.badsamples import BadSample
    from axion.data.dataset import TileDataset
    from axion.data.sharddata import ShardDataset
    from axion.perceptual import PerceptualLoss
    from axion.prediction.predict import Predictor
    from axion.training.checkpoint import Checkpoint


@dataclass
class Evaluation:
    """What :func:`evaluate` produced: one row per tile, the summary, and where they were written."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    output_dir: Path


def check_results_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse a file, an unwritable folder, or earlier results without ``overwrite``, before any work."""
    from axion.outputs import check_output_dir
    from axion.records.results import SUMMARY_FILE

    def earlier_results(folder: Path) -> str | None:
        if not (folder / SUMMARY_FILE).exists():
            return None
        return f"already holds evaluation results ({SUMMARY_FILE}); use --overwrite or another --output-dir"

    check_output_dir(output_dir, occupied=None if overwrite else earlier_results)


def score(
    opt_v2: Tensor,
    opt_v3: Tensor,
    target: Tensor,
    s1: Tensor,
    mask: Tensor,
    perceptual: PerceptualLoss | None,
) -> dict[str, dict[str, Tensor]]:
    """Per-sample metrics of the input and the output, and the ground truth's own SAR edge correlation."""
    from axion.metrics import image_metrics, sar_agreement, sar_edge_correlation

    return {
        src: {
            **image_metrics(image, target, mask, perceptual),
            "sar_agreement": sar_agreement(image, target, s1, mask),
            "sar_edge_correlation": sar_edge_correlation(image, s1, mask),
        }
        for src, image in (("opt_v2", opt_v2), ("opt_v3", opt_v3))
    } | {"target": {"sar_edge_correlation": sar_edge_correlation(target, s1, mask)}}


def tile_rows(
    scores: dict[str, dict[str, Tensor]], names: list[str], sizes: dict[str, tuple[int, int]]
) -> list[dict]:
    """One row per tile: its size, every metric of opt_v2 and opt_v3, the ground truth's SAR edge correlation."""
    from axion.records.results import METRICS

    keys = [k for k in METRICS if k in scores["opt_v3"]] + sorted(
        k for k in scores["opt_v3"] if k not in METRICS
    )
    rows = []
    for i, name in enumerate(names):
        h, w = sizes[name]
        row: dict[str, Any] = {"name": name, "height": h, "width": w}
        for key in keys:
            for src in ("opt_v2", "opt_v3"):
                row[f"{src}_{key}"] = float(scores[src][key][i])
        row["target_sar_edge_correlation"] = float(scores["target"]["sar_edge_correlation"][i])
        rows.append(row)
    return rows


def clear_rows(
    scores: dict[str, dict[str, Tensor]], names: list[str], fractions: Tensor
) -> list[dict[str, float]]:
    """Per tile: the share of valid pixels opt_v2 is clear on, and the metrics on those pixels only."""
    rows = []
    for i, _ in enumerate(names):
        row = {"clear_fraction": float(fractions[i])}
        for src in ("opt_v2", "opt_v3"):
            for key, values in scores[src].items():
                row[f"clear_{src}_{key}"] = float(values[i]) if float(fractions[i]) > 0 else math.nan
        rows.append(row)
    return rows


def clear_summary(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Means over opt_v2's clear pixels (``opt_v2_mask``), or None when every tile is clear."""
    from axion.records.results import describe

    if not rows or all(row.get("clear_fraction", 1.0) >= 1.0 for row in rows):
        return None
    keys = sorted({k.removeprefix("clear_opt_v3_") for k in rows[0] if k.startswith("clear_opt_v3_")})
    metrics = {
        src: {key: describe([row[f"clear_{src}_{key}"] for row in rows]) for key in keys}
        for src in ("opt_v2", "opt_v3")
    }
    return {"clear_fraction": describe([row["clear_fraction"] for row in rows]), "metrics": metrics}


def non_finite_tiles(rows: list[dict[str, Any]]) -> list[str]:
    """Names of the tiles with a non-finite opt_v3 metric (the summary's means leave them out)."""
    return [
        row["name"]
        for row in rows
        if any(
            k.startswith("opt_v3_") and not math.isfinite(v) for k, v in row.items() if isinstance(v, float)
        )
    ]


@dataclass
class _Inputs:
    """What :func:`evaluate` checked before any slow work."""

    checkpoint: Checkpoint
    dataset: TileDataset | ShardDataset
    perceptual: PerceptualLoss | None
    warnings: list[Any]


def _check_inputs(settings: EvaluateConfig, reporter: Reporter) -> _Inputs:
    """Output folder, checkpoint, LPIPS weights and tiles, in order of cost; then say what runs."""
    from axion.data.check import report_warnings
    from axion.data.dataset import TileDataset, unrecorded_s1_product
    from axion.data.screen import screen_samples
    from axion.data.sharddata import is_streamed
    from axion.outputs import clean_stale
    from axion.records.results import TILES_DIR

    output_dir = Path(settings.output_dir)
    check_results_dir(output_dir, settings.overwrite)
    checkpoint = read_trained(settings.checkpoint)
    perceptual = None
    if settings.lpips_weight > 0:
        from axion.perceptual import build_perceptual_loss

        perceptual = build_perceptual_loss(settings.lpips_weights)
    if is_streamed(settings.data_dir):
        dataset = _shard_dataset(settings, checkpoint)
        clean_stale(output_dir, output_dir / TILES_DIR)
        reporter.info(
            f"Samples: {plural(len(dataset), settings.split + ' sample')} from {dataset.source.spec}"
        )
        return _Inputs(checkpoint=checkpoint, dataset=dataset, perceptual=perceptual, warnings=[])
    dataset = TileDataset(
        settings.data_dir,
        settings.split,
        stage2_dir=settings.stage2_dir,
        max_samples=settings.max_samples,
        skip_bad=True,
    )
    warnings = screen_samples(
        settings.data_dir, settings.stage2_dir, {settings.split: dataset}, settings.max_bad_fraction
    )
    warnings += unrecorded_s1_product(
        settings.data_dir, dataset.tiles, checkpoint.model_settings.get("s1_product", "grd")
    )
    clean_stale(output_dir, output_dir / TILES_DIR)
    report_warnings(reporter.warning, warnings)
    source = (
        f"Stage 2 outputs in {settings.stage2_dir}"
        if settings.stage2_dir
        else "proxy of the ground truth (no --stage2-dir)"
    )
    reporter.info(
        f"Tiles: {plural(len(dataset), settings.split + ' tile')} from {settings.data_dir}; opt_v2: {source}"
    )
    return _Inputs(checkpoint=checkpoint, dataset=dataset, perceptual=perceptual, warnings=warnings)


def _shard_dataset(settings: EvaluateConfig, checkpoint: Checkpoint) -> ShardDataset:
    """The split's samples streamed from shards, in index order (no shuffle), judged as they are read."""
    from axion.data.sharddata import ShardDataset, open_source

    product = checkpoint.model_settings.get("s1_product", "grd")
    return ShardDataset(
        open_source(settings.data_dir, product),
        settings.split,
        stage2_dir=settings.stage2_dir,
        max_samples=settings.max_samples,
        s1_product=product,
    )


def _batch_rows(
    batch: dict[str, Any],
    opt_v3: Tensor,
    perceptual: PerceptualLoss | None,
    sizes: dict[str, tuple[int, int]],
    *,
    clear: bool,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """One batch's per-tile rows (with the clear-pixel columns when ``clear``) and its scores."""
    s1, opt_v2, target, mask = batch["s1"], batch["opt_v2"], batch["target"], batch["mask"]
    scores = score(opt_v2, opt_v3, target, s1, mask, perceptual)
    rows = tile_rows(scores, batch["name"], sizes)
    if clear:
        # Real opt_v2 may carry a clear-sky mask: score its clear pixels apart too.
        clear_mask = mask * batch["opt_v2_mask"]
        fractions = clear_mask.flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)
        extra = clear_rows(score(opt_v2, opt_v3, target, s1, clear_mask, None), batch["name"], fractions)
        rows = [row | more for row, more in zip(rows, extra, strict=True)]
    return rows, scores


def _save_arrays(
    staging: Path,
    batch: dict[str, Any],
    opt_v3: Tensor,
    sizes: dict[str, tuple[int, int]],
    keep: set[str],
) -> None:
    """The arrays of the batch's tiles in ``keep`` (``--save-arrays``), cropped to their size."""
    import numpy as np

    for i, name in enumerate(batch["name"]):
        if name not in keep:
            continue
        h, w = sizes[name]
        arrays = {
            "s1": batch["s1"][i],
            "opt_v2": batch["opt_v2"][i],
            "opt_v3": opt_v3[i],
            "target": batch["target"][i],
        }
        np.savez_compressed(
            staging / f"{name}.npz",
            **{k: v[:, :h, :w].numpy().astype(np.float32) for k, v in arrays.items()},
            mask=(batch["mask"][i, 0, :h, :w] > 0).numpy().astype(np.uint8),
        )


def _summary(
    settings: EvaluateConfig,
    inputs: _Inputs,
    predictor: Predictor,
    rows: list[dict[str, Any]],
    broken: list[str],
    seconds: float,
    bad: list[BadSample],
) -> dict[str, Any]:
    """summary.json: where the numbers come from, how they were made, and their means."""
    from axion.provenance import provenance
    from axion.records.results import summarise

    metric_keys = [c.removeprefix("opt_v3_") for c in rows[0] if c.startswith("opt_v3_")]
    return {
        "checkpoint": str(Path(settings.checkpoint).resolve()),
        "run_dir": str(Path(settings.checkpoint).resolve().parent),
        "epoch": predictor.epoch,
        "data_dir": _data_source(settings.data_dir),
        "split": settings.split,
        "stage2_dir": str(Path(settings.stage2_dir).resolve()) if settings.stage2_dir else None,
        "opt_v2_source": "stage2" if settings.stage2_dir else "proxy",
        "tiles": len(rows),
        "timesteps": predictor.timesteps,
        "seed": predictor.seed,
        "precision": predictor.precision.fabric,
        "lpips": inputs.perceptual is not None,
        "units": _units(),
        "metrics": summarise(rows, metric_keys),
        "clear": clear_summary(rows),
        "non_finite_tiles": broken,
        "bad_samples": [sample.to_json() for sample in bad],
        "input_warnings": [str(w) for w in inputs.warnings],
        "seconds": round(seconds, 2),
        "provenance": {**provenance(), "checkpoint": inputs.checkpoint.provenance},
    }


def evaluate(settings: EvaluateConfig, reporter: Reporter | None = None) -> Evaluation:
    """Evaluate a checkpoint on ``settings.split`` and write the results directory.

    Raises:
        AxionError: bad input (checkpoint, tiles, weights, output directory), before any slow work.
    """
    from torch.utils.data import DataLoader

    from axion.cloudfill import network_opt_v2
    from axion.data.dataset import collate_tiles
    from axion.data.sharddata import ShardDataset, ShardLoader
    from axion.prediction.predict import predictor_for, size_batches
    from axion.records.results import TILES_DIR, write_results
    from axion.runtime.device import resolve_num_workers

    reporter = reporter or Reporter.silent()
    output_dir = Path(settings.output_dir)
    inputs = _check_inputs(settings, reporter)
    dataset = inputs.dataset
    predictor = predictor_for(settings, inputs.checkpoint, log=reporter.info)
    reporter.info(
        f"Checkpoint: {settings.checkpoint} (epoch {predictor.epoch}); timesteps {predictor.timesteps}, "
        f"seed {predictor.seed}, {predictor.precision.label}"
    )
    workers = resolve_num_workers(settings.num_workers)
    if isinstance(dataset, ShardDataset):
        loader: Any = ShardLoader(
            dataset, batch_size=settings.batch_size, num_workers=workers, collate_fn=collate_tiles
        )
        keep: set[str] | None = None  # the first --save-arrays samples met (by name with 0-1 workers)
    else:
        batches = size_batches([(t.height, t.width) for t in dataset.tiles], settings.batch_size)
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_tiles, num_workers=workers)
        keep = set(dataset.names[: settings.save_arrays])
    kept: set[str] = set()
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = output_dir / f".{TILES_DIR}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    rows: list[dict[str, Any]] = []
    bad: list[BadSample] = []
    started = time.perf_counter()
    try:
        with reporter.bar("Evaluate", len(loader)) as bar:
            for batch in loader:
                bad += batch["bad"]
                if not batch["name"]:
                    bar.advance()
                    continue
                sizes = dict(zip(batch["name"], batch["size"], strict=True))
                if keep is None:
                    kept.update(batch["name"][: max(0, settings.save_arrays - len(kept))])
                # What infer writes for these tiles: one seeded generation, clipped at 0.
                # Cloudy opt_v2 pixels (opt_v2_mask) reach the network filled from clear ones.
                opt_v3 = predictor.samples(
                    batch["s1"],
                    network_opt_v2(batch),
                    batch["name"],
                    1,
                    acquired=batch.get("opt_v2_acquired"),
                ).mean
                new, scores = _batch_rows(
                    batch, opt_v3, inputs.perceptual, sizes, clear=settings.stage2_dir is not None
                )
                rows += new
                _save_arrays(staging, batch, opt_v3, sizes, kept if keep is None else keep)
                bar.advance(sar_agr=float(scores["opt_v3"]["sar_agreement"].mean()))
        rows.sort(key=lambda r: r["name"])
        _report_bad(bad, len(dataset), settings.max_bad_fraction, reporter)
        broken = non_finite_tiles(rows)
        if broken:
            reporter.warning(
                f"{len(broken)} tile(s) got non-finite opt_v3 metrics and are left out of the "
                f"means (see summary.json): {', '.join(broken[:5])}"
            )
        summary = _summary(settings, inputs, predictor, rows, broken, time.perf_counter() - started, bad)
        write_results(output_dir, rows, summary, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Evaluation(rows=rows, summary=summary, output_dir=output_dir)


def _report_bad(bad: list[BadSample], total: int, limit: float, reporter: Reporter) -> None:
    """Warn about the tiles skipped as bad (summary.json lists them); refuse a split they spoil."""
    from axion.records.badlog import check_bad_fraction

    if not bad:
        return
    check_bad_fraction(len(bad), total, limit, where="the split", first=bad[0], path=None, what="evaluated")
    reporter.warning(
        f"{plural(len(bad), 'bad tile')} skipped, not scored (listed in summary.json's bad_samples): {bad[0]}"
    )


def _data_source(data_dir: Path) -> str:
    """Where the tiles came from: the resolved folder, or the shards as given."""
    from axion.data.sharddata import is_streamed
    from axion.data.shardsource import source_text

    return source_text(data_dir) if is_streamed(data_dir) else str(Path(data_dir).resolve())


def _units() -> dict[str, str]:
    from axion.records.results import METRICS

    return {k: unit for k, (_, unit, _) in METRICS.items()}
