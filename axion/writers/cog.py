"""The GeoTIFFs inference writes: Cloud-Optimized GeoTIFFs that GIS software reads as they are.

Every opt_v3 raster (a tile, a scene, or the per-pixel standard deviation of either) is
a COG made by GDAL's COG driver: internal 512 px tiles, DEFLATE compression, AVERAGE
overviews down to one tile. Bands are described B2, B3, B4, B8 and carry the colour
interpretation blue, green, red, undefined, for software that picks its display bands from
it; the true-colour order is bands 3, 2, 1 as red, green, blue.

Pixel values are reflectance x 10000 (tile units) in either sample type; each band
declares scale 0.0001 and offset 0 with the unit ``reflectance``, so ``value * scale``
is reflectance. Negative reflectance is clipped at 0.

=========  ==============================  ====================================
dtype      opt_v3 (the mean)               standard deviation
=========  ==============================  ====================================
float32    as computed; nodata NaN         as computed; nodata 0
uint16     rounded, 1 .. 65535; nodata 0   rounded, 0 .. 65535; nodata 0
=========  ==============================  ====================================

A scene is written strip by strip into a plain tiled GeoTIFF beside the output (hidden,
named like :mod:`axion.atomic`'s temporary files), which the COG driver then copies,
overviews included, block by block; the result is renamed into place and the
intermediate removed. GDAL's block cache is capped at :data:`GDAL_CACHE_MB` unless
``GDAL_CACHEMAX`` is set, so memory stays bounded whatever the scene size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from axion.atomic import atomic_path, temporary_path
from axion.bands import OPTICAL_BANDS, REFLECTANCE_SCALE

OutputDtype = Literal["float32", "uint16"]
#: GDAL block cache while writing (MB), unless the user set ``GDAL_CACHEMAX``.
GDAL_CACHE_MB = 64
#: Internal tile side of the COGs (pixels).
COG_BLOCK = 512
#: Unit of the scaled band values (``value * scale``).
BAND_UNIT = "reflectance"
#: Band scale: stored values are reflectance x 10000.
BAND_SCALE = 1.0 / REFLECTANCE_SCALE
#: GDAL colour interpretation of B2, B3, B4, B8.
BAND_COLORS = ("blue", "green", "red", "undefined")
_COG_OPTIONS = {
    "compress": "deflate",
    "predictor": "yes",
    "blocksize": COG_BLOCK,
    "overview_resampling": "average",
    "bigtiff": "if_safer",
}
_UINT16_MAX = 65535


@dataclass(frozen=True)
class RasterSpec:
    """What one output raster holds and how it is encoded.

    Attributes:
        dtype: ``float32`` or ``uint16``.
        spread: True for the per-pixel standard deviation, False for opt_v3 itself.
    """

    dtype: OutputDtype = "float32"
    spread: bool = False

    @property
    def nodata(self) -> float:
        """NaN for a float32 opt_v3, else 0."""
        return float("nan") if self.dtype == "float32" and not self.spread else 0.0

    def encode(self, values: np.ndarray, invalid: np.ndarray | None = None) -> np.ndarray:
        """(4, h, w) tile units -> the stored array: clipped at 0, rounded for uint16, nodata where invalid.

        Args:
            values: reflectance x 10000 (anything, NaN included, where ``invalid``).
            invalid: (h, w) True where there is no data.

        Raises:
            ValueError: a non-finite value where the inputs are valid (a model failure is never
                written as nodata).
        """
        out = values.astype(np.float32)  # the one copy: everything else happens in place
        if invalid is not None and invalid.any():
            out[:, invalid] = 0.0
        if not np.isfinite(out).all():
            raise ValueError("non-finite values at pixels whose inputs are valid")
        np.maximum(out, 0.0, out=out)
        if self.dtype == "uint16":
            low = 0 if self.spread else 1  # 0 is nodata; a valid reflectance of 0 is stored as 1
            out = np.clip(np.rint(out, out=out), low, _UINT16_MAX, out=out).astype(np.uint16)
        if invalid is not None and invalid.any():
            out[:, invalid] = self.nodata
        return out

    def profile(self, height: int, width: int, crs: Any, transform: Any) -> dict[str, Any]:
        """Profile of the tiled, uncompressed intermediate GeoTIFF the COG is copied from."""
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "height": height,
            "width": width,
            "count": len(OPTICAL_BANDS),
            "dtype": self.dtype,
            "nodata": self.nodata,
            "tiled": True,
            "blockxsize": COG_BLOCK,
            "blockysize": COG_BLOCK,
            "interleave": "pixel",
            "BIGTIFF": "IF_SAFER",
        }
        if crs is not None:
            profile["crs"] = crs
        if transform is not None:
            profile["transform"] = transform
        return profile


def _describe(dst: Any, tags: dict[str, str] | None) -> None:
    """Band names, colour interpretation, scale, offset and unit; then the provenance tags."""
    from rasterio.enums import ColorInterp

    for index, band in enumerate(OPTICAL_BANDS, start=1):
        dst.set_band_description(index, band)
        dst.set_band_unit(index, BAND_UNIT)
    dst.colorinterp = [ColorInterp[name] for name in BAND_COLORS]
    dst.scales = (BAND_SCALE,) * len(OPTICAL_BANDS)
    dst.offsets = (0.0,) * len(OPTICAL_BANDS)
    if tags:
        dst.update_tags(**tags)


@contextmanager
def gdal_env() -> Iterator[None]:
    """A GDAL environment with a bounded block cache (the user's ``GDAL_CACHEMAX`` wins)."""
    import rasterio

    options = {} if "GDAL_CACHEMAX" in os.environ else {"GDAL_CACHEMAX": GDAL_CACHE_MB}
    with rasterio.Env(**options):
        yield


class StripWriter:
    """Rows of a raster written in order into the intermediate GeoTIFF (see :func:`cog_writer`)."""

    def __init__(self, dst: Any, spec: RasterSpec) -> None:
        self._dst, self.spec = dst, spec

    def write(self, values: np.ndarray, top: int, invalid: np.ndarray | None = None) -> None:
        """Encode and write (4, h, width) tile units as the rows ``[top, top + h)``."""
        from rasterio.windows import Window

        encoded = self.spec.encode(values, invalid)
        self._dst.write(encoded, window=Window(0, top, encoded.shape[2], encoded.shape[1]))


@contextmanager
def cog_writer(
    path: Path,
    spec: RasterSpec,
    *,
    height: int,
    width: int,
    crs: Any,
    transform: Any,
    tags: dict[str, str] | None = None,
) -> Iterator[StripWriter]:
    """Yield a :class:`StripWriter`; when the block succeeds, make ``path`` a COG of what was written.

    Nothing is left behind on failure: the intermediate file is always removed and
    ``path`` is replaced only by a complete COG (renamed into place).
    """
    import rasterio
    import rasterio.shutil

    path = Path(path)
    strips = temporary_path(path.with_name(path.name + ".strips"))
    try:
        with gdal_env():
            with rasterio.open(strips, "w", **spec.profile(height, width, crs, transform)) as dst:
                _describe(dst, tags)
                yield StripWriter(dst, spec)
            with atomic_path(path) as tmp:
                rasterio.shutil.copy(strips, tmp, driver="COG", **_COG_OPTIONS)
    finally:
        strips.unlink(missing_ok=True)


def write_cog(
    path: Path,
    values: np.ndarray,
    spec: RasterSpec,
    *,
    crs: Any,
    transform: Any,
    tags: dict[str, str] | None = None,
    invalid: np.ndarray | None = None,
) -> None:
    """Write one (4, H, W) array in tile units as a COG, atomically."""
    with cog_writer(
        path, spec, height=values.shape[1], width=values.shape[2], crs=crs, transform=transform, tags=tags
    ) as writer:
        writer.write(values, 0, invalid)
