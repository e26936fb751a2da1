"""What a bad sample is, as recorded in ``bad_samples.jsonl``: its kinds and its record.

The datasets hand a :class:`BadSample` over instead of a sample they cannot use
(:mod:`axion.data.badsamples`); :mod:`axion.records.badlog` counts and lists them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
