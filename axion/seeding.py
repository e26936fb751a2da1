"""Stable seeds: every random draw of axion is a function of ``--seed`` and what it is for.

Seeds come from the run's seed plus a purpose (the epoch, the tile name, ...), never from
how far a generator has advanced. So a resumed run, a run on more devices, or a batch of
another size draws the same numbers for the same tile, and the Stage 2 proxy of a tile
is the same in every epoch and run.
"""

from __future__ import annotations

import hashlib


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)
