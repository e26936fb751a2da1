"""``axion stage3 prepare --check``: find every bad tile before training does.

A tile is ``<name>.npz`` (keys :data:`axion.bands.TILE_KEYS`, each (H, W), finite, with
plausible values: :mod:`axion.data.plausible`) with a sidecar ``<name>.json`` naming its
split. Training, evaluation and inference call :func:`validate_data_dir` (and
:func:`validate_stage2` for Stage 2 outputs) up front, so a broken tile fails the run in
its first seconds, not in the middle of epoch 7. Values that are only suspicious come
back as warnings for the command to print and record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from axion.atomic import write_json_atomic
from axion.bands import S1_KEYS, S2_KEYS, TILE_KEYS
from axion.data.badsamples import IMPLAUSIBLE, NON_FINITE, UNREADABLE
from axion.data.georef import georef_from_meta
from axion.data.plausible import Finding, optical_findings, s1_findings
from axion.data.tilefile import (
    OPT_V2_KEY,
    OPT_V2_MASK_KEY,
    SPLITS,
    VALID_KEY,
    find_npz,
    is_inference_tile,
    load_arrays,
    npz_header,
    read_meta,
    sidecar,
    split_of,
)
from axion.data.units import declared_units, s1_to_db, s2_to_tile_units
from axion.errors import DataError

#: Where train, evaluate and infer record the warnings about their inputs.
WARNINGS_FILE = "input_warnings.json"
#: Warnings printed on the console before "and N more".
SHOWN_WARNINGS = 5
#: Product levels a tile's JSON may record (``prepare`` writes them).
S1_PRODUCTS: tuple[str, ...] = ("grd", "rtc")
S2_LEVELS: tuple[str, ...] = ("L2A", "L1C")
#: Tiles with a side below this (px) get a warning: TerraMind's patch is 16 px, the SSIM window
#: (:data:`axion.metrics.SSIM_KERNEL`) 11 px; such a tile is mostly padding to the model.
SMALLEST_SIDE: int = 16


@dataclass(frozen=True)
class Problem:
    """One bad file and why (``fatal``), or one suspicious file and why (a warning).

    ``sample``: the problem is in one sample's arrays or values (unreadable, missing key, NaN,
    implausible), which ``train`` and ``evaluate`` skip and count; other problems (a tile's
    JSON, a duplicate name, no tiles) are refused.
    """

    path: Path
    reason: str
    fatal: bool = True
    sample: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Inspection:
    """Everything found about the tiles below a directory."""

    total: int
    problems: list[Problem]
    warnings: list[Problem]


def ensure_dir(data_dir: Path, what: str = "data directory") -> None:
    """One-line :class:`DataError` if ``data_dir`` is missing or not a directory."""
    if not data_dir.exists():
        raise DataError(f"{data_dir}: {what} not found")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: {what} is not a directory")


def is_stage2_output(npz: Path) -> bool:
    """Whether an NPZ without sidecar is a Stage 2 output (only ``opt_v2``), which tile scans skip."""
    try:
        return set(npz_header(npz)) in ({OPT_V2_KEY}, {OPT_V2_KEY, OPT_V2_MASK_KEY})
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
    for key, allowed in (("s1_product", S1_PRODUCTS), ("s2_level", S2_LEVELS)):
        if key in meta and meta[key] not in allowed:
            reasons.append(f"unknown {key} {meta[key]!r} (expected {' or '.join(allowed)})")
    return reasons


def meta_warnings(meta: dict[str, Any]) -> list[str]:
    """What a valid tile JSON records that deserves a warning (an L1C product)."""
    if meta.get("s2_level") == "L1C":
        return ["S2 is L1C (top of atmosphere), not the L2A the model expects"]
    return []


def value_findings(arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> list[Finding]:
    """Findings about the values of a tile's finite arrays, in tile units (see :mod:`.plausible`).

    Args:
        arrays: the tile's arrays by NPZ key (S1 keys, and the S2 keys when present).
        meta: the tile's JSON (its ``units`` are applied first); None: tile units.
    """
    try:
        s1_unit, s2_scale = declared_units(meta or {})
    except ValueError:
        s1_unit, s2_scale = "dB", 1.0  # reported by check_meta
    s1 = s1_to_db(np.stack([arrays[key] for key in S1_KEYS]), s1_unit) if has_keys(arrays, S1_KEYS) else None
    optical = None
    if has_keys(arrays, S2_KEYS):
        optical = s2_to_tile_units(np.stack([arrays[key] for key in S2_KEYS]), s2_scale)
    return converted_findings(s1, optical, arrays.get(VALID_KEY))


def has_keys(arrays: dict[str, np.ndarray], keys: tuple[str, ...]) -> bool:
    return all(key in arrays for key in keys)


def converted_findings(
    s1: np.ndarray | None, optical: np.ndarray | None, valid: np.ndarray | None
) -> list[Finding]:
    """:func:`value_findings` of arrays already in tile units (S1 dB (2, H, W), optical (4, H, W))."""
    found: list[Finding] = []
    if s1 is not None:
        found += s1_findings(s1, valid)
    if optical is not None:
        found += optical_findings(optical, valid)
    return found


def check_arrays(
    npz: Path, keys: tuple[str, ...], optional: tuple[str, ...] = (), meta: dict[str, Any] | None = None
) -> tuple[list[str], list[str]]:
    """Everything wrong with a tile's arrays (unreadable, missing key, shape, dtype, NaN/inf,
    implausible values) and everything suspicious about them: (problems, warnings).

    Args:
        npz: the tile.
        keys: keys the tile must have.
        optional: keys checked when present (an inference tile's S2 bands feed the proxy).
        meta: the tile's JSON, for its units (None: tile units).
    """
    try:
        header = npz_header(npz)
    except ValueError as exc:
        return [str(exc)], []
    reasons = [f"missing key {key!r}" for key in keys if key not in header]
    present = [key for key in (*keys, *optional) if key in header]
    if not present:
        return reasons, []
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
        return reasons, []
    height, width = header[present[0]][0]
    small = (
        [f"tile is {height} x {width} px, smaller than TerraMind's 16 px patch and the 11 px SSIM window"]
        if min(height, width) < SMALLEST_SIDE
        else []
    )
    try:
        arrays = load_arrays(npz, tuple(present), optional=(VALID_KEY,))
    except ValueError as exc:
        return [str(exc)], []
    reasons = non_finite([(key, arrays[key]) for key in present])
    if reasons:
        return reasons, []
    found = value_findings(arrays, meta)
    return [str(f) for f in found if f.fatal], small + [str(f) for f in found if not f.fatal]


def non_finite(arrays: Sequence[tuple[str, np.ndarray]]) -> list[str]:
    """``'s2_b3' has 100 NaN/inf value(s)`` for each named array that holds NaN or infinity."""
    reasons = []
    for key, array in arrays:
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            reasons.append(f"{key!r} has {bad} NaN/inf value(s)")
    return reasons


def sample_problem(
    arrays: dict[str, np.ndarray], s1: np.ndarray | None, optical: np.ndarray | None
) -> tuple[str, str] | None:
    """Why a loaded tile cannot be used, as (kind, reason), or None: NaN/inf first, then implausible values.

    The same judgement as ``prepare --check`` (:func:`check_arrays`), on arrays already read:
    ``arrays`` by NPZ key (for NaN/inf), ``s1`` and ``optical`` the same bands already in tile
    units (what :func:`value_findings` would convert them to; None where the tile has none).
    """
    reasons = non_finite([(key, array) for key, array in arrays.items() if key != VALID_KEY])
    if reasons:
        return NON_FINITE, reasons[0]
    fatal = [f for f in converted_findings(s1, optical, arrays.get(VALID_KEY)) if f.fatal]
    return (IMPLAUSIBLE, str(fatal[0])) if fatal else None


def inspect_tile(npz: Path, *, require_target: bool = True) -> tuple[list[str], list[str]]:
    """Every reason a tile is bad and every suspicious thing about it: (problems, warnings).

    Args:
        npz: the tile's NPZ; its sidecar JSON sits next to it.
        require_target: training tiles need the S2 keys and a split; inference tiles (also any tile
            whose JSON says ``"ground_truth": false``) need only S1 (their S2 bands, when present,
            are checked too: they feed the opt_v2 proxy).
    """
    reasons, bad, notes = _inspect(npz, require_target=require_target)
    return reasons + bad, notes


def _inspect(npz: Path, *, require_target: bool) -> tuple[list[str], list[str], list[str]]:
    """A tile's JSON problems, its arrays' problems (the sample's) and its warnings."""
    reasons: list[str] = []
    notes: list[str] = []
    meta: dict[str, Any] | None = None
    try:
        meta = read_meta(sidecar(npz))
        require_target = require_target and not is_inference_tile(meta)
        meta_reasons = check_meta(meta, require_split=require_target)
        reasons += meta_reasons
        notes += [] if meta_reasons else meta_warnings(meta)
    except ValueError as exc:
        reasons.append(str(exc))
    keys, optional = (TILE_KEYS, ()) if require_target else (S1_KEYS, S2_KEYS)
    bad, odd = check_arrays(npz, keys, optional, meta)
    return reasons, bad, notes + odd


def check_tile(npz: Path, *, require_target: bool = True) -> list[str]:
    """Every reason a tile is bad (empty when it is fine); see :func:`inspect_tile`."""
    return inspect_tile(npz, require_target=require_target)[0]


def misfiled(npz: Path, data_dir: Path) -> list[str]:
    """A warning when a tile sits in a split folder (``train/``, ...) other than the split its JSON declares.

    The JSON decides (:class:`axion.data.dataset.TileDataset`); the folder may be what the user meant.
    """
    folders = [part for part in npz.relative_to(data_dir).parts[:-1] if part in SPLITS]
    if not folders:
        return []
    try:
        declared = read_meta(sidecar(npz)).get("split")
    except ValueError:
        return []  # reported by inspect_tile
    if declared not in SPLITS or declared == folders[-1]:
        return []
    return [
        f"filed under {folders[-1]}/ but its JSON declares split {declared!r}: used as a {declared} tile "
        "(the JSON decides; move the files or fix the JSON)"
    ]


def tile_paths(data_dir: Path) -> list[Path]:
    """The NPZ files below ``data_dir`` that count as tiles: all but Stage 2 outputs without sidecar."""
    return [npz for npz in find_npz(data_dir) if sidecar(npz).exists() or not is_stage2_output(npz)]


def inspect_tiles(data_dir: Path, *, require_target: bool = True) -> Inspection:
    """Check every tile below ``data_dir``: all problems and warnings, in file order.

    NPZ files without a sidecar JSON are reported, except Stage 2 outputs (only
    ``opt_v2``), which may live beside the tiles. Two tiles with the same name are
    reported too: Stage 2 outputs are matched by name.

    Raises:
        DataError: ``data_dir`` does not exist or is not a directory.
    """
    ensure_dir(data_dir)
    problems: list[Problem] = []
    warnings: list[Problem] = []
    seen: dict[str, Path] = {}
    tiles = tile_paths(data_dir)
    for npz in tiles:
        reasons, bad, odd = _inspect(npz, require_target=require_target)
        odd += misfiled(npz, data_dir)
        problems += [Problem(npz, reason) for reason in reasons]
        problems += [Problem(npz, reason, sample=True) for reason in bad]
        warnings += [Problem(npz, note, fatal=False) for note in odd]
        if npz.stem in seen:
            problems.append(Problem(npz, f"duplicate tile name {npz.stem!r} (also {seen[npz.stem]})"))
        seen.setdefault(npz.stem, npz)
    if not tiles:
        problems.append(Problem(data_dir, "no tiles found (expected <name>.npz with a sidecar <name>.json)"))
    return Inspection(total=len(tiles), problems=problems, warnings=warnings)


def check_tiles(data_dir: Path, *, require_target: bool = True) -> list[Problem]:
    """Every problem of the tiles below ``data_dir`` (see :func:`inspect_tiles`)."""
    return inspect_tiles(data_dir, require_target=require_target).problems


def _refuse(problems: list[Problem], hint: str = "") -> None:
    if problems:
        files = len({p.path for p in problems})
        more = f" ({files} bad files in all{hint})" if files > 1 else ""
        raise DataError(f"{problems[0]}{more}")


def validate_data_dir(data_dir: Path, *, require_target: bool = True) -> list[Problem]:
    """Fail fast if any tile below ``data_dir`` is bad; return the warnings.

    Raises:
        DataError: one line naming the first bad file, its reason and how many files are bad.
    """
    found = inspect_tiles(data_dir, require_target=require_target)
    _refuse(found.problems, f"; run 'axion stage3 prepare --check {data_dir}'")
    return found.warnings


def opt_v2_problem(opt_v2: np.ndarray, shape: tuple[int, ...]) -> tuple[str, str] | None:
    """Why a Stage 2 output's ``opt_v2`` cannot be used, as (kind, reason), or None."""
    if tuple(opt_v2.shape) != tuple(shape):
        return UNREADABLE, f"opt_v2 has shape {tuple(opt_v2.shape)}, expected {tuple(shape)}"
    if not (np.issubdtype(opt_v2.dtype, np.number) and not np.issubdtype(opt_v2.dtype, np.complexfloating)):
        return UNREADABLE, f"opt_v2 has non-numeric dtype {opt_v2.dtype}"
    bad = int(opt_v2.size - np.count_nonzero(np.isfinite(opt_v2)))
    if bad:
        return NON_FINITE, f"opt_v2 has {bad} NaN/inf value(s)"
    fatal = [f for f in optical_findings(opt_v2, what="opt_v2") if f.fatal]
    return (IMPLAUSIBLE, str(fatal[0])) if fatal else None


def stage2_findings(path: Path, shape: tuple[int, ...]) -> tuple[list[str], list[str]]:
    """Problems and warnings of one Stage 2 output: readable, ``opt_v2`` of ``shape``, finite, plausible."""
    try:
        opt_v2 = load_arrays(path, (OPT_V2_KEY,))[OPT_V2_KEY]
    except ValueError as exc:
        return [str(exc)], []
    problem = opt_v2_problem(opt_v2, shape)
    if problem is not None:
        return [problem[1]], []
    return [], [str(f) for f in optical_findings(opt_v2, what="opt_v2") if not f.fatal]


def inspect_stage2(stage2_dir: Path, tiles: list[tuple[str, tuple[int, int]]]) -> Inspection:
    """Read every Stage 2 output the tiles use and check its values (every problem is a sample's)."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    for name, (height, width) in tiles:
        path = Path(stage2_dir) / f"{name}.npz"
        bad, odd = stage2_findings(path, (len(S2_KEYS), height, width))
        problems += [Problem(path, reason, sample=True) for reason in bad]
        warnings += [Problem(path, note, fatal=False) for note in odd]
    return Inspection(total=len(tiles), problems=problems, warnings=warnings)


def validate_stage2(stage2_dir: Path, tiles: list[tuple[str, tuple[int, int]]]) -> list[Problem]:
    """Read every Stage 2 output the tiles use and check its values; return the warnings.

    Args:
        stage2_dir: the ``--stage2-dir``.
        tiles: (name, (height, width)) of every tile whose ``<name>.npz`` is used.

    Raises:
        DataError: one line naming the first bad file and how many are bad.
    """
    found = inspect_stage2(stage2_dir, tiles)
    _refuse(found.problems)
    return found.warnings


def refuse_non_samples(found: Inspection, data_dir: Path) -> list[Problem]:
    """Refuse the problems that are not one sample's (see :attr:`Problem.sample`); return the samples'."""
    _refuse([p for p in found.problems if not p.sample], f"; run 'axion stage3 prepare --check {data_dir}'")
    return [p for p in found.problems if p.sample]


def refuse_bad_share(
    problems: Sequence[Problem], names: Sequence[str], what: str, limit: float
) -> list[Problem]:
    """The sample problems of the tiles called ``names`` (a tile or its Stage 2 output); refuse them
    up front when they make more than ``limit`` of those tiles bad, as training would stop anyway.

    Raises:
        DataError: one line naming the first bad file, the share and the limit.
    """
    chosen = set(names)
    mine = [p for p in problems if p.path.stem in chosen]
    bad = {p.path.stem for p in mine}
    if names and len(bad) / len(names) > limit:
        raise DataError(
            f"{mine[0]} ({len(bad)} of {len(names)} {what} tiles are bad, more than --max-bad-fraction "
            f"{limit:g}; run 'axion stage3 prepare --check' on them)"
        )
    return mine


def report_warnings(
    warn: Callable[[str], None], warnings: Sequence[Problem], directory: Path | None = None
) -> Path | None:
    """Print the warnings about a command's inputs and record them in ``<directory>/input_warnings.json``.

    Args:
        warn: prints one warning (its ``warning:`` prefix is the printer's).
        warnings: from :func:`validate_data_dir` and :func:`validate_stage2`.
        directory: where to record them (None: only print).

    Returns:
        The file written, if any.
    """
    if not warnings:
        return None
    for warning in warnings[:SHOWN_WARNINGS]:
        warn(str(warning))
    path = Path(directory) / WARNINGS_FILE if directory is not None else None
    if len(warnings) > SHOWN_WARNINGS:
        where = f" (all in {path})" if path is not None else ""
        warn(f"... and {len(warnings) - SHOWN_WARNINGS} more{where}")
    if path is not None:
        write_json_atomic(path, [{"file": str(w.path), "warning": w.reason} for w in warnings])
    return path
