"""A tile folder as WebDataset shards: ``prepare --format shards`` and ``prepare --from-tiles``.

Layout of a shard folder::

    <out>/shards.json                   the index: samples per shard, per split
    <out>/train/train-000000.tar        up to --shard-size samples each, sorted by name
    <out>/val/val-000000.tar
    <out>/test/test-000000.tar

Each sample of a shard is one tile, unchanged: the member ``<name>.npz`` holds the tile's NPZ
bytes and ``<name>.json`` its sidecar, so a shard sample and a tile file are read and judged by
the same code. The split comes from the JSON, as for a tile folder. Shards are written under a
temporary name and renamed, with a fixed member time, so the same tiles give the same bytes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from axion.atomic import atomic_path, write_json_atomic
from axion.data.tilefile import SPLITS, find_npz, is_inference_tile, read_meta, sidecar, split_of
from axion.errors import DataError

#: The index of a shard folder.
SHARD_INDEX = "shards.json"
#: What the index's ``format`` says.
INDEX_FORMAT = "axion-shards"
#: Samples per shard unless ``--shard-size`` says otherwise (about 70 MB of 256 px tiles).
DEFAULT_SHARD_SIZE = 1000


def shard_name(split: str, number: int) -> str:
    """``train/train-000003.tar``: a shard's path inside the shard folder."""
    return f"{split}/{split}-{number:06d}.tar"


def _tiles_by_split(tiles_dir: Path) -> dict[str, list[Path]]:
    """Every tile below ``tiles_dir`` by the split its JSON declares, sorted by name."""
    found: dict[str, list[Path]] = defaultdict(list)
    names: dict[str, Path] = {}
    for npz in find_npz(tiles_dir):
        if not sidecar(npz).exists():
            continue  # a Stage 2 output (or no tile: prepare --check names it)
        try:
            meta = read_meta(sidecar(npz))
            if is_inference_tile(meta):
                raise ValueError("a tile without ground truth (inference only) has no split to shard into")
            split = split_of(meta)
        except ValueError as exc:
            raise DataError(f"{sidecar(npz)}: {exc}") from None
        if npz.stem in names:
            raise DataError(f"{npz}: duplicate tile name {npz.stem!r} (also {names[npz.stem]})")
        names[npz.stem] = npz
        found[split].append(npz)
    if not found:
        raise DataError(f"{tiles_dir}: no tiles found (expected <name>.npz with a sidecar <name>.json)")
    return {split: sorted(found[split], key=lambda p: p.stem) for split in SPLITS if split in found}


def _write_shard(path: Path, tiles: list[Path]) -> None:
    import webdataset as wds

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        # A whole-number time: a float one gives every member a PAX header of its own (twice the
        # headers to write and parse).
        with wds.TarWriter(handle, encoder=False, mtime=0) as writer:
            for npz in tiles:
                writer.write(
                    {"__key__": npz.stem, "npz": npz.read_bytes(), "json": sidecar(npz).read_bytes()}
                )


def write_shards(tiles_dir: Path, output_dir: Path, shard_size: int = DEFAULT_SHARD_SIZE) -> dict[str, int]:
    """Write every tile below ``tiles_dir`` into shards below ``output_dir`` and the index.

    Returns:
        Samples per split.

    Raises:
        DataError: a tile's JSON is unreadable or names no split, a duplicate name, or no tiles.
    """
    splits = _tiles_by_split(tiles_dir)
    index: dict[str, Any] = {"format": INDEX_FORMAT, "version": 1, "splits": {}}
    for split, tiles in splits.items():
        entries = []
        for number, start in enumerate(range(0, len(tiles), shard_size)):
            chunk = tiles[start : start + shard_size]
            name = shard_name(split, number)
            _write_shard(output_dir / name, chunk)
            entries.append({"shard": name, "samples": len(chunk)})
        index["splits"][split] = entries
    write_json_atomic(output_dir / SHARD_INDEX, index)
    return {split: len(tiles) for split, tiles in splits.items()}


def read_index(text: str, where: str) -> dict[str, list[tuple[str, int]]]:
    """(shard path relative to the index, samples) per split from an index's text.

    Raises:
        DataError: not an index of this format, naming ``where``.
    """
    try:
        index = json.loads(text)
        if index.get("format") != INDEX_FORMAT:
            raise ValueError(f"'format' is not {INDEX_FORMAT!r}")
        return {
            split: [(str(entry["shard"]), int(entry["samples"])) for entry in entries]
            for split, entries in index["splits"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{where}: not a shard index ({exc})") from None
