"""What ``axion stage3 visualize`` draws: every figure of one evaluation results directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from axion.config import VisualizeConfig
from axion.errors import DataError


@dataclass
class Rendered:
    """The PNG files written, and notes on what could not be drawn."""

    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def visualize(settings: VisualizeConfig, on_figure: Callable[[Path], None] | None = None) -> Rendered:
    """Tile panels, training curves and metric distributions as PNG files.

    Raises:
        DataError: the results directory, a tile array file or the history is missing or unreadable.
    """
    import numpy as np

    from axion.engine.history import HISTORY_FILE, read_history
    from axion.viz.figures import metric_distributions, tile_panel, training_curves
    from axion.viz.results import TILE_ARRAYS, load_results

    loaded = load_results(settings.results)
    output_dir = Path(settings.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: output directory is a file")
    history = settings.history
    if history is None:
        run_dir = loaded.summary.get("run_dir")
        history = Path(run_dir) / HISTORY_FILE if run_dir else None
    elif not history.is_file():
        raise DataError(f"{history}: training history not found")
    output_dir.mkdir(parents=True, exist_ok=True)
    done = Rendered()

    def wrote(path: Path) -> None:
        done.figures.append(path)
        if on_figure is not None:
            on_figure(path)

    rows = {row["name"]: row for row in loaded.rows}
    if loaded.tiles and settings.max_tiles > 0:
        (output_dir / "tiles").mkdir(exist_ok=True)
    for npz in loaded.tiles[: settings.max_tiles]:
        with np.load(npz) as data:
            missing = [key for key in TILE_ARRAYS if key not in data.files]
            if missing:
                raise DataError(f"{npz}: missing array {missing[0]!r}")
            arrays = {key: data[key] for key in TILE_ARRAYS}
        wrote(
            tile_panel(
                arrays, rows.get(npz.stem), npz.stem, output_dir / "tiles" / f"{npz.stem}.png", settings.dpi
            )
        )
    if not loaded.tiles:
        done.notes.append(
            f"{settings.results} has no tile arrays (evaluate --save-arrays 0); no tile panels drawn"
        )

    if history is not None and history.is_file():
        planned = None
        config = Path(loaded.summary.get("run_dir", "")) / "config.json"
        if config.is_file():
            planned = json.loads(config.read_text()).get("training", {}).get("epochs")
        wrote(
            training_curves(read_history(history), output_dir / "training_curves.png", settings.dpi, planned)
        )
    else:
        done.notes.append(
            f"no training history at {history}; pass --history PATH/metrics.jsonl for training curves"
        )
    if loaded.rows:
        wrote(metric_distributions(loaded.rows, output_dir / "metric_distributions.png", settings.dpi))
    return done
