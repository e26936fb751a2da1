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
    from axion.data.shardsource import ShardSource
    from axion.data.terramesh import S1_MODALITIES, TerraMeshSource, is_terramesh

    sources: list[ShardSource | TerraMeshSource]
    if is_terramesh(spec):  # every S1 product found, each with its S2L2A partners
        root = Path(str(spec))
        products = [p for p, m in S1_MODALITIES.items() if any(root.glob(f"*/{m}/*.tar"))]
        sources = [TerraMeshSource(spec, product) for product in products]
    else:
        sources = [ShardSource(spec)]
    problems: list[Problem] = []
    total = 0
    for source in sources:
        total += _inspect_source(source, problems)
    if not total and not problems:
        problems.append(Problem(Path(str(spec)), "no samples in the shards"))
    return Inspection(total=total, problems=problems, warnings=[])


def _inspect_source(source, problems: list[Problem]) -> int:  # noqa: ANN001 (ShardSource or TerraMeshSource)
    """Read every sample of a source; append its problems; return how many samples it holds."""
    from axion.data.sharddata import ShardDataset

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
    return total
