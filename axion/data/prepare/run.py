"""Run the sources, stage the tiles, assign splits and commit: the core of ``axion stage3 prepare``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from axion.data.prepare.output import INFER_DIR, STAGE2_DIR, Staging, check_prepare_dir
from axion.data.prepare.splits import assign_blocks, crosses_split
from axion.data.prepare.tile import PreparedTile, Skipped
from axion.data.tilefile import SPLITS, is_inference_tile
from axion.errors import DataError

#: Skip reason of a tile dropped because its overlapping window reaches another split.
OVERLAPS_SPLIT = "overlaps a tile of another split (stride < tile size)"


class TileSource(Protocol):
    """Anything that yields tiles: a scene pair, a BigEarthNet folder pair."""

    @property
    def total(self) -> int: ...

    def tiles(self) -> Iterator[PreparedTile | Skipped]: ...


@dataclass(frozen=True)
class SplitSettings:
    """How tiles are dealt into splits (``block_size`` only names the flag in messages)."""

    ratios: tuple[float, float, float]
    seed: int
    block_size: int | None = None


@dataclass
class PrepareReport:
    """What a prepare run wrote and skipped."""

    output_dir: Path
    counts: dict[str, int]
    skipped: Counter[str] = field(default_factory=Counter)
    stage2: int = 0
    #: One line per kind of warning (L1C, suspicious values in some tiles).
    warnings: list[str] = field(default_factory=list)
    #: Files in the output folders that ``--overwrite`` kept because prepare did not write them.
    kept: list[Path] = field(default_factory=list)

    @property
    def written(self) -> int:
        """Tiles written over all splits."""
        return sum(self.counts.values())


def check_splits(counts: dict[str, int], splits: SplitSettings, blocks: int) -> None:
    """Refuse a split left empty although its ratio asks for tiles.

    Raises:
        DataError: naming the counts, and what gives more blocks (``--block-size``) or
            allows the empty split (a 0 in ``--split-ratios``).
    """
    empty = [
        split for split, ratio in zip(SPLITS, splits.ratios, strict=True) if ratio > 0 and not counts[split]
    ]
    if not empty:
        return
    listed = ", ".join(f"{split} {counts[split]}" for split in SPLITS)
    block = f"lower --block-size (now {splits.block_size})" if splits.block_size else "lower --block-size"
    ratios = [0.0 if split in empty else ratio for split, ratio in zip(SPLITS, splits.ratios, strict=True)]
    receiver = next(i for i, split in enumerate(SPLITS) if counts[split])
    ratios[receiver] += 1.0 - sum(ratios)
    example = ",".join(f"{ratio:g}" for ratio in ratios)
    raise DataError(
        f"split {' and '.join(repr(s) for s in empty)} would be empty ({listed} tiles from {blocks} "
        f"spatial block(s)): {block} so the input gives more blocks, add scenes, or allow it "
        f"explicitly with a 0 in --split-ratios (e.g. --split-ratios {example})"
    )


def run_prepare(
    sources: Sequence[TileSource],
    output_dir: Path,
    splits: SplitSettings,
    *,
    overwrite: bool = False,
    manifest: dict[str, Any] | None = None,
    on_candidate: Callable[[], None] | None = None,
    warnings: Sequence[str] = (),
) -> PrepareReport:
    """Write every source's tiles into ``output_dir/{train,val,test}/``.

    Args:
        sources: where tiles come from.
        output_dir: created if missing; must be empty unless ``overwrite``.
        splits: ratios and seed of the spatially blocked split.
        overwrite: replace the ``train``, ``val``, ``test``, ``stage2`` folders and
            ``prepare.json`` of an existing output directory (other files are kept).
        manifest: extra settings recorded in ``prepare.json``.
        on_candidate: called once per candidate tile (progress).
        warnings: warnings about the sources (an L1C product), reported and recorded.

    Raises:
        DataError: bad input, a non-empty output directory, no tile left to write, or a
            split with a positive ratio left empty; the output directory is then left as it was.
    """
    check_prepare_dir(output_dir, overwrite)
    staging = Staging(output_dir)
    try:
        kept: dict[str, PreparedTile] = {}
        skipped: Counter[str] = Counter()
        suspicious: Counter[str] = Counter()
        with_stage2: set[str] = set()
        for source in sources:
            for tile in source.tiles():
                if on_candidate is not None:
                    on_candidate()
                if isinstance(tile, Skipped):
                    skipped[tile.reason] += 1
                    continue
                staging.add(tile)
                suspicious.update(tile.meta.get("warnings", []))
                if tile.opt_v2 is not None:
                    with_stage2.add(tile.name)
                tile.arrays, tile.opt_v2 = {}, None  # staged on disk; keep only the metadata in memory
                kept[tile.name] = tile
        if not kept:
            reasons = "; ".join(f"{n} {reason}" for reason, n in skipped.most_common()) or "no candidates"
            raise DataError(f"no tile to write ({reasons})")
        inference = all(is_inference_tile(t.meta) for t in kept.values())
        if inference:
            final, counts = _inference_only(kept)
            split_record: dict[str, Any] = {}
        else:
            final = _assign_splits(kept, splits, skipped)
            counts = {split: sum(1 for s, _ in final.values() if s == split) for split in SPLITS}
            check_splits(counts, splits, len({tile.block for tile in kept.values()}))
            split_record = {"split_ratios": list(splits.ratios), "seed": splits.seed}
        stage2 = len(with_stage2 & set(final))
        notes = [*warnings, *(f"{n} tile(s): {reason}" for reason, n in sorted(suspicious.items()))]
        record = {
            **(manifest or {}),
            **split_record,
            "tiles": counts,
            "skipped": dict(skipped),
            "stage2_dir": STAGE2_DIR if stage2 else None,
            "warnings": notes,
        }
        staging.commit(final, record)
        return PrepareReport(
            output_dir=output_dir,
            counts=counts,
            skipped=skipped,
            stage2=stage2,
            warnings=notes,
            kept=staging.kept,
        )
    finally:
        staging.cleanup()


def _assign_splits(
    kept: dict[str, PreparedTile], splits: SplitSettings, skipped: Counter[str]
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Tile name -> (split, JSON metadata), by spatial block; tiles reaching into another split are dropped."""
    assignment = assign_blocks((t.block for t in kept.values()), splits.ratios, splits.seed)
    final: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, tile in kept.items():
        if crosses_split(tile.block, tile.touches, assignment):
            skipped[OVERLAPS_SPLIT] += 1
            continue
        final[name] = (assignment[tile.block], {**tile.meta, "block": tile.block})
    return final


def _inference_only(
    kept: dict[str, PreparedTile],
) -> tuple[dict[str, tuple[str, dict[str, Any]]], dict[str, int]]:
    """Tiles without ground truth get no split: they all go to the :data:`INFER_DIR` folder."""
    final = {name: (INFER_DIR, dict(tile.meta)) for name, tile in kept.items()}
    return final, {INFER_DIR: len(final)}
