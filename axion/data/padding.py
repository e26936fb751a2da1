"""Padding tiles to TerraMind's patch multiple, and batches to a common size."""

from __future__ import annotations

import numpy as np

from axion.bands import PATCH_SIZE


def padded_size(size: int, multiple: int = PATCH_SIZE) -> int:
    """The smallest multiple of ``multiple`` that is >= ``size``."""
    return -(-size // multiple) * multiple


def pad_reflect(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad a (C, H, W) array at the bottom and right to (C, height, width).

    Reflection keeps image statistics continuous at the border, so the model sees no
    artificial edge; the mask marks the padding so losses and metrics ignore it.
    """
    pad_h, pad_w = height - array.shape[-2], width - array.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return array
    return np.pad(array, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")


def pad_zero(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Zero-pad a (C, H, W) array at the bottom and right to (C, height, width)."""
    pad_h, pad_w = height - array.shape[-2], width - array.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return array
    return np.pad(array, ((0, 0), (0, pad_h), (0, pad_w)), mode="constant")
