"""Bad samples: what a dataset hands over instead of a sample it cannot use, and how batches drop them.

A training (or evaluation) dataset built with ``skip_bad=True`` validates every sample as it
loads it. A sample whose file is unreadable, whose arrays hold NaN/inf or whose values no
Sentinel product can hold (:mod:`axion.data.plausible`) comes back as a :class:`BadSample`;
:func:`split_bad` takes these out of a batch before it is stacked, so a bad sample is never
used, and the caller counts and records them (:mod:`axion.records.badlog`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: The file (or a member of it) cannot be read, or lacks a key, or its arrays disagree in shape.
UNREADABLE = "unreadable"
#: An array holds NaN or infinity.
NON_FINITE = "non_finite"
#: Finite values no Sentinel-1 or Sentinel-2 product can hold (a fatal :class:`~axion.data.plausible.Finding`).
IMPLAUSIBLE = "implausible"
#: Every reason a sample is skipped, in the order summaries list them.
KINDS: tuple[str, ...] = (UNREADABLE, NON_FINITE, IMPLAUSIBLE)


@dataclass(frozen=True)
class BadSample:
    """A sample that was skipped.

    Attributes:
        source: the file the sample came from (a tile's NPZ, a Stage 2 output, a shard).
        sample: the sample's name (a tile's stem, a shard member's key).
        kind: one of :data:`KINDS` (what is counted).
        reason: one line saying what is wrong (what is recorded).
    """

    source: str
    sample: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"

    def to_json(self) -> dict[str, str]:
        """The record of ``bad_samples.jsonl``."""
        return asdict(self)


def split_bad(samples: Sequence[Any]) -> tuple[list[dict[str, Any]], list[BadSample]]:
    """The good samples of a batch and the bad ones, each in batch order."""
    good = [sample for sample in samples if not isinstance(sample, BadSample)]
    bad = [sample for sample in samples if isinstance(sample, BadSample)]
    return good, bad
