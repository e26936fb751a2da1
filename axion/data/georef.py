"""Optional georeference of a tile (``"crs"`` and ``"transform"`` in its JSON)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Georef:
    """Where a tile's pixels lie: CRS (EPSG string or WKT) and affine transform (a, b, c, d, e, f)."""

    crs: str
    transform: tuple[float, float, float, float, float, float]

    def rasterio_crs(self) -> Any:
        """The CRS as a ``rasterio.crs.CRS``."""
        return parse_crs(self.crs)

    def affine(self) -> Any:
        """The transform as an ``affine.Affine``."""
        from affine import Affine

        return Affine(*self.transform)


def parse_crs(value: Any) -> Any:
    """A ``rasterio.crs.CRS`` from a WKT or ``EPSG:<code>`` string; ``ValueError`` if it is not one."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'crs' must be a WKT or 'EPSG:<code>' string, got {value!r}")
    try:
        with rasterio.Env():  # routes PROJ's own error print into Python logging
            return CRS.from_user_input(value)
    except CRSError:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ValueError(f"unknown or unparseable 'crs' {shown!r}") from None


def parse_transform(value: Any) -> tuple[float, float, float, float, float, float]:
    """Six finite affine numbers (a, b, c, d, e, f) with a non-degenerate pixel; ``ValueError`` otherwise."""
    if not isinstance(value, list | tuple) or len(value) not in (6, 9):
        raise ValueError("'transform' must be a list of 6 affine numbers [a, b, c, d, e, f]")
    try:
        numbers = tuple(float(v) for v in value[:6])
    except (TypeError, ValueError):
        raise ValueError("'transform' must hold numbers only") from None
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError("'transform' holds a non-finite number")
    a, b, _, d, e, _ = numbers
    if a * e - b * d == 0:
        raise ValueError("'transform' is degenerate (zero pixel area)")
    return numbers  # type: ignore[return-value]


def georef_from_meta(meta: Mapping[str, Any]) -> Georef | None:
    """The tile's georeference, ``None`` when its JSON carries none; ``ValueError`` when half or invalid."""
    has_crs, has_transform = "crs" in meta, "transform" in meta
    if not has_crs and not has_transform:
        return None
    if has_crs != has_transform:
        missing = "transform" if has_crs else "crs"
        raise ValueError(f"georeference needs both 'crs' and 'transform' ('{missing}' is missing)")
    parse_crs(meta["crs"])
    return Georef(crs=meta["crs"], transform=parse_transform(meta["transform"]))
