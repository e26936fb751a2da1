"""Reading scene rasters: opening a GeoTIFF, finding S1's bands, filling invalid pixels.

Public helpers of ``axion stage3 prepare`` (:mod:`axion.data.prepare.scene`,
:mod:`axion.data.prepare.inference`) and of scene inference (:mod:`axion.prediction.scene`).
rasterio is imported inside the functions that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from axion.errors import DataError


def open_geotiff(path: Path) -> Any:
    """An open rasterio dataset; ``DataError`` (one line) for a missing or unreadable file."""
    import rasterio
    from rasterio.errors import RasterioIOError

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise DataError(f"{path}: not a readable GeoTIFF ({first})") from None


def s1_band_indexes(src: Any, path: Path) -> tuple[int, int]:
    """Bands holding VV and VH: by band description when it names them, else bands 1 and 2."""
    if src.count < 2:
        raise DataError(f"{path}: S1 needs 2 bands (VV, VH), the file has {src.count}")
    names = [(d or "").strip().upper() for d in src.descriptions]
    if "VV" in names and "VH" in names:
        return names.index("VV") + 1, names.index("VH") + 1
    return 1, 2


def fill_invalid(bands: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Replace invalid pixels by each band's median over the valid ones (0 if none is valid)."""
    if not invalid.any():
        return bands
    out = bands.copy()
    for band in out:
        valid = band[~invalid]
        band[invalid] = np.median(valid) if valid.size else 0
    return out
