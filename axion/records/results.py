"""The layout of an evaluation results directory, shared by ``evaluate`` (writes) and ``visualize`` (reads).

::

    results/
      summary.json      settings, checkpoint path, and mean/std/median/min/max per metric
      per_tile.csv      one row per tile: opt_v2_<metric>, opt_v3_<metric>,
                        target_sar_edge_correlation
      tiles/<name>.npz  s1 (2,H,W) dB, opt_v2 / opt_v3 / target (4,H,W) tile units, mask (H,W) uint8
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axion.atomic import atomic_path, write_json_atomic
from axion.errors import DataError

SUMMARY_FILE = "summary.json"
PER_TILE_FILE = "per_tile.csv"
TILES_DIR = "tiles"
#: Arrays each ``tiles/<name>.npz`` holds.
TILE_ARRAYS = ("s1", "opt_v2", "opt_v3", "target", "mask")
#: The images compared: the input, the output and (SAR edge correlation only) the ground truth.
SOURCES = ("opt_v2", "opt_v3", "target")
#: Headline metrics in display order: key -> (label, unit, higher is better).
METRICS: dict[str, tuple[str, str, bool]] = {
    "psnr": ("PSNR", "dB", True),
    "ssim": ("SSIM", "", True),
    "sam_deg": ("SAM", "deg", False),
    "mae": ("MAE", "reflectance", False),
    "rmse": ("RMSE", "reflectance", False),
    "lpips": ("LPIPS", "", False),
    "sar_agreement": ("SAR agreement", "", True),
}


def describe(values: Sequence[float]) -> dict[str, float | None]:
    """mean, std, median, min, max over the finite values (None when there are none)."""
    finite = sorted(v for v in values if v is not None and math.isfinite(v))
    if not finite:
        return {"mean": None, "std": None, "median": None, "min": None, "max": None, "count": 0}
    n = len(finite)
    mean = sum(finite) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / n)
    mid = n // 2
    median = finite[mid] if n % 2 else (finite[mid - 1] + finite[mid]) / 2
    return {"mean": mean, "std": std, "median": median, "min": finite[0], "max": finite[-1], "count": n}


def write_per_tile_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the per-tile rows (all rows share the first row's columns) atomically."""
    columns = list(rows[0]) if rows else ["name"]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def write_results(
    directory: Path, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], staged_tiles: Path
) -> None:
    """Commit an evaluation: the staged tile arrays become ``tiles/``, then the CSV, then the summary.

    The summary is written last, so a directory with a ``summary.json`` is complete.
    """
    tiles_dir = directory / TILES_DIR
    shutil.rmtree(tiles_dir, ignore_errors=True)
    staged_tiles.replace(tiles_dir)
    write_per_tile_csv(directory / PER_TILE_FILE, rows)
    write_json_atomic(directory / SUMMARY_FILE, dict(summary))


def read_per_tile_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of ``per_tile.csv`` with numbers parsed (empty cells and 'nan' become NaN)."""
    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                try:
                    parsed[key] = value if key == "name" else (math.nan if value == "" else float(value))
                except (TypeError, ValueError):
                    parsed[key] = value
            rows.append(parsed)
    return rows


def summarise(rows: Iterable[Mapping[str, Any]], metric_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{source: {metric: describe(...)}}`` for every ``<source>_<metric>`` column present."""
    rows = list(rows)
    out: dict[str, dict[str, Any]] = {}
    for source in SOURCES:
        for metric in metric_keys:
            column = f"{source}_{metric}"
            if rows and column in rows[0]:
                out.setdefault(source, {})[metric] = describe([float(r[column]) for r in rows])
    return out


@dataclass(frozen=True)
class Results:
    """What an evaluation directory holds."""

    directory: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    tiles: list[Path]


def load_results(directory: Path) -> Results:
    """Read an evaluation directory written by ``axion stage3 evaluate``.

    Raises:
        DataError: the directory, ``summary.json`` or ``per_tile.csv`` is missing or unreadable.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: results directory not found (run 'axion stage3 evaluate' first)")
    summary_path, csv_path = directory / SUMMARY_FILE, directory / PER_TILE_FILE
    for path in (summary_path, csv_path):
        if not path.is_file():
            raise DataError(
                f"{path}: missing; {directory} is not an 'axion stage3 evaluate' results directory"
            )
    try:
        summary = json.loads(summary_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{summary_path}: unreadable JSON ({_first_line(exc)})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
        raise DataError(f"{summary_path}: not an evaluation summary (no 'metrics')")
    try:
        rows = read_per_tile_csv(csv_path)
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{csv_path}: unreadable CSV ({_first_line(exc)})") from None
    check_rows(csv_path, rows, summary)
    tiles = sorted((directory / TILES_DIR).glob("*.npz")) if (directory / TILES_DIR).is_dir() else []
    return Results(directory=directory, summary=summary, rows=rows, tiles=tiles)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_rows(path: Path, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> None:
    """Every row names its tile and holds a number in every metric column the summary lists.

    Raises:
        DataError: naming the file, the row and the column.
    """
    columns = [
        f"{source}_{metric}"
        for source, metrics in summary["metrics"].items()
        if source in SOURCES and isinstance(metrics, Mapping)
        for metric in metrics
    ]
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        if not isinstance(row.get("name"), str) or not row["name"]:
            raise DataError(
                f"{path}: line {number} has no tile name (not a per-tile table written by evaluate)"
            )
        for column in columns:
            value = row.get(column)
            if not isinstance(value, float):
                raise DataError(f"{path}: line {number}: {column} is not a number ({value!r})")
