"""``prepare --check`` on shards: every sample of every split read and judged as training would."""

from __future__ import annotations

from pathlib import Path

from axion.data.badsamples import BadSample
from axion.data.check import Inspection, Problem


def inspect_shards(spec: str | Path) -> Inspection:
    """Read every sample the shards' index lists and report each bad one (and each short shard).

    Raises:
        DataError: no index, or a shard the pattern names that the index does not list.
    """
    from axion.data.sharddata import ShardDataset
    from axion.data.shardsource import ShardSource

    source = ShardSource(spec)
    problems: list[Problem] = []
    total = 0
    for split in source.index:
        if not source.shards(split):
            continue  # a pattern that names other splits' shards only
        for item in ShardDataset(source, split):
            if isinstance(item, BadSample):
                problems.append(Problem(Path(item.source), item.reason, sample=True))
                if item.sample.startswith("after sample"):
                    continue  # the rest of a short shard, not one sample
            total += 1
    if not total and not problems:
        problems.append(Problem(Path(source.spec), "no samples in the shards"))
    return Inspection(total=total, problems=problems, warnings=[])
