"""The output directory: refuse to clobber, stage every file, then commit in one go.

Tiles are first written into a hidden staging folder inside the output directory
(each file written to a temporary name and renamed). Only when every tile is staged
and the splits are known are they moved into ``train/``, ``val/``, ``test/`` (and
``stage2/``), so a failure half-way leaves the user's files as they were.

``--overwrite`` removes only the kinds of file prepare writes (:func:`prepared_files`):
tile pairs in the split folders, Stage 2 files in ``stage2/`` and ``prepare.json``.
Anything else a user keeps there stays.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from axion.atomic import write_json_atomic
from axion.data.prepare.tile import PreparedTile
from axion.data.tilefile import OPT_V2_KEY, OPT_V2_MASK_KEY, SPLITS, npz_header, sidecar, write_npz_atomic
from axion.errors import DataError
from axion.outputs import check_output_dir, clean_stale, remove_stale_folders, staging_name

#: Folder of real Stage 2 inputs (from a cloudy S2), laid out as ``--stage2-dir`` expects.
STAGE2_DIR = "stage2"
#: What prepare did, next to the tiles.
MANIFEST = "prepare.json"
#: Folder of inference-only tiles (no ground truth, no split).
INFER_DIR = "infer"
#: Folders prepare writes into.
FOLDERS = (*SPLITS, INFER_DIR, STAGE2_DIR)
#: Staging folders are ``.staging-<pid>-<random>``, so those of killed runs can be recognised.
STAGING = "staging"


def remove_stale_staging(output_dir: Path) -> list[Path]:
    """Remove the staging folders and temporary files that killed prepare runs left behind."""
    stale = clean_stale(output_dir, *(output_dir / folder for folder in FOLDERS))
    return stale + remove_stale_folders(output_dir, STAGING)


def _holds_files(path: Path) -> str | None:
    return (
        "output directory is not empty (use --overwrite to replace its tiles)"
        if any(path.iterdir())
        else None
    )


def check_prepare_dir(path: Path, overwrite: bool) -> None:
    """Refuse a file, an unwritable folder, or a non-empty directory without ``overwrite``.

    Leftovers of killed prepare runs (staging folders, temporary files) are removed
    first: they are prepare's own, and would otherwise make the directory look non-empty.
    """
    check_output_dir(path, clean=remove_stale_staging, occupied=None if overwrite else _holds_files)


def _is_stage2_file(path: Path) -> bool:
    try:
        return set(npz_header(path)) in ({OPT_V2_KEY}, {OPT_V2_KEY, OPT_V2_MASK_KEY})
    except ValueError:
        return False


def prepared_files(output_dir: Path) -> tuple[list[Path], list[Path]]:
    """The files of an output directory that prepare writes, and the others in its folders.

    Prepare's own: ``<split>/<name>.npz`` (also ``infer/<name>.npz``) with its ``<name>.json``, ``stage2/<name>.npz``
    holding only ``opt_v2``, and ``prepare.json``. Returns (prepare's, others), where
    *others* are files and folders inside ``train/``, ``val/``, ``test/`` and ``stage2/``
    that are not prepare's.
    """
    ours: list[Path] = []
    others: list[Path] = []
    for folder in FOLDERS:
        root = output_dir / folder
        if not root.is_dir():
            continue
        for path in sorted(root.iterdir()):
            if folder == STAGE2_DIR:
                mine = [path] if path.suffix == ".npz" and path.is_file() and _is_stage2_file(path) else []
            elif path.suffix == ".npz" and path.is_file() and sidecar(path).is_file():
                mine = [path, sidecar(path)]
            elif path.suffix == ".json" and path.is_file() and path.with_suffix(".npz").is_file():
                continue  # a tile's sidecar, counted with its NPZ
            else:
                mine = []
            ours += mine
            others += [] if mine else [path]
    if (output_dir / MANIFEST).is_file():
        ours.append(output_dir / MANIFEST)
    return ours, others


def remove_prepared(output_dir: Path) -> list[Path]:
    """Remove what an earlier prepare wrote (see :func:`prepared_files`); return what was kept."""
    ours, others = prepared_files(output_dir)
    for path in ours:
        path.unlink(missing_ok=True)
    for folder in FOLDERS:
        root = output_dir / folder
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
    return others


class Staging:
    """Stage tiles under ``<output>/.staging-<pid>-<random>/``; :meth:`commit` moves them into place."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        self.created = not output_dir.exists()
        output_dir.mkdir(parents=True, exist_ok=True)
        self.root = output_dir / staging_name(STAGING)
        self.root.mkdir()
        self.names: set[str] = set()
        self.kept: list[Path] = []

    def add(self, tile: PreparedTile) -> None:
        """Write a tile's arrays (and its opt_v2) into the staging folder."""
        if tile.name in self.names:
            raise DataError(f"two tiles named {tile.name!r}: give the scenes different file names")
        self.names.add(tile.name)
        write_npz_atomic(self.root / f"{tile.name}.npz", tile.arrays)
        if tile.opt_v2 is not None:
            (self.root / STAGE2_DIR).mkdir(exist_ok=True)
            stage2 = {OPT_V2_KEY: tile.opt_v2}
            if tile.opt_v2_mask is not None:
                stage2[OPT_V2_MASK_KEY] = tile.opt_v2_mask
            write_npz_atomic(self.root / STAGE2_DIR / f"{tile.name}.npz", stage2)

    def commit(self, tiles: dict[str, tuple[str, dict[str, Any]]], manifest: dict[str, Any]) -> None:
        """Remove what an earlier prepare wrote, then move the staged tiles into their split folders.

        Args:
            tiles: tile name -> (split, JSON metadata) for every staged tile to keep; the split of
                an inference-only tile is :data:`INFER_DIR` (its folder), which its JSON does not name.
            manifest: written to ``prepare.json``.
        """
        self.kept = remove_prepared(self.output_dir)
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
