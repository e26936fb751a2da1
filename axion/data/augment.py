"""How a training tile is drawn: a fresh Stage 2 proxy, a flip or rotation, a crop.

Each draw is a function of the run's seed, the epoch and the tile's name only
(:mod:`axion.seeding`), so a resumed run, a run on more devices or with more DataLoader
workers draws exactly what the uninterrupted run would have drawn. Validation and test
tiles are never drawn this way: they keep their fixed proxy and geometry, so their scores
compare across epochs and runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from axion.seeding import Stream, stream_seed


@dataclass(frozen=True)
class TrainingDraws:
    """What changes each time a training tile is drawn.

    Attributes:
        seed: the run's seed.
        fresh_proxy: degrade the ground truth anew each draw (when opt_v2 is a proxy).
        proxy_sharp_share: the share of fresh Stage 2-like proxies left unblurred
            (``--proxy-sharp-share``; the fixed ones never are).
        proxy_cloud_share: the share of fresh proxies made like a real cloudy acquisition:
            unblurred, with synthetic cloud gaps, marked ``opt_v2_acquired`` (``--proxy-cloud-share``;
            the config holds its default).
        augment: a random flip and 90-degree rotation, the same for every array of the tile.
        crop_size: a random square crop of this side (None: the whole tile).
    """

    seed: int
    fresh_proxy: bool = True
    proxy_sharp_share: float = 0.0
    proxy_cloud_share: float = 0.0
    augment: bool = True
    crop_size: int | None = None

    def proxy_seed(self, epoch: int, name: str) -> int:
        """The seed of the opt_v2 proxy drawn for ``name`` in ``epoch``."""
        return stream_seed(self.seed, Stream.TRAIN_PROXY, epoch, name)

    def cloud_seed(self, epoch: int, name: str) -> int:
        """The seed of the synthetic cloud gaps drawn for ``name`` in ``epoch``."""
        return stream_seed(self.seed, Stream.TRAIN_CLOUDS, epoch, name)

    def geometry(self, epoch: int, name: str) -> np.random.Generator:
        """The generator of the flip, rotation and crop of ``name`` in ``epoch``."""
        return np.random.default_rng(stream_seed(self.seed, Stream.AUGMENT, epoch, name))


def flip_rotate(arrays: Mapping[str, np.ndarray], flip: bool, turns: int) -> dict[str, np.ndarray]:
    """Flip (left-right) and rotate by ``turns`` x 90 degrees every (C, H, W) array alike."""
    out = {}
    for key, array in arrays.items():
        if flip:
            array = array[..., ::-1]
        out[key] = np.ascontiguousarray(np.rot90(array, turns, axes=(-2, -1)))
    return out


def crop(arrays: Mapping[str, np.ndarray], top: int, left: int, size: int) -> dict[str, np.ndarray]:
    """The same ``size`` x ``size`` window of every (C, H, W) array."""
    return {
        key: np.ascontiguousarray(a[..., top : top + size, left : left + size]) for key, a in arrays.items()
    }


def draw_geometry(
    arrays: Mapping[str, np.ndarray], draws: TrainingDraws, epoch: int, name: str
) -> dict[str, np.ndarray]:
    """Apply this draw's flip, rotation and crop to every array of one tile (all share H and W)."""
    rng = draws.geometry(epoch, name)
    flip, turns = bool(rng.integers(2)), int(rng.integers(4))
    out = dict(arrays)
    if draws.crop_size is not None:
        height, width = next(iter(arrays.values())).shape[-2:]
        size = draws.crop_size
        top, left = int(rng.integers(max(1, height - size + 1))), int(rng.integers(max(1, width - size + 1)))
        if height >= size and width >= size:  # a tile smaller than the crop is used whole
            out = crop(out, top, left, size)
    if draws.augment:
        out = flip_rotate(out, flip, turns)
    return out
