"""Two gloo processes x two DataLoader workers read shards: every sample once per epoch, none missing."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.data.test_shards import demo_shards, demo_tiles  # noqa: F401 (fixtures)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_epochs(rank: int, world: int, shards: str, port: int, out: str) -> None:
    """One process: the names its loaders give in two training epochs and one validation pass."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from axion.data.dataset import collate_tiles
    from axion.data.sharddata import ShardDataset, ShardLoader
    from axion.data.shardsource import ShardSource

    source = ShardSource(shards)
    seen: dict[str, list[str]] = {}
    for split, epochs in (("train", (1, 2)), ("val", (1,))):
        dataset = ShardDataset(source, split, shuffle=split == "train", seed=7, rank=rank, world_size=world)
        loader = ShardLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_tiles)
        for epoch in epochs:
            loader.set_epoch(epoch)
            seen[f"{split}{epoch}"] = [name for batch in loader for name in batch["name"]]
            assert len(seen[f"{split}{epoch}"]) == len(dataset)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, seen)
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_two_workers_read_every_sample_once(demo_shards: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "seen.json"
    mp.spawn(_read_epochs, args=(2, str(demo_shards), _free_port(), str(out)), nprocs=2, join=True)
    ranks = json.loads(out.read_text())
    index = json.loads((demo_shards / "shards.json").read_text())["splits"]
    for key, split in (("train1", "train"), ("train2", "train"), ("val1", "val")):
        names = [name for rank in ranks for name in rank[key]]
        assert len(names) == len(set(names)), f"{key}: a sample was read twice"
        assert len(names) == sum(entry["samples"] for entry in index[split]), f"{key}: a sample is missing"
        assert all(ranks[r][key] for r in range(2))  # both ranks had work
    assert ranks[0]["train1"] != ranks[0]["train2"]  # shuffled anew each epoch
    assert set(ranks[0]["train1"]) == set(ranks[0]["train2"])  # from the same shards


def test_ranks_that_would_step_apart_are_refused(demo_shards: Path) -> None:  # noqa: F811
    from axion.data.sharddata import ShardDataset
    from axion.data.shardsource import ShardSource
    from axion.errors import DataError
    from axion.training.fit import RunInputs, _shard_loaders

    source = ShardSource(demo_shards)
    common = {"batch_size": 1, "num_workers": 0}
    even = RunInputs(ShardDataset(source, "train", max_samples=8), ShardDataset(source, "val"), None, None)
    assert _shard_loaders(even, common, 2, 1).batches == 4  # shards of 4 and 4: one each
    uneven = RunInputs(ShardDataset(source, "train", max_samples=12), ShardDataset(source, "val"), None, None)
    with pytest.raises(DataError, match="give the 2 processes 8, 4 batches per epoch"):
        _shard_loaders(uneven, common, 2, 0)


def test_validation_sampler_takes_every_tile_once() -> None:
    from axion.training.sampler import EpochSampler

    ranks = [EpochSampler(7, seed=1, shuffle=False, pad=False, num_replicas=2, rank=r) for r in range(2)]
    taken = [list(sampler) for sampler in ranks]
    assert sorted(taken[0] + taken[1]) == list(range(7)) and [len(s) for s in ranks] == [4, 3]
