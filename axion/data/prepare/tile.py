"""Turning co-registered S1/S2 pixel blocks into one tile (or a reason to skip it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from axion.bands import S1_KEYS, S1_UNITS, S2_KEYS, S2_UNITS
from axion.data.tilefile import VALID_KEY
from axion.data.units import linear_to_db

#: The reason a tile is skipped for invalid pixels (as shown in the summary).
TOO_MANY_INVALID = "too many invalid pixels (> --max-nodata)"


@dataclass
class PreparedTile:
    """A tile ready to be written: arrays, metadata (without split) and its spatial block."""

    name: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    block: str
    #: Blocks the tile's footprint reaches into (its own included); see :mod:`.splits`.
    touches: frozenset[str]
    opt_v2: np.ndarray | None = None


@dataclass(frozen=True)
class Skipped:
    """A candidate tile that was not written, and why."""

    name: str
    reason: str


@dataclass
class Pixels:
    """One window of co-registered pixels, raw from the files."""

    s1: np.ndarray  # (2, h, w) in the file's S1 units
    s2: np.ndarray  # (4, h, w) reflectance x 10000 (or the file's dtype)
    s1_nodata: float | None = None
    s2_nodata: float | None = None
    s1_linear: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def s1_invalid(s1: np.ndarray, nodata: float | None, linear: bool) -> np.ndarray:
    """(h, w) True where any S1 band is non-finite, the nodata value, or (linear) not positive."""
    bad = ~np.isfinite(s1).all(axis=0)
    if nodata is not None and np.isfinite(nodata):
        bad |= (s1 == nodata).any(axis=0)
    if linear:
        bad |= (s1 <= 0).any(axis=0)
    return bad


def s2_invalid(s2: np.ndarray, nodata: float | None) -> np.ndarray:
    """(h, w) True where any band is non-finite or all four equal the nodata value (0 if unset: ESA's)."""
    value = 0 if nodata is None or not np.isfinite(nodata) else nodata
    return ~np.isfinite(s2).all(axis=0) | (s2 == value).all(axis=0)


def fill_invalid(bands: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Replace invalid pixels by each band's median over the valid ones (0 if none is valid)."""
    if not invalid.any():
        return bands
    out = bands.copy()
    for band in out:
        valid = band[~invalid]
        band[invalid] = np.median(valid) if valid.size else 0
    return out


def assemble(pixels: Pixels, max_nodata: float) -> tuple[dict[str, np.ndarray], float] | str:
    """Tile arrays (S1 float32 dB, S2 as read) and the valid fraction, or the reason to skip.

    Invalid pixels (see :func:`s1_invalid`, :func:`s2_invalid`) are filled with the band
    median so the file stays finite, and recorded in the optional ``valid`` key, which
    the dataset folds into its mask.
    """
    invalid = s1_invalid(pixels.s1, pixels.s1_nodata, pixels.s1_linear) | s2_invalid(
        pixels.s2, pixels.s2_nodata
    )
    fraction_invalid = float(invalid.mean())
    if fraction_invalid > max_nodata:
        return TOO_MANY_INVALID
    s1 = pixels.s1.astype(np.float32)
    s1 = fill_invalid(linear_to_db(s1) if pixels.s1_linear else s1, invalid)
    s2 = fill_invalid(pixels.s2, invalid)
    arrays = {key: s1[i] for i, key in enumerate(S1_KEYS)} | {key: s2[i] for i, key in enumerate(S2_KEYS)}
    if invalid.any():
        arrays[VALID_KEY] = (~invalid).astype(np.uint8)
    return arrays, 1.0 - fraction_invalid


def tile_units() -> dict[str, str]:
    """The ``"units"`` block every written tile declares."""
    return {"s1": S1_UNITS, "s2": S2_UNITS}


def opt_v2_from(s2: np.ndarray, nodata: float | None) -> np.ndarray:
    """A real opt_v2 (4, h, w) float32 from a cloudy S2 window; nodata pixels get the band median."""
    invalid = s2_invalid(s2, nodata)
    return fill_invalid(s2.astype(np.float32), invalid)
