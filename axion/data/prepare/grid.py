"""Putting one raster onto another's pixel grid (S1 onto S2) without loading either whole."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np


def same_grid(src: Any, ref: Any) -> bool:
    """Whether two open datasets share CRS, transform and size (so pixels correspond 1:1)."""
    return (
        src.crs == ref.crs
        and src.width == ref.width
        and src.height == ref.height
        and src.transform.almost_equals(ref.transform, precision=1e-9)
    )


@contextlib.contextmanager
def on_grid_of(src: Any, ref: Any, *, name: str) -> Iterator[Any]:
    """``src`` itself, or a bilinear :class:`rasterio.vrt.WarpedVRT` of it on ``ref``'s grid.

    Pixels outside ``src``'s footprint read as NaN. Windows read from the VRT are
    warped on demand, so a large scene is never loaded whole.

    Raises:
        ValueError: the grids differ and one of the two has no CRS to reproject with.
    """
    if same_grid(src, ref):
        yield src
        return
    if src.crs is None or ref.crs is None:
        raise ValueError(f"{name} is on a different pixel grid and has no CRS to resample with")
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with WarpedVRT(
        src,
        crs=ref.crs,
        transform=ref.transform,
        width=ref.width,
        height=ref.height,
        resampling=Resampling.bilinear,
        nodata=np.nan,
        dtype="float32",
    ) as vrt:
        yield vrt
