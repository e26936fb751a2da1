"""Settings of ``axion stage3 train``, grouped as docs/cli.md lists its flags.

Sections: data, model, training, loss weights, early stopping, other. The model
section is also what a checkpoint needs to rebuild its model (``evaluate``,
``infer``, ``export``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from axion.atomic import write_json_atomic
from axion.config.base import PROVENANCE_KEY, Settings
from axion.config.fields import ModelSize, Precision, Workers, max_bad_fraction_field
from axion.records.monitor import DEFAULT_MONITOR, MonitorName, monitor_help


class DataConfig(Settings):
    """Where tiles come from and where results go."""

    data_dir: Path = Field(description="Directory containing NPZ tiles (split read from each tile's JSON).")
    stage2_dir: Path | None = Field(
        None, description="Directory with Stage 2 outputs: <tile>.npz with key opt_v2 (4, H, W)."
    )
    output_dir: Path = Field(description="Output directory for checkpoints, config.json and logs.")
    max_bad_fraction: float = max_bad_fraction_field("training stops")


class ModelConfig(Settings):
    """The generator (TerraMind and its LoRA adapters, or none) and how it generates."""

    timesteps: int = Field(10, ge=1, le=1000, description="Number of diffusion (DDIM) timesteps.")
    lora_rank: int = Field(8, ge=1, description="LoRA rank (lower = fewer trainable parameters).")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha scaling factor.")
    pretrained: bool = Field(
        True, description="Use pretrained TerraMind weights (Hugging Face cache or --weights-dir)."
    )
    model_size: ModelSize = Field("base", description="TerraMind size: tiny, small, base or large.")
    weights_dir: Path | None = Field(
        None, description="Local directory holding the original TerraMind files."
    )
    generator: Literal["terramind", "none"] = Field(
        "terramind",
        description="terramind, or none: the fusion network alone on opt_v2 + SAR (the control arm; "
        "no TerraMind, no weights).",
    )
    s1_product: Literal["grd", "rtc"] = Field(
        "grd", description="Sentinel-1 product of the tiles: grd or rtc (TerraMind's S1GRD or S1RTC input)."
    )
    token_sampling: Literal["argmax", "top-p"] = Field(
        "argmax",
        description="How TerraMind picks its tokens: argmax (deterministic) or top-p (seeded per tile).",
    )
    top_p: float = Field(0.8, gt=0.0, le=1.0, description="Nucleus of --token-sampling top-p.")
    grad_steps: int = Field(
        1,
        ge=1,
        description="DDIM steps that carry gradients, the last ones (truncated backprop through the sampler).",
    )
    correction_smoothing: float = Field(
        0.0,
        ge=0.0,
        le=8.0,
        description="Gaussian sigma (px) of a low-pass on the fusion network's correction to opt_v2, "
        "in training and prediction alike (0: off; less over-sharpening of sharp inputs, less gain on blurred ones).",
    )
    acquisition_input: bool = Field(
        True,
        description="Tell the fusion network, per tile, whether opt_v2 is a real acquisition (a Stage 2 file "
        "with an opt_v2_mask, a scene with --opt-v2-mask-scene: sharp, maybe cloudy) or a Stage 2 estimate "
        "(blurred), as one more input channel. Checkpoints made before it existed have it off.",
    )
    acquisition_modulation: bool = Field(
        True,
        description="With --acquisition-input, also give every block of the fusion network a learned "
        "per-channel scale and shift for tiles whose opt_v2 is a real acquisition. Checkpoints made "
        "before it existed have it off.",
    )


class TrainingConfig(Settings):
    """Optimisation."""

    batch_size: int = Field(1, ge=1, description="Batch size per device (tiles).")
    grad_accum: int = Field(8, ge=1, description="Gradient accumulation steps.")
    epochs: int = Field(50, ge=1, description="Number of training epochs.")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate of the LoRA adapters (AdamW).")
    head_lr: float = Field(1e-3, gt=0, description="Peak learning rate of the fusion network (AdamW).")
    weight_decay: float = Field(1e-5, ge=0, description="Weight decay for AdamW.")
    warmup_steps: int = Field(
        0, ge=0, description="Linear warm-up length in optimizer steps, then cosine decay."
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold (L2 norm).")
    ema_decay: float = Field(
        0.999,
        ge=0,
        lt=1,
        description="Decay of the moving average of the trainable weights that validation, "
        "best_model.pt and every checkpoint's weights use (0: off, the raw weights).",
    )
    precision: Precision = Field(
        "auto",
        description="auto (fp16+GradScaler on CUDA, bf16 on a CPU with native bf16, else fp32), fp16-mixed, bf16-mixed or 32.",
    )
    devices: int = Field(
        1, ge=1, description="Number of devices (processes) per node for data-parallel training."
    )
    num_nodes: int = Field(
        1,
        ge=1,
        description="Machines of a torchrun or SLURM job (--devices processes each); see docs/training.md.",
    )
    strategy: Literal["auto", "ddp", "ddp_spawn"] = Field("auto", description="Multi-device strategy.")
    keep_last: int | None = Field(
        None, ge=1, description="Keep only the newest N epoch and step checkpoints (default: keep all)."
    )
    keep_best: int | None = Field(
        None,
        ge=1,
        description="Also keep the N checkpoints with the best --monitor score (alone: the N best and the "
        "newest).",
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        description="Stop after N optimizer steps, even mid-epoch; the schedule ends there "
        "(default: --epochs decides).",
    )
    val_every_steps: int | None = Field(
        None, ge=1, description="Also validate every N optimizer steps (default: after each epoch only)."
    )
    checkpoint_every_steps: int | None = Field(
        None,
        ge=1,
        description="Also write a resumable checkpoint_step_N.pt every N optimizer steps "
        "(default: after each epoch only).",
    )
    augment: bool = Field(
        True, description="Random flips and 90-degree rotations of training tiles (S1, opt_v2, target alike)."
    )
    crop_size: int | None = Field(
        None,
        ge=16,
        multiple_of=16,
        description="Random square crops of training tiles, in pixels (multiple of 16).",
    )
    proxy_sharp_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of the Stage 2-like training proxies (no --stage2-dir) left unblurred (but "
        "not marked as acquisitions); the others, and every validation proxy, are blurred by 1.5-3 px "
        "(docs/data.md: what it gains and costs).",
    )
    proxy_cloud_share: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Share of training proxies (no --stage2-dir) made like a real cloudy acquisition: "
        "unblurred, with synthetic cloud gaps filled from their clear pixels as a cloudy input is, and "
        "marked as an acquisition (--acquisition-input) (docs/data.md: what it gains and costs).",
    )


class LossConfig(Settings):
    """Loss weights: Total = a*SAR + b*Cycle + c*Identity + d*LPIPS + e*Spectral."""

    sar_weight: float = Field(1.0, ge=0, description="SAR consistency loss weight (alpha).")
    cycle_weight: float = Field(0.5, ge=0, description="Cycle loss weight (beta).")
    identity_weight: float = Field(0.3, ge=0, description="Identity preservation weight (gamma).")
    lpips_weight: float = Field(
        0.1, ge=0, description="LPIPS perceptual loss weight (delta); 0 skips building LPIPS."
    )
    spectral_weight: float = Field(1.0, ge=0, description="Spectral L1 loss weight (epsilon).")
    lpips_weights: Path | None = Field(
        None, description="AlexNet ImageNet weights for LPIPS (else torchvision's cache)."
    )
    loss_warmup: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Share of the run's optimizer steps over which the SAR, cycle, identity and "
        "LPIPS weights rise linearly from 0 to their values (0: in full from the first step).",
    )


class EarlyStoppingConfig(Settings):
    """Stop when the validation score stops improving; keep the best model by the same score."""

    early_stop_patience: int = Field(5, ge=1, description="Validations without improvement before stopping.")
    early_stop_delta: float = Field(
        1e-4, ge=0, description="Minimum improvement of the monitored score that counts."
    )
    monitor: MonitorName = Field(DEFAULT_MONITOR, description=monitor_help())


class OtherConfig(Settings):
    """Everything else."""

    num_workers: Workers = Field("auto", description="DataLoader workers; auto picks from the CPU count.")
    max_samples: int | None = Field(
        None, ge=1, description="Use at most this many tiles per split (debugging)."
    )
    seed: int = Field(42, ge=0, description="Random seed for reproducibility.")
    resume: Path | None = Field(
        None,
        description="Resume from a checkpoint, the latest checkpoint of a run directory, or 'latest' in "
        "--output-dir; settings and output directory come from it unless given again.",
    )
    quiet: bool = Field(False, description="Plain log lines instead of live progress bars and tables.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: lines for people; json: JSON Lines on stdout for pipelines (one object per "
        "message, progress line and summary; a failure stays one line on stderr).",
    )
    log_every: int | None = Field(
        None,
        ge=1,
        description="Plain log lines: one progress line every N steps (default: about 20 per pass).",
    )
    log_images_every: int = Field(
        1,
        ge=0,
        description="TensorBoard panels (SAR, opt_v2, opt_v3, target) of the first 4 validation tiles "
        "every N epochs; 0: none.",
    )


class TrainConfig(Settings):
    """The full, resolved configuration of a training run."""

    data: DataConfig
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    loss: LossConfig = LossConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    other: OtherConfig = OtherConfig()

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (paths as strings), as written to config.json and checkpoints."""
        return self.model_dump(mode="json")


def write_config_json(config: TrainConfig, path: Path, provenance: dict[str, Any] | None = None) -> None:
    """Write the resolved configuration next to the run's outputs (atomically).

    ``provenance`` (versions, run identity) goes under the key ``provenance``, which reading
    the file back as settings ignores.
    """
    extra = {PROVENANCE_KEY: provenance} if provenance is not None else {}
    write_json_atomic(path, {**config.to_json_dict(), **extra})
