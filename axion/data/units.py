"""Unit conversions into tile units (S1 in dB, S2 as L2A reflectance x 10000).

A tile's JSON may declare other units under ``"units"``; these pure functions turn
them into the units TerraMind was pretrained on, or refuse them with a ``ValueError``
that callers turn into a one-line error naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from axion.bands import REFLECTANCE_SCALE, S1_UNITS, S2_UNITS

#: Linear backscatter below this power is clamped before taking the log (-50 dB).
S1_DB_FLOOR: float = -50.0

#: Accepted spellings of the S1 units, mapped to their canonical name.
S1_UNIT_NAMES: dict[str, str] = {"db": "dB", "linear": "linear"}
#: Accepted spellings of the S2 units, mapped to the factor that gives tile units.
S2_UNIT_SCALES: dict[str, float] = {
    S2_UNITS.lower(): 1.0,
    "reflectance": REFLECTANCE_SCALE,
}


def linear_to_db(power: np.ndarray) -> np.ndarray:
    """Linear backscatter power to dB, clamped at :data:`S1_DB_FLOOR` (zeros and negatives included)."""
    floor = 10.0 ** (S1_DB_FLOOR / 10.0)
    return (10.0 * np.log10(np.maximum(power.astype(np.float64), floor))).astype(np.float32)


def s1_unit(value: Any) -> str:
    """Canonical S1 unit name ('dB' or 'linear'); ``ValueError`` for anything else."""
    name = S1_UNIT_NAMES.get(str(value).strip().lower()) if isinstance(value, str) else None
    if name is None:
        raise ValueError(f"unknown S1 units {value!r} (expected 'dB' or 'linear')")
    return name


def s2_scale(value: Any) -> float:
    """Factor that takes S2 values in the given units to reflectance x 10000; ``ValueError`` if unknown."""
    scale = S2_UNIT_SCALES.get(str(value).strip().lower()) if isinstance(value, str) else None
    if scale is None:
        raise ValueError(f"unknown S2 units {value!r} (expected {S2_UNITS!r} or 'reflectance')")
    return scale


def declared_units(meta: Mapping[str, Any]) -> tuple[str, float]:
    """Read a tile JSON's optional ``"units"`` block: (S1 unit, S2 scale). Defaults are tile units."""
    units = meta.get("units", {})
    if not isinstance(units, Mapping):
        raise ValueError('\'units\' must be an object like {"s1": "dB", "s2": "reflectance*10000"}')
    unknown = sorted(set(units) - {"s1", "s2"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in 'units' (expected 's1' and/or 's2')")
    return s1_unit(units.get("s1", S1_UNITS)), s2_scale(units.get("s2", S2_UNITS))


def s1_to_db(s1: np.ndarray, unit: str) -> np.ndarray:
    """S1 in ``unit`` ('dB' or 'linear') to float32 dB (``s1`` itself when it is float32 dB already)."""
    return linear_to_db(s1) if unit == "linear" else s1.astype(np.float32, copy=False)


def s2_to_tile_units(s2: np.ndarray, scale: float) -> np.ndarray:
    """S2 to float32 reflectance x 10000."""
    out = s2.astype(np.float32)
    return out * np.float32(scale) if scale != 1.0 else out
