"""Real scenes on different grids for the scene-inference tests (built from ../shared/data, never copied).

The Sen1Floods11 chip is in EPSG:4326 (about 10 m); its S2 bands B2, B3, B4, B8 are
reprojected here onto a 10 m UTM grid (EPSG:32630) to stand for a Stage 2 opt_v2, so
the S1 scene and the opt_v2 scene differ in CRS, resolution and extent, as a new user's
inputs do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

UTM = "EPSG:32630"
#: Where the NaN (nodata) hole of the opt_v2 scene is, in its pixel rows and columns.
OPT_HOLE = (slice(10, 22), slice(40, 52))


@dataclass(frozen=True)
class ScenePair:
    s1: Path
    opt_v2: Path


def write_raster(
    path: Path, array: np.ndarray, crs: object, transform: object, nodata: float | None = None
) -> Path:
    import rasterio

    profile = {"driver": "GTiff", "height": array.shape[1], "width": array.shape[2], "count": array.shape[0]}
    profile.update(dtype=str(array.dtype), crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def read(path: Path) -> tuple[np.ndarray, dict]:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(), src.profile


def floods_pair(
    sen1floods11: Path, root: Path, size: int | None = None, s1_hole: bool = True, pixel: float = 10.0
) -> ScenePair:
    """S1 (EPSG:4326, as distributed) and an opt_v2 on a UTM grid of ``pixel`` metres, ``size`` px square.

    The opt_v2 grid starts inside the S1 footprint and (with ``size``) covers part of it; its
    NaN hole (:data:`OPT_HOLE`) and an S1 NaN patch (``s1_hole``) are nodata to carry through.
    """
    import rasterio
    from affine import Affine
    from rasterio.warp import Resampling, reproject, transform_bounds

    root.mkdir(parents=True, exist_ok=True)
    with rasterio.open(sen1floods11 / "S1" / "Spain_7370579_S1Hand.tif") as s1f:
        s1, s1_crs, s1_transform = s1f.read().astype(np.float32), s1f.crs, s1f.transform
    if s1_hole:
        s1[:, 300:330, 100:140] = np.nan
    s1_path = write_raster(root / "s1_4326.tif", s1, s1_crs, s1_transform, nodata=float("nan"))
    with rasterio.open(sen1floods11 / "S2" / "Spain_7370579_S2Hand.tif") as s2f:
        s2 = s2f.read([2, 3, 4, 8]).astype(np.float32)
        left, bottom, right, top = transform_bounds(s2f.crs, UTM, *s2f.bounds)
        s2_crs, s2_transform = s2f.crs, s2f.transform
    # A grid inside the chip (whole metres), so the output has no border without S1.
    x0, y0 = float(np.ceil(left / 10) * 10 + 50), float(np.floor(top / 10) * 10 - 50)
    width = int((right - x0 - 50) // pixel) if size is None else size
    height = int((y0 - bottom - 50) // pixel) if size is None else size
    transform = Affine(pixel, 0.0, x0, 0.0, -pixel, y0)
    opt = np.full((4, height, width), np.nan, np.float32)
    reproject(
        s2, opt, src_transform=s2_transform, src_crs=s2_crs, dst_transform=transform, dst_crs=UTM,
        resampling=Resampling.bilinear, dst_nodata=np.nan,
    )  # fmt: skip
    opt[(slice(None), *OPT_HOLE)] = np.nan
    opt_path = write_raster(root / "opt_v2_utm.tif", opt, UTM, transform, nodata=float("nan"))
    return ScenePair(s1_path, opt_path)


def s1_on_grid_of(pair: ScenePair) -> np.ndarray:
    """S1 reprojected onto the opt_v2 grid independently: one rasterio.warp.reproject of the whole scene.

    Bilinear, its kernel widened by the ratio of pixel sizes (GDAL's XSCALE, YSCALE), here
    measured from the S1 pixel's size on the ground at the scene's latitude.
    """
    from rasterio.warp import Resampling, reproject, transform

    s1, s1_profile = read(pair.s1)
    _, opt_profile = read(pair.opt_v2)
    opt_t, s1_t = opt_profile["transform"], s1_profile["transform"]
    cx, cy = opt_t @ (opt_profile["width"] / 2, opt_profile["height"] / 2)
    lon, lat = transform(opt_profile["crs"], s1_profile["crs"], [cx], [cy])
    metres_per_degree = 111_320.0  # at the equator; longitude shrinks with cos(latitude)
    s1_x = s1_t.a * metres_per_degree * np.cos(np.radians(lat[0]))
    s1_y = abs(s1_t.e) * metres_per_degree
    out = np.full((2, opt_profile["height"], opt_profile["width"]), np.nan, np.float32)
    reproject(
        s1, out, src_transform=s1_profile["transform"], src_crs=s1_profile["crs"], src_nodata=np.nan,
        dst_transform=opt_profile["transform"], dst_crs=opt_profile["crs"], dst_nodata=np.nan,
        resampling=Resampling.bilinear, XSCALE=s1_x / opt_t.a, YSCALE=s1_y / abs(opt_t.e),
    )  # fmt: skip
    return out


def eroded(valid: np.ndarray, pixels: int) -> np.ndarray:
    """``valid`` without the pixels within ``pixels`` of an invalid pixel or the border."""
    out = valid.copy()
    for _ in range(pixels):
        shrunk = out.copy()
        shrunk[1:] &= out[:-1]
        shrunk[:-1] &= out[1:]
        shrunk[:, 1:] &= out[:, :-1]
        shrunk[:, :-1] &= out[:, 1:]
        shrunk[0], shrunk[-1], shrunk[:, 0], shrunk[:, -1] = False, False, False, False
        out = shrunk
    return out
