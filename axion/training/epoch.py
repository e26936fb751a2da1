"""Bookkeeping of the epoch in progress: its running sums, accumulation cycles and partial resume.

A checkpoint written inside an epoch (``--checkpoint-every-steps``, a stop signal) carries
the epoch's sums so far and its skipped steps; the resumed run goes on from them, so the
epoch's means cover all its batches, before and after the interruption.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def reduce_sum(values: dict[str, float], fabric, *, same_keys: bool = True) -> dict[str, float]:  # noqa: ANN001 (Fabric)
    """Each value summed over every rank (as it is on a single process).

    ``same_keys=False``: the ranks may hold different keys (a rank whose share of a pass was
    empty has none); they agree on the union first, a missing key counting 0.
    """
    keys = sorted(values)
    if fabric.world_size > 1 and not same_keys:
        import torch.distributed as dist

        every: list[list[str] | None] = [None] * fabric.world_size
        dist.all_gather_object(every, keys)
        keys = sorted({key for rank in every for key in rank or ()})
    packed = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64)
    if fabric.world_size > 1:
        packed = fabric.all_reduce(packed.to(fabric.device), reduce_op="sum").cpu()
    return {k: float(packed[i]) for i, k in enumerate(keys)}


def per_sample(totals: dict[str, float]) -> dict[str, float]:
    """Means from :meth:`Sums.totals`."""
    count = max(1.0, totals["count"])
    return {k: v / count for k, v in totals.items() if k != "count"}


class Sums:
    """Per-sample sums of named values, all-reduced across ranks at the end."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0

    def add(self, values: dict[str, Tensor]) -> None:
        batch = next(iter(values.values())).shape[0]
        for key, value in values.items():
            self.sums[key] += float(value.detach().float().sum())
        self.count += batch

    def totals(self, fabric) -> dict[str, float]:  # noqa: ANN001 (lightning Fabric)
        """The sums over every rank, with the sample count under ``"count"``."""
        return reduce_sum({**self.sums, "count": float(self.count)}, fabric, same_keys=False)

    def means(self, fabric) -> dict[str, float]:  # noqa: ANN001 (lightning Fabric)
        return per_sample(self.totals(fabric))

    @classmethod
    def resumed(cls, totals: dict[str, float] | None, rank_zero: bool) -> Sums:
        """Sums that start from a checkpoint's :meth:`totals` (on rank 0 only: they cover every rank)."""
        sums = cls()
        if totals and rank_zero:
            sums.count = int(totals.get("count", 0))
            sums.sums.update({k: float(v) for k, v in totals.items() if k != "count"})
        return sums


def accumulation_cycle(position: int, epoch_len: int, grad_accum: int) -> tuple[int, bool]:
    """The length of the accumulation cycle batch ``position`` belongs to, and whether it ends it.

    The epoch's last cycle may be short (fewer than ``grad_accum`` batches left).
    """
    cycle_start = (position // grad_accum) * grad_accum
    cycle_len = min(grad_accum, epoch_len - cycle_start)
    return cycle_len, position + 1 == cycle_start + cycle_len


@dataclass
class PartialEpoch:
    """What checkpoints inside an epoch carry about it, and what a resumed epoch starts from.

    Attributes:
        sums: the current epoch's training sums so far (all ranks; :meth:`Sums.totals`).
        resumed_sums: sums of a resumed partial epoch, consumed by its first :meth:`begin`.
        resumed_skipped: skipped steps of that partial epoch.
        resumed_bad: its bad-sample counts (``bad_<kind>``, :mod:`axion.records.badlog`).
    """

    sums: dict[str, float] | None = None
    resumed_sums: dict[str, float] | None = None
    resumed_skipped: int = 0
    resumed_bad: dict[str, float] | None = None

    def restore(self, train_stats: dict[str, Any]) -> None:
        """Take the partial epoch a checkpoint carried (its ``epoch_sums``, ``epoch_skipped``, ``bad_*``)."""
        self.resumed_sums = train_stats.get("epoch_sums")
        self.resumed_skipped = int(train_stats.get("epoch_skipped", 0))
        self.resumed_bad = {k: v for k, v in train_stats.items() if k.startswith("bad_")}

    def begin(self, done_before: int, rank_zero: bool) -> tuple[Sums, int, dict[str, float] | None]:
        """The sums, skipped steps and bad-sample counts an epoch starts with: the resumed ones when
        it goes on after ``done_before`` batches (on rank 0 only: they cover every rank), else none."""
        resumed = done_before and rank_zero
        sums = Sums.resumed(self.resumed_sums if done_before else None, rank_zero)
        skipped = self.resumed_skipped if resumed else 0
        bad = self.resumed_bad if resumed else None
        self.resumed_sums, self.resumed_skipped, self.resumed_bad = None, 0, None
        return sums, skipped, bad

    def train_stats(self, sums: Sums, skipped: int, fabric) -> dict[str, Any]:  # noqa: ANN001 (Fabric)
        """The epoch's mean terms so far (``loss`` first) and its skipped steps; keeps the sums."""
        self.sums = sums.totals(fabric)  # what a checkpoint inside this epoch carries
        stats = per_sample(self.sums)
        return {"loss": stats.pop("total", math.nan), **stats, "skipped_steps": skipped}
