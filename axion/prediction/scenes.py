"""The scene list of ``axion stage3 infer --scenes``: which scenes to predict, and which are done.

A list is either

- a CSV file with the header ``s1,opt_v2,output`` and optionally ``opt_v2_mask`` and
  ``datetime`` (one scene per row; relative paths are taken from the CSV's folder; an empty
  ``opt_v2_mask`` cell means no mask, an empty ``datetime`` cell the S1 file's tag), or
- a STAC ItemCollection (JSON) whose Items have the assets ``s1`` and ``opt_v2`` and optionally
  ``opt_v2_mask`` (relative hrefs from the JSON's folder); each Item's output is
  ``<output-dir>/<item id>.tif`` and its ``datetime`` becomes the output's.

``opt_v2_mask`` is ``--opt-v2-mask-scene`` of the scene: one band on opt_v2's grid, 0 cloudy.

Problems of the list itself (a wrong header, an empty cell, two scenes with one output, an
output that is an input) refuse the whole list before anything runs; a scene whose files are
missing or wrong fails on its own when its turn comes.

A scene's outputs are **complete** when its STAC Item exists, parses, lists every asset this
run would write (opt_v3, and opt_v3_std with ``--samples`` >= 2), each of those files exists,
and its ``axion:*`` properties record the same inputs (absolute S1, opt_v2 and mask paths), the same
checkpoint (SHA-256 of its bytes), DDIM steps, seed, precision, samples, tile size, overlap and
sample type as this run (:data:`MATCHED`). The Item is written last, after every raster has been
renamed into place, so a killed run never leaves outputs that look complete.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlparse

from axion.errors import ConfigError, DataError

CSV_COLUMNS = ("s1", "opt_v2", "output")
OPTIONAL_COLUMNS = ("opt_v2_mask", "datetime")
#: The Item assets a STAC scene list must give.
STAC_ASSETS = ("s1", "opt_v2")
#: The provenance entries (``axion:<name>``) that must agree for outputs to count as complete.
MATCHED = (
    "s1_scene",
    "opt_v2_scene",
    "opt_v2_mask_scene",
    "checkpoint_sha256",
    "timesteps",
    "seed",
    "precision",
    "samples",
    "tile_size",
    "overlap",
    "dtype",
)


@dataclass(frozen=True)
class SceneJob:
    """One scene of a list: its inputs, its output COG and the acquisition time to record.

    Attributes:
        name: how messages name it: ``row N`` (the CSV line) or the STAC Item id.
        s1, opt_v2: the input GeoTIFFs (absolute).
        output: the opt_v3 COG to write (absolute; ``_std.tif`` and the Item ``.json`` go beside it).
        datetime: ISO 8601 acquisition time, or None (the S1 file's tag).
        opt_v2_mask: opt_v2's cloud mask (absolute), or None.
    """

    name: str
    s1: Path
    opt_v2: Path
    output: Path
    datetime: str | None = None
    opt_v2_mask: Path | None = None


def mask_record(path: Path | None) -> str:
    """How a scene's provenance names its opt_v2 mask: the absolute path, or ``none``."""
    return "none" if path is None else str(Path(path).resolve())


def read_scene_list(path: Path, output_dir: Path | None = None) -> list[SceneJob]:
    """The scenes of a CSV list or a STAC ItemCollection, checked as a whole.

    Args:
        path: the list (``.csv``, or ``.json`` / ``.geojson`` holding an ItemCollection).
        output_dir: where a STAC list's outputs go (required for STAC, refused for CSV).

    Raises:
        ConfigError: ``output_dir`` missing for a STAC list or given for a CSV.
        DataError: an unreadable or malformed list, no scenes, two scenes with one output, or
            an output that is also an input.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: scene list not found" if not path.exists() else f"{path}: scene list is not a file"
        )
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if output_dir is not None:
            raise ConfigError(
                f"{path}: a CSV scene list names each output in its 'output' column; leave out --output-dir"
            )
        jobs = _read_csv(path)
    elif suffix in (".json", ".geojson"):
        if output_dir is None:
            raise ConfigError(f"{path}: a STAC scene list needs --output-dir (one <item id>.tif per Item)")
        jobs = _read_stac(path, Path(output_dir))
    else:
        raise DataError(f"{path}: scene list must be a .csv file or a STAC ItemCollection (.json)")
    if not jobs:
        raise DataError(f"{path}: scene list holds no scenes")
    _check_outputs(path, jobs)
    return jobs


def _check_time(path: Path, where: str, text: str) -> str:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        raise DataError(
            f"{path}: {where}: datetime {text!r} is not ISO 8601 (e.g. 2021-07-21T08:40:10Z)"
        ) from None
    return text


def _read_csv(path: Path) -> list[SceneJob]:
    folder = path.parent.resolve()
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: scene list is not a readable CSV file ({exc})") from None
    if not rows:
        raise DataError(f"{path}: scene list is empty (expected the header {','.join(CSV_COLUMNS)})")
    header = [cell.strip().lower() for cell in rows[0]]
    missing = [name for name in CSV_COLUMNS if name not in header]
    unknown = [name for name in header if name not in CSV_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        problem = (
            f"column {missing[0]!r} missing"
            if missing
            else (f"unknown column {unknown[0]!r}" if unknown else "a column repeated")
        )
        raise DataError(
            f"{path}: header must be {','.join(CSV_COLUMNS)}[,opt_v2_mask][,datetime] "
            f"({problem}; got {','.join(header)})"
        )
    jobs = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines
        if len(row) != len(header):
            raise DataError(f"{path}: row {line} has {len(row)} cells, the header {len(header)}")
        cells = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
        for name in CSV_COLUMNS:
            if not cells[name]:
                raise DataError(f"{path}: row {line}: empty {name!r}")
        when = cells.get("datetime") or None
        mask = cells.get("opt_v2_mask") or None
        jobs.append(
            SceneJob(
                name=f"row {line}",
                s1=folder / cells["s1"],
                opt_v2=folder / cells["opt_v2"],
                output=folder / cells["output"],
                datetime=None if when is None else _check_time(path, f"row {line}", when),
                opt_v2_mask=None if mask is None else folder / mask,
            )
        )
    return jobs


def _local_href(path: Path, item_id: str, key: str, href: Any) -> Path:
    """An asset's file: a path or ``file://`` URL, relative ones from the list's folder."""
    if not isinstance(href, str) or not href:
        raise DataError(f"{path}: Item {item_id!r}: asset {key!r} has no href")
    parsed = urlparse(href)
    if parsed.scheme == "file":
        href = unquote(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive
        raise DataError(
            f"{path}: Item {item_id!r}: asset {key!r} is {href!r}; only local files are read "
            "(copy the scenes to a local or mounted folder)"
        )
    return path.parent.resolve() / href


def _read_stac(path: Path, output_dir: Path) -> list[SceneJob]:
    import pystac

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: scene list is not readable JSON ({exc})") from None
    if (
        not isinstance(data, dict)
        or data.get("type") != "FeatureCollection"
        or not isinstance(data.get("features"), list)
    ):
        raise DataError(f"{path}: not a STAC ItemCollection (a FeatureCollection of Items)")
    try:
        items = list(pystac.ItemCollection.from_dict(data, preserve_dict=True))
    except Exception as exc:  # pystac raises KeyError, TypeError, STACTypeError... for a malformed Item
        raise DataError(f"{path}: not a valid STAC ItemCollection ({type(exc).__name__}: {exc})") from None
    output_dir = output_dir.resolve()
    jobs = []
    for item in items:
        if not item.id or "/" in item.id or "\\" in item.id or item.id.startswith("."):
            raise DataError(f"{path}: Item id {item.id!r} cannot name an output file")
        absent = [key for key in STAC_ASSETS if key not in item.assets]
        if absent:
            raise DataError(
                f"{path}: Item {item.id!r} has no {absent[0]!r} asset (needs {', '.join(STAC_ASSETS)})"
            )
        s1, opt_v2 = (_local_href(path, item.id, key, item.assets[key].href) for key in STAC_ASSETS)
        mask = item.assets.get("opt_v2_mask")
        when = item.datetime or item.common_metadata.start_datetime
        jobs.append(
            SceneJob(
                name=item.id,
                s1=s1,
                opt_v2=opt_v2,
                output=output_dir / f"{item.id}.tif",
                datetime=None if when is None else when.isoformat(),
                opt_v2_mask=None if mask is None else _local_href(path, item.id, "opt_v2_mask", mask.href),
            )
        )
    return jobs


def _check_outputs(path: Path, jobs: list[SceneJob]) -> None:
    """Each scene writes its own files, none of them an input of any scene."""
    from axion.prediction.scene import SceneOutputs

    inputs = {p.resolve() for job in jobs for p in (job.s1, job.opt_v2, job.opt_v2_mask) if p is not None}
    owner: dict[Path, str] = {}
    for job in jobs:
        if job.output.suffix.lower() not in (".tif", ".tiff"):
            raise DataError(f"{path}: {job.name}: output {job.output} must be a .tif or .tiff file")
        outputs = SceneOutputs.beside(job.output)
        for file in (outputs.tif, outputs.std, outputs.item):
            resolved = file.resolve()
            if resolved in inputs:
                raise DataError(f"{path}: {job.name}: output {file} is an input scene of the list")
            if resolved in owner:
                raise DataError(f"{path}: {job.name} and {owner[resolved]} both write {file}")
            owner[resolved] = job.name


# --- completeness -------------------------------------------------------------------------------
def expected_assets(samples: int) -> tuple[str, ...]:
    """The assets of a scene's Item: ``opt_v3``, and ``opt_v3_std`` with several samples."""
    return ("opt_v3", "opt_v3_std") if samples > 1 else ("opt_v3",)


class NotComplete(NamedTuple):
    """Why a scene's outputs are not complete for this run.

    Attributes:
        other_settings: True for outputs a finished run made with other inputs, checkpoint or
            settings; False for outputs of a run that did not finish (no Item, or a file missing).
        reason: one phrase, e.g. ``samples is 1, this run's is 2``.
    """

    other_settings: bool
    reason: str


def completeness(item_path: Path, expected: dict[str, str], assets: tuple[str, ...]) -> NotComplete | None:
    """Whether the outputs described by ``item_path`` are complete for this run (None) or why not.

    Args:
        item_path: the scene's STAC Item.
        expected: this run's values of :data:`MATCHED` (strings, as recorded).
        assets: the asset keys this run writes.
    """
    try:
        item = json.loads(item_path.read_text(encoding="utf-8"))
        properties, listed = item["properties"], item["assets"]
    except FileNotFoundError:
        return NotComplete(False, f"no STAC Item {item_path.name}")
    except (OSError, ValueError, KeyError, TypeError):
        return NotComplete(False, f"STAC Item {item_path.name} is unreadable")
    for name in MATCHED:
        found = properties.get(f"axion:{name}") if isinstance(properties, dict) else None
        if found is None and name == "opt_v2_mask_scene" and isinstance(properties, dict):
            found = "none"  # an Item written before masks were recorded: made without one
        if found != expected[name]:
            return NotComplete(True, f"{name} is {found}, this run's is {expected[name]}")
    for key in assets:
        href = listed.get(key, {}).get("href") if isinstance(listed, dict) else None
        if not isinstance(href, str) or not (item_path.parent / href).is_file():
            return NotComplete(False, f"{key} of {item_path.name} is missing")
    return None
