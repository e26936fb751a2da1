"""A shuffling sampler whose order depends only on (seed, epoch)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from axion.seeding import Stream, stream_seed


class EpochSampler(Sampler):
    """Shuffles per epoch, shards across data-parallel ranks, and can skip ahead.

    Every rank draws the same permutation from ``(seed, epoch)`` and takes every
    ``num_replicas``-th index, padding by wrap-around so ranks stay in step (training: up to
    ``num_replicas - 1`` tiles are seen twice an epoch); without ``pad`` (validation) every
    index is taken exactly once and the ranks may get one index fewer than others. A
    run resumed mid-epoch sets ``skip`` to the number of samples already done. With
    ``with_epoch`` it yields ``(index, epoch)``, so a training dataset can draw each
    tile anew for the epoch (:class:`~axion.data.augment.TrainingDraws`).
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        with_epoch: bool = False,
        pad: bool = True,
    ) -> None:
        self.size, self.seed, self.shuffle, self.with_epoch = size, seed, shuffle, with_epoch
        self.num_replicas, self.rank = num_replicas, rank
        self.pad = pad
        self.per_rank = math.ceil(size / num_replicas) if pad else len(range(rank, size, num_replicas))
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's order; ``skip`` drops that many leading indices of this rank."""
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(stream_seed(self.seed, Stream.SHUFFLE, self.epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if not self.pad:
            return order[self.rank :: self.num_replicas]
        total = self.per_rank * self.num_replicas
        order += order[: total - len(order)]
        return order[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        indices = self._indices()[self.skip :]
        if self.with_epoch:
            return iter([(index, self.epoch) for index in indices])
        return iter(indices)

    def __len__(self) -> int:
        return max(0, self.per_rank - self.skip)
