"""Tile units <-> TerraMind's standardised inputs, with the statistics from :mod:`axion.bands`.

Always computed in float32 (also under autocast): reflectance x 10000 does not
survive bf16 and fp16 rounding well.
"""

from __future__ import annotations

import torch
from torch import Tensor

from axion import bands


def _stat(values: tuple[float, ...], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)


def standardize_s1(s1_db: Tensor, product: str = "grd") -> Tensor:
    """S1 (B, 2, H, W) in dB -> standardised (float32) with the statistics of its product (grd, rtc)."""
    s1 = s1_db.float()
    mean, std = bands.S1_STATS[product]
    return (s1 - _stat(mean, s1)) / _stat(std, s1)


def standardize_optical(optical: Tensor) -> Tensor:
    """Optical (B, 4, H, W) in tile units -> standardised with the statistics of their S2L2A slots."""
    opt = optical.float()
    return (opt - _stat(bands.OPTICAL_MEAN, opt)) / _stat(bands.OPTICAL_STD, opt)


def optical_std_to_tile_units(delta: Tensor) -> Tensor:
    """A standardised optical difference (B, 4, H, W) -> the same difference in tile units."""
    return delta.float() * _stat(bands.OPTICAL_STD, delta)


def optical_to_s2l2a(optical_std: Tensor) -> Tensor:
    """Standardised optical (B, 4, H, W) -> standardised S2L2A (B, 12, H, W).

    The other eight bands are 0 after standardisation: the pretraining mean.
    """
    b, _, h, w = optical_std.shape
    full = optical_std.new_zeros(b, len(bands.S2L2A_BANDS), h, w)
    full[:, list(bands.S2L2A_SLOTS)] = optical_std
    return full


def s2l2a_to_optical(s2l2a: Tensor) -> Tensor:
    """The four optical slots (B, 4, H, W) of an S2L2A tensor (B, 12, H, W)."""
    return s2l2a[:, list(bands.S2L2A_SLOTS)]


def optical_mean_like(like: Tensor) -> Tensor:
    """The pretraining mean of the four optical bands, (1, 4, 1, 1), in tile units."""
    return _stat(bands.OPTICAL_MEAN, like)
