"""A scene held in memory, predicted exactly as scene mode predicts a scene file.

The arrays are cut into the same overlapping tiles (:func:`axion.prediction.scene.make_grid`),
each tile is read, padded and seeded as :func:`axion.prediction.scene.predict_strip` does, and
the predictions are blended with the same raised-cosine windows
(:func:`axion.prediction.scene.blend_strips`): only the readers and writers differ (numpy
arrays in place of rasters). A pixel that is non-finite (or equals ``nodata``) in either
input is NaN in the output, as it is nodata in a written scene.

The inputs are checked as a tile's arrays are (:mod:`axion.data.plausible`): values no
Sentinel-1 or Sentinel-2 product holds in tile units are refused with one line, values
that are only suspicious come back as warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from axion.bands import OPTICAL_BANDS
from axion.data.plausible import optical_findings, s1_findings
from axion.errors import DataError
from axion.prediction.parallel import LocalShard
from axion.prediction.scene import (
    PredictFn,
    SceneInfo,
    blend_strips,
    check_band_counts,
    invalid_pixels,
    make_grid,
    strips_in_order,
)


@dataclass(frozen=True)
class ArrayPrediction:
    """opt_v3 of an in-memory scene.

    Attributes:
        mean: (4, H, W) float32 tile units, NaN where an input pixel is invalid.
        std: (4, H, W) float32 per-pixel standard deviation over the samples (None for one sample).
        invalid: (H, W) bool, True where an input pixel is invalid.
    """

    mean: np.ndarray
    std: np.ndarray | None
    invalid: np.ndarray


class _ArrayReader:
    """A (C, H, W) array read window by window, as scene mode reads a rasterio dataset."""

    def __init__(self, array: np.ndarray, nodata: float | None) -> None:
        self.array, self.nodata = array, nodata

    def read(self, window: Any) -> np.ndarray:
        top, left = int(window.row_off), int(window.col_off)
        return self.array[:, top : top + int(window.height), left : left + int(window.width)]


class _ArrayWriter:
    """The blended rows kept in a (4, H, W) float32 array, NaN where invalid."""

    def __init__(self, height: int, width: int) -> None:
        self.values = np.full((len(OPTICAL_BANDS), height, width), np.nan, np.float32)

    def write(self, values: np.ndarray, top: int, invalid: np.ndarray | None = None) -> None:
        rows = values if invalid is None else np.where(invalid, np.nan, values)
        self.values[:, top : top + values.shape[1]] = rows


def check_scene_arrays(
    s1: np.ndarray,
    opt_v2: np.ndarray,
    names: tuple[str, str] = ("s1", "opt_v2"),
    nodata: tuple[float | None, float | None] = (None, None),
) -> list[str]:
    """Refuse (C, H, W) inputs scene mode would refuse, or whose values cannot be in tile units.

    Args:
        s1: VV, VH in dB.
        opt_v2: B2, B3, B4, B8 in tile units (reflectance x 10000).
        names: how messages name the two inputs.
        nodata: their no-data values (None: only non-finite values); such pixels are not checked.

    Returns:
        Warnings about values that are only suspicious (``<name>: <reason>``).

    Raises:
        DataError: ``<name>: <problem>`` for a wrong number of bands, a non-numeric dtype, sizes
            that differ, or values of the wrong units (linear S1, reflectance 0-1, no-data values).
    """
    for array, name in ((s1, names[0]), (opt_v2, names[1])):
        if array.ndim != 3:
            raise DataError(f"{name}: array has shape {tuple(array.shape)}, expected (bands, H, W)")
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise DataError(f"{name}: array has non-numeric dtype {array.dtype}")
    check_band_counts((names[0], s1.shape[0]), (names[1], opt_v2.shape[0]), "array")
    if s1.shape[1:] != opt_v2.shape[1:]:
        raise DataError(
            f"{names[0]}: shape mismatch: {names[0]} {tuple(s1.shape)}, {names[1]} {tuple(opt_v2.shape)} "
            "(both on one pixel grid)"
        )
    valid = ~(invalid_pixels(s1, nodata[0]) | invalid_pixels(opt_v2, nodata[1]))
    warnings: list[str] = []
    for findings, name in (
        (s1_findings(s1, valid), names[0]),
        (optical_findings(opt_v2, valid, what="opt_v2"), names[1]),
    ):
        for finding in findings:
            if finding.fatal:
                raise DataError(f"{name}: {finding}")
            warnings.append(f"{name}: {finding}")
    return warnings


def predict_arrays(
    s1: np.ndarray,
    opt_v2: np.ndarray,
    predict_fn: PredictFn,
    *,
    tile_size: int,
    overlap: int,
    batch_size: int = 1,
    with_std: bool = False,
    name: str = "scene",
    nodata: tuple[float | None, float | None] = (None, None),
) -> ArrayPrediction:
    """Predict an in-memory scene tile by tile and blend it, as scene mode does a scene file.

    Args:
        s1: (2, H, W) dB; opt_v2: (4, H, W) tile units; checked with :func:`check_scene_arrays` first.
        predict_fn: the model on a batch of tiles (see :data:`axion.prediction.scene.PredictFn`).
        tile_size, overlap, batch_size: as ``infer --tile-size/--overlap/--batch-size``.
        with_std: blend the per-pixel standard deviation too (``predict_fn`` must give one).
        name: stands for the S1 file's stem: tile names, hence the per-tile noise, derive from it,
            so the same arrays and name give the same opt_v3 as scene mode on ``<name>.tif``.
        nodata: the S1 and opt_v2 no-data values (None: only non-finite values are invalid).

    Raises:
        ConfigError: a bad ``tile_size`` or ``overlap``.
    """
    height, width = opt_v2.shape[1:]
    grid = make_grid(height, width, tile_size, overlap)
    info = SceneInfo(s1=Path(name), opt_v2=Path(name), height=height, width=width, crs=None, transform=None)
    # No mask reader: a cloudy opt_v2 comes here filled already (over the whole array).
    readers = (_ArrayReader(s1, nodata[0]), _ArrayReader(opt_v2, nodata[1]), None)
    strips = strips_in_order(
        readers, info, grid, predict_fn, batch_size=batch_size, with_std=with_std, shard=LocalShard()
    )
    writer = _ArrayWriter(height, width)
    std_writer = _ArrayWriter(height, width) if with_std else None
    blend_strips(strips, grid, info, writer, std_writer)
    invalid = invalid_pixels(s1, nodata[0]) | invalid_pixels(opt_v2, nodata[1])
    return ArrayPrediction(writer.values, None if std_writer is None else std_writer.values, invalid)
