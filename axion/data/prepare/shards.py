"""``prepare --format shards``: the tiles prepare makes, written as WebDataset shards.

Tiles are made exactly as ``--format tiles`` makes them, into a hidden folder inside the
output directory, then written into shards (:func:`axion.data.shardwrite.write_shards`); the
tile files are removed, ``prepare.json`` and a ``stage2/`` folder (real opt_v2) stay beside the
shards. ``--from-tiles DIR`` writes the shards of an existing tile folder, leaving it as it is.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from axion.config import PrepareConfig
from axion.data.prepare.output import MANIFEST, STAGE2_DIR
from axion.data.prepare.run import PrepareReport
from axion.data.shardwrite import SHARD_INDEX, write_shards
from axion.data.tilefile import SPLITS


def _remove_old_shards(output_dir: Path) -> None:
    """``--overwrite``: the shards and index an earlier run wrote (nothing else)."""
    (output_dir / SHARD_INDEX).unlink(missing_ok=True)
    for split in SPLITS:
        for shard in (output_dir / split).glob(f"{split}-*.tar"):
            shard.unlink()


def prepare_shards(
    settings: PrepareConfig, source: str, make_tiles: Callable[[PrepareConfig], PrepareReport]
) -> PrepareReport:
    """Write shards from ``--from-tiles`` or from tiles ``make_tiles`` writes first.

    Args:
        settings: the command's settings (``--format shards``).
        source: what :func:`~axion.data.prepare.api.source_of` picked.
        make_tiles: prepare's tile writer, called with settings for a temporary tile folder.
    """
    output_dir = Path(settings.output_dir)  # type: ignore[arg-type]
    output_dir.mkdir(parents=True, exist_ok=True)
    if settings.overwrite:
        _remove_old_shards(output_dir)
    if source == "from_tiles":
        counts = write_shards(Path(settings.from_tiles), output_dir, settings.shard_size)  # type: ignore[arg-type]
        return PrepareReport(output_dir=output_dir, counts=counts)
    with tempfile.TemporaryDirectory(prefix=".tiles-", dir=output_dir) as tmp:
        tiles_dir = Path(tmp) / "tiles"
        report = make_tiles(
            settings.model_copy(update={"output_dir": tiles_dir, "format": "tiles", "overwrite": False})
        )
        report.counts = write_shards(tiles_dir, output_dir, settings.shard_size)
        for kept in (MANIFEST, STAGE2_DIR):
            if (tiles_dir / kept).exists():
                if (output_dir / kept).is_dir():
                    shutil.rmtree(output_dir / kept)
                shutil.move(tiles_dir / kept, output_dir / kept)
    report.output_dir = output_dir
    return report
