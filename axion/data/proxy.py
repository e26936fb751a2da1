"""The opt_v2 proxy: a coarse Stage 2 estimate made from the ground truth.

Used only when no Stage 2 outputs are given. A real Stage 2 estimate is blurry,
slightly off in gain and bias per band, and noisy; the proxy reproduces exactly
that, in tile units (reflectance x 10000):

1. Gaussian blur, sigma drawn in [1.5, 3] px (15-30 m at 10 m): lost fine detail. A share of
   training proxies is not blurred (``--proxy-sharp-share``, 0.1 by default): a network that never
   saw a sharp input sharpens every input (docs/data.md).
2. Per-band gain ~ N(1, 0.05) and offset ~ N(0, 0.02 * band std): calibration error.
3. Additive Gaussian noise, sd 0.02 * band std: speckle-like residue.
4. Clipped at 0 (reflectance is not negative).

A share of training proxies also carries synthetic cloud gaps (``--proxy-cloud-share``,
:func:`synthetic_clouds`), returned beside the proxy as its ``opt_v2_mask``.

The random draws come from the tile's name and a base seed only, so a tile gets the
same proxy in every epoch, every worker and every run, and two tiles differ. The noise is a
slice of a bank of normal draws made once per process from a fixed seed, at a start the tile's
seed draws: drawing a 256 px tile's 262,144 values anew took 4-6 ms, most of a proxy's cost and
a third of a TerraMesh sample's, where a slice costs nothing.
"""

from __future__ import annotations

import functools

import numpy as np

from axion.bands import OPTICAL_STD
from axion.seeding import Stream, stream_seed

BLUR_SIGMA_RANGE: tuple[float, float] = (1.5, 3.0)
#: Below this sigma the blur is the identity (its kernel is [0, 1, 0] to float precision).
MIN_SIGMA: float = 1e-3
GAIN_SD: float = 0.05
OFFSET_SD: float = 0.02
NOISE_SD: float = 0.02
#: Standard normal values in the noise bank: a 4-band 1024 px tile's worth. A larger tile draws
#: its noise anew.
NOISE_BANK_SIZE: int = 4 * 1024 * 1024


def tile_seed(name: str, base_seed: int = 0) -> int:
    """A stable 63-bit seed from a tile name and a base seed (independent of ``PYTHONHASHSEED``)."""
    return stream_seed(base_seed, Stream.PROXY, name)


def prepare_proxy() -> None:
    """Import OpenCV, which blurs the proxy, keep its work in the calling thread, and draw the
    noise bank.

    Called where a dataset that makes proxies is built, so DataLoader workers (forked from that
    process) find both ready instead of each paying for them again every epoch. Samples are made
    one per worker process; OpenCV's own thread pool would compete with the other workers for the
    same cores.
    """
    import cv2

    cv2.setNumThreads(0)
    noise_bank()


@functools.cache
def noise_bank() -> np.ndarray:
    """:data:`NOISE_BANK_SIZE` standard normal float32 values, the same in every process (a fixed
    seed), drawn on first use (about 60 ms) and read-only."""
    rng = np.random.default_rng(stream_seed(0, Stream.PROXY, "noise bank"))
    bank = rng.standard_normal(NOISE_BANK_SIZE, dtype=np.float32)
    bank.flags.writeable = False
    return bank


def standard_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Independent standard normal values of ``shape``: a slice of :func:`noise_bank` at a start
    drawn from ``rng`` (a view, do not write to it), or fresh float32 draws when the bank is
    smaller than ``shape``."""
    size = int(np.prod(shape))
    if size > NOISE_BANK_SIZE:
        return rng.standard_normal(size=shape, dtype=np.float32)
    start = int(rng.integers(0, NOISE_BANK_SIZE - size + 1))
    return noise_bank()[start : start + size].reshape(shape)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of the proxy's blur: ``ceil(3 sigma)`` taps (at least 1) each side."""
    radius = max(1, int(np.ceil(3.0 * sigma)))
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(
    image: np.ndarray, sigma: float, gain: np.ndarray | None = None, offset: np.ndarray | None = None
) -> np.ndarray:
    """Separable Gaussian blur of a (C, H, W) array over H and W, reflect-padded at the borders; float32.

    The kernel is :func:`gaussian_kernel`; OpenCV's ``BORDER_REFLECT_101`` is numpy's ``reflect``
    padding (the edge pixel is not repeated). OpenCV filters float32 with vector instructions, six
    times faster than scipy's float64 ``gaussian_filter`` that this replaced, and agrees with it to
    about 1e-7 of the values (tested). Channel ``c`` may be scaled by ``gain[c]`` and shifted by
    ``offset[c]`` in the same pass (the kernel is scaled, the offset added to the result).
    """
    import cv2

    kernel = gaussian_kernel(sigma)
    image = np.ascontiguousarray(image, dtype=np.float32)
    out = np.empty_like(image)
    for channel in range(image.shape[0]):
        scale = 1.0 if gain is None else float(gain[channel])
        cv2.sepFilter2D(
            image[channel],
            cv2.CV_32F,
            (kernel * scale).astype(np.float32),
            kernel.astype(np.float32),
            dst=out[channel],
            delta=0.0 if offset is None else float(offset[channel]),
            borderType=cv2.BORDER_REFLECT_101,
        )
    return out


def blur_sigma(rng: np.random.Generator, sharp_share: float = 0.0) -> float:
    """The proxy's blur sigma from one uniform draw of ``rng``: :data:`MIN_SIGMA` (no blur) with
    probability ``sharp_share``, else in :data:`BLUR_SIGMA_RANGE` [lo, hi] (exactly the former
    draw when 0)."""
    low, high = BLUR_SIGMA_RANGE
    if sharp_share <= 0.0:
        return float(rng.uniform(low, high))
    u = float(rng.random())
    if u < sharp_share:
        return MIN_SIGMA
    return low + (high - low) * (u - sharp_share) / (1.0 - sharp_share)


def degrade_to_proxy(target: np.ndarray, seed: int, sharp_share: float = 0.0) -> np.ndarray:
    """A coarse-Stage-2-like opt_v2 from the ground truth (4, H, W) in tile units; float32.

    The arithmetic is float32: the blur with its gain and offset in one pass, then the noise
    (:func:`standard_noise`, scaled per band).

    Args:
        target: ground-truth optical bands B2, B3, B4, B8, reflectance x 10000.
        seed: e.g. :func:`tile_seed` of the tile's name.
        sharp_share: the share of seeds not blurred at all instead of blurred by
            :data:`BLUR_SIGMA_RANGE` (training tiles pass ``--proxy-sharp-share``). One uniform
            draw sets sigma either way, so the other draws do not depend on it.
    """
    rng = np.random.default_rng(seed)
    bands = target.shape[0]
    band_std = np.asarray(OPTICAL_STD[:bands], dtype=np.float64)
    sigma = blur_sigma(rng, sharp_share)
    gain = rng.normal(1.0, GAIN_SD, size=bands)
    offset = rng.normal(0.0, OFFSET_SD, size=bands) * band_std
    noise = standard_noise(rng, target.shape)
    proxy = gaussian_blur(target, sigma, gain, offset)
    proxy += noise * (NOISE_SD * band_std).astype(np.float32)[:, None, None]
    return np.maximum(proxy, 0.0, out=proxy)


#: Synthetic cloud gaps: the share of the tile covered, and the Gaussian sigma (px) of the smoothed
#: noise whose brightest part they are (larger: fewer, rounder clouds).
CLOUD_COVER_RANGE: tuple[float, float] = (0.05, 0.5)
CLOUD_SIGMA_RANGE: tuple[float, float] = (4.0, 12.0)


def synthetic_clouds(seed: int, shape: tuple[int, int], share: float) -> np.ndarray | None:
    """Cloud gaps for a training proxy, (H, W) float32, 1 clear and 0 cloudy, as ``opt_v2_mask``;
    None (no gap) for a share ``1 - share`` of the seeds.

    The gaps are the brightest pixels of uniform noise smoothed by a Gaussian of sigma drawn in
    :data:`CLOUD_SIGMA_RANGE`, as many as a cover drawn in :data:`CLOUD_COVER_RANGE`: blobs of a
    few to tens of pixels with smooth outlines. The training step fills them from the clear pixels
    (:func:`axion.cloudfill.network_opt_v2`) exactly as it fills a real cloudy Stage 2 input.
    """
    import cv2

    if share <= 0.0:
        return None  # the default path of every training sample without gaps: no generator made
    rng = np.random.default_rng(seed)
    if rng.random() >= share:
        return None
    cover = rng.uniform(*CLOUD_COVER_RANGE)
    sigma = rng.uniform(*CLOUD_SIGMA_RANGE)
    field = rng.random(shape, dtype=np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    cloudy = field > np.quantile(field, 1.0 - cover)
    return (~cloudy).astype(np.float32)
