"""Configuration models shared by every ``axion stage3`` command.

The fields mirror the training guide's argument tables and keep its grouping
(data, model, training, loss weights, early stopping, other). Each field's
name is also its flag (``lora_rank`` -> ``--lora-rank``) and its environment
variable (``AXION_LORA_RANK``), so names are unique across groups.

A configuration is resolved in four layers, later ones winning:
model defaults < config file (YAML or TOML) < ``AXION_*`` environment < flags.
This module imports no torch so that ``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from axion.errors import ConfigError

ENV_PREFIX = "AXION_"

ModelSize = Literal["tiny", "small", "base", "large"]
Precision = Literal["auto", "fp16-mixed", "bf16-mixed", "32"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where tiles come from and where results go."""

    data_dir: Path = Field(description="Directory containing NPZ tiles (split read from each tile's JSON).")
    stage2_dir: Path | None = Field(
        None, description="Directory with Stage 2 outputs: <tile>.npz with key opt_v2 (4, H, W)."
    )
    output_dir: Path = Field(description="Output directory for checkpoints, config.json and logs.")


class ModelConfig(_Section):
    """The TerraMind generator and its LoRA adapters."""

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


class TrainingConfig(_Section):
    """Optimisation."""

    batch_size: int = Field(1, ge=1, description="Batch size per device (tiles).")
    grad_accum: int = Field(8, ge=1, description="Gradient accumulation steps.")
    epochs: int = Field(50, ge=1, description="Number of training epochs.")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(1e-5, ge=0, description="Weight decay for AdamW.")
    warmup_steps: int = Field(
        0, ge=0, description="Linear warm-up length in optimizer steps, then cosine decay."
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold (L2 norm).")
    precision: Precision = Field(
        "auto", description="auto (fp16+GradScaler on CUDA, bf16 on CPU), fp16-mixed, bf16-mixed or 32."
    )
    devices: int = Field(1, ge=1, description="Number of devices (processes) for data-parallel training.")
    strategy: Literal["auto", "ddp", "ddp_spawn"] = Field("auto", description="Multi-device strategy.")
    keep_last: int | None = Field(
        None, ge=1, description="Keep only the newest N epoch checkpoints (default: keep all)."
    )


class LossConfig(_Section):
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


class EarlyStoppingConfig(_Section):
    """Stop when validation SAR agreement stops improving."""

    early_stop_patience: int = Field(5, ge=1, description="Validations without improvement before stopping.")
    early_stop_delta: float = Field(1e-4, ge=0, description="Minimum SAR agreement improvement that counts.")


class OtherConfig(_Section):
    """Everything else."""

    num_workers: int | Literal["auto"] = Field(
        "auto", description="DataLoader workers; auto picks from the CPU count."
    )
    max_samples: int | None = Field(
        None, ge=1, description="Use at most this many tiles per split (debugging)."
    )
    seed: int = Field(42, ge=0, description="Random seed for reproducibility.")
    resume: Path | None = Field(None, description="Resume from this checkpoint.")
    quiet: bool = Field(False, description="Plain log lines instead of live progress bars and tables.")

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "auto":
            try:
                value = int(value)
            except ValueError:
                raise ValueError("must be 'auto' or an integer >= 0") from None
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 'auto' or an integer >= 0")
        return value


class TrainConfig(_Section):
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


SECTIONS: dict[str, type[_Section]] = {
    name: info.annotation  # type: ignore[misc]
    for name, info in TrainConfig.model_fields.items()
}
#: Flat field name -> section name; flat names double as flags and env vars.
FIELD_SECTION: dict[str, str] = {
    field: section for section, model in SECTIONS.items() for field in model.model_fields
}


def field_help(section: type[BaseModel], name: str) -> str:
    """The description of a config field, for ``--help``."""
    return section.model_fields[name].description or ""


def field_default(section: type[BaseModel], name: str) -> Any:
    """The default of a config field, for ``--help``."""
    return section.model_fields[name].default


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML or TOML config file into a (possibly grouped) dict."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in {".yaml", ".yml", ".json"}:
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: config file must be .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # the parsers raise many types; all mean "unreadable"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: cannot parse config file: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config file must hold a mapping of settings")
    return data


def _flatten(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Accept grouped ({training: {lr: ..}}) or flat ({lr: ..}) settings."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        key = key.replace("-", "_")
        if key in SECTIONS and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                flat[sub.replace("-", "_")] = sub_value
        else:
            flat[key] = value
    unknown = sorted(k for k in flat if k not in FIELD_SECTION)
    if unknown:
        raise ConfigError(f"{source}: unknown setting {unknown[0]!r}")
    return flat


def env_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from ``AXION_<FIELD>`` environment variables."""
    return {
        field: environ[ENV_PREFIX + field.upper()]
        for field in FIELD_SECTION
        if ENV_PREFIX + field.upper() in environ
    }


def _group(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for key, value in flat.items():
        grouped[FIELD_SECTION[key]][key] = value
    return grouped


def format_validation_error(exc: ValidationError) -> str:
    """One line: the field (and its flag), the value and the rule it broke."""
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    field = next((p for p in reversed(loc) if p in FIELD_SECTION), loc[-1] if loc else "?")
    flag = "--" + field.replace("_", "-") + ", " + ENV_PREFIX + field.upper()
    if err["type"] == "missing":
        return f"missing required setting {field} ({flag})"
    value = err.get("input")
    rule = err["msg"].removeprefix("Value error, ")
    return f"invalid {field} ({flag}) = {value!r}: {rule}"


def resolve_config(
    model: type[BaseModel],
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> Any:
    """Merge defaults < base < file < environment < flags and validate.

    Args:
        model: the config model to build (``TrainConfig`` or a command's own).
        base: settings under all others (a resumed checkpoint's configuration).
        config_file: optional YAML/TOML file.
        environ: environment mapping (default ``os.environ``).
        flags: settings given explicitly on the command line.

    Raises:
        ConfigError: one-line message naming the field, value and rule.
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    if base is not None:
        merged.update(_flatten(base, "checkpoint configuration"))
    if config_file is not None:
        merged.update(_flatten(read_config_file(config_file), str(config_file)))
    merged.update(env_settings(environ))
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    try:
        if model is TrainConfig:
            return TrainConfig.model_validate(_group(merged))
        return model.model_validate({k: v for k, v in merged.items() if k in model.model_fields})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def write_config_json(config: TrainConfig, path: Path) -> None:
    """Write the resolved configuration next to the run's outputs (atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(config.to_json_dict(), indent=2) + "\n")
    tmp.replace(path)
