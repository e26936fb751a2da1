"""``axion stage3 train`` end to end, assembled from small named builders.

1. :func:`check_run`: everything that can fail because of the user's input (output
   directory, checkpoint to resume, weights, tiles) is checked before a model is
   built or an epoch starts.
2. :func:`build_loaders`, :func:`build_optimization`: the data and the optimizer.
3. :class:`~axion.training.trainer.Stage3Trainer` runs the loop.

``benchmarks/train_step.py`` reuses the same builders.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axion.config import TrainConfig, TrainingConfig, write_config_json
from axion.console import plural
from axion.data.check import Problem, report_warnings
from axion.errors import DataError
from axion.outputs import check_output_dir
from axion.training.checkpoint import BEST_FILE, Checkpoint, CheckpointSaver, latest_checkpoint
from axion.training.recovery import check_run_dir, clear_run_logs, restore_best

if TYPE_CHECKING:
    import torch

    from axion.data.dataset import TileDataset
    from axion.data.sharddata import ShardDataset, ShardLoader
    from axion.model.stage3 import Stage3Model
    from axion.perceptual import PerceptualLoss
    from axion.records.history import MetricsHistory
    from axion.runtime.reporter import Reporter
    from axion.training.sampler import EpochSampler
    from axion.training.trainer import LoopState, Optimization, Stage3Trainer


@dataclass
class RunInputs:
    """What a run needs before its model is built: the datasets, LPIPS, and the checkpoint to resume."""

    train_set: TileDataset | ShardDataset
    val_set: TileDataset | ShardDataset
    perceptual: PerceptualLoss | None
    resume: Checkpoint | None
    #: A run without checkpoints is being started again in the same directory.
    restart: bool = False
    #: Suspicious input values (printed and written to ``input_warnings.json``).
    warnings: list[Problem] = field(default_factory=list)


@dataclass
class Loaders:
    """The training and validation loaders and the training sampler (its epoch sets the order)."""

    train: Any
    val: Any
    sampler: EpochSampler | ShardLoader
    #: Training batches per epoch on each rank.
    batches: int = 0


def check_run(cfg: TrainConfig) -> RunInputs:
    """Every check that costs seconds, in order of cost; then the datasets.

    Raises:
        AxionError: the first problem found, as one line.
    """
    from axion.runtime.device import check_world

    check_world(cfg.training.num_nodes, cfg.training.devices)  # torchrun's processes, before any slow check
    out = Path(cfg.data.output_dir)
    resume = None
    check_output_dir(out)
    run_dir = check_run_dir(out, resuming=cfg.other.resume is not None)
    if cfg.other.resume is not None:
        resume = Checkpoint.read(cfg.other.resume)
        resume.check_fits(cfg.model)

    # Weights first: a missing file should cost seconds, not a data scan.
    from axion.model import check_weights

    check_weights(cfg.model)
    perceptual = None
    if cfg.loss.lpips_weight > 0:
        from axion.perceptual import build_perceptual_loss

        perceptual = build_perceptual_loss(cfg.loss.lpips_weights)

    from axion.data.augment import TrainingDraws
    from axion.data.dataset import TileDataset, unrecorded_s1_product
    from axion.data.screen import screen_samples
    from axion.data.sharddata import is_streamed

    data_dir = Path(cfg.data.data_dir)
    common = {"stage2_dir": cfg.data.stage2_dir, "max_samples": cfg.other.max_samples, "skip_bad": True}
    draws = TrainingDraws(
        seed=cfg.other.seed,
        augment=cfg.training.augment,
        crop_size=cfg.training.crop_size,
        proxy_sharp_share=cfg.training.proxy_sharp_share,
        proxy_cloud_share=cfg.training.proxy_cloud_share,
    )
    if is_streamed(cfg.data.data_dir):
        return _shard_inputs(cfg, draws, perceptual, resume, run_dir.restart)
    train_set = TileDataset(data_dir, "train", draws=draws, **common)
    val_set = TileDataset(data_dir, "val", **common)
    warnings = screen_samples(
        data_dir, cfg.data.stage2_dir, {"train": train_set, "val": val_set}, cfg.data.max_bad_fraction
    )
    check_s1_product([train_set, val_set], cfg.model.s1_product)
    warnings += unrecorded_s1_product(data_dir, train_set.tiles + val_set.tiles, cfg.model.s1_product)
    return RunInputs(
        train_set=train_set,
        val_set=val_set,
        perceptual=perceptual,
        resume=resume,
        restart=run_dir.restart,
        warnings=warnings,
    )


def _shard_inputs(
    cfg: TrainConfig, draws: Any, perceptual: PerceptualLoss | None, resume: Checkpoint | None, restart: bool
) -> RunInputs:
    """Shards are streamed: each sample is judged when it is read (no up-front pass over them)."""
    from axion.data.sharddata import ShardDataset, open_source

    source = open_source(cfg.data.data_dir, cfg.model.s1_product)
    common: dict[str, Any] = {
        "stage2_dir": cfg.data.stage2_dir,
        "max_samples": cfg.other.max_samples,
        "seed": cfg.other.seed,
        "s1_product": cfg.model.s1_product,
    }
    train_set = ShardDataset(source, "train", draws=draws, shuffle=True, **common)
    val_set = ShardDataset(source, "val", **common)
    return RunInputs(train_set, val_set, perceptual, resume, restart=restart)


def check_s1_product(datasets: list[TileDataset], product: str) -> None:
    """Tiles that record their S1 product must all be of ``product`` (``--s1-product``).

    Raises:
        DataError: a mix of products, or tiles of another product than the model's.
    """
    found: dict[str, str] = {}
    for dataset in datasets:
        for tile in dataset.tiles:
            recorded = tile.meta.get("s1_product")
            if isinstance(recorded, str):
                found.setdefault(recorded.lower(), str(tile.path))
    if len(found) > 1:
        listed = ", ".join(f"{p} ({path})" for p, path in sorted(found.items()))
        raise DataError(f"tiles mix Sentinel-1 products: {listed}; train on one product at a time")
    for recorded, path in found.items():
        if recorded != product:
            raise DataError(
                f"{path}: tile is S1 {recorded.upper()}, the model is set up for {product.upper()}; "
                f"use --s1-product {recorded}"
            )


def build_loaders(inputs: RunInputs, cfg: TrainConfig, *, world_size: int = 1, rank: int = 0) -> Loaders:
    """Loaders over the run's tiles, sharded over ``world_size`` data-parallel ranks."""
    from torch.utils.data import DataLoader

    from axion.data.dataset import collate_tiles
    from axion.data.sharddata import ShardDataset
    from axion.runtime.device import resolve_num_workers
    from axion.seeding import worker_init
    from axion.training.sampler import EpochSampler

    seed = cfg.other.seed
    common: dict[str, Any] = {
        "batch_size": cfg.training.batch_size,
        "collate_fn": collate_tiles,
        "num_workers": resolve_num_workers(cfg.other.num_workers),
        "worker_init_fn": worker_init,
        "persistent_workers": False,
    }
    if isinstance(inputs.train_set, ShardDataset):
        return _shard_loaders(inputs, common, world_size, rank)
    shard = {"num_replicas": world_size, "rank": rank}
    sampler = EpochSampler(len(inputs.train_set), seed=seed, with_epoch=True, **shard)
    val_sampler = EpochSampler(len(inputs.val_set), seed=seed, shuffle=False, pad=False, **shard)
    return Loaders(
        train=DataLoader(inputs.train_set, sampler=sampler, **common),
        val=DataLoader(inputs.val_set, sampler=val_sampler, **common),
        sampler=sampler,
        batches=math.ceil(sampler.per_rank / cfg.training.batch_size),
    )


def _shard_loaders(inputs: RunInputs, common: dict[str, Any], world_size: int, rank: int) -> Loaders:
    """Loaders whose processes (rank x worker) each read their own shards.

    Raises:
        DataError: the ranks would get different numbers of training batches (they must step together).
    """
    from axion.data.sharddata import ShardDataset, ShardLoader

    for dataset in (inputs.train_set, inputs.val_set):
        assert isinstance(dataset, ShardDataset)
        dataset.rank, dataset.world_size = rank, world_size
    train = ShardLoader(inputs.train_set, **common)  # type: ignore[arg-type]
    workers, size = max(1, common["num_workers"]), common["batch_size"]
    counts = [inputs.train_set.batches(size, workers, r) for r in range(world_size)]  # type: ignore[union-attr]
    if len(set(counts)) > 1:
        raise DataError(
            f"{inputs.train_set.source.spec}: its training shards give the {world_size} processes "  # type: ignore[union-attr]
            f"{', '.join(map(str, counts))} batches per epoch; write shards of equal size, a multiple of "
            "the processes x workers in number, or change --devices/--num-workers"
        )
    return Loaders(
        train=train,
        val=ShardLoader(inputs.val_set, **common),
        sampler=train,
        batches=train.batches,  # type: ignore[arg-type]
    )


def optimizer_steps_per_epoch(batches: int, grad_accum: int) -> int:
    """Optimizer steps in an epoch of ``batches`` micro-batches (the last, short cycle counts)."""
    return math.ceil(batches / grad_accum)


def schedule_length(training: TrainingConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run: ``--epochs`` of them, or ``--max-steps`` if that ends it sooner."""
    total = steps_per_epoch * training.epochs
    return total if training.max_steps is None else min(total, training.max_steps)


def build_optimization(
    model: torch.nn.Module, training: TrainingConfig, steps_per_epoch: int
) -> Optimization:
    """AdamW over the trainable weights (LoRA at ``--lr``, the fusion network at ``--head-lr``) and a
    warm-up + cosine schedule over the whole run (:func:`schedule_length`), shared by both groups."""
    import torch

    from axion.training.schedule import WarmupCosine
    from axion.training.trainer import Optimization

    groups = model.parameter_groups(training.lr, training.head_lr)  # type: ignore[operator]
    optimizer = torch.optim.AdamW(groups, weight_decay=training.weight_decay)
    schedule = WarmupCosine(training.warmup_steps, schedule_length(training, steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return Optimization(optimizer=optimizer, scheduler=scheduler, schedule=schedule)


def run_training(cfg: TrainConfig, notes: Sequence[str] = ()) -> str | None:
    """Train according to ``cfg`` (the CLI's ``train`` command).

    Args:
        cfg: the resolved settings.
        notes: lines to print once the inputs (and a resumed checkpoint) have passed their checks,
            so that a refused run prints nothing but its error.

    Returns:
        The name of the signal that stopped the run early (``SIGTERM``, ``SIGINT``), or None.
    """
    from axion.runtime.device import build_fabric, flush_denormals

    flush_denormals()  # first: threads started later take the mode (subnormals slowed training 4-5x)
    inputs = check_run(cfg)
    if notes:
        from axion.runtime.device import launch_rank
        from axion.runtime.reporter import Reporter

        reporter = Reporter.for_terminal(quiet=True, log_format=cfg.other.log_format)
        reporter.enabled = launch_rank() == 0  # under torchrun every process gets here: the first speaks
        for note in notes:
            reporter.info(note)

    fabric, precision = build_fabric(cfg.training)
    return fabric.launch(_train, cfg, precision, inputs)


def _train(fabric, cfg: TrainConfig, precision, inputs: RunInputs) -> str | None:  # noqa: ANN001 (Fabric, PrecisionChoice)
    """The part that runs in every data-parallel process; returns the stopping signal's name, if any."""
    from axion.losses import Stage3Loss
    from axion.provenance import provenance
    from axion.records.monitor import MONITORS
    from axion.runtime.device import flush_denormals
    from axion.seeding import seed_everything
    from axion.training.trainer import RunOutput, Stage3Trainer

    flush_denormals()  # a spawned process starts without it (a no-op where run_training set it)

    reporter = _reporter(fabric, cfg)
    out = Path(cfg.data.output_dir)
    seed_everything(cfg.other.seed)
    _report_setup(fabric, cfg, precision, inputs, reporter)
    model = _build_model(cfg, reporter)
    loss_fn = Stage3Loss(cfg.loss, perceptual=inputs.perceptual).to(fabric.device)
    loaders = build_loaders(inputs, cfg, world_size=fabric.world_size, rank=fabric.global_rank)
    batches = loaders.batches
    optimization = build_optimization(
        model, cfg.training, optimizer_steps_per_epoch(batches, cfg.training.grad_accum)
    )
    wrapped, optimization.optimizer = fabric.setup(model, optimization.optimizer)

    record = provenance()
    history = _open_run_dir(fabric, cfg, inputs, reporter, record)
    watched = MONITORS[cfg.early_stopping.monitor]
    saver = CheckpointSaver(
        out,
        keep_last=cfg.training.keep_last,
        keep_best=cfg.training.keep_best,
        score_key=watched.key,
        mode=watched.mode,
    )
    output = RunOutput(reporter=reporter, saver=saver, history=history, provenance=record, run_dir=out)
    trainer = Stage3Trainer(fabric, wrapped, optimization, loss_fn, cfg, output)
    if inputs.resume is not None:
        _resume(trainer, inputs.resume, cfg, reporter)
    try:
        state = trainer.fit(loaders.train, loaders.val, loaders.sampler)
    finally:
        if history is not None:
            history.close()
    if trainer.stop_requested is None:
        _report_done(trainer, state, cfg, reporter)
    last = latest_checkpoint(out) if fabric.is_global_zero else None
    if last is not None:
        reporter.info(f"Last checkpoint: {last}")
    return trainer.stop_requested


def _reporter(fabric, cfg: TrainConfig) -> Reporter:  # noqa: ANN001 (Fabric)
    """What this process shows: JSON Lines or text, live bars on a terminal; silent but on rank 0."""
    from axion.console import make_console
    from axion.runtime.reporter import JsonReporter, Reporter

    console = make_console()
    if cfg.other.log_format == "json":
        return JsonReporter(console, enabled=fabric.is_global_zero, log_every=cfg.other.log_every)
    return Reporter(
        console,
        live=not cfg.other.quiet and console.is_terminal,
        enabled=fabric.is_global_zero,
        log_every=cfg.other.log_every,
    )


def _report_setup(fabric, cfg: TrainConfig, precision, inputs: RunInputs, reporter: Reporter) -> None:  # noqa: ANN001
    """Precision, devices and the effective batch size, and the tile counts."""
    training = cfg.training
    reporter.info(f"Precision: {precision.label}")
    reporter.info(
        f"Devices: {fabric.world_size} x {fabric.device.type}; batch size {training.batch_size} x "
        f"accumulation {training.grad_accum} x devices {fabric.world_size} = effective batch size "
        f"{training.batch_size * training.grad_accum * fabric.world_size}"
    )
    reporter.info(f"Tiles: {len(inputs.train_set)} train, {len(inputs.val_set)} val ({cfg.data.data_dir})")


def _build_model(cfg: TrainConfig, reporter: Reporter) -> Stage3Model:
    """The Stage 3 model, with its trainable share and build time reported."""
    from axion.model import build_stage3_model

    started = time.perf_counter()
    model = build_stage3_model(cfg.model, log=reporter.info)
    trainable, total = model.parameter_counts()
    reporter.info(
        f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f} %) "
        f"[built in {time.perf_counter() - started:.1f} s]"
    )
    return model


def _open_run_dir(
    fabric,  # noqa: ANN001 (Fabric)
    cfg: TrainConfig,
    inputs: RunInputs,
    reporter: Reporter,
    record: dict[str, Any],
) -> MetricsHistory | None:
    """Rank 0 writes config.json and the input warnings and opens metrics.jsonl; the others wait."""
    from axion.records.history import MetricsHistory

    out = Path(cfg.data.output_dir)
    if fabric.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        if inputs.restart:
            reporter.info(
                f"note: {out} holds a run that was stopped before its first checkpoint; starting it again"
            )
            clear_run_logs(out)
        write_config_json(cfg, out / "config.json", record)
        report_warnings(reporter.warning, inputs.warnings, out)
    fabric.barrier()
    if not fabric.is_global_zero:
        return None
    resumed = inputs.resume
    return MetricsHistory(
        out,
        resume_epoch=resumed.epoch if resumed else None,
        resume_step=int(resumed.train_stats.get("optimizer_steps", 0)) if resumed else None,
    )


def _resume(trainer: Stage3Trainer, checkpoint: Checkpoint, cfg: TrainConfig, reporter: Reporter) -> None:
    """Restore the trainer's state from ``checkpoint``; rank 0 puts back the best model it knew."""
    out = Path(cfg.data.output_dir)
    trainer.restore(checkpoint)
    where = f"epoch {trainer.state.epoch}"
    if trainer.state.partial_batches:
        where += f" + {plural(trainer.state.partial_batches, 'batch', 'batches')}"
    reporter.info(f"Resumed from {cfg.other.resume} ({where})")
    if trainer.fabric.is_global_zero:
        restored = restore_best(out, checkpoint)
        if restored:
            reporter.info(restored)
    trainer.fabric.barrier()


def _report_done(trainer: Stage3Trainer, state: LoopState, cfg: TrainConfig, reporter: Reporter) -> None:
    """The closing line: how far the run went, and the best model by the monitored score."""
    out = Path(cfg.data.output_dir)
    best = trainer.early_stopping
    done = f"Done: {plural(state.epoch, 'epoch')}"
    if state.partial_batches:
        done += f" + {plural(state.partial_batches, 'batch', 'batches')}"
    if cfg.training.max_steps is not None:
        done += f" ({plural(state.optimizer_steps, 'optimizer step')})"
    done += f" in {out}."
    if best.best_epoch == 0:
        reporter.info(f"{done} No validation improved, so no {BEST_FILE}")
    elif not (out / BEST_FILE).is_file():
        reporter.info(f"{done} {out / BEST_FILE} is missing (see above)")
    else:
        reporter.info(
            f"{done} Best {trainer.monitor_label} {best.best:.6f} at epoch {trainer.best_where()} "
            f"-> {out / BEST_FILE}"
        )
