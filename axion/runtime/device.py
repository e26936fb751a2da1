"""Device, precision and Lightning Fabric set-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(requested: str, accelerator: str) -> PrecisionChoice:
    """Map ``--precision`` to what actually runs on this accelerator.

    ``auto`` is fp16 with a GradScaler on CUDA and bf16 on a CPU with native bf16
    (AVX512-BF16 or AMX): fp16 autocast does nothing on a CPU, and pure fp16 weights
    diverge, so trainable parameters stay fp32 in every mode. On a CPU without native
    bf16, autocast emulates it about 100x slower than fp32 (a 3x3 convolution, measured
    on an AVX2-only CPU), so ``auto`` runs fp32 there.
    """
    if requested == "32":
        return PrecisionChoice("32-true", "fp32 (full precision)")
    if requested == "auto":
        if accelerator != "cuda" and not cpu_has_native_bf16():
            return PrecisionChoice("32-true", "fp32 (this CPU has no native bf16)")
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


def flush_denormals() -> bool:
    """From now on this process computes with subnormal floats (below 1.2e-38 in fp32) flushed to
    zero on the CPU; returns whether the CPU supports it (x86 with SSE3, AArch64).

    Call it before the process's first parallel torch operation: torch sets the mode for the calling
    thread only, and a CPU thread takes the mode of the thread that starts it, so intra-op threads
    started earlier keep computing subnormals (measured: with 2 threads, half of an elementwise
    product stayed subnormal).

    Why: arithmetic on subnormals takes a slow microcode path on x86. Partway through a training run
    some gradients decay into that range, and from then on every backward pass slowed down: on a 2-core
    Intel Xeon the fusion network's epochs went from 7-8 s to 25-44 s at epoch 22 of 120 (the
    elementwise adds of autograd's gradient accumulation took most of it); flushed, they stayed at 7 s.
    Values that small are far below anything a loss or a weight update can resolve, so nothing is lost.
    """
    return bool(torch.set_flush_denormal(True))


def accelerator_name() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


#: The variables torchrun (torch.distributed.elastic) sets in every process it starts.
_TORCHRUN = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK")


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by torchrun (its processes exist already: none is spawned)."""
    env = os.environ if environ is None else environ
    return all(name in env for name in _TORCHRUN)


def launch_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's global rank under torchrun; 0 otherwise (before Fabric is set up)."""
    env = os.environ if environ is None else environ
    return int(env["RANK"]) if launched_by_torchrun(env) else 0


def _count(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"torchrun's {name}={env[name]!r} is not a number") from None


def check_world(num_nodes: int, devices: int, environ: Mapping[str, str] | None = None) -> bool:
    """Check that the processes torchrun started are the ``num_nodes`` x ``devices`` asked for.

    Without torchrun a single node is fine (``devices`` processes are spawned here); several nodes
    need a launcher on every node.

    Returns:
        Whether torchrun started the processes.

    Raises:
        ConfigError: one line naming the variable that disagrees with ``--num-nodes`` /
            ``--devices`` and what to change.
    """
    env = os.environ if environ is None else environ
    if not launched_by_torchrun(env):
        if num_nodes > 1:
            raise ConfigError(
                f"--num-nodes {num_nodes} needs a launcher that starts the processes on every node: run "
                "the command under torchrun (or srun ... torchrun on SLURM), see docs/training.md"
            )
        return False
    world, local = _count(env, "WORLD_SIZE"), _count(env, "LOCAL_WORLD_SIZE")
    node = _count(env, "GROUP_RANK")
    nodes = _count(env, "GROUP_WORLD_SIZE") if "GROUP_WORLD_SIZE" in env else world // max(local, 1)
    if local != devices:
        raise ConfigError(
            f"torchrun started {local} processes on this node (LOCAL_WORLD_SIZE) but --devices is {devices}: "
            f"give torchrun --nproc-per-node {devices}, or --devices {local}"
        )
    if nodes != num_nodes or world != num_nodes * devices:
        raise ConfigError(
            f"torchrun runs {world} processes on {nodes} node(s) (WORLD_SIZE, GROUP_WORLD_SIZE) but "
            f"--num-nodes {num_nodes} x --devices {devices} = {num_nodes * devices}: give torchrun "
            f"--nnodes {num_nodes}, or --num-nodes {nodes}"
        )
    if not 0 <= node < num_nodes:
        raise ConfigError(f"this node's rank (GROUP_RANK, NODE_RANK) is {node}, outside 0..{num_nodes - 1}")
    return True


def build_fabric(training: TrainingConfig):  # -> lightning.fabric.Fabric
    """Create the Fabric that owns devices, nodes, precision and (for several processes) DDP.

    Raises:
        ConfigError: a bad precision, or torchrun's processes disagree with the flags (:func:`check_world`).
    """
    from lightning.fabric import Fabric

    check_world(training.num_nodes, training.devices)
    accelerator = accelerator_name()
    choice = resolve_precision(training.precision, accelerator)
    strategy = training.strategy
    if training.devices * training.num_nodes > 1 and strategy == "auto":
        strategy = "ddp"
    fabric = Fabric(
        accelerator=accelerator,
        devices=training.devices,
        num_nodes=training.num_nodes,
        strategy=strategy,
        precision=choice.fabric,
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
