"""Tiles from a co-registered pair of GeoTIFF scenes (``--s1 FILE --s2 FILE``).

The S2 scene defines the grid: tiles are ``tile_size`` windows every ``stride``
pixels (windows that would run past the right or bottom edge are not cut). S1 (and
a cloudy S2, if given) are resampled onto that grid when CRS, transform or size
differ. Every window is read on its own, so scenes of any size fit in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axion.data.grid import enter_on_grid
from axion.data.prepare.bandmap import band_indexes, level_of
from axion.data.prepare.tile import Pixels, PreparedTile, Skipped, assemble, tile_units
from axion.data.raster import open_geotiff, s1_band_indexes
from axion.errors import DataError


@dataclass(frozen=True)
class ScenePair:
    """One scene: S1 (VV, VH), S2 (L2A or L1C) and optionally a cloudy S2 of the same place."""

    s1: Path
    s2: Path
    s2_cloudy: Path | None = None


@dataclass(frozen=True)
class SceneOptions:
    """How scenes are cut (see ``axion stage3 prepare --help``)."""

    tile_size: int = 256
    stride: int = 256
    max_nodata: float = 0.1
    s1_linear: bool = False
    s2_bands: tuple[str, ...] | None = None
    block_size: int = 4
    s1_product: str = "grd"
    #: ``L2A`` or ``L1C``; None: from the band order (:func:`~.bandmap.level_of`).
    s2_level: str | None = None
    #: Band order of the cloudy S2; None: ``s2_bands`` when the band counts agree, else by count.
    s2_cloudy_bands: tuple[str, ...] | None = None


def window_origins(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of the full windows along one axis."""
    return list(range(0, size - tile + 1, stride)) if size >= tile else []


def scene_windows(path: Path, height: int, width: int, options: SceneOptions) -> tuple[list[int], list[int]]:
    """Row and column origins of a scene's full windows; ``DataError`` when it is smaller than one."""
    size = options.tile_size
    if height < size or width < size:
        raise DataError(f"{path}: scene is {width}x{height} px, smaller than --tile-size {size}")
    return window_origins(height, size, options.stride), window_origins(width, size, options.stride)


def block_span(start: int, tile: int, block_px: int) -> range:
    """Indexes of the blocks (``block_px`` wide) that a window [start, start + tile) reaches into."""
    return range(start // block_px, (start + tile - 1) // block_px + 1)


class WindowedScene:
    """A scene cut into full windows: ``rows`` and ``cols`` are their origins (:func:`scene_windows`)."""

    rows: list[int]
    cols: list[int]

    @property
    def total(self) -> int:
        """How many windows this scene offers (before skipping)."""
        return len(self.rows) * len(self.cols)


class SceneSource(WindowedScene):
    """Cuts one :class:`ScenePair` into tiles."""

    def __init__(self, pair: ScenePair, options: SceneOptions) -> None:
        self.pair = pair
        self.options = options
        self.name = pair.s2.stem
        with open_geotiff(pair.s2) as s2:
            self.height, self.width = s2.height, s2.width
            self.s2_indexes, self.s2_order = self._bands(s2, pair.s2)
        self.s2_level = options.s2_level or level_of(self.s2_order)
        self.cloudy_order: tuple[str, ...] | None = None
        if pair.s2_cloudy is not None:
            with open_geotiff(pair.s2_cloudy) as cloudy:
                _, self.cloudy_order = self._bands(cloudy, pair.s2_cloudy, cloudy=True)
        self.rows, self.cols = scene_windows(pair.s2, self.height, self.width, options)

    def _bands(self, src: Any, path: Path, cloudy: bool = False) -> tuple[tuple[int, ...], tuple[str, ...]]:
        names = self.options.s2_bands
        flag = "--s2-cloudy-bands" if cloudy else "--s2-bands"
        if cloudy:
            if self.options.s2_cloudy_bands is not None:
                names = self.options.s2_cloudy_bands
            elif names is not None and len(names) != src.count:
                names = None  # the cloudy scene may be another product level: default by count
        try:
            return band_indexes(src.count, names)
        except ValueError as exc:
            raise DataError(f"{path}: {str(exc).replace('--s2-bands', flag)}") from None

    def tiles(self) -> Iterator[PreparedTile | Skipped]:
        """Every window, as a tile or a skip."""
        with contextlib.ExitStack() as stack:
            s2 = stack.enter_context(open_geotiff(self.pair.s2))
            s1_file = stack.enter_context(open_geotiff(self.pair.s1))
            vv_vh = s1_band_indexes(s1_file, self.pair.s1)
            s1 = enter_on_grid(stack, s1_file, s2, self.pair.s1)
            cloudy = cloudy_idx = None
            if self.pair.s2_cloudy is not None:
                cloudy_file = stack.enter_context(open_geotiff(self.pair.s2_cloudy))
                cloudy_idx, _ = self._bands(cloudy_file, self.pair.s2_cloudy, cloudy=True)
                cloudy = enter_on_grid(stack, cloudy_file, s2, self.pair.s2_cloudy)
            for row in self.rows:
                for col in self.cols:
                    yield self._tile(s1, vv_vh, s2, cloudy, cloudy_idx, row, col)

    def _tile(
        self, s1: Any, vv_vh: tuple[int, int], s2: Any, cloudy: Any, cloudy_idx: Any, row: int, col: int
    ) -> PreparedTile | Skipped:
        from rasterio.windows import Window, transform

        size = self.options.tile_size
        name = f"{self.name}_r{row:05d}_c{col:05d}"
        window = Window(col, row, size, size)
        pixels = Pixels(
            s1=s1.read(list(vv_vh), window=window),
            s2=s2.read(list(self.s2_indexes), window=window),
            s1_nodata=s1.nodata,
            s2_nodata=s2.nodata,
            s1_linear=self.options.s1_linear,
        )
        if cloudy is not None:
            pixels.cloudy = cloudy.read(list(cloudy_idx), window=window)
            pixels.cloudy_nodata = cloudy.nodata
        result = assemble(pixels, self.options.max_nodata)
        if isinstance(result, str):
            return Skipped(name, result)
        block_px = self.options.block_size * self.options.stride
        rows, cols = block_span(row, size, block_px), block_span(col, size, block_px)
        meta: dict[str, Any] = {
            "name": name,
            "units": tile_units(),
            "s1_product": self.options.s1_product,
            "s2_level": self.s2_level,
            "height": size,
            "width": size,
            "valid_fraction": round(result.valid_fraction, 6),
            "source": {
                "s1": str(self.pair.s1),
                "s2": str(self.pair.s2),
                "s2_bands": list(self.s2_order),
                "row": row,
                "col": col,
            },
        }
        if s2.crs is not None:
            meta["crs"] = s2.crs.to_string()
            meta["transform"] = list(transform(window, s2.transform))[:6]
        if cloudy is not None:
            meta["source"]["s2_cloudy"] = str(self.pair.s2_cloudy)
            meta["source"]["s2_cloudy_bands"] = list(self.cloudy_order or ())
        if result.opt_v2_mask is not None:
            meta["opt_v2_clear_fraction"] = round(float(result.opt_v2_mask.mean()), 6)
        if result.warnings:
            meta["warnings"] = result.warnings
        return PreparedTile(
            name=name,
            arrays=result.arrays,
            meta=meta,
            block=f"{self.name}:{row // block_px}:{col // block_px}",
            touches=frozenset(f"{self.name}:{r}:{c}" for r in rows for c in cols),
            opt_v2=result.opt_v2,
            opt_v2_mask=result.opt_v2_mask,
        )
