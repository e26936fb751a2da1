"""Turning co-registered S1/S2 pixel blocks into one tile (or a reason to skip it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from axion.bands import S1_KEYS, S1_UNITS, S2_KEYS, S2_UNITS
from axion.data.plausible import Finding, optical_findings, s1_findings
from axion.data.raster import fill_invalid
from axion.data.tilefile import VALID_KEY
from axion.data.units import linear_to_db

#: The reason a tile is skipped for invalid pixels (as shown in the summary).
TOO_MANY_INVALID = "too many invalid pixels (> --max-nodata)"
#: The start of the reason a tile is skipped for values no product can hold.
IMPLAUSIBLE = "implausible values"
#: Hints added to the reasons of some findings in ``prepare``'s terms.
_HINTS = {"S1 looks like linear power, not dB": "; use --s1-units linear"}


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
    opt_v2_mask: np.ndarray | None = None


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
    #: (4, h, w) B2, B3, B4, B8 of a cloudy acquisition of the same place (a real opt_v2).
    cloudy: np.ndarray | None = None
    cloudy_nodata: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Assembled:
    """A window turned into tile arrays, with its valid fraction, opt_v2 and warnings."""

    arrays: dict[str, np.ndarray]
    valid_fraction: float
    opt_v2: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    #: Where the cloudy opt_v2 looks clear (see :mod:`axion.data.cloudmask`).
    opt_v2_mask: np.ndarray | None = None


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


def _skip_reason(finding: Finding) -> str:
    return f"{IMPLAUSIBLE}: {finding.reason}{_HINTS.get(finding.reason, '')}"


def assemble(pixels: Pixels, max_nodata: float) -> Assembled | str:
    """Tile arrays (S1 float32 dB, S2 as read), the valid fraction and opt_v2, or the reason to skip.

    A pixel is invalid where S1, S2 or the cloudy S2 (when given) is invalid (see
    :func:`s1_invalid`, :func:`s2_invalid`): pixels of the cloudy scene outside its
    footprint count like S1's. Invalid pixels are filled with the band median so the
    files stay finite, and recorded in the optional ``valid`` key, which the dataset
    folds into its mask. Values no product can hold (:mod:`axion.data.plausible`) skip
    the tile with the reason; suspicious ones become the tile's warnings.
    """
    invalid = s1_invalid(pixels.s1, pixels.s1_nodata, pixels.s1_linear) | s2_invalid(
        pixels.s2, pixels.s2_nodata
    )
    if pixels.cloudy is not None:
        invalid |= s2_invalid(pixels.cloudy, pixels.cloudy_nodata)
    fraction_invalid = float(invalid.mean())
    if fraction_invalid > max_nodata:
        return TOO_MANY_INVALID
    s1 = pixels.s1.astype(np.float32)
    s1 = fill_invalid(linear_to_db(s1) if pixels.s1_linear else s1, invalid)
    s2 = fill_invalid(pixels.s2, invalid)
    valid = ~invalid
    findings = s1_findings(s1, valid) + optical_findings(s2, valid)
    opt_v2 = None
    if pixels.cloudy is not None:
        opt_v2 = fill_invalid(pixels.cloudy.astype(np.float32), invalid)
        findings += optical_findings(opt_v2, valid, what="cloudy S2")
    fatal = [f for f in findings if f.fatal]
    if fatal:
        return _skip_reason(fatal[0])
    arrays = {key: s1[i] for i, key in enumerate(S1_KEYS)} | {key: s2[i] for i, key in enumerate(S2_KEYS)}
    if invalid.any():
        arrays[VALID_KEY] = valid.astype(np.uint8)
    opt_v2_mask = None
    if opt_v2 is not None:
        from axion.data.cloudmask import clear_sky_mask

        opt_v2_mask = clear_sky_mask(opt_v2)
    return Assembled(arrays, 1.0 - fraction_invalid, opt_v2, [str(f) for f in findings], opt_v2_mask)


def tile_units() -> dict[str, str]:
    """The ``"units"`` block every written tile declares."""
    return {"s1": S1_UNITS, "s2": S2_UNITS}
