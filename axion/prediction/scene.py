"""Whole-scene inference: overlapping tiles on opt_v2's grid, raised-cosine blending, strip-wise I/O.

The opt_v2 scene (4 bands, B2, B3, B4, B8 in tile units) defines the output grid. The
S1 scene (2 bands, VV and VH in dB) may have any CRS and resolution: unless it is on
the very same grid it is reprojected onto opt_v2's grid on the fly, window by window,
through a bilinear :class:`rasterio.vrt.WarpedVRT` (bilinear in dB). A pixel where
either input is nodata (or outside the S1 footprint) is nodata in the output. An optional
cloud mask on opt_v2's grid (0 cloudy) has each tile's cloudy opt_v2 pixels filled from its clear
ones before the model sees them (:mod:`axion.cloudfill`), as tile mode does with ``opt_v2_mask``.

The grid is cut into square tiles of ``tile_size`` pixels that overlap by ``overlap``
pixels (the last row and column are shifted back so they end on the scene border). Each
prediction is weighted by a separable window that is 1 inside the tile and falls off as
a raised cosine over the ``overlap`` pixels next to every neighbouring tile (no fall-off
on the scene border); the output is the weighted sum divided by the sum of weights, so
neighbouring tiles fade into each other without seams. With several samples per tile the
standard deviation is blended the same way, as a variance.

Memory stays bounded by one strip of tile rows (one per process): tiles are read window
by window, and rows of the output are written (and dropped from the accumulators) as
soon as no later tile reaches them. Several processes (:class:`Shard`) each predict whole
strips and the first one blends and writes them in order, so the result does not depend
on how many processes ran. Outputs are Cloud-Optimized GeoTIFFs (:mod:`axion.writers.cog`),
renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from axion.bands import OPTICAL_BANDS, PATCH_SIZE, S1_KEYS
from axion.data.raster import fill_invalid
from axion.errors import ConfigError, DataError
from axion.prediction.parallel import LocalShard, Shard
from axion.writers.cog import OutputDtype, RasterSpec, cog_writer


@dataclass(frozen=True)
class Prediction:
    """What the model gives for a batch of tiles: opt_v3 and, with several samples, its spread.

    Attributes:
        mean: (B, 4, T, T) tile units.
        std: (B, 4, T, T) tile units, or None for a single sample.
    """

    mean: np.ndarray
    std: np.ndarray | None = None


#: (s1 (B, 2, T, T) dB, opt_v2 (B, 4, T, T) tile units, tile names) -> opt_v3 (B, 4, T, T) or a Prediction.
PredictFn = Callable[[np.ndarray, np.ndarray, list[str]], "np.ndarray | Prediction"]


@dataclass(frozen=True)
class SceneInfo:
    """Two validated input scenes; the output grid is opt_v2's.

    Attributes:
        s1, opt_v2: the input files.
        height, width, crs, transform: opt_v2's grid (``crs`` may be None).
        s1_reprojected: True when S1 is resampled onto that grid (it is on another one).
        opt_v2_mask: where opt_v2 is clear (one band on its grid, 0 cloudy), or None: clear everywhere.
    """

    s1: Path
    opt_v2: Path
    height: int
    width: int
    crs: Any  # rasterio CRS or None
    transform: Any  # affine.Affine
    s1_reprojected: bool = False
    opt_v2_mask: Path | None = None


@dataclass(frozen=True)
class SceneOutputs:
    """The files of one output scene: opt_v3, its standard deviation, and the STAC Item."""

    tif: Path
    std: Path
    item: Path

    @classmethod
    def beside(cls, output: Path) -> SceneOutputs:
        """``<stem>.tif``, ``<stem>_std.tif`` and ``<stem>.json`` in the output's folder."""
        output = Path(output)
        return cls(
            tif=output,
            std=output.with_name(f"{output.stem}_std{output.suffix}"),
            item=output.with_suffix(".json"),
        )

    def existing(self) -> list[Path]:
        return [path for path in (self.tif, self.std, self.item) if path.exists()]


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
def check_band_counts(s1: tuple[Any, int], opt_v2: tuple[Any, int], what: str) -> None:
    """Refuse S1 without exactly VV, VH or opt_v2 without exactly B2, B3, B4, B8.

    Args:
        s1, opt_v2: (where it comes from, its number of bands).
        what: how the message names the inputs (``scene``, ``array``).

    Raises:
        DataError: ``<where>: S1 <what> has N band(s), expected 2 (VV, VH in dB)`` (or opt_v2's).
    """
    (s1_name, s1_count), (opt_name, opt_count) = s1, opt_v2
    if s1_count != len(S1_KEYS):
        raise DataError(
            f"{s1_name}: S1 {what} has {s1_count} band(s), expected {len(S1_KEYS)} (VV, VH in dB)"
        )
    if opt_count != len(OPTICAL_BANDS):
        raise DataError(
            f"{opt_name}: opt_v2 {what} has {opt_count} band(s), expected {len(OPTICAL_BANDS)} "
            f"({', '.join(OPTICAL_BANDS)})"
        )


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


def _check_overlap(s1: Any, opt: Any, s1_path: Path) -> None:
    """S1 on another grid must have a CRS and cover some of opt_v2's footprint."""
    from rasterio.warp import transform_bounds

    if s1.crs is None or opt.crs is None:
        which = "S1 scene" if s1.crs is None else f"opt_v2 scene {opt.name}"
        raise DataError(
            f"{s1_path}: S1 scene is on another pixel grid than the opt_v2 scene and the {which} has no CRS "
            "to reproject with"
        )
    left, bottom, right, top = transform_bounds(s1.crs, opt.crs, *s1.bounds, densify_pts=21)
    o = opt.bounds
    if left >= o.right or right <= o.left or bottom >= o.top or top <= o.bottom:
        raise DataError(f"{s1_path}: S1 scene does not overlap the opt_v2 scene {opt.name}")


def _check_outputs(outputs: SceneOutputs, inputs: tuple[Path, ...], overwrite: bool) -> None:
    output = outputs.tif
    if output.suffix.lower() not in {".tif", ".tiff"}:
        raise DataError(f"{output}: output scene must be a .tif or .tiff file")
    resolved = {path.resolve() for path in inputs}
    for path in (outputs.tif, outputs.std, outputs.item):
        if path.resolve() in resolved:
            raise DataError(f"{path}: an output of this scene would overwrite an input scene")
        if path.exists() and not path.is_file():
            raise DataError(f"{path}: output path exists and is not a file")
    existing = outputs.existing()
    if existing and not overwrite:
        state = "" if outputs.item.exists() else f" from an incomplete run (no {outputs.item.name})"
        raise DataError(f"{existing[0]}: output scene already exists{state}; use --overwrite to replace it")


def validate_scene(
    s1_path: Path,
    opt_path: Path,
    output: Path,
    *,
    overwrite: bool = False,
    opt_v2_mask: Path | None = None,
) -> SceneInfo:
    """Check the scenes and the output paths before anything is written.

    Raises:
        DataError: a missing or unreadable file, wrong band counts, an S1 scene that cannot be
            put on opt_v2's grid (no CRS) or does not overlap it, a mask not on opt_v2's grid,
            an output that is an input, or exists already (without ``overwrite``). A missing
            folder is created by the caller.
    """
    from axion.data.grid import same_grid

    s1_path, opt_path, output = Path(s1_path), Path(opt_path), Path(output)
    with _open(s1_path, "S1 scene") as s1, _open(opt_path, "opt_v2 scene") as opt:
        check_band_counts((s1_path, s1.count), (opt_path, opt.count), "scene")
        reprojected = not same_grid(s1, opt)
        if reprojected:
            _check_overlap(s1, opt, s1_path)
        if opt_v2_mask is not None:
            opt_v2_mask = Path(opt_v2_mask)
            _check_mask(opt_v2_mask, opt)
        info = SceneInfo(
            s1=s1_path,
            opt_v2=opt_path,
            height=opt.height,
            width=opt.width,
            crs=opt.crs,
            transform=opt.transform,
            s1_reprojected=reprojected,
            opt_v2_mask=opt_v2_mask,
        )
    inputs = (s1_path, opt_path) if opt_v2_mask is None else (s1_path, opt_path, opt_v2_mask)
    _check_outputs(SceneOutputs.beside(output), inputs, overwrite)
    return info


def _check_mask(path: Path, opt: Any) -> None:
    """The opt_v2 mask scene is one band on the opt_v2 scene's very grid (it is not resampled)."""
    from axion.data.grid import same_grid

    with _open(path, "opt_v2 mask scene") as mask:
        if mask.count != 1:
            raise DataError(
                f"{path}: opt_v2 mask scene has {mask.count} bands, expected 1 (0 cloudy, other values clear)"
            )
        if not same_grid(mask, opt):
            raise DataError(
                f"{path}: opt_v2 mask scene is not on the pixel grid of the opt_v2 scene {opt.name} "
                f"({mask.height}x{mask.width} px, {mask.crs or 'no CRS'}; the scene {opt.height}x{opt.width} px, "
                f"{opt.crs or 'no CRS'}, or another transform)"
            )


@contextlib.contextmanager
def scene_readers(info: SceneInfo) -> Iterator[tuple[Any, Any, Any]]:
    """(S1 on opt_v2's grid, opt_v2, opt_v2's mask or None): open datasets to read windows from."""
    import rasterio

    from axion.data.grid import enter_on_grid

    with contextlib.ExitStack() as stack:
        opt = stack.enter_context(rasterio.open(info.opt_v2))
        s1_file = stack.enter_context(rasterio.open(info.s1))
        mask = None if info.opt_v2_mask is None else stack.enter_context(rasterio.open(info.opt_v2_mask))
        yield enter_on_grid(stack, s1_file, opt, info.s1), opt, mask


# --- tiled inference ----------------------------------------------------------------------------
def invalid_pixels(pixels: np.ndarray, nodata: float | None) -> np.ndarray:
    """(h, w) True where any band is non-finite or equals the file's nodata value."""
    bad = ~np.isfinite(pixels).all(axis=0)
    if nodata is not None and np.isfinite(nodata):
        bad |= (pixels == nodata).any(axis=0)
    return bad


def clear_pixels(mask: np.ndarray, nodata: float | None) -> np.ndarray:
    """(h, w) True where an opt_v2 mask window says opt_v2 is clear: any value but 0 (nodata and
    non-finite values count as clear: the mask does not know, so opt_v2 is used as it is)."""
    clear = mask != 0
    clear |= ~np.isfinite(mask)
    if nodata is not None and np.isfinite(nodata):
        clear |= mask == nodata
    return clear


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    pad_h, pad_w = size - array.shape[-2], size - array.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return array
    return np.pad(array, ((0, 0), (0, pad_h), (0, pad_w)), mode="symmetric")


def _as_prediction(result: np.ndarray | Prediction) -> Prediction:
    return result if isinstance(result, Prediction) else Prediction(mean=np.asarray(result))


def predict_strip(
    readers: tuple[Any, Any, Any],
    info: SceneInfo,
    grid: TileGrid,
    index: int,
    predict_fn: PredictFn,
    *,
    batch_size: int,
    with_std: bool,
    on_tile: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Predict the tiles of tile row ``index``.

    Returns:
        ``mean`` (and ``std``) (columns, 4, T, T) float32 and ``invalid`` (columns, T, T)
        uint8, each tile padded to T x T (cropped again when blended).
    """
    from rasterio.windows import Window

    s1_src, opt_src, mask_src = readers
    size = grid.tile_size
    row = grid.rows[index]
    h = min(size, info.height - row)
    stem = info.s1.stem
    columns = len(grid.cols)
    mean = np.zeros((columns, len(OPTICAL_BANDS), size, size), np.float32)
    std = np.zeros_like(mean) if with_std else None
    invalid = np.ones((columns, size, size), np.uint8)
    for start in range(0, columns, batch_size):
        cols = grid.cols[start : start + batch_size]
        s1_batch, opt_batch, names = [], [], []
        for k, col in enumerate(cols):
            w = min(size, info.width - col)
            window = Window(col, row, w, h)
            s1 = s1_src.read(window=window).astype(np.float32)
            opt = opt_src.read(window=window).astype(np.float32)
            if mask_src is not None:  # this tile's cloudy pixels filled from its clear ones
                from axion.cloudfill import fill_cloudy_arrays  # torch: only a masked scene needs it here

                clear = clear_pixels(mask_src.read(1, window=window), mask_src.nodata)
                opt = fill_cloudy_arrays(opt[None], clear[None, None], opt_src.nodata)[0]
            bad = invalid_pixels(s1, s1_src.nodata) | invalid_pixels(opt, opt_src.nodata)
            s1_batch.append(_pad(fill_invalid(s1, bad), size))
            opt_batch.append(_pad(fill_invalid(opt, bad), size))
            invalid[start + k, :h, :w] = bad
            names.append(tile_name(stem, row, col))
        prediction = _as_prediction(predict_fn(np.stack(s1_batch), np.stack(opt_batch), names))
        if with_std and prediction.std is None:
            raise ValueError("the model gave no standard deviation, and one is to be written")
        for k in range(len(cols)):
            mean[start + k] = prediction.mean[k]
            if std is not None:
                std[start + k] = prediction.std[k]  # type: ignore[index]
            if on_tile is not None:
                on_tile()
    strip = {"mean": mean, "invalid": invalid}
    if std is not None:
        strip["std"] = std
    return strip


def _empty_strip(grid: TileGrid, with_std: bool) -> dict[str, np.ndarray]:
    """Zeros shaped like :func:`predict_strip`'s result (every process must gather the same shapes)."""
    size, columns = grid.tile_size, len(grid.cols)
    strip = {
        "mean": np.zeros((columns, len(OPTICAL_BANDS), size, size), np.float32),
        "invalid": np.ones((columns, size, size), np.uint8),
    }
    if with_std:
        strip["std"] = np.zeros_like(strip["mean"])
    return strip


def strips_in_order(
    readers: tuple[Any, Any, Any],
    info: SceneInfo,
    grid: TileGrid,
    predict_fn: PredictFn,
    *,
    batch_size: int,
    with_std: bool,
    shard: Shard,
    on_tile: Callable[[], None] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Every tile row's predictions, in order; each process predicts every ``world_size``-th row.

    Rows are predicted in rounds of ``world_size`` (one per process) and gathered, so every
    process sees every row (only the first one uses them).
    """
    rows = len(grid.rows)
    alone = shard.world_size == 1
    for first in range(0, rows, shard.world_size):
        mine = first + shard.rank
        if mine < rows:
            local = predict_strip(
                readers,
                info,
                grid,
                mine,
                predict_fn,
                batch_size=batch_size,
                with_std=with_std,
                on_tile=on_tile if alone else None,
            )
        else:  # no row left for this process in the last round: its share of the gather is empty
            local = _empty_strip(grid, with_std)
        for rank, strip in enumerate(shard.gather(local)):
            if first + rank < rows:
                if not alone and on_tile is not None:
                    for _ in grid.cols:
                        on_tile()
                yield strip


class _Strip:
    """Weighted sums for the output rows ``[top, top + capacity)`` of the whole scene width.

    The buffers are allocated once (``capacity`` = one tile of rows, the most a strip keeps
    between two tile rows) and the unfinished rows moved to their top after each pop, so
    memory does not depend on the scene's height and no strip-sized copy is made.
    """

    def __init__(self, width: int, capacity: int, with_std: bool) -> None:
        self.top, self.width = 0, width
        bands = len(OPTICAL_BANDS)
        self.sums = np.zeros((bands, capacity, width), np.float64)
        self.var_sums = np.zeros((bands, capacity, width), np.float64) if with_std else None
        self.weights = np.zeros((capacity, width), np.float64)
        self.invalid = np.zeros((capacity, width), bool)

    def add(
        self,
        row: int,
        col: int,
        weight: np.ndarray,
        invalid: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray | None,
    ) -> None:
        h, w = weight.shape
        rows, cols = slice(row - self.top, row - self.top + h), slice(col, col + w)
        self.sums[:, rows, cols] += np.where(invalid, 0.0, mean) * weight
        if self.var_sums is not None and std is not None:
            self.var_sums[:, rows, cols] += np.where(invalid, 0.0, std.astype(np.float64) ** 2) * weight
        self.weights[rows, cols] += weight
        self.invalid[rows, cols] |= invalid

    def pop(self, bottom: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """The finished rows ``[top, bottom)`` (float32): blended mean, standard deviation (or None), invalid."""
        n = bottom - self.top
        weights = np.where(self.weights[:n] > 0, self.weights[:n], 1.0)  # 0 only where nothing was added
        # Divided in place: these rows leave the buffers now.
        mean = np.divide(self.sums[:, :n], weights, out=self.sums[:, :n]).astype(np.float32)
        std = None
        if self.var_sums is not None:
            variance = np.divide(self.var_sums[:, :n], weights, out=self.var_sums[:, :n])
            std = np.sqrt(variance, out=variance).astype(np.float32)
        invalid = self.invalid[:n] | (self.weights[:n] == 0)
        for buffer in (self.sums, self.var_sums):
            if buffer is not None:
                buffer[:, : buffer.shape[1] - n] = buffer[:, n:]
                buffer[:, buffer.shape[1] - n :] = 0.0
        self.weights[: self.weights.shape[0] - n] = self.weights[n:]
        self.weights[self.weights.shape[0] - n :] = 0.0
        self.invalid[: self.invalid.shape[0] - n] = self.invalid[n:]
        self.invalid[self.invalid.shape[0] - n :] = False
        self.top = bottom
        return mean, std, invalid


def run_scene(
    info: SceneInfo,
    output: Path,
    predict_fn: PredictFn,
    *,
    tile_size: int,
    overlap: int,
    batch_size: int = 1,
    dtype: OutputDtype = "float32",
    tags: dict[str, str] | None = None,
    std_output: Path | None = None,
    std_tags: dict[str, str] | None = None,
    shard: Shard | None = None,
    on_tile: Callable[[], None] | None = None,
) -> TileGrid:
    """Predict a whole scene tile by tile and write the blended opt_v3 COG (and its spread).

    Args:
        info: validated inputs (see :func:`validate_scene`).
        output: the COG to write (atomically: nothing is left on failure).
        predict_fn: the model on a batch of tiles.
        tile_size: tile side in pixels (multiple of 16).
        overlap: pixels shared by neighbouring tiles, blended with a raised cosine.
        batch_size: tiles per model call.
        dtype: sample type of the COGs (see :mod:`axion.writers.cog`).
        tags: GeoTIFF metadata of ``output``.
        std_output: where the per-pixel standard deviation goes (``predict_fn`` must give one).
        std_tags: GeoTIFF metadata of ``std_output``.
        shard: this process's share of a multi-process run; only rank 0 writes.
        on_tile: called once per tile (progress).

    Returns:
        The tile grid used.
    """
    grid = make_grid(info.height, info.width, tile_size, overlap)
    shard = shard or LocalShard()
    with_std = std_output is not None
    geo = {"height": info.height, "width": info.width, "crs": info.crs, "transform": info.transform}
    with contextlib.ExitStack() as stack:
        # Writers first, readers last: the readers (and their warp buffers) are closed before
        # the writers turn their strips into COGs.
        writer = std_writer = None
        if shard.rank == 0:
            writer = stack.enter_context(cog_writer(output, RasterSpec(dtype), tags=tags, **geo))
            if std_output is not None:
                spec = RasterSpec(dtype, spread=True)
                std_writer = stack.enter_context(cog_writer(std_output, spec, tags=std_tags, **geo))
        readers = stack.enter_context(scene_readers(info))
        strips = strips_in_order(
            readers,
            info,
            grid,
            predict_fn,
            batch_size=batch_size,
            with_std=with_std,
            shard=shard,
            on_tile=on_tile,
        )
        if writer is None:  # not the first process: predict and hand the strips over
            for _ in strips:
                pass
        else:
            blend_strips(strips, grid, info, writer, std_writer)
    return grid


def blend_strips(
    strips: Iterator[dict[str, np.ndarray]], grid: TileGrid, info: SceneInfo, writer: Any, std_writer: Any
) -> None:
    """Blend the strips in order and write every row as soon as no later tile reaches it.

    ``writer`` (and ``std_writer``, or None) take ``write(rows, top, invalid)``: (4, h, width)
    float32 tile units for the rows ``[top, top + h)`` and where they are invalid, as
    :class:`axion.writers.cog.StripWriter` does.
    """
    size, overlap = grid.tile_size, grid.overlap
    accumulator = _Strip(info.width, size, std_writer is not None)
    for r, strip in enumerate(strips):
        row = grid.rows[r]
        h = min(size, info.height - row)
        wy = ramp(size, overlap, r > 0, r < len(grid.rows) - 1)[:h]
        for c, col in enumerate(grid.cols):
            w = min(size, info.width - col)
            wx = ramp(size, overlap, c > 0, c < len(grid.cols) - 1)[:w]
            std = strip["std"][c][:, :h, :w] if "std" in strip else None
            accumulator.add(
                row,
                col,
                np.outer(wy, wx),
                strip["invalid"][c][:h, :w].astype(bool),
                strip["mean"][c][:, :h, :w],
                std,
            )
        done = grid.rows[r + 1] if r + 1 < len(grid.rows) else info.height
        top = accumulator.top
        mean, spread, invalid = accumulator.pop(done)
        writer.write(mean, top, invalid)
        if std_writer is not None and spread is not None:
            std_writer.write(spread, top, invalid)
