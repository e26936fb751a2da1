"""Device, precision and Lightning Fabric set-up."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from axion.config import TrainingConfig
from axion.errors import ConfigError


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses: Fabric's name for it and a sentence for the console."""

    fabric: str
    label: str

    @property
    def uses_scaler(self) -> bool:
        return self.fabric == "16-mixed"


def resolve_precision(requested: str, accelerator: str) -> PrecisionChoice:
    """Map ``--precision`` to what actually runs on this accelerator.

    ``auto`` is fp16 with a GradScaler on CUDA and bf16 on CPU: fp16 autocast does
    nothing on a CPU, and pure fp16 weights diverge, so trainable parameters stay
    fp32 in every mode.
    """
    if requested == "32":
        return PrecisionChoice("32-true", "fp32 (full precision)")
    if requested == "auto":
        requested = "fp16-mixed" if accelerator == "cuda" else "bf16-mixed"
    if requested == "fp16-mixed":
        if accelerator != "cuda":
            raise ConfigError(
                "invalid precision (--precision) = 'fp16-mixed': needs a CUDA GPU and none was found; "
                "use auto, bf16-mixed or 32"
            )
        return PrecisionChoice("16-mixed", "fp16 mixed precision with GradScaler (CUDA)")
    if requested == "bf16-mixed":
        return PrecisionChoice("bf16-mixed", f"bf16 mixed precision ({accelerator.upper()})")
    raise ConfigError(f"invalid precision (--precision) = {requested!r}")


def accelerator_name() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_fabric(training: TrainingConfig):  # -> lightning.fabric.Fabric
    """Create the Fabric that owns devices, precision and (for several devices) DDP."""
    from lightning.fabric import Fabric

    accelerator = accelerator_name()
    choice = resolve_precision(training.precision, accelerator)
    strategy = training.strategy
    if training.devices > 1 and strategy == "auto":
        strategy = "ddp"
    fabric = Fabric(
        accelerator=accelerator, devices=training.devices, strategy=strategy, precision=choice.fabric
    )
    return fabric, choice


def resolve_num_workers(requested: int | str) -> int:
    """``auto``: one worker per spare core, at most 4 (tiles are small; the model is the cost)."""
    if requested != "auto":
        return int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores - 1))


def scaler_of(fabric) -> torch.amp.GradScaler | None:
    """The GradScaler Fabric uses under fp16 mixed precision, if any."""
    return getattr(fabric.strategy.precision, "scaler", None)
