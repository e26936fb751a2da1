"""The output directory: refuse to clobber, stage every file, then commit in one go.

Tiles are first written into a hidden staging folder inside the output directory
(each file written to a temporary name and renamed). Only when every tile is staged
and the splits are known are they moved into ``train/``, ``val/``, ``test/`` (and
``stage2/``), so a failure half-way leaves the user's files as they were.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from axion.atomic import write_json_atomic
from axion.data.prepare.tile import PreparedTile
from axion.data.tilefile import OPT_V2_KEY, SPLITS, write_npz_atomic
from axion.errors import DataError

#: Folder of real Stage 2 inputs (from a cloudy S2), laid out as ``--stage2-dir`` expects.
STAGE2_DIR = "stage2"
#: What prepare did, next to the tiles.
MANIFEST = "prepare.json"
#: Folder of inference-only tiles (no ground truth, no split).
INFER_DIR = "infer"
#: What ``--overwrite`` replaces inside the output directory.
OWNED = (*SPLITS, INFER_DIR, STAGE2_DIR, MANIFEST)


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty directory without ``overwrite``, before anything is written."""
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: output path exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise DataError(f"{path}: output directory is not empty (use --overwrite to replace its tiles)")


class Staging:
    """Stage tiles under ``<output>/.staging-<id>/``; :meth:`commit` moves them into place."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        self.created = not output_dir.exists()
        output_dir.mkdir(parents=True, exist_ok=True)
        self.root = output_dir / f".staging-{uuid.uuid4().hex[:12]}"
        self.root.mkdir()
        self.names: set[str] = set()

    def add(self, tile: PreparedTile) -> None:
        """Write a tile's arrays (and its opt_v2) into the staging folder."""
        if tile.name in self.names:
            raise DataError(f"two tiles named {tile.name!r}: give the scenes different file names")
        self.names.add(tile.name)
        write_npz_atomic(self.root / f"{tile.name}.npz", tile.arrays)
        if tile.opt_v2 is not None:
            (self.root / STAGE2_DIR).mkdir(exist_ok=True)
            write_npz_atomic(self.root / STAGE2_DIR / f"{tile.name}.npz", {OPT_V2_KEY: tile.opt_v2})

    def commit(self, tiles: dict[str, tuple[str, dict[str, Any]]], manifest: dict[str, Any]) -> None:
        """Replace what ``--overwrite`` owns, then move the staged tiles into their split folders.

        Args:
            tiles: tile name -> (split, JSON metadata) for every staged tile to keep; the split of
                an inference-only tile is :data:`INFER_DIR` (its folder), which its JSON does not name.
            manifest: written to ``prepare.json``.
        """
        for owned in OWNED:
            target = self.output_dir / owned
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        for name, (split, meta) in sorted(tiles.items()):
            folder = self.output_dir / split
            folder.mkdir(exist_ok=True)
            (self.root / f"{name}.npz").replace(folder / f"{name}.npz")
            record = {"split": split, **meta} if split in SPLITS else meta  # inference tiles have no split
            write_json_atomic(folder / f"{name}.json", record)
            staged_opt = self.root / STAGE2_DIR / f"{name}.npz"
            if staged_opt.exists():
                (self.output_dir / STAGE2_DIR).mkdir(exist_ok=True)
                staged_opt.replace(self.output_dir / STAGE2_DIR / f"{name}.npz")
        write_json_atomic(self.output_dir / MANIFEST, manifest)

    def cleanup(self) -> None:
        """Remove the staging folder (and the output directory if this run created it and it is empty)."""
        shutil.rmtree(self.root, ignore_errors=True)
        if self.created and self.output_dir.is_dir() and not any(self.output_dir.iterdir()):
            self.output_dir.rmdir()
