"""``axion stage3 prepare --check``: find every bad tile before training does.

A tile is ``<name>.npz`` (keys :data:`axion.bands.TILE_KEYS`, each (H, W), finite)
with a sidecar ``<name>.json`` naming its split. Training calls
:func:`validate_data_dir` up front so a broken tile fails the run in its first
second, not in the middle of epoch 7.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from axion.bands import S1_KEYS, TILE_KEYS
from axion.data.georef import georef_from_meta
from axion.data.tilefile import (
    OPT_V2_KEY,
    VALID_KEY,
    find_npz,
    is_inference_tile,
    load_arrays,
    npz_header,
    read_meta,
    sidecar,
    split_of,
)
from axion.data.units import declared_units
from axion.errors import DataError


@dataclass(frozen=True)
class Problem:
    """One bad file and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def ensure_dir(data_dir: Path, what: str = "data directory") -> None:
    """One-line :class:`DataError` if ``data_dir`` is missing or not a directory."""
    if not data_dir.exists():
        raise DataError(f"{data_dir}: {what} not found")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: {what} is not a directory")


def is_stage2_output(npz: Path) -> bool:
    """Whether an NPZ without sidecar is a Stage 2 output (only ``opt_v2``), which tile scans skip."""
    try:
        return set(npz_header(npz)) == {OPT_V2_KEY}
    except ValueError:
        return False


def check_meta(meta: dict[str, Any], *, require_split: bool = True) -> list[str]:
    """Everything wrong with a tile's JSON object (split, units, georeference)."""
    reasons = []
    if require_split or "split" in meta:
        try:
            split_of(meta)
        except ValueError as exc:
            reasons.append(str(exc))
    for validate in (declared_units, georef_from_meta):
        try:
            validate(meta)
        except ValueError as exc:
            reasons.append(str(exc))
    return reasons


def check_arrays(npz: Path, keys: tuple[str, ...]) -> list[str]:
    """Everything wrong with a tile's arrays: unreadable, missing key, shape, dtype, NaN/inf."""
    try:
        header = npz_header(npz)
    except ValueError as exc:
        return [str(exc)]
    reasons = [f"missing key {key!r}" for key in keys if key not in header]
    present = [key for key in keys if key in header]
    if not present:
        return reasons
    for key in present:
        shape, dtype = header[key]
        if len(shape) != 2:
            reasons.append(f"{key!r} has shape {shape}, expected (H, W)")
        elif not (np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)):
            reasons.append(f"{key!r} has non-numeric dtype {dtype}")
    shapes = {header[key][0] for key in present}
    if len(shapes) > 1:
        listed = ", ".join(f"{key} {header[key][0]}" for key in present)
        reasons.append(f"shape mismatch: {listed}")
    if VALID_KEY in header and header[VALID_KEY][0] != header[present[0]][0]:
        reasons.append(f"{VALID_KEY!r} has shape {header[VALID_KEY][0]}, expected {header[present[0]][0]}")
    if reasons:
        return reasons
    try:
        arrays = load_arrays(npz, tuple(present))
    except ValueError as exc:
        return [str(exc)]
    for key, array in arrays.items():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            reasons.append(f"{key!r} has {bad} NaN/inf value(s)")
    return reasons


def check_tile(npz: Path, *, require_target: bool = True) -> list[str]:
    """Every reason a tile is bad (empty when it is fine).

    Args:
        npz: the tile's NPZ; its sidecar JSON sits next to it.
        require_target: training tiles need the S2 keys and a split; inference tiles (also any tile
            whose JSON says ``"ground_truth": false``) need only S1.
    """
    reasons: list[str] = []
    try:
        meta = read_meta(sidecar(npz))
        require_target = require_target and not is_inference_tile(meta)
        reasons += check_meta(meta, require_split=require_target)
    except ValueError as exc:
        reasons.append(str(exc))
    reasons += check_arrays(npz, TILE_KEYS if require_target else S1_KEYS)
    return reasons


def tile_paths(data_dir: Path) -> list[Path]:
    """The NPZ files below ``data_dir`` that count as tiles: all but Stage 2 outputs without sidecar."""
    return [npz for npz in find_npz(data_dir) if sidecar(npz).exists() or not is_stage2_output(npz)]


def check_tiles(data_dir: Path, *, require_target: bool = True) -> list[Problem]:
    """Check every tile below ``data_dir`` and return all problems, in file order.

    NPZ files without a sidecar JSON are reported, except Stage 2 outputs (only
    ``opt_v2``), which may live beside the tiles. Two tiles with the same name are
    reported too: Stage 2 outputs are matched by name.

    Raises:
        DataError: ``data_dir`` does not exist or is not a directory.
    """
    ensure_dir(data_dir)
    problems: list[Problem] = []
    seen: dict[str, Path] = {}
    tiles = tile_paths(data_dir)
    for npz in tiles:
        problems += [Problem(npz, reason) for reason in check_tile(npz, require_target=require_target)]
        if npz.stem in seen:
            problems.append(Problem(npz, f"duplicate tile name {npz.stem!r} (also {seen[npz.stem]})"))
        seen.setdefault(npz.stem, npz)
    if not tiles:
        problems.append(Problem(data_dir, "no tiles found (expected <name>.npz with a sidecar <name>.json)"))
    return problems


def validate_data_dir(data_dir: Path, *, require_target: bool = True) -> None:
    """Fail fast if any tile below ``data_dir`` is bad.

    Raises:
        DataError: one line naming the first bad file, its reason and how many files are bad.
    """
    problems = check_tiles(data_dir, require_target=require_target)
    if problems:
        files = len({p.path for p in problems})
        more = (
            f" ({files} bad files in all; run 'axion stage3 prepare --check {data_dir}')" if files > 1 else ""
        )
        raise DataError(f"{problems[0]}{more}")
