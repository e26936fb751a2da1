"""Tiles from BigEarthNet-MM patch folders, and the demo pairs shipped in ``bigearthnet-common``.

An S1 patch folder holds ``<patch>_VV.tif``, ``<patch>_VH.tif`` (dB) and a JSON whose
``corresponding_s2_patch`` names the S2 L2A folder, which holds one GeoTIFF per band
(``<patch>_B02.tif`` ...). Each pair becomes one tile on the S2 10 m grid (120 x 120 px),
named after the S2 patch, or, with ``windows=(size, stride)``, one tile per window
(``<patch>_r<row>_c<col>``): the six demo pairs cut into 64 px windows every 28 px give 54
training tiles instead of 6. All windows of a patch share its block. For the split, patches are grouped into spatial blocks of
``block_size`` x ``block_size`` patches in map coordinates, so neighbouring patches stay
in the same split.
"""

from __future__ import annotations

import contextlib
import json
import math
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from axion.data.grid import on_grid_of
from axion.data.prepare.bandmap import WANTED
from axion.data.prepare.scene import window_origins
from axion.data.prepare.tile import Pixels, PreparedTile, Skipped, assemble, tile_units
from axion.errors import DataError

#: The package that ships the example patches, and its two archives.
DEMO_PACKAGE = "bigearthnet_common"
DEMO_ARCHIVES: tuple[str, str] = ("BigEarthNet-S1-Example.tar.bz2", "BigEarthNet-S2-Example.tar.bz2")
#: Skip reason of an S1 patch whose S2 partner is not in the S2 folder.
NO_S2_PATCH = "S2 patch not found"
#: BigEarthNet-MM pairs Sentinel-1 GRD with Sentinel-2 L2A.
S1_PRODUCT = "grd"
S2_LEVEL = "L2A"
#: Side of a BigEarthNet patch in pixels (1.2 km at 10 m).
PATCH_SIDE = 120


@dataclass(frozen=True)
class PatchPair:
    """One S1 patch folder and its S2 partner (``None`` when absent)."""

    s1_dir: Path
    s2_name: str
    s2_dir: Path | None


def _band_file(folder: Path, suffix: str) -> Path:
    matches = sorted(folder.glob(f"*_{suffix}.tif"))
    if not matches:
        raise DataError(f"{folder}: no *_{suffix}.tif in this patch folder")
    return matches[0]


def _s2_partner(s1_dir: Path) -> str:
    for meta_path in sorted(s1_dir.glob("*.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{meta_path}: invalid JSON ({type(exc).__name__})") from None
        if isinstance(meta, dict) and "corresponding_s2_patch" in meta:
            return str(meta["corresponding_s2_patch"])
    raise DataError(f"{s1_dir}: no JSON metadata naming 'corresponding_s2_patch' in this S1 patch folder")


def find_pairs(s1_root: Path, s2_root: Path) -> list[PatchPair]:
    """Every S1 patch folder below ``s1_root`` (sorted) with its S2 folder below ``s2_root``."""
    for root, flag in ((s1_root, "--bigearthnet-s1"), (s2_root, "--bigearthnet-s2")):
        if not root.is_dir():
            raise DataError(f"{root}: {flag} directory not found")
    s2_dirs = {path.parent.name: path.parent for path in s2_root.rglob("*_B02.tif")}
    s1_dirs = sorted({path.parent for path in s1_root.rglob("*_VV.tif")})
    if not s1_dirs:
        raise DataError(f"{s1_root}: no BigEarthNet S1 patch folders (with *_VV.tif) found")
    pairs = []
    for s1_dir in s1_dirs:
        name = _s2_partner(s1_dir)
        pairs.append(PatchPair(s1_dir=s1_dir, s2_name=name, s2_dir=s2_dirs.get(name)))
    return pairs


@contextlib.contextmanager
def extracted_demo(workdir: Path) -> Iterator[tuple[Path, Path]]:
    """Extract the example archives shipped in ``bigearthnet-common`` into ``workdir``.

    Yields:
        (S1 root, S2 root) of the extracted patch folders.
    """
    package = resources.files(DEMO_PACKAGE)
    roots = []
    for archive_name in DEMO_ARCHIVES:
        archive = package / archive_name
        if not archive.is_file():
            raise DataError(f"{DEMO_PACKAGE}: demo archive {archive_name} not found in the installed package")
        target = workdir / archive_name.removesuffix(".tar.bz2")
        with resources.as_file(archive) as path, tarfile.open(path, "r:bz2") as tar:
            _extract(tar, target, archive_name)
        roots.append(target)
    yield roots[0], roots[1]


def _extract(tar: tarfile.TarFile, target: Path, name: str) -> None:
    """Extract plain files and folders only, each inside ``target``.

    Python's ``data`` filter does this where it exists (3.12, and 3.11.4 on); an older 3.11 (such
    as some Debian 12 builds) gets the same checks here.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(target, filter="data")
        return
    members = tar.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if not (member.isfile() or member.isdir()) or Path(member.name).is_absolute() or ".." in parts:
            raise DataError(f"{DEMO_PACKAGE}: demo archive {name} has an unsafe member {member.name!r}")
    tar.extractall(target, members=members)


def _read_single(path: Path, ref: Any) -> tuple[np.ndarray, float | None]:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src, on_grid_of(src, ref, name=str(path)) as aligned:
            return aligned.read(1), aligned.nodata
    except RasterioIOError as exc:
        raise DataError(f"{path}: not a readable GeoTIFF ({str(exc).splitlines()[0]})") from None
    except ValueError as exc:
        raise DataError(str(exc)) from None


class BigEarthNetSource:
    """One tile per S1/S2 patch pair, or one per window of it (``windows=(size, stride)``)."""

    def __init__(
        self,
        s1_root: Path,
        s2_root: Path,
        *,
        max_nodata: float,
        block_size: int,
        windows: tuple[int, int] | None = None,
    ) -> None:
        self.pairs = find_pairs(s1_root, s2_root)
        self.max_nodata = max_nodata
        self.block_size = block_size
        self.windows = windows

    @property
    def total(self) -> int:
        """How many tiles the S1 patches found can give (before skipping)."""
        if self.windows is None:
            return len(self.pairs)
        per_side = len(window_origins(PATCH_SIDE, *self.windows))
        return len(self.pairs) * per_side * per_side

    def tiles(self) -> Iterator[PreparedTile | Skipped]:
        """Every pair, as a tile or a skip."""
        for pair in self.pairs:
            if pair.s2_dir is None:
                yield Skipped(pair.s2_name, NO_S2_PATCH)
                continue
            yield from self._tiles(pair, pair.s2_dir)

    def _tiles(self, pair: PatchPair, s2_dir: Path) -> Iterator[PreparedTile | Skipped]:
        import rasterio

        b02 = _band_file(s2_dir, "B02")
        try:
            ref = rasterio.open(b02)
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"{b02}: not a readable GeoTIFF ({str(exc).splitlines()[0]})") from None
        with ref:
            s2_bands = [_read_single(_band_file(s2_dir, band), ref) for band in WANTED]
            s1_bands = [_read_single(_band_file(pair.s1_dir, pol), ref) for pol in ("VV", "VH")]
            crs, affine, height, width = ref.crs, ref.transform, ref.height, ref.width
        pixels = Pixels(
            s1=np.stack([b for b, _ in s1_bands]),
            s2=np.stack([b for b, _ in s2_bands]),
            s1_nodata=s1_bands[0][1],
            s2_nodata=s2_bands[0][1],
        )
        block = f"{pair.s2_name}"
        if crs is not None:
            size_x = self.block_size * width * abs(affine.a)
            size_y = self.block_size * height * abs(affine.e)
            block = f"{crs.to_string()}:{math.floor(affine.c / size_x)}:{math.floor(affine.f / size_y)}"
        if self.windows is None:
            yield self._tile(pair, pixels, pair.s2_name, (0, 0, height, width), crs, affine, block)
            return
        size, stride = self.windows
        if size > min(height, width):
            raise DataError(f"{s2_dir}: patch is {height}x{width} px, smaller than --tile-size {size}")
        for row in window_origins(height, size, stride):
            for col in window_origins(width, size, stride):
                window = Pixels(
                    s1=pixels.s1[:, row : row + size, col : col + size],
                    s2=pixels.s2[:, row : row + size, col : col + size],
                    s1_nodata=pixels.s1_nodata,
                    s2_nodata=pixels.s2_nodata,
                )
                name = f"{pair.s2_name}_r{row:03d}_c{col:03d}"
                yield self._tile(pair, window, name, (row, col, size, size), crs, affine, block)

    def _tile(
        self,
        pair: PatchPair,
        pixels: Pixels,
        name: str,
        window: tuple[int, int, int, int],
        crs: Any,
        affine: Any,
        block: str,
    ) -> PreparedTile | Skipped:
        """One tile of ``pixels``, the ``(row, col, height, width)`` window of the patch."""
        row, col, height, width = window
        result = assemble(pixels, self.max_nodata)
        if isinstance(result, str):
            return Skipped(name, result)
        source = {"s1": str(pair.s1_dir.name), "s2": pair.s2_name, "dataset": "BigEarthNet-MM"}
        if self.windows is not None:
            source |= {"row": row, "col": col}
        meta: dict[str, Any] = {
            "name": name,
            "units": tile_units(),
            "s1_product": S1_PRODUCT,
            "s2_level": S2_LEVEL,
            "height": height,
            "width": width,
            "valid_fraction": round(result.valid_fraction, 6),
            "source": source,
        }
        if result.warnings:
            meta["warnings"] = result.warnings
        if crs is not None:
            meta["crs"] = crs.to_string()
            meta["transform"] = list(affine * type(affine).translation(col, row))[:6]
        return PreparedTile(
            name=name, arrays=result.arrays, meta=meta, block=block, touches=frozenset({block})
        )
