"""Tiles for inference only: S1 and (optionally) opt_v2, no ground truth (``--s1 [--opt-v2]`` without ``--s2``).

The opt_v2 scene (4 bands, B2, B3, B4, B8 in reflectance x 10000), or the S1 scene when
there is none, defines the tile grid; S1 is resampled onto an opt_v2 grid it is not on.
Each window becomes a tile with only ``s1_vv`` and ``s1_vh`` (plus ``valid`` when some
pixels are invalid) and a JSON marked ``"ground_truth": false`` without a split; its
opt_v2 window is written as a Stage 2 output (``stage2/<name>.npz``, key ``opt_v2``), so
``infer --input-dir <out>/infer --stage2-dir <out>/stage2`` runs on them as they are. Tiles
cut from S1 alone wait for Stage 2 outputs named like them (``<S1 stem>_r<row>_c<col>``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from axion.bands import OPTICAL_BANDS, S1_KEYS, S1_UNITS
from axion.data.grid import enter_on_grid
from axion.data.prepare.scene import SceneOptions, WindowedScene, scene_windows
from axion.data.prepare.tile import (
    TOO_MANY_INVALID,
    PreparedTile,
    Skipped,
    s1_invalid,
    s2_invalid,
)
from axion.data.raster import fill_invalid, open_geotiff, s1_band_indexes
from axion.data.tilefile import GROUND_TRUTH_KEY, VALID_KEY
from axion.data.units import linear_to_db
from axion.errors import DataError


@dataclass(frozen=True)
class InferencePair:
    """One scene for inference: S1 (VV, VH) and optionally its opt_v2."""

    s1: Path
    opt_v2: Path | None = None


def _check_opt_v2(src: Any, path: Path) -> None:
    if src.count != len(OPTICAL_BANDS):
        raise DataError(
            f"{path}: opt_v2 scene has {src.count} band(s), expected {len(OPTICAL_BANDS)} "
            f"({', '.join(OPTICAL_BANDS)}, reflectance x 10000)"
        )


class InferenceSceneSource(WindowedScene):
    """Cuts one :class:`InferencePair` into inference-only tiles."""

    def __init__(self, pair: InferencePair, options: SceneOptions) -> None:
        self.pair = pair
        self.options = options
        reference = pair.opt_v2 if pair.opt_v2 is not None else pair.s1
        self.name = reference.stem
        with open_geotiff(reference) as ref:
            if pair.opt_v2 is not None:
                _check_opt_v2(ref, reference)
            else:
                s1_band_indexes(ref, reference)
            self.height, self.width = ref.height, ref.width
        self.rows, self.cols = scene_windows(reference, self.height, self.width, options)

    def tiles(self) -> Iterator[PreparedTile | Skipped]:
        """Every window, as a tile or a skip."""
        with contextlib.ExitStack() as stack:
            s1_file = stack.enter_context(open_geotiff(self.pair.s1))
            vv_vh = s1_band_indexes(s1_file, self.pair.s1)
            s1, opt, ref = s1_file, None, s1_file
            if self.pair.opt_v2 is not None:
                opt = ref = stack.enter_context(open_geotiff(self.pair.opt_v2))
                s1 = enter_on_grid(stack, s1_file, ref, self.pair.s1)
            for row in self.rows:
                for col in self.cols:
                    yield self._tile(s1, vv_vh, opt, ref, row, col)

    def _tile(
        self, s1: Any, vv_vh: tuple[int, int], opt: Any, ref: Any, row: int, col: int
    ) -> PreparedTile | Skipped:
        from rasterio.windows import Window, transform

        size = self.options.tile_size
        name = f"{self.name}_r{row:05d}_c{col:05d}"
        window = Window(col, row, size, size)
        s1_pixels = s1.read(list(vv_vh), window=window)
        invalid = s1_invalid(s1_pixels, s1.nodata, self.options.s1_linear)
        opt_pixels = None
        if opt is not None:
            opt_pixels = opt.read(window=window).astype(np.float32)
            invalid |= s2_invalid(opt_pixels, opt.nodata)
        fraction_invalid = float(invalid.mean())
        if fraction_invalid > self.options.max_nodata:
            return Skipped(name, TOO_MANY_INVALID)
        s1_db = s1_pixels.astype(np.float32)
        s1_db = fill_invalid(linear_to_db(s1_db) if self.options.s1_linear else s1_db, invalid)
        arrays = {key: s1_db[i] for i, key in enumerate(S1_KEYS)}
        if invalid.any():
            arrays[VALID_KEY] = (~invalid).astype(np.uint8)
        source: dict[str, Any] = {"s1": str(self.pair.s1), "row": row, "col": col}
        if self.pair.opt_v2 is not None:
            source["opt_v2"] = str(self.pair.opt_v2)
        meta: dict[str, Any] = {
            "name": name,
            GROUND_TRUTH_KEY: False,
            "units": {"s1": S1_UNITS},
            "height": size,
            "width": size,
            "valid_fraction": round(1.0 - fraction_invalid, 6),
            "source": source,
        }
        if ref.crs is not None:
            meta["crs"] = ref.crs.to_string()
            meta["transform"] = list(transform(window, ref.transform))[:6]
        block = f"{self.name}:{row}:{col}"
        return PreparedTile(
            name=name,
            arrays=arrays,
            meta=meta,
            block=block,
            touches=frozenset({block}),
            opt_v2=None if opt_pixels is None else fill_invalid(opt_pixels, invalid),
        )
