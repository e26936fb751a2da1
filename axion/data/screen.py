"""What ``train`` and ``evaluate`` check before any model is built, under the bad-sample policy.

A tile folder is small enough to read whole up front (``prepare --check``'s judgement). A
problem of the folder (a tile's JSON, a duplicate name, no tiles) is refused; a bad sample is
reported as a warning and left to the dataset, which skips it whenever it is met
(:mod:`axion.data.badsamples`), unless bad samples already make more than
``--max-bad-fraction`` of a split: that run would stop anyway, so it stops now.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from axion.data.check import Problem, inspect_stage2, inspect_tiles, refuse_bad_share, refuse_non_samples

if TYPE_CHECKING:
    from axion.data.dataset import TileDataset


def screen_samples(
    data_dir: Path, stage2_dir: Path | None, datasets: Mapping[str, TileDataset], limit: float
) -> list[Problem]:
    """Check every tile (and Stage 2 output) the datasets use before any model is built.

    What is wrong with a tile's JSON, names or layout is refused. Bad samples (unreadable,
    NaN/inf, implausible) are skipped and counted when met, so they come back as warnings,
    unless they make more than ``limit`` of a split: that run would stop anyway.

    Raises:
        DataError: one line naming the first bad file.
    """
    found = inspect_tiles(data_dir)
    problems = refuse_non_samples(found, data_dir)
    warnings = found.warnings
    if stage2_dir is not None:
        used = [
            (t.name, (t.height, t.width)) for d in datasets.values() for t in d.tiles if t.problem is None
        ]
        stage2 = inspect_stage2(stage2_dir, used)
        problems += stage2.problems
        warnings += stage2.warnings
    for split, dataset in datasets.items():
        skipped = refuse_bad_share(problems, dataset.names, split, limit)
        warnings += [Problem(p.path, f"{p.reason}; skipped (bad sample)", fatal=False) for p in skipped]
    return warnings
