"""A STAC Item beside each output scene, so catalogues and QGIS's STAC browser find it.

``<stem>.json`` beside ``<stem>.tif`` (made with pystac, STAC 1.1): the footprint as
geometry and bbox in WGS84, the projection extension (code, transform, shape), one
asset per raster (opt_v3 with role ``data``; its standard deviation, when sampled,
with role ``uncertainty``) with ``eo:bands`` and ``raster:bands`` (nodata, sample
type, scale, offset, unit), and the provenance as ``axion:*`` properties. Asset links
are relative, so the folder can be moved as a whole.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axion.atomic import write_json_atomic
from axion.bands import OPTICAL_BANDS, OPTICAL_COMMON_NAMES, OPTICAL_FWHM_UM, OPTICAL_WAVELENGTHS_UM
from axion.writers.cog import BAND_SCALE, BAND_UNIT, RasterSpec

#: Points per footprint edge, so a reprojected footprint follows curved edges.
_EDGE_POINTS = 21


@dataclass(frozen=True)
class RasterAsset:
    """One raster of the Item: its key, file, encoding, title and roles."""

    key: str
    path: Path
    spec: RasterSpec
    title: str
    roles: tuple[str, ...]


def footprint(crs: Any, transform: Any, height: int, width: int) -> tuple[dict[str, Any], list[float]]:
    """The raster's outline as a GeoJSON polygon and bbox in WGS84 (edges densified)."""
    import numpy as np
    from rasterio.warp import transform as warp_points

    steps = np.linspace(0.0, 1.0, _EDGE_POINTS)[:-1]
    cols = np.concatenate(
        [steps * width, np.full_like(steps, width), (1 - steps) * width, np.zeros_like(steps)]
    )
    rows = np.concatenate(
        [np.zeros_like(steps), steps * height, np.full_like(steps, height), (1 - steps) * height]
    )
    xs, ys = transform @ (cols, rows)
    lons, lats = warp_points(crs, "EPSG:4326", list(xs), list(ys))
    ring = [[round(x, 9), round(y, 9)] for x, y in zip(lons, lats, strict=True)]
    ring.append(ring[0])
    bbox = [min(lons), min(lats), max(lons), max(lats)]
    return {"type": "Polygon", "coordinates": [ring]}, [round(v, 9) for v in bbox]


def scene_item(
    item_path: Path,
    assets: list[RasterAsset],
    *,
    crs: Any,
    transform: Any,
    height: int,
    width: int,
    acquired: dt.datetime,
    properties: dict[str, str],
) -> dict[str, Any]:
    """The STAC Item of an output scene, as a dict ready to be written.

    Args:
        item_path: where the Item will be written (asset links are made relative to it).
        assets: the rasters it lists.
        crs, transform, height, width: the rasters' shared grid (``crs`` may be None: no footprint).
        acquired: the Item's ``datetime`` (the S1 acquisition, when known).
        properties: further properties (the provenance).
    """
    import pystac
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    geometry, bbox = footprint(crs, transform, height, width) if crs is not None else (None, None)
    item = pystac.Item(
        id=item_path.stem,
        geometry=geometry,
        bbox=bbox,
        datetime=acquired,
        properties={"created": _utc_now(), **properties},
    )
    item.set_self_href(str(item_path.resolve()))
    if crs is not None:
        proj = ProjectionExtension.ext(item, add_if_missing=True)
        epsg = crs.to_epsg()
        if epsg is not None:
            proj.epsg = epsg
        else:
            proj.wkt2 = crs.to_wkt()
        proj.transform = [float(v) for v in tuple(transform)[:6]]
        proj.shape = [height, width]
    for raster in assets:
        asset = pystac.Asset(
            href=str(raster.path.resolve()),
            media_type=pystac.MediaType.COG,
            roles=list(raster.roles),
            title=raster.title,
        )
        item.add_asset(raster.key, asset)
        EOExtension.ext(asset, add_if_missing=True).bands = [
            Band.create(name=name, common_name=common, center_wavelength=centre, full_width_half_max=fwhm)
            for name, common, centre, fwhm in zip(
                OPTICAL_BANDS, OPTICAL_COMMON_NAMES, OPTICAL_WAVELENGTHS_UM, OPTICAL_FWHM_UM, strict=True
            )
        ]
        nodata = raster.spec.nodata
        RasterExtension.ext(asset, add_if_missing=True).bands = [
            RasterBand.create(
                nodata="nan" if nodata != nodata else nodata,  # NaN is spelled "nan" in raster:bands
                data_type=DataType(raster.spec.dtype),
                scale=BAND_SCALE,
                offset=0.0,
                unit=BAND_UNIT,
            )
            for _ in OPTICAL_BANDS
        ]
    item.make_asset_hrefs_relative()
    return item.to_dict(include_self_link=False)


def _parse_time(value: str) -> dt.datetime | None:
    """An ISO 8601 or TIFF (``YYYY:MM:DD HH:MM:SS``) date-time, UTC when no zone is given."""
    text = value.strip()
    for parse in (dt.datetime.fromisoformat, lambda t: dt.datetime.strptime(t, "%Y:%m:%d %H:%M:%S")):
        try:
            moment = parse(text)
        except ValueError:
            continue
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return None


def acquisition_time(s1_path: Path, given: str | None) -> tuple[dt.datetime, str]:
    """The Item's ``datetime`` and where it came from.

    ``given`` (``--datetime``) first, then the S1 file's ``datetime`` or ``TIFFTAG_DATETIME``
    tag (``s1``), else the time of processing (``processing``).
    """
    import rasterio

    if given is not None:
        moment = _parse_time(given)
        if moment is not None:
            return moment, "given"
    with rasterio.open(s1_path) as src:
        tags = src.tags()
    for key in ("datetime", "TIFFTAG_DATETIME"):
        moment = _parse_time(tags[key]) if key in tags else None
        if moment is not None:
            return moment, "s1"
    return dt.datetime.now(dt.UTC).replace(microsecond=0), "processing"


def write_item(path: Path, item: dict[str, Any]) -> None:
    """Write an Item atomically (plain JSON: NaN is refused)."""
    write_json_atomic(path, item)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
