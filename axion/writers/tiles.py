"""Tile mode's outputs: one predicted tile as an NPZ and, when it is georeferenced, COGs.

::

    <name>.npz             opt_v3 (and opt_v3_std, generated when made), NaN where the inputs were invalid
    <name>.tif             opt_v3 as a COG (georeferenced tiles only)
    <name>_std.tif         the spread of several samples (--samples > 1)
    <name>_generated.tif   TerraMind's own generation (--save-generated)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from axion.writers.cog import OutputDtype

#: Per array of a prediction: NPZ key, file name suffix, and whether it is a spread (std).
TILE_LAYOUT: dict[str, tuple[str, str, bool]] = {
    "mean": ("opt_v3", "", False),
    "std": ("opt_v3_std", "_std", True),
    "generated": ("generated", "_generated", False),
}


def tile_outputs(name: str, georeferenced: bool, samples: int, generated: bool = False) -> list[str]:
    """File names tile mode writes for one tile."""
    names = [f"{name}.npz"]
    if georeferenced:
        names.append(f"{name}.tif")
        if samples > 1:
            names.append(f"{name}_std.tif")
        if generated:
            names.append(f"{name}_generated.tif")
    return names


def write_tile(
    output_dir: Path,
    name: str,
    georef: Any,
    arrays: dict[str, np.ndarray | None],
    invalid: np.ndarray,
    *,
    dtype: OutputDtype,
    record: dict[str, str],
) -> None:
    """One tile's NPZ (NaN where its source pixels were invalid) and, if georeferenced, its COGs.

    Args:
        output_dir: the folder to write into.
        name: the tile's name (file stem).
        georef: the tile's :class:`~axion.data.georef.Georef`, or None (NPZ only).
        arrays: ``mean`` (opt_v3), ``std`` and ``generated`` (None when not made), (4, H, W) each.
        invalid: (H, W) True where the tile's inputs were invalid.
        dtype: the COGs' ``--dtype``.
        record: the run's provenance, written into each GeoTIFF's tags.
    """
    from axion.data.tilefile import write_npz_atomic
    from axion.provenance import geotiff_tags
    from axion.writers.cog import RasterSpec, write_cog

    made = {key: value for key, value in arrays.items() if value is not None}
    write_npz_atomic(
        output_dir / f"{name}.npz",
        {
            TILE_LAYOUT[key][0]: np.where(invalid, np.nan, value).astype(np.float32)
            for key, value in made.items()
        },
    )
    if georef is None:
        return
    geo = {"crs": georef.rasterio_crs(), "transform": georef.affine(), "invalid": invalid}
    for key, value in made.items():
        product, suffix, spread = TILE_LAYOUT[key]
        write_cog(
            output_dir / f"{name}{suffix}.tif",
            value,
            RasterSpec(dtype, spread),
            tags=geotiff_tags(record, product),
            **geo,
        )
