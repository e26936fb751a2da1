"""``axion stage3 train``: fine-tune TerraMind's generator with LoRA.

Every flag of docs/cli.md is here with its default; the values
are validated by :class:`axion.config.TrainConfig`. A ``--config`` file and
``AXION_*`` variables may set any of them; flags typed on the command line win.
"""

from __future__ import annotations

from pathlib import Path

import typer

from axion.cli._common import config_file_option, explicit_flags, print_config_option, user_errors
from axion.cli._common import config_option as _opt
from axion.cli.app import Command, stage3_app
from axion.config import (
    FIELD_SECTION,
    DataConfig,
    EarlyStoppingConfig,
    LossConfig,
    ModelConfig,
    OtherConfig,
    TrainConfig,
    TrainingConfig,
    resolve_config,
    settings_yaml,
)
from axion.config.resolve import given_settings

_DATA, _MODEL, _TRAIN, _LOSS, _EARLY, _OTHER = (
    "Data",
    "Model",
    "Training",
    "Loss weights",
    "Early stopping",
    "Other",
)


@stage3_app.command(cls=Command, no_args_is_help=True)
@user_errors
def train(
    ctx: typer.Context,
    # Data
    data_dir: Path | None = _opt(DataConfig, "data_dir", panel=_DATA),
    stage2_dir: Path | None = _opt(DataConfig, "stage2_dir", panel=_DATA),
    output_dir: Path | None = _opt(DataConfig, "output_dir", panel=_DATA),
    max_bad_fraction: float = _opt(DataConfig, "max_bad_fraction", panel=_DATA),
    # Model
    timesteps: int = _opt(ModelConfig, "timesteps", panel=_MODEL),
    lora_rank: int = _opt(ModelConfig, "lora_rank", panel=_MODEL),
    lora_alpha: int = _opt(ModelConfig, "lora_alpha", panel=_MODEL),
    pretrained: bool = _opt(ModelConfig, "pretrained", "--pretrained/--no-pretrained", panel=_MODEL),
    model_size: str = _opt(ModelConfig, "model_size", panel=_MODEL),
    weights_dir: Path | None = _opt(ModelConfig, "weights_dir", panel=_MODEL),
    generator: str = _opt(ModelConfig, "generator", panel=_MODEL),
    s1_product: str = _opt(ModelConfig, "s1_product", panel=_MODEL),
    token_sampling: str = _opt(ModelConfig, "token_sampling", panel=_MODEL),
    top_p: float = _opt(ModelConfig, "top_p", panel=_MODEL),
    grad_steps: int = _opt(ModelConfig, "grad_steps", panel=_MODEL),
    correction_smoothing: float = _opt(ModelConfig, "correction_smoothing", panel=_MODEL),
    acquisition_input: bool = _opt(
        ModelConfig, "acquisition_input", "--acquisition-input/--no-acquisition-input", panel=_MODEL
    ),
    acquisition_modulation: bool = _opt(
        ModelConfig,
        "acquisition_modulation",
        "--acquisition-modulation/--no-acquisition-modulation",
        panel=_MODEL,
    ),
    # Training
    batch_size: int = _opt(TrainingConfig, "batch_size", panel=_TRAIN),
    grad_accum: int = _opt(TrainingConfig, "grad_accum", panel=_TRAIN),
    epochs: int = _opt(TrainingConfig, "epochs", panel=_TRAIN),
    lr: float = _opt(TrainingConfig, "lr", panel=_TRAIN),
    head_lr: float = _opt(TrainingConfig, "head_lr", panel=_TRAIN),
    weight_decay: float = _opt(TrainingConfig, "weight_decay", panel=_TRAIN),
    warmup_steps: int = _opt(TrainingConfig, "warmup_steps", panel=_TRAIN),
    max_grad_norm: float = _opt(TrainingConfig, "max_grad_norm", panel=_TRAIN),
    ema_decay: float = _opt(TrainingConfig, "ema_decay", panel=_TRAIN),
    precision: str = _opt(TrainingConfig, "precision", panel=_TRAIN),
    devices: int = _opt(TrainingConfig, "devices", panel=_TRAIN),
    num_nodes: int = _opt(TrainingConfig, "num_nodes", panel=_TRAIN),
    strategy: str = _opt(TrainingConfig, "strategy", panel=_TRAIN),
    keep_last: int | None = _opt(TrainingConfig, "keep_last", panel=_TRAIN),
    keep_best: int | None = _opt(TrainingConfig, "keep_best", panel=_TRAIN),
    max_steps: int | None = _opt(TrainingConfig, "max_steps", panel=_TRAIN),
    val_every_steps: int | None = _opt(TrainingConfig, "val_every_steps", panel=_TRAIN),
    checkpoint_every_steps: int | None = _opt(TrainingConfig, "checkpoint_every_steps", panel=_TRAIN),
    augment: bool = _opt(TrainingConfig, "augment", "--augment/--no-augment", panel=_TRAIN),
    crop_size: int | None = _opt(TrainingConfig, "crop_size", panel=_TRAIN),
    proxy_sharp_share: float = _opt(TrainingConfig, "proxy_sharp_share", panel=_TRAIN),
    proxy_cloud_share: float = _opt(TrainingConfig, "proxy_cloud_share", panel=_TRAIN),
    # Loss weights
    sar_weight: float = _opt(LossConfig, "sar_weight", panel=_LOSS),
    cycle_weight: float = _opt(LossConfig, "cycle_weight", panel=_LOSS),
    identity_weight: float = _opt(LossConfig, "identity_weight", panel=_LOSS),
    lpips_weight: float = _opt(LossConfig, "lpips_weight", panel=_LOSS),
    spectral_weight: float = _opt(LossConfig, "spectral_weight", panel=_LOSS),
    lpips_weights: Path | None = _opt(LossConfig, "lpips_weights", panel=_LOSS),
    loss_warmup: float = _opt(LossConfig, "loss_warmup", panel=_LOSS),
    # Early stopping
    early_stop_patience: int = _opt(EarlyStoppingConfig, "early_stop_patience", panel=_EARLY),
    early_stop_delta: float = _opt(EarlyStoppingConfig, "early_stop_delta", panel=_EARLY),
    monitor: str = _opt(EarlyStoppingConfig, "monitor", panel=_EARLY),
    # Other
    num_workers: str = _opt(OtherConfig, "num_workers", panel=_OTHER),
    max_samples: int | None = _opt(OtherConfig, "max_samples", panel=_OTHER),
    seed: int = _opt(OtherConfig, "seed", panel=_OTHER),
    resume: Path | None = _opt(OtherConfig, "resume", panel=_OTHER),
    quiet: bool = _opt(OtherConfig, "quiet", panel=_OTHER),
    log_format: str = _opt(OtherConfig, "log_format", panel=_OTHER),
    log_every: int | None = _opt(OtherConfig, "log_every", panel=_OTHER),
    log_images_every: int = _opt(OtherConfig, "log_images_every", panel=_OTHER),
    config: Path | None = config_file_option(_OTHER),
    print_config: bool = print_config_option(_OTHER),
) -> None:
    """Fine-tune TerraMind with LoRA on tiles: SAR + opt_v2 -> opt_v3.

    Writes config.json, checkpoint_epoch_N.pt, best_model.pt, metrics.jsonl and
    TensorBoard logs into --output-dir. Early stopping watches the validation
    SAR agreement (--monitor).
    """
    values = {k: v for k, v in locals().items() if k in FIELD_SECTION}
    flags = explicit_flags(ctx, values)
    given = given_settings(TrainConfig, config_file=config, flags=flags)
    point = None
    if given.get("resume") is not None:
        from axion.training.resume import resume_point

        point = resume_point(Path(given["resume"]), given.get("output_dir"))
        flags["resume"] = point.path
    cfg = resolve_config(TrainConfig, config_file=config, flags=flags, base=point.base if point else None)
    if print_config:
        typer.echo(settings_yaml(cfg), nl=False)
        raise typer.Exit(0)
    notes = []
    if point is not None:
        from axion.training.resume import overrides

        notes = overrides(cfg, point, given)

    from axion.training.fit import run_training

    stopped = run_training(cfg, notes=notes)
    if stopped is not None:
        import signal

        # Stopped by a signal after saving its checkpoint: exit as the shell expects (SIGTERM: 143).
        raise typer.Exit(128 + signal.Signals[stopped].value)
