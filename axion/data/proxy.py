"""The opt_v2 proxy: a coarse Stage 2 estimate made from the ground truth.

Used only when no Stage 2 outputs are given. A real Stage 2 estimate is blurry,
slightly off in gain and bias per band, and noisy; the proxy reproduces exactly
that, in tile units (reflectance x 10000):

1. Gaussian blur, sigma drawn in [1.5, 3] px (15-30 m at 10 m): lost fine detail.
2. Per-band gain ~ N(1, 0.05) and offset ~ N(0, 0.02 * band std): calibration error.
3. Additive Gaussian noise, sd 0.02 * band std: speckle-like residue.
4. Clipped at 0 (reflectance is not negative).

The random draws come from the tile's name and a base seed only, so a tile gets the
same proxy in every epoch, every worker and every run, and two tiles differ.
"""

from __future__ import annotations

import numpy as np

from axion.bands import OPTICAL_STD
from axion.seeding import Stream, stream_seed

BLUR_SIGMA_RANGE: tuple[float, float] = (1.5, 3.0)
GAIN_SD: float = 0.05
OFFSET_SD: float = 0.02
NOISE_SD: float = 0.02


def tile_seed(name: str, base_seed: int = 0) -> int:
    """A stable 63-bit seed from a tile name and a base seed (independent of ``PYTHONHASHSEED``)."""
    return stream_seed(base_seed, Stream.PROXY, name)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a (C, H, W) array over H and W, reflect-padded at the borders.

    The kernel reaches ``ceil(3 sigma)`` pixels (at least 1) each side; scipy's ``mirror``
    mode is numpy's ``reflect`` padding (the edge pixel is not repeated). Float64 out.
    """
    from scipy import ndimage

    radius = max(1, int(np.ceil(3.0 * sigma)))
    return ndimage.gaussian_filter(image.astype(np.float64), sigma, radius=radius, mode="mirror", axes=(1, 2))


def degrade_to_proxy(target: np.ndarray, seed: int) -> np.ndarray:
    """A coarse-Stage-2-like opt_v2 from the ground truth (4, H, W) in tile units; float32.

    Args:
        target: ground-truth optical bands B2, B3, B4, B8, reflectance x 10000.
        seed: e.g. :func:`tile_seed` of the tile's name.
    """
    rng = np.random.default_rng(seed)
    bands = target.shape[0]
    band_std = np.asarray(OPTICAL_STD[:bands], dtype=np.float64)[:, None, None]
    sigma = rng.uniform(*BLUR_SIGMA_RANGE)
    gain = rng.normal(1.0, GAIN_SD, size=(bands, 1, 1))
    offset = rng.normal(0.0, OFFSET_SD, size=(bands, 1, 1)) * band_std
    noise = rng.standard_normal(size=target.shape)  # = normal(0, 1): the same draws
    noise *= NOISE_SD * band_std
    proxy = gaussian_blur(target, sigma)  # float64, updated in place: no temporaries of the tile's size
    proxy *= gain
    proxy += offset
    proxy += noise
    return np.maximum(proxy, 0.0, out=proxy).astype(np.float32)
