"""Plausible values of Sentinel-1 and optical arrays: what is refused and what is only suspicious.

Finiteness is checked elsewhere (:mod:`axion.data.check`); these functions look at
finite values in tile units (S1 in dB, optical as reflectance x 10000, after any
unit conversion a tile's JSON declares) and return :class:`Finding` objects:

- *fatal* findings are values no Sentinel-1 or Sentinel-2 product can hold in these
  units (a units mix-up, an unmasked no-data value, an overflow). Commands refuse
  them with one line naming the file.
- the others are values that real data rarely hold; commands print them as warnings
  and record them, but go on.

The limits are documented in docs/data.md ("Plausible values").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: S1 backscatter outside this range (dB) is refused: no sensor measures it; usually an
#: unmasked no-data value (-9999) or an overflow.
S1_DB_LIMITS: tuple[float, float] = (-100.0, 60.0)
#: Where Sentinel-1 backscatter usually lies (dB). More than :data:`SUSPICIOUS_FRACTION` of
#: the pixels outside it is a warning.
S1_DB_USUAL: tuple[float, float] = (-50.0, 30.0)
#: S1 with no negative value and a VV median at most this looks like linear power, not dB
#: (linear VV is mostly 0.01-0.3; a dB median of +10 does not occur).
LINEAR_MEDIAN_MAX: float = 10.0
#: Optical values (tile units) below this are refused: reflectance below -0.01 is not physical.
OPTICAL_MIN: float = -100.0
#: Optical values (tile units) above this are refused: reflectance above 2.5 is not physical.
OPTICAL_CEILING: float = 25000.0
#: Optical values (tile units) above this are bright cloud, snow or saturation (reflectance 1.2).
OPTICAL_BRIGHT: float = 12000.0
#: An optical array whose largest value is at most this looks like reflectance 0-1, not x 10000.
REFLECTANCE_0_1_MAX: float = 2.0
#: The fraction of pixels that makes a usual-but-rare value suspicious.
SUSPICIOUS_FRACTION: float = 0.01


@dataclass(frozen=True)
class Finding:
    """Something about an array's values.

    Attributes:
        reason: a generic one-line reason (no numbers, so equal reasons can be counted).
        detail: the numbers behind it.
        fatal: the values cannot be right (refused); otherwise only suspicious (a warning).
    """

    reason: str
    detail: str = ""
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


def _valid_values(array: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """(C, N) finite values of the valid pixels of a (C, H, W) array (other types as float64)."""
    # In the array's own float type: min, max and comparisons with these limits are exact in
    # float32 too (the limits are whole numbers); only the median is taken in float64.
    flat = array.reshape(array.shape[0], -1)
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float64)
    keep = np.isfinite(flat).all(axis=0)
    if valid is not None:
        keep &= valid.reshape(-1) > 0
    # (no copy of a tile that keeps every pixel; np.compress keeps the bands' rows contiguous, where
    # flat[:, keep] gives column order, and is 4x faster: per-band reductions read rows)
    return flat if keep.all() else np.compress(keep, flat, axis=1)


def _band_ranges(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each band's smallest and largest value of (C, N) values, N > 0: one pass of each over the
    values, for the array's range and for :func:`_constant` alike."""
    return values.min(axis=1), values.max(axis=1)


def _constant(
    values: np.ndarray, ranges: tuple[np.ndarray, np.ndarray], names: tuple[str, ...], what: str
) -> Finding | None:
    if values.shape[1] < 2:
        return None
    for name, band, low, high in zip(names, values, *ranges, strict=True):
        if low == high:
            return Finding(f"{what} {name} is constant: no signal", f"every value is {band[0]:g}")
    return None


def s1_findings(s1: np.ndarray, valid: np.ndarray | None = None) -> list[Finding]:
    """Findings about S1 backscatter (2, H, W) in dB, VV then VH.

    Args:
        s1: backscatter in dB.
        valid: (H, W), non-zero where the pixel is valid (None: every pixel).
    """
    values = _valid_values(s1, valid)
    if values.shape[1] == 0:
        return [Finding("no valid S1 pixel")]
    ranges = _band_ranges(values)
    low, high = float(ranges[0].min()), float(ranges[1].max())
    if low == 0.0 and high == 0.0:
        return [Finding("no S1 signal: every value is 0", "an empty or zero-filled tile, not backscatter")]
    # The ranges settle most checks without another pass over the values: the median (a partial
    # sort, the costliest reduction here) is only needed when no value is negative.
    median = float(np.median(values[0].astype(np.float64), overwrite_input=True)) if low >= 0.0 else 0.0
    if low >= 0.0 and median <= LINEAR_MEDIAN_MAX:
        return [
            Finding(
                "S1 looks like linear power, not dB",
                f"every value >= 0, VV median {median:.3g}; dB backscatter is mostly negative",
            )
        ]
    lo, hi = S1_DB_LIMITS
    if low < lo or high > hi:
        return [
            Finding(
                f"S1 values outside {lo:g}..{hi:g} dB",
                f"min {low:.4g}, max {high:.4g}; an unmasked no-data value?",
            )
        ]
    constant = _constant(values, ranges, ("VV", "VH"), "S1")
    if constant is not None:
        return [constant]
    usual_lo, usual_hi = S1_DB_USUAL
    unusual = (
        0.0
        if usual_lo <= low and high <= usual_hi
        else float(((values < usual_lo) | (values > usual_hi)).mean())
    )
    if unusual > SUSPICIOUS_FRACTION:
        return [
            Finding(
                f"S1 often outside the usual {usual_lo:g}..{usual_hi:g} dB",
                f"{100 * unusual:.1f} % of the values",
                fatal=False,
            )
        ]
    return []


def optical_findings(optical: np.ndarray, valid: np.ndarray | None = None, what: str = "S2") -> list[Finding]:
    """Findings about optical bands (4, H, W) B2, B3, B4, B8 in tile units (reflectance x 10000).

    Args:
        optical: the bands.
        valid: (H, W), non-zero where the pixel is valid (None: every pixel).
        what: how messages name the array (``S2``, ``opt_v2``).
    """
    values = _valid_values(optical, valid)
    if values.shape[1] == 0:
        return [Finding(f"no valid {what} pixel")]
    ranges = _band_ranges(values)
    low, high = float(ranges[0].min()), float(ranges[1].max())
    if high == 0.0 and low == 0.0:
        return [Finding(f"no {what} signal: every value is 0", "0 is Sentinel-2's no-data value")]
    if low < OPTICAL_MIN:
        return [
            Finding(
                f"{what} has negative reflectance",
                f"min {low:.4g} tile units, below {OPTICAL_MIN:g}; an offset removed twice, or not reflectance x 10000?",
            )
        ]
    if high > OPTICAL_CEILING:
        return [
            Finding(
                f"{what} above the reflectance ceiling",
                f"max {high:.4g} tile units, above {OPTICAL_CEILING:g} (reflectance 2.5)",
            )
        ]
    if high <= REFLECTANCE_0_1_MAX:
        return [
            Finding(
                f"{what} looks like reflectance 0-1, not reflectance x 10000",
                f"max {high:.4g}",
            )
        ]
    constant = _constant(values, ranges, ("B2", "B3", "B4", "B8"), what)
    if constant is not None:
        return [constant]
    found = []
    if low < 0.0:
        found.append(Finding(f"{what} has slightly negative reflectance", f"min {low:.4g}", fatal=False))
    zeros = 0.0 if low > 0.0 or high < 0.0 else float((values == 0).all(axis=0).mean())
    if zeros > SUSPICIOUS_FRACTION:
        found.append(
            Finding(
                f"{what} is 0 in every band at many pixels (no-data not masked?)",
                f"{100 * zeros:.1f} % of the pixels",
                fatal=False,
            )
        )
    bright = 0.0 if high <= OPTICAL_BRIGHT else float((values > OPTICAL_BRIGHT).mean())
    if bright > SUSPICIOUS_FRACTION:
        found.append(
            Finding(
                f"{what} often above reflectance 1.2 (cloud, snow or saturation?)",
                f"{100 * bright:.1f} % of the values",
                fatal=False,
            )
        )
    return found
