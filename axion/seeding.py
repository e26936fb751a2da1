"""Every random draw of axion, derived from ``--seed`` and a named purpose.

Seeds come from the run's seed, a *stream* name (what the numbers are for) and the
purpose's own coordinates (the epoch, the tile name), never from how far a generator
has advanced. So a resumed run, a run on more devices, or a batch of another size draws
the same numbers for the same tile, and the Stage 2 proxy of a validation tile is the
same in every epoch and run.
"""

from __future__ import annotations

import hashlib
import random
from enum import StrEnum

import numpy as np


class Stream(StrEnum):
    """What a seed is for; one name per independent random stream."""

    #: Diffusion noise of a training tile, per (epoch, tile).
    TRAIN_NOISE = "train"
    #: Diffusion noise of a validation tile, per tile (the same every epoch).
    VAL_NOISE = "val"
    #: Diffusion noise at prediction time (evaluate, infer), per tile.
    PREDICT_NOISE = "test"
    #: The fixed opt_v2 proxy of a tile (validation, test, inference).
    PROXY = "proxy"
    #: A fresh opt_v2 proxy each time a training tile is drawn, per (epoch, tile).
    TRAIN_PROXY = "train-proxy"
    #: Synthetic cloud gaps in a training tile's proxy, per (epoch, tile).
    TRAIN_CLOUDS = "train-clouds"
    #: Flips, rotations and crops of a training tile, per (epoch, tile).
    AUGMENT = "augment"
    #: The order of the training tiles, per epoch.
    SHUFFLE = "shuffle"
    #: Token choice (top-p sampling) of a tile, per (stream of its noise, tile).
    TOKENS = "tokens"


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def stream_seed(seed: int, stream: Stream, *coordinates: object) -> int:
    """The seed of one draw: the run's ``seed``, the ``stream`` it belongs to, and its coordinates."""
    return stable_seed(seed, stream.value, *coordinates)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for code that draws from the global generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init(worker_id: int) -> None:
    """DataLoader worker seeding derived from torch's per-worker seed."""
    import torch

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
