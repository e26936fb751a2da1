"""``axion stage3 evaluate``: score a checkpoint on a split, opt_v2 (input) against opt_v3 (output).

Writes ``summary.json``, ``per_tile.csv`` and ``tiles/<name>.npz`` (see
:mod:`axion.viz.results`) into ``--output-dir`` and prints a summary table.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import typer

from axion.cli._common import config_option, console, is_interactive, user_errors
from axion.cli.app import stage3_app
from axion.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OtherConfig,
    TrainingConfig,
    resolve_config,
)
from axion.errors import ConfigError, DataError

_IO, _MODEL, _RUN = "Input and output", "Model", "Run"


def checkpoint_option() -> Any:
    return typer.Option(
        ...,
        "--checkpoint",
        help="Checkpoint written by 'axion stage3 train' (best_model.pt or checkpoint_epoch_N.pt).",
        rich_help_panel=_MODEL,
    )


def timesteps_option() -> Any:
    return config_option(
        ModelConfig,
        "timesteps",
        panel=_MODEL,
        default=None,
        show_default="the checkpoint's",
        help="Number of diffusion (DDIM) timesteps.",
    )


def seed_option() -> Any:
    return config_option(
        OtherConfig,
        "seed",
        panel=_MODEL,
        default=None,
        show_default="the checkpoint's",
        help="Base seed of the per-tile diffusion noise (seed, 'test', tile name).",
    )


def precision_option() -> Any:
    return config_option(
        TrainingConfig,
        "precision",
        panel=_MODEL,
        help="auto (fp16 on CUDA, bf16 on CPU), fp16-mixed, bf16-mixed or 32.",
    )


def pretrained_option() -> Any:
    return config_option(
        ModelConfig,
        "pretrained",
        "--pretrained/--no-pretrained",
        panel=_MODEL,
        default=None,
        show_default="as in training",
        help="Whether the frozen TerraMind base is pretrained.",
    )


def weights_dir_option() -> Any:
    return config_option(
        ModelConfig,
        "weights_dir",
        panel=_MODEL,
        envvar="AXION_WEIGHTS_DIR",
        show_default="as in training, else the Hugging Face cache",
        help="Local directory holding the original TerraMind files.",
    )


def validated(**values: Any) -> dict[str, Any]:
    """Flag values checked by the config models they come from (one-line ConfigError naming the flag)."""
    for section in (TrainingConfig, OtherConfig, LossConfig, ModelConfig):
        present = {k: v for k, v in values.items() if k in section.model_fields and v is not None}
        if present:
            model = resolve_config(section, environ={}, flags=present)
            values.update({k: getattr(model, k) for k in present})
    return values


def check_results_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse a file, or earlier results without ``--overwrite``, before any work."""
    from axion.viz.results import SUMMARY_FILE

    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: output directory is a file")
    if (output_dir / SUMMARY_FILE).exists() and not overwrite:
        raise DataError(
            f"{output_dir}: already holds evaluation results ({SUMMARY_FILE}); use --overwrite or another --output-dir"
        )


@stage3_app.command()
@user_errors
def evaluate(
    checkpoint: Path = checkpoint_option(),
    data_dir: Path = config_option(
        DataConfig,
        "data_dir",
        panel=_IO,
        default=...,
        show_default=False,
        help="Directory of tiles (the split is read from each tile's JSON).",
    ),
    output_dir: Path = typer.Option(
        ...,
        "--output-dir",
        help="Results directory: summary.json, per_tile.csv, tiles/<name>.npz.",
        rich_help_panel=_IO,
    ),
    split: str = typer.Option(
        "test", "--split", help="Split to evaluate: train, val or test.", rich_help_panel=_IO
    ),
    stage2_dir: Path | None = config_option(
        DataConfig,
        "stage2_dir",
        panel=_IO,
        help="Stage 2 outputs <name>.npz (key opt_v2). Without it opt_v2 is the training proxy of the ground truth.",
    ),
    max_samples: int | None = config_option(OtherConfig, "max_samples", panel=_IO),
    save_arrays: int = typer.Option(
        32,
        "--save-arrays",
        min=0,
        help="Save s1/opt_v2/opt_v3/target/mask arrays of the first N tiles (by name) for 'visualize'; 0: none.",
        rich_help_panel=_IO,
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the results of an earlier evaluation in --output-dir.",
        rich_help_panel=_IO,
    ),
    timesteps: int | None = timesteps_option(),
    seed: int | None = seed_option(),
    precision: str = precision_option(),
    pretrained: bool | None = pretrained_option(),
    weights_dir: Path | None = weights_dir_option(),
    lpips_weight: float = config_option(
        LossConfig,
        "lpips_weight",
        panel=_RUN,
        help="0 skips the LPIPS metric (no AlexNet weights needed); any other value computes it (unscaled).",
    ),
    lpips_weights: Path | None = config_option(
        LossConfig, "lpips_weights", panel=_RUN, envvar="AXION_LPIPS_WEIGHTS"
    ),
    batch_size: int = config_option(TrainingConfig, "batch_size", panel=_RUN),
    num_workers: str = config_option(OtherConfig, "num_workers", panel=_RUN),
    quiet: bool = config_option(OtherConfig, "quiet", panel=_RUN),
) -> None:
    """Evaluate a checkpoint: PSNR, SSIM, SAM, MAE, RMSE, LPIPS and SAR agreement of opt_v2 vs opt_v3.

    Metrics are per tile over valid pixels (reflectance = tile units / 10000); the
    ground truth's own SAR agreement is reported as the reference.
    """
    opts = validated(
        batch_size=batch_size,
        precision=precision,
        max_samples=max_samples,
        seed=seed,
        num_workers=num_workers,
        lpips_weight=lpips_weight,
        lpips_weights=lpips_weights,
        timesteps=timesteps,
    )
    if split not in ("train", "val", "test"):
        raise ConfigError(f"invalid split (--split) = {split!r}: expected train, val or test")
    check_results_dir(output_dir, overwrite)
    _run(
        checkpoint=checkpoint,
        data_dir=data_dir,
        output_dir=output_dir,
        split=split,
        stage2_dir=stage2_dir,
        save_arrays=save_arrays,
        pretrained=pretrained,
        weights_dir=weights_dir,
        live=not quiet and is_interactive(),
        **opts,
    )


def _run(
    *,
    checkpoint: Path,
    data_dir: Path,
    output_dir: Path,
    split: str,
    stage2_dir: Path | None,
    save_arrays: int,
    pretrained: bool | None,
    weights_dir: Path | None,
    live: bool,
    batch_size: int,
    precision: str,
    max_samples: int | None,
    seed: int | None,
    num_workers: int | str,
    lpips_weight: float,
    lpips_weights: Path | None,
    timesteps: int | None,
) -> None:
    """Everything after the flags: checks first (cheap), then the model, then the loop."""
    import numpy as np
    from torch.utils.data import DataLoader

    from axion.data.check import validate_data_dir
    from axion.data.dataset import TileDataset, collate_tiles
    from axion.engine.checkpoint import load_checkpoint
    from axion.engine.predict import load_predictor, size_batches
    from axion.engine.reporter import Reporter
    from axion.engine.runtime import resolve_num_workers
    from axion.metrics import image_metrics, sar_agreement
    from axion.viz.results import (
        METRICS,
        PER_TILE_FILE,
        SUMMARY_FILE,
        TILES_DIR,
        summarise,
        write_per_tile_csv,
    )

    reporter = Reporter(console, live=live)
    state = load_checkpoint(checkpoint)
    perceptual = None
    if lpips_weight > 0:
        from axion.perceptual import build_perceptual_loss

        perceptual = build_perceptual_loss(lpips_weights)
    validate_data_dir(data_dir)
    dataset = TileDataset(data_dir, split, stage2_dir=stage2_dir, max_samples=max_samples)
    source = (
        f"Stage 2 outputs in {stage2_dir}" if stage2_dir else "proxy of the ground truth (no --stage2-dir)"
    )
    reporter.info(f"Tiles: {len(dataset)} {split} tiles from {data_dir}; opt_v2: {source}")

    predictor = load_predictor(
        checkpoint,
        timesteps=timesteps,
        seed=seed,
        precision=precision,
        pretrained=pretrained,
        weights_dir=weights_dir,
        log=reporter.info,
        state=state,
    )
    reporter.info(
        f"Checkpoint: {checkpoint} (epoch {predictor.epoch}); timesteps {predictor.timesteps}, "
        f"seed {predictor.seed}, {predictor.precision.label}"
    )
    batches = size_batches([(t.height, t.width) for t in dataset.tiles], batch_size)
    loader = DataLoader(
        dataset, batch_sampler=batches, collate_fn=collate_tiles, num_workers=resolve_num_workers(num_workers)
    )
    sizes = {t.name: (t.height, t.width) for t in dataset.tiles}
    keep = set(dataset.names[:save_arrays])
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = output_dir / f".{TILES_DIR}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        with reporter.bar("Evaluate", len(batches)) as bar:
            for batch in loader:
                opt_v3 = predictor(batch["s1"], batch["opt_v2"], batch["name"])
                s1, opt_v2, target, mask = batch["s1"], batch["opt_v2"], batch["target"], batch["mask"]
                scores = {
                    "opt_v2": {
                        **image_metrics(opt_v2, target, mask, perceptual),
                        "sar_agreement": sar_agreement(opt_v2, s1, mask),
                    },
                    "opt_v3": {
                        **image_metrics(opt_v3, target, mask, perceptual),
                        "sar_agreement": sar_agreement(opt_v3, s1, mask),
                    },
                }
                target_sar = sar_agreement(target, s1, mask)
                for i, name in enumerate(batch["name"]):
                    h, w = sizes[name]
                    row: dict[str, Any] = {"name": name, "height": h, "width": w}
                    keys = [k for k in METRICS if k in scores["opt_v3"]] + sorted(
                        k for k in scores["opt_v3"] if k not in METRICS
                    )
                    for key in keys:
                        for src in ("opt_v2", "opt_v3"):
                            row[f"{src}_{key}"] = float(scores[src][key][i])
                    row["target_sar_agreement"] = float(target_sar[i])
                    rows.append(row)
                    if name in keep:
                        arrays = {
                            "s1": s1[i, :, :h, :w],
                            "opt_v2": opt_v2[i, :, :h, :w],
                            "opt_v3": opt_v3[i, :, :h, :w],
                            "target": target[i, :, :h, :w],
                        }
                        np.savez_compressed(
                            staging / f"{name}.npz",
                            **{k: v.numpy().astype(np.float32) for k, v in arrays.items()},
                            mask=(mask[i, 0, :h, :w] > 0).numpy().astype(np.uint8),
                        )
                bar.advance(sar_agr=float(scores["opt_v3"]["sar_agreement"].mean()))
        rows.sort(key=lambda r: r["name"])
        metric_keys = [c.removeprefix("opt_v3_") for c in rows[0] if c.startswith("opt_v3_")]
        summary = {
            "checkpoint": str(Path(checkpoint).resolve()),
            "run_dir": str(Path(checkpoint).resolve().parent),
            "epoch": predictor.epoch,
            "data_dir": str(Path(data_dir).resolve()),
            "split": split,
            "stage2_dir": str(Path(stage2_dir).resolve()) if stage2_dir else None,
            "opt_v2_source": "stage2" if stage2_dir else "proxy",
            "tiles": len(rows),
            "timesteps": predictor.timesteps,
            "seed": predictor.seed,
            "precision": predictor.precision.fabric,
            "lpips": perceptual is not None,
            "units": {k: unit for k, (_, unit, _) in METRICS.items()},
            "metrics": summarise(rows, metric_keys),
            "seconds": round(time.perf_counter() - started, 2),
        }
        tiles_dir = output_dir / TILES_DIR
        shutil.rmtree(tiles_dir, ignore_errors=True)
        staging.replace(tiles_dir)
        write_per_tile_csv(output_dir / PER_TILE_FILE, rows)
        tmp = output_dir / f".{SUMMARY_FILE}.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(output_dir / SUMMARY_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _print_summary(summary, live)
    reporter.info(
        f"Wrote {output_dir / SUMMARY_FILE}, {output_dir / PER_TILE_FILE} and {len(keep)} tile arrays"
    )


def _fmt(value: float | None, key: str, signed: bool = False) -> str:
    if value is None:
        return "-"
    sign = "+" if signed else ""
    return f"{value:{sign}.3f}" if key in ("psnr", "sam_deg") else f"{value:{sign}.5f}"


def _print_summary(summary: dict[str, Any], live: bool) -> None:
    """The means of opt_v2 (input) and opt_v3 (output), side by side, and the ground truth's SAR agreement."""
    from rich.table import Table

    from axion.viz.results import METRICS

    metrics = summary["metrics"]
    table = Table(
        title=f"Evaluation: {summary['tiles']} {summary['split']} tiles (mean over tiles)",
        title_justify="left",
    )
    for column, justify in (
        ("metric", "left"),
        ("opt_v2 (input)", "right"),
        ("opt_v3 (output)", "right"),
        ("change", "right"),
        ("ground truth", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for key, (label, unit, higher) in METRICS.items():
        if key not in metrics.get("opt_v3", {}):
            continue
        before, after = metrics["opt_v2"][key]["mean"], metrics["opt_v3"][key]["mean"]
        change = "-" if before is None or after is None else _fmt(after - before, key, signed=True)
        truth = metrics.get("target", {}).get(key, {}).get("mean")
        name = f"{label} ({unit})" if unit else label
        table.add_row(
            f"{name} {'↑' if higher else '↓'}", _fmt(before, key), _fmt(after, key), change, _fmt(truth, key)
        )
    console.print(table)
