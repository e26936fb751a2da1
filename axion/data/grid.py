"""Putting one raster onto another's pixel grid (S1 onto S2) without loading either whole.

Shared by ``axion stage3 prepare`` (scene tiling) and ``infer`` on a scene (:mod:`axion.prediction.scene`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from axion.errors import DataError


def same_grid(src: Any, ref: Any) -> bool:
    """Whether two open datasets share CRS, transform and size (so pixels correspond 1:1)."""
    return (
        src.crs == ref.crs
        and src.width == ref.width
        and src.height == ref.height
        and src.transform.almost_equals(ref.transform, precision=1e-9)
    )


def resampling_scales(src: Any, ref: Any) -> dict[str, float]:
    """GDAL's ``XSCALE`` / ``YSCALE`` warp options: ``ref`` pixels per ``src`` pixel along ``ref``'s axes.

    Measured at the centre of ``ref``. Fixing them makes a warped pixel independent of the
    window it is read in (GDAL otherwise derives the kernel's width from each window's size),
    and widens the bilinear kernel when ``src`` is finer than ``ref`` (no aliasing).
    """
    from rasterio.warp import transform as warp_points

    cx, cy = ref.width / 2.0, ref.height / 2.0
    xs, ys = ref.transform @ (np.array([cx, cx + 1.0, cx]), np.array([cy, cy, cy + 1.0]))
    try:
        sx, sy = warp_points(ref.crs, src.crs, list(xs), list(ys))
    except Exception:  # rasterio's CPLE errors: ref's centre lies outside src's projection domain
        # Then src cannot cover ref's centre either; no scale to fix (GDAL's own choice is used).
        return {}
    cols, rows = (~src.transform) @ (np.asarray(sx), np.asarray(sy))
    along_x = float(np.hypot(cols[1] - cols[0], rows[1] - rows[0]))
    along_y = float(np.hypot(cols[2] - cols[0], rows[2] - rows[0]))
    if not (np.isfinite(along_x) and np.isfinite(along_y) and along_x > 0 and along_y > 0):
        return {}
    return {"XSCALE": 1.0 / along_x, "YSCALE": 1.0 / along_y}


@contextlib.contextmanager
def on_grid_of(src: Any, ref: Any, *, name: str) -> Iterator[Any]:
    """``src`` itself, or a bilinear :class:`rasterio.vrt.WarpedVRT` of it on ``ref``'s grid.

    Pixels outside ``src``'s footprint read as NaN. Windows read from the VRT are
    warped on demand, so a large scene is never loaded whole, and a pixel reads the same
    whatever window it is read in (see :func:`resampling_scales`).

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
        **resampling_scales(src, ref),
    ) as vrt:
        yield vrt


def enter_on_grid(stack: contextlib.ExitStack, src: Any, ref: Any, path: Any) -> Any:
    """Enter :func:`on_grid_of` on ``stack``; a grid it cannot resample is a one-line ``DataError``."""
    try:
        return stack.enter_context(on_grid_of(src, ref, name=str(path)))
    except ValueError as exc:
        raise DataError(str(exc)) from None
