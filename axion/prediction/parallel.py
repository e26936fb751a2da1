"""Inference in several processes through Lightning Fabric: tiles, scene strips or scenes shared out.

``devices == 1`` runs in this process. With more, Fabric spawns that many processes
(strategy ``ddp_spawn``: gloo on CPUs, NCCL on GPUs, one GPU each); each runs the same
function with its :class:`Shard` and the result of the first one comes back. Under
torchrun (one node or several, ``--num-nodes``) the processes exist already: Fabric
(strategy ``ddp``) joins them and each runs the function once. Spawned
processes start from scratch (nothing runs again that the caller already did), which
is why the caller checks every input before it launches.

On a CPU every process uses torch's default number of threads, as a single process
does: floating-point sums depend on how work is split over threads, and equal thread
counts keep the outputs identical to a single-process run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from axion.errors import ConfigError

T = TypeVar("T")


class Shard(Protocol):
    """This process's share of a run."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def gather(self, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Every process's ``arrays`` (same keys, shapes and dtypes everywhere), in rank order."""
        ...

    def barrier(self) -> None:
        """Wait until every process gets here."""
        ...


class LocalShard:
    """The shard of a single-process run."""

    rank = 0
    world_size = 1

    def gather(self, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [arrays]

    def barrier(self) -> None:
        return None


@dataclass
class FabricShard:
    """A process of a Fabric run."""

    fabric: Any

    @property
    def rank(self) -> int:
        return int(self.fabric.global_rank)

    @property
    def world_size(self) -> int:
        return int(self.fabric.world_size)

    def gather(self, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        import torch

        tensors = self.fabric.to_device(
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        )
        gathered = self.fabric.all_gather(tensors)
        return [{k: gathered[k][r].cpu().numpy() for k in arrays} for r in range(self.world_size)]

    def barrier(self) -> None:
        self.fabric.barrier()


def check_devices(devices: int) -> str:
    """The accelerator ``devices`` processes run on; refuse more GPUs than there are.

    Raises:
        ConfigError: ``devices`` exceeds the visible GPUs.
    """
    from axion.runtime.device import accelerator_name

    accelerator = accelerator_name()
    if accelerator == "cuda":
        import torch

        if devices > torch.cuda.device_count():
            raise ConfigError(
                f"invalid devices (--devices) = {devices}: only {torch.cuda.device_count()} GPU(s) visible"
            )
    return accelerator


def run_on_devices(devices: int, fn: Callable[..., T], *args: Any, num_nodes: int = 1) -> T:
    """``fn(shard, *args)`` in ``num_nodes`` x ``devices`` processes; this process's result.

    Alone, the processes are spawned here and the first one's result comes back; with several
    devices ``fn`` and ``args`` are pickled into them, so ``fn`` must be a module-level
    function. Under torchrun (any number of nodes) its processes are used as they are, each
    running ``fn`` once.

    Raises:
        ConfigError: more GPUs than visible, or torchrun's processes disagree with the flags.
    """
    from axion.runtime.device import check_world

    external = check_world(num_nodes, devices)
    if devices * num_nodes == 1:
        return fn(LocalShard(), *args)
    import pickle

    import torch
    from lightning.fabric import Fabric

    fabric = Fabric(
        accelerator=check_devices(devices),
        devices=devices,
        num_nodes=num_nodes,
        strategy="ddp" if external else "ddp_spawn",
    )
    # Pickled here, so Fabric hands the arguments over as they are (it rebuilds the containers
    # and dataclasses it is given, and frozen ones cannot be rebuilt).
    return fabric.launch(_in_process, torch.get_num_threads(), pickle.dumps((fn, args)))


def _in_process(fabric: Any, threads: int, payload: bytes) -> Any:
    import pickle

    import torch

    torch.set_num_threads(threads)  # Fabric divides the cores among the processes; keep one process's count
    fn, args = pickle.loads(payload)
    result = fn(FabricShard(fabric), *args)
    # Processes leave together: the first process still writes (the scene's COG, its STAC Item)
    # after the last gather, and a process that exits meanwhile was once seen aborting (SIGABRT).
    fabric.barrier()
    return result
