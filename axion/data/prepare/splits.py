"""Deterministic, spatially blocked train/val/test assignment.

Policy: tiles are grouped into spatial blocks (k x k neighbouring tiles of a scene, or
k x k BigEarthNet patches in map coordinates). The blocks that hold at least one tile
are sorted, shuffled with ``seed`` and dealt out in the ``ratios`` proportions
(largest remainder), so a whole block lands in one split and neighbouring tiles never
straddle train and test. Each split with a positive ratio gets at least one block
when there are enough blocks, so tiny inputs still give non-empty val and test.
With ``stride < tile size`` windows overlap; a tile whose footprint reaches into a
block of another split is dropped so no pixel is shared across splits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from axion.data.tilefile import SPLITS

DEFAULT_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def split_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """How many of ``n`` blocks each split gets: largest remainder, then at least one per used split."""
    exact = [n * r for r in ratios]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    used = [i for i, r in enumerate(ratios) if r > 0]
    if n >= len(used):
        for i in used:
            if counts[i] == 0:
                donor = max(used, key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def assign_blocks(blocks: Iterable[str], ratios: Sequence[float], seed: int) -> dict[str, str]:
    """Map each block to a split, deterministically for a given set of blocks, ratios and seed."""
    ordered = sorted(set(blocks))
    rng = np.random.default_rng(seed)
    shuffled = [ordered[i] for i in rng.permutation(len(ordered))]
    assignment: dict[str, str] = {}
    start = 0
    for split, count in zip(SPLITS, split_counts(len(shuffled), ratios), strict=True):
        for block in shuffled[start : start + count]:
            assignment[block] = split
        start += count
    return assignment


def crosses_split(block: str, touches: Iterable[str], assignment: dict[str, str]) -> bool:
    """Whether a tile reaches into a block that was given another split (overlapping windows)."""
    own = assignment[block]
    return any(assignment.get(other, own) != own for other in touches)
