"""Which band of an S2 GeoTIFF holds B2, B3, B4 and B8."""

from __future__ import annotations

from collections.abc import Sequence

from axion.bands import KEPT_S2_BANDS, S2L2A_BANDS

#: The 12-band L2A order (no B10), as TerraMind uses it.
L2A_ORDER: tuple[str, ...] = S2L2A_BANDS
#: The 13-band L1C order (with B10).
L1C_ORDER: tuple[str, ...] = L2A_ORDER[:10] + ("B10",) + L2A_ORDER[10:]
#: Default band order by band count; any other count needs ``--s2-bands``.
DEFAULT_ORDERS: dict[int, tuple[str, ...]] = {12: L2A_ORDER, 13: L1C_ORDER}
#: The bands a tile keeps, in tile order.
WANTED: tuple[str, ...] = KEPT_S2_BANDS
#: The product levels a tile records (``s2_level``).
LEVELS: tuple[str, ...] = ("L2A", "L1C")


def band_indexes(count: int, names: Sequence[str] | None) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """1-based band indexes of B2, B3, B4, B8 in a file of ``count`` bands, and the order used.

    Args:
        count: the file's band count.
        names: the file's band order (``--s2-bands``); ``None`` picks the default for 12 (L2A)
            or 13 (L1C) bands.

    Raises:
        ValueError: no default for this count, a length mismatch or a wanted band missing.
    """
    if names is None:
        if count not in DEFAULT_ORDERS:
            raise ValueError(
                f"has {count} bands; name them with --s2-bands (defaults exist for 12 bands L2A "
                "B01..B12 without B10, and 13 bands L1C B01..B12)"
            )
        names = DEFAULT_ORDERS[count]
    if len(names) != count:
        raise ValueError(f"has {count} bands but --s2-bands names {len(names)}")
    missing = [band for band in WANTED if band not in names]
    if missing:
        raise ValueError(f"band map has no {missing[0]} (tiles need B02, B03, B04, B08)")
    return tuple(names.index(band) + 1 for band in WANTED), tuple(names)


def level_of(order: Sequence[str]) -> str:
    """The product level a band order implies: ``L1C`` when it holds B10 (L2A products drop
    the cirrus band), else ``L2A``."""
    return "L1C" if "B10" in order else "L2A"
