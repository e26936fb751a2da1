"""``axion stage3 train`` end to end: checks, data, model, loss, loop.

Everything that can fail because of the user's input (output directory, weights,
tiles) is checked before the model is built or an epoch starts.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from axion.config import ModelConfig, TrainConfig, write_config_json
from axion.engine.checkpoint import BEST_FILE, CheckpointSaver, epoch_checkpoints, load_checkpoint
from axion.errors import ConfigError, DataError

#: Settings a checkpoint's adapters depend on: resuming with other values cannot work.
ARCHITECTURE_FIELDS = ("model_size", "lora_rank", "lora_alpha")


def check_output_dir(output_dir: Path, resuming: bool) -> None:
    """Refuse to mix a new run into a directory that already holds one."""
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: output directory is a file")
    if resuming or not output_dir.is_dir():
        return
    existing = [p.name for p in output_dir.iterdir() if p.name == "config.json" or p.suffix == ".pt"]
    if existing:
        raise DataError(
            f"{output_dir}: already holds a training run ({', '.join(sorted(existing)[:3])}); "
            "continue it with --resume CHECKPOINT or choose another --output-dir"
        )


def check_resume_compatible(ckpt: dict[str, Any], model: ModelConfig, path: Path) -> None:
    """The adapters in a checkpoint only fit a model of the same size, rank and alpha."""
    saved = ckpt["config"].get("model", {})
    for name in ARCHITECTURE_FIELDS:
        if name in saved and saved[name] != getattr(model, name):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{path}: checkpoint was trained with {flag} {saved[name]}, not {getattr(model, name)}"
            )


def validation_metrics(opt_v3, target, s1, mask) -> dict[str, Any]:  # noqa: ANN001 (tensors)
    """Per-sample SAR agreement, PSNR and SAM of a validation batch."""
    from axion.metrics import psnr, sam_deg, sar_agreement

    return {
        "sar_agreement": sar_agreement(opt_v3, s1, mask),
        "psnr": psnr(opt_v3, target, mask),
        "sam_deg": sam_deg(opt_v3, target, mask),
    }


def run_training(cfg: TrainConfig) -> None:
    """Train according to ``cfg`` (the CLI's ``train`` command)."""
    out = Path(cfg.data.output_dir)
    resume = Path(cfg.other.resume) if cfg.other.resume else None
    check_output_dir(out, resuming=resume is not None)
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        check_resume_compatible(ckpt, cfg.model, resume)

    # Weights first: a missing file should cost seconds, not a data scan.
    from axion.model import check_weights

    check_weights(cfg.model)
    perceptual = None
    if cfg.loss.lpips_weight > 0:
        from axion.perceptual import build_perceptual_loss

        perceptual = build_perceptual_loss(cfg.loss.lpips_weights)

    from axion.data.check import validate_data_dir
    from axion.data.dataset import TileDataset

    validate_data_dir(Path(cfg.data.data_dir))
    common = {"stage2_dir": cfg.data.stage2_dir, "max_samples": cfg.other.max_samples}
    train_set = TileDataset(cfg.data.data_dir, "train", **common)
    val_set = TileDataset(cfg.data.data_dir, "val", **common)

    from axion.engine.runtime import build_fabric

    fabric, precision = build_fabric(cfg.training)
    fabric.launch(_train, cfg, precision, train_set, val_set, perceptual, ckpt)


def _train(fabric, cfg, precision, train_set, val_set, perceptual, ckpt) -> None:  # noqa: ANN001
    """The part that runs in every data-parallel process."""
    import torch
    from torch.utils.data import DataLoader

    from axion.data.dataset import collate_tiles
    from axion.engine.early_stopping import EarlyStopping
    from axion.engine.history import MetricsHistory
    from axion.engine.reporter import Reporter
    from axion.engine.runtime import resolve_num_workers
    from axion.engine.sampler import EpochSampler
    from axion.engine.schedule import warmup_cosine
    from axion.engine.seeding import seed_everything, worker_init
    from axion.engine.trainer import Stage3Trainer
    from axion.losses import Stage3Loss
    from axion.model import build_stage3_model

    console = Console(highlight=False)
    live = not cfg.other.quiet and console.is_terminal
    if not live:
        console = Console(highlight=False, soft_wrap=True)  # log lines are never wrapped
    reporter = Reporter(console, live=live, enabled=fabric.is_global_zero)
    out = Path(cfg.data.output_dir)
    seed = cfg.other.seed
    seed_everything(seed)

    t = cfg.training
    reporter.info(f"Precision: {precision.label}")
    reporter.info(
        f"Devices: {fabric.world_size} x {fabric.device.type}; batch size {t.batch_size} x "
        f"accumulation {t.grad_accum} x devices {fabric.world_size} = effective batch size "
        f"{t.batch_size * t.grad_accum * fabric.world_size}"
    )
    reporter.info(f"Tiles: {len(train_set)} train, {len(val_set)} val ({cfg.data.data_dir})")
    started = time.perf_counter()
    model = build_stage3_model(cfg.model, log=reporter.info)
    trainable, total = model.parameter_counts()
    reporter.info(
        f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f} %) "
        f"[built in {time.perf_counter() - started:.1f} s]"
    )
    loss_fn = Stage3Loss(cfg.loss, perceptual=perceptual).to(fabric.device)

    workers = resolve_num_workers(cfg.other.num_workers)
    sampler = EpochSampler(len(train_set), seed=seed, num_replicas=fabric.world_size, rank=fabric.global_rank)
    val_sampler = EpochSampler(
        len(val_set), seed=seed, shuffle=False, num_replicas=fabric.world_size, rank=fabric.global_rank
    )
    loader_args: dict[str, Any] = {
        "batch_size": t.batch_size,
        "collate_fn": collate_tiles,
        "num_workers": workers,
        "worker_init_fn": worker_init,
        "persistent_workers": False,
    }
    train_loader = DataLoader(train_set, sampler=sampler, **loader_args)
    val_loader = DataLoader(val_set, sampler=val_sampler, **loader_args)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    steps_per_epoch = math.ceil(math.ceil(sampler.per_rank / t.batch_size) / t.grad_accum)
    scheduler = warmup_cosine(optimizer, t.warmup_steps, steps_per_epoch * t.epochs)
    module = model
    model, optimizer = fabric.setup(model, optimizer)

    if fabric.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        write_config_json(cfg, out / "config.json")
    fabric.barrier()
    history = None
    if fabric.is_global_zero:
        history = MetricsHistory(out, resume_epoch=int(ckpt["epoch"]) if ckpt else None)

    trainer = Stage3Trainer(
        fabric=fabric,
        model=model,
        module=module,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        metrics_fn=validation_metrics,
        config=cfg.to_json_dict(),
        reporter=reporter,
        saver=CheckpointSaver(out, keep_last=t.keep_last),
        history=history,
        seed=seed,
        batch_size=t.batch_size,
        grad_accum=t.grad_accum,
        max_grad_norm=t.max_grad_norm,
        epochs=t.epochs,
        early_stopping=EarlyStopping(
            cfg.early_stopping.early_stop_patience, cfg.early_stopping.early_stop_delta
        ),
    )
    if ckpt is not None:
        trainer.restore(ckpt)
        where = f"epoch {trainer.state.epoch}"
        if trainer.state.partial_batches:
            where += f" + {trainer.state.partial_batches} batches"
        reporter.info(f"Resumed from {cfg.other.resume} ({where})")
    try:
        state = trainer.fit(train_loader, val_loader, sampler)
    finally:
        if history is not None:
            history.close()
    if trainer.stop_requested is None:
        best = trainer.early_stopping
        reporter.info(
            f"Done: {state.epoch} epochs in {out}. Best SAR agreement {best.best:.6f} at epoch "
            f"{best.best_epoch} -> {out / BEST_FILE}"
        )
    last = epoch_checkpoints(out)
    if last and fabric.is_global_zero:
        reporter.info(f"Last checkpoint: {last[-1][1]}")
