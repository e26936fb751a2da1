"""Whole-scene inference: overlapping tiles, raised-cosine blending, strip-wise GeoTIFF I/O.

A co-registered S1 scene (2 bands, VV and VH in dB) and opt_v2 scene (4 bands, B2,
B3, B4, B8 in tile units) are cut into square tiles of ``tile_size`` pixels that
overlap by ``overlap`` pixels (the last row and column are shifted back so they
end on the scene border). Each prediction is weighted by a separable window that
is 1 inside the tile and falls off as a raised cosine over the ``overlap`` pixels
next to every neighbouring tile (no fall-off on the scene border); the output is
the weighted sum divided by the sum of weights, so neighbouring tiles fade into
each other without seams.

Memory stays bounded by one strip of tile rows: tiles are read window by window,
and rows of the output are written (and dropped from the accumulators) as soon as
no later tile reaches them. The output is written to a temporary file and renamed
into place only when complete.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from axion.atomic import atomic_path
from axion.bands import OPTICAL_BANDS, PATCH_SIZE, S1_KEYS
from axion.data.prepare.tile import fill_invalid
from axion.errors import ConfigError, DataError

#: (s1 (B, 2, T, T) dB, opt_v2 (B, 4, T, T) tile units, tile names) -> opt_v3 (B, 4, T, T).
PredictFn = Callable[[np.ndarray, np.ndarray, list[str]], np.ndarray]
#: Block size of tiled output GeoTIFFs (pixels).
BLOCK_SIZE = 256


@dataclass(frozen=True)
class SceneInfo:
    """Two validated, co-registered input scenes."""

    s1: Path
    opt_v2: Path
    height: int
    width: int
    crs: Any  # rasterio CRS or None
    transform: Any  # affine.Affine
    s1_nodata: float | None
    opt_nodata: float | None


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a scene start, along rows and columns."""

    tile_size: int
    overlap: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)


def tile_starts(length: int, tile_size: int, stride: int) -> tuple[int, ...]:
    """Tile offsets covering ``[0, length)``: every ``stride``, the last one ending on the border."""
    if length <= tile_size:
        return (0,)
    starts = list(range(0, length - tile_size + 1, stride))
    if starts[-1] + tile_size < length:
        starts.append(length - tile_size)
    return tuple(starts)


def make_grid(height: int, width: int, tile_size: int, overlap: int) -> TileGrid:
    """The tile grid of a scene.

    Raises:
        ConfigError: ``tile_size`` not a positive multiple of 16, or ``overlap`` outside [0, tile_size).
    """
    if tile_size < PATCH_SIZE or tile_size % PATCH_SIZE:
        raise ConfigError(
            f"invalid tile_size (--tile-size) = {tile_size}: must be a multiple of {PATCH_SIZE}"
        )
    if not 0 <= overlap < tile_size:
        raise ConfigError(
            f"invalid overlap (--overlap) = {overlap}: must be >= 0 and < --tile-size {tile_size}"
        )
    stride = tile_size - overlap
    return TileGrid(
        tile_size, overlap, tile_starts(height, tile_size, stride), tile_starts(width, tile_size, stride)
    )


def ramp(tile_size: int, overlap: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    """1-D blending weights: 1 inside, a raised cosine over ``overlap`` pixels at faded ends.

    The ramp is sampled at pixel centres, so it never reaches 0, and two ramps facing
    each other over the same ``overlap`` pixels sum to exactly 1.
    """
    weights = np.ones(tile_size, dtype=np.float64)
    if overlap > 0:
        rise = 0.5 - 0.5 * np.cos(math.pi * (np.arange(overlap) + 0.5) / overlap)
        if fade_start:
            weights[:overlap] = np.minimum(weights[:overlap], rise)
        if fade_end:
            weights[-overlap:] = np.minimum(weights[-overlap:], rise[::-1])
    return weights


def tile_name(stem: str, row: int, col: int) -> str:
    """Name of a scene tile (its per-tile noise seed derives from it): ``<stem>_y<row>_x<col>``."""
    return f"{stem}_y{row}_x{col}"


# --- validation ---------------------------------------------------------------------------------
def _open(path: Path, what: str) -> Any:
    import rasterio
    from rasterio.errors import RasterioIOError

    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if not path.is_file():
        raise DataError(f"{path}: {what} is not a file")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else "unreadable"
        raise DataError(f"{path}: {what} is not a readable raster ({reason})") from None


def validate_scene(s1_path: Path, opt_path: Path, output: Path) -> SceneInfo:
    """Check both scenes and the output path before anything is written.

    Raises:
        DataError: a missing or unreadable file, wrong band counts, different sizes,
            CRS or transforms, or an output path that is an input or has no folder.
    """
    s1_path, opt_path, output = Path(s1_path), Path(opt_path), Path(output)
    with _open(s1_path, "S1 scene") as s1, _open(opt_path, "opt_v2 scene") as opt:
        if s1.count != len(S1_KEYS):
            raise DataError(
                f"{s1_path}: S1 scene has {s1.count} band(s), expected {len(S1_KEYS)} (VV, VH in dB)"
            )
        if opt.count != len(OPTICAL_BANDS):
            raise DataError(
                f"{opt_path}: opt_v2 scene has {opt.count} band(s), expected {len(OPTICAL_BANDS)} "
                f"({', '.join(OPTICAL_BANDS)})"
            )
        if (s1.height, s1.width) != (opt.height, opt.width):
            raise DataError(
                f"{opt_path}: opt_v2 scene is {opt.height}x{opt.width} px, the S1 scene {s1_path} is "
                f"{s1.height}x{s1.width} px (scenes must be co-registered)"
            )
        if (s1.crs is None) != (opt.crs is None) or (s1.crs is not None and s1.crs != opt.crs):
            raise DataError(
                f"{opt_path}: CRS {opt.crs.to_string() if opt.crs else None} differs from the S1 scene's "
                f"{s1.crs.to_string() if s1.crs else None} ({s1_path}); reproject one onto the other"
            )
        tolerance = 0.01 * min(abs(s1.transform.a), abs(s1.transform.e)) or 1e-9
        if not s1.transform.almost_equals(opt.transform, precision=tolerance):
            raise DataError(
                f"{opt_path}: geotransform {tuple(opt.transform)[:6]} differs from the S1 scene's "
                f"{tuple(s1.transform)[:6]} ({s1_path}); scenes must be co-registered pixel for pixel"
            )
        info = SceneInfo(
            s1=s1_path,
            opt_v2=opt_path,
            height=s1.height,
            width=s1.width,
            crs=s1.crs,
            transform=s1.transform,
            s1_nodata=s1.nodata,
            opt_nodata=opt.nodata,
        )
    if output.suffix.lower() not in {".tif", ".tiff"}:
        raise DataError(f"{output}: output scene must be a .tif or .tiff file")
    resolved = output.resolve()
    if resolved in {s1_path.resolve(), opt_path.resolve()}:
        raise DataError(f"{output}: output scene would overwrite an input scene")
    if output.exists() and not output.is_file():
        raise DataError(f"{output}: output scene path exists and is not a file")
    if not output.parent.is_dir():
        raise DataError(f"{output.parent}: folder of the output scene does not exist")
    return info


# --- GeoTIFF output -----------------------------------------------------------------------------
def geotiff_profile(height: int, width: int, crs: Any, transform: Any) -> dict[str, Any]:
    """Profile of a float32 four-band opt_v3 GeoTIFF (NaN marks pixels without a valid input)."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": len(OPTICAL_BANDS),
        "dtype": "float32",
        "nodata": float("nan"),
        "compress": "deflate",
        "predictor": 3,
        "BIGTIFF": "IF_SAFER",
    }
    if height >= BLOCK_SIZE and width >= BLOCK_SIZE:
        profile.update(tiled=True, blockxsize=BLOCK_SIZE, blockysize=BLOCK_SIZE)
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    return profile


@contextmanager
def atomic_geotiff(path: Path, profile: dict[str, Any], tags: dict[str, str] | None = None) -> Iterator[Any]:
    """Open a temporary GeoTIFF beside ``path``; rename it to ``path`` only if the block succeeds.

    Band descriptions are the optical band names (B2, B3, B4, B8).
    """
    import rasterio

    with atomic_path(Path(path)) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for index, band in enumerate(OPTICAL_BANDS, start=1):
            dst.set_band_description(index, band)
        if tags:
            dst.update_tags(**tags)
        yield dst


def write_tile_geotiff(
    path: Path, opt_v3: np.ndarray, crs: Any, transform: Any, tags: dict[str, str]
) -> None:
    """Write one (4, H, W) tile as a float32 GeoTIFF, atomically."""
    profile = geotiff_profile(opt_v3.shape[1], opt_v3.shape[2], crs, transform)
    with atomic_geotiff(path, profile, tags) as dst:
        dst.write(opt_v3.astype(np.float32))


# --- tiled inference ----------------------------------------------------------------------------
def _invalid(pixels: np.ndarray, nodata: float | None) -> np.ndarray:
    """(h, w) True where any band is non-finite or equals the file's nodata value."""
    bad = ~np.isfinite(pixels).all(axis=0)
    if nodata is not None and np.isfinite(nodata):
        bad |= (pixels == nodata).any(axis=0)
    return bad


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    pad_h, pad_w = size - array.shape[-2], size - array.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return array
    return np.pad(array, ((0, 0), (0, pad_h), (0, pad_w)), mode="symmetric")


class _Strip:
    """Weighted sums for the output rows ``[top, top + rows)`` of the whole scene width."""

    def __init__(self, width: int) -> None:
        self.top, self.width = 0, width
        self.sums = np.zeros((len(OPTICAL_BANDS), 0, width), np.float64)
        self.weights = np.zeros((0, width), np.float64)
        self.invalid = np.zeros((0, width), bool)

    def extend_to(self, bottom: int) -> None:
        extra = bottom - (self.top + self.weights.shape[0])
        if extra > 0:
            self.sums = np.concatenate([self.sums, np.zeros((self.sums.shape[0], extra, self.width))], axis=1)
            self.weights = np.concatenate([self.weights, np.zeros((extra, self.width))], axis=0)
            self.invalid = np.concatenate([self.invalid, np.zeros((extra, self.width), bool)], axis=0)

    def add(self, row: int, col: int, pred: np.ndarray, weight: np.ndarray, invalid: np.ndarray) -> None:
        h, w = weight.shape
        rows, cols = slice(row - self.top, row - self.top + h), slice(col, col + w)
        self.sums[:, rows, cols] += np.where(invalid, 0.0, pred) * weight
        self.weights[rows, cols] += weight
        self.invalid[rows, cols] |= invalid

    def pop(self, bottom: int) -> np.ndarray:
        """The finished rows ``[top, bottom)`` as float32 (NaN where an input was invalid)."""
        n = bottom - self.top
        out = self.sums[:, :n] / self.weights[None, :n]
        out[:, self.invalid[:n]] = np.nan
        self.sums, self.weights, self.invalid = self.sums[:, n:], self.weights[n:], self.invalid[n:]
        self.top = bottom
        return out.astype(np.float32)


def run_scene(
    info: SceneInfo,
    output: Path,
    predict_fn: PredictFn,
    *,
    tile_size: int,
    overlap: int,
    batch_size: int = 1,
    tags: dict[str, str] | None = None,
    on_tile: Callable[[], None] | None = None,
) -> TileGrid:
    """Predict a whole scene tile by tile and write the blended opt_v3 GeoTIFF.

    Args:
        info: validated inputs (see :func:`validate_scene`).
        output: the GeoTIFF to write (atomically: nothing is left on failure).
        predict_fn: the model on a batch of tiles.
        tile_size: tile side in pixels (multiple of 16).
        overlap: pixels shared by neighbouring tiles, blended with a raised cosine.
        batch_size: tiles per model call.
        tags: GeoTIFF metadata to record.
        on_tile: called after each tile (progress).

    Returns:
        The tile grid used.
    """
    import rasterio
    from rasterio.windows import Window

    grid = make_grid(info.height, info.width, tile_size, overlap)
    stem = info.s1.stem
    profile = geotiff_profile(info.height, info.width, info.crs, info.transform)
    strip = _Strip(info.width)
    with (
        rasterio.open(info.s1) as s1_src,
        rasterio.open(info.opt_v2) as opt_src,
        atomic_geotiff(output, profile, tags) as dst,
    ):
        for r, row in enumerate(grid.rows):
            h = min(tile_size, info.height - row)
            strip.extend_to(row + h)
            wy = ramp(tile_size, overlap, r > 0, r < len(grid.rows) - 1)[:h]
            for start in range(0, len(grid.cols), batch_size):
                cols = grid.cols[start : start + batch_size]
                s1_batch, opt_batch, masks, names = [], [], [], []
                for col in cols:
                    w = min(tile_size, info.width - col)
                    window = Window(col, row, w, h)
                    s1 = s1_src.read(window=window).astype(np.float32)
                    opt = opt_src.read(window=window).astype(np.float32)
                    invalid = _invalid(s1, info.s1_nodata) | _invalid(opt, info.opt_nodata)
                    s1_batch.append(_pad(fill_invalid(s1, invalid), tile_size))
                    opt_batch.append(_pad(fill_invalid(opt, invalid), tile_size))
                    masks.append(invalid)
                    names.append(tile_name(stem, row, col))
                preds = predict_fn(np.stack(s1_batch), np.stack(opt_batch), names)
                for k, col in enumerate(cols):
                    c = start + k
                    w = masks[k].shape[1]
                    wx = ramp(tile_size, overlap, c > 0, c < len(grid.cols) - 1)[:w]
                    strip.add(row, col, preds[k][:, :h, :w], np.outer(wy, wx), masks[k])
                    if on_tile is not None:
                        on_tile()
            done = grid.rows[r + 1] if r + 1 < len(grid.rows) else info.height
            top = strip.top
            dst.write(strip.pop(done), window=Window(0, top, info.width, done - top))
    return grid
