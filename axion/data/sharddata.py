"""Samples streamed from WebDataset shards, the same samples a tile folder gives.

:class:`ShardDataset` reads its shards member by member (webdataset's tar iterator over an
fsspec stream) and turns each ``<name>.npz`` + ``<name>.json`` pair into a sample with the tile
folder's code (:class:`~axion.data.dataset.SampleBuilder`), judged alike: a bad member, a
member that is not a tile, or a shard that ends early (truncated, unreachable) becomes a
:class:`~axion.data.badsamples.BadSample`, never an exception.

Each process (rank x DataLoader worker) reads its own shards: the index's shards are dealt
round-robin to the ranks, and each rank's round-robin to its workers, the same every epoch, so
every sample is read once per epoch by exactly one process. Each epoch the slot's shards are read in a fresh order
and, for training, shuffled through a buffer; both draws depend on (seed, epoch, slot) only.

:class:`ShardLoader` wraps the DataLoader with the sampler's two calls the training loop
makes: ``set_epoch(epoch, skip)`` and ``len``. A run resumed inside an epoch reads the epoch
again in the same order and drops the batches already trained on, so it goes on with exactly
the samples not yet seen (at the cost of reading the skipped ones again).
"""

from __future__ import annotations

import math
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from axion.data.augment import TrainingDraws
from axion.data.badsamples import UNREADABLE, BadSample
from axion.data.dataset import SampleBuilder, TileInfo
from axion.data.shardsource import Deferred, Shard, ShardSource, remote_errors

if TYPE_CHECKING:
    from axion.data.terramesh import TerraMeshSource
from axion.errors import DataError
from axion.seeding import Stream, stream_seed

#: Samples held by the training shuffle buffer (per process).
SHUFFLE_BUFFER = 256


class ShardDataset(SampleBuilder, IterableDataset):
    """The samples of one split, streamed from shards.

    Args:
        source: where the shards are.
        split: ``train``, ``val`` or ``test``: the index's shards of that split are read, and
            a member whose JSON names another split is skipped (the JSON decides, as in a folder).
        shuffle: read each slot's shards in a fresh order every epoch and shuffle the samples
            through a buffer of :data:`SHUFFLE_BUFFER` (training).
        seed: base seed of those draws.
        rank, world_size: this process's place among the data-parallel processes.
        max_samples: read only the first N samples of the split (index order).
        s1_product: the run's S1 product; a sample that records another is skipped as bad.
        stage2_dir, proxy_seed, draws, skip_bad: as :class:`~axion.data.dataset.TileDataset`'s.

    Raises:
        DataError: the split has no shards.
    """

    def __init__(
        self,
        source: ShardSource | TerraMeshSource,
        split: str,
        *,
        stage2_dir: Path | None = None,
        proxy_seed: int = 0,
        draws: TrainingDraws | None = None,
        skip_bad: bool = True,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_samples: int | None = None,
        s1_product: str | None = None,
    ) -> None:
        super().__init__(stage2_dir=stage2_dir, proxy_seed=proxy_seed, draws=draws, skip_bad=skip_bad)
        # Imported here, in the main process: DataLoader workers are forked anew every epoch, and
        # each would otherwise import the readers again before its first sample.
        source.import_readers()
        self.source, self.split = source, split
        self.shards = source.shards(split, max_samples)
        if not self.shards:
            raise DataError(f"{source.spec}: no shards for split {split!r}")
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.s1_product = s1_product
        self.epoch = 0

    def __len__(self) -> int:
        """Samples this rank reads per epoch (all its workers together)."""
        return sum(shard.samples for shard in self.assigned(0, 1))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def assigned(self, worker: int, workers: int, rank: int | None = None) -> list[Shard]:
        """The shards of one process: the rank's share (every ``world_size``-th), then the worker's share of it."""
        rank = self.rank if rank is None else rank
        return self.shards[rank :: self.world_size][worker::workers]

    def batches(self, batch_size: int, workers: int, rank: int | None = None) -> int:
        """Batches per epoch of a rank: each worker batches its own samples."""
        return sum(
            math.ceil(sum(s.samples for s in self.assigned(w, workers, rank)) / batch_size)
            for w in range(workers)
        )

    def __iter__(self) -> Iterator[dict[str, Any] | BadSample]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        shards = self.assigned(worker, workers)
        rng = random.Random(stream_seed(self.seed, Stream.SHUFFLE, self.epoch, self.rank, worker))
        if self.shuffle:
            rng.shuffle(shards)
        stream = (item for shard in shards for item in self._read(shard))
        for item in self._buffered(stream, rng) if self.shuffle else stream:
            yield self._made(item)

    def _made(self, item: TileInfo | Deferred | BadSample) -> dict[str, Any] | BadSample:
        """The sample of a member that left the buffer: decoded, judged and drawn only now."""
        if isinstance(item, Deferred):
            item = item.decode()
        return item if isinstance(item, BadSample) else self._checked(item)

    @staticmethod
    def _buffered(stream: Iterator[Any], rng: random.Random) -> Iterator[Any]:
        buffer: list[Any] = []
        for item in stream:
            buffer.append(item)
            if len(buffer) >= SHUFFLE_BUFFER:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer

    def _read(self, shard: Shard) -> Iterator[TileInfo | Deferred | BadSample]:
        """The shard's members as tiles still to decode, then one bad sample if it ends before its
        count says. The buffer shuffles these (bytes, not arrays: less memory, and the first batch
        comes after the buffer is read rather than decoded)."""
        read = 0
        try:
            with self.source.members(shard) as members:
                for member in members:
                    if read >= shard.samples:
                        return
                    tile = self.source.tile(self, shard.url, member)
                    if tile is None:
                        continue  # another split's sample (the JSON decides)
                    read += 1
                    yield tile
        except (*remote_errors(), tarfile.TarError) as exc:
            detail = str(exc).split(" @ ")[0]  # webdataset appends the stream object
            reason = (
                f"shard unreadable after {read} of {shard.samples} samples ({type(exc).__name__}: {detail})"
            )
            yield BadSample(shard.url, f"after sample {read}", UNREADABLE, reason.splitlines()[0])
            return
        if read < shard.samples:
            reason = f"shard ends after {read} of the {shard.samples} samples its index lists"
            yield BadSample(shard.url, f"after sample {read}", UNREADABLE, reason)

    def _checked(self, tile: TileInfo) -> dict[str, Any] | BadSample:
        """The sample of a tile read from a shard, or why it is bad."""
        product = tile.meta.get("s1_product")
        if self.s1_product is not None and isinstance(product, str) and product.lower() != self.s1_product:
            reason = f"S1 {product.upper()}, the run's product is {self.s1_product.upper()} (--s1-product)"
            return BadSample(tile.where, tile.name, UNREADABLE, reason)
        return self.make(tile, self.epoch if self.draws is not None else None)


class ShardLoader:
    """A DataLoader over a :class:`ShardDataset` with the training sampler's ``set_epoch`` and ``len``.

    Args:
        dataset: the shards.
        batch_size: samples per batch.
        num_workers: DataLoader workers (each reads its own shards).
        **kwargs: passed to the DataLoader (``collate_fn``, ``worker_init_fn``).
    """

    def __init__(self, dataset: ShardDataset, *, batch_size: int, num_workers: int, **kwargs: Any) -> None:
        self.dataset, self.batch_size, self.workers = dataset, batch_size, num_workers
        self.loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, **kwargs)
        self.skip_batches = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's order; ``skip`` samples (whole batches) already trained on are passed over."""
        self.dataset.set_epoch(epoch)
        self.skip_batches = skip // self.batch_size

    @property
    def batches(self) -> int:
        """Batches of a whole epoch on this rank."""
        return self.dataset.batches(self.batch_size, max(1, self.workers))

    def __len__(self) -> int:
        return self.batches - self.skip_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batches = iter(self.loader)
        for _ in range(self.skip_batches):
            next(batches, None)
        yield from batches


def is_streamed(spec: str | Path) -> bool:
    """Whether ``--data-dir`` names shards (the project's, or a TerraMesh root) rather than a tile folder."""
    from axion.data.shardsource import is_shards
    from axion.data.terramesh import is_terramesh

    return is_shards(spec) or is_terramesh(spec)


def open_source(spec: str | Path, s1_product: str) -> ShardSource | TerraMeshSource:
    """The shards ``spec`` names: a TerraMesh root (its ``s1_product`` folder), or the project's shards."""
    from axion.data.terramesh import TerraMeshSource, is_terramesh

    return TerraMeshSource(spec, s1_product) if is_terramesh(spec) else ShardSource(spec)
