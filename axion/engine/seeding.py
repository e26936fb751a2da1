"""Deterministic seeds.

Every random draw of a run is a function of ``--seed`` and what it is for (the
epoch, the tile name), never of how far a generator has advanced. So a resumed
run, a run on more devices, or a batch of a different size draws the same
numbers for the same tile.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init(worker_id: int) -> None:
    """DataLoader worker seeding derived from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
