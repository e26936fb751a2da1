"""``axion stage3 visualize``: PNG figures from an ``evaluate`` results directory.

Writes ``tiles/<name>.png`` (six panels per tile), ``training_curves.png`` (from the
run's ``metrics.jsonl``, found next to the evaluated checkpoint) and
``metric_distributions.png`` into ``--output-dir``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from axion.cli._common import console, user_errors
from axion.cli.app import stage3_app
from axion.errors import DataError


@stage3_app.command()
@user_errors
def visualize(
    results: Path = typer.Option(
        ...,
        "--results",
        help="Results directory written by 'axion stage3 evaluate' (summary.json, per_tile.csv).",
    ),
    output_dir: Path = typer.Option(
        ..., "--output-dir", help="Where the PNG figures go; created if missing."
    ),
    history: Path | None = typer.Option(
        None,
        "--history",
        help="metrics.jsonl of the training run.",
        show_default="next to the checkpoint recorded in summary.json",
    ),
    max_tiles: int = typer.Option(
        16, "--max-tiles", min=0, help="Draw panels for at most this many tiles (by name)."
    ),
    dpi: int = typer.Option(
        110, "--dpi", min=30, max=600, help="Resolution of the PNG files (dots per inch)."
    ),
) -> None:
    """Draw tile panels, training curves and opt_v2-vs-opt_v3 metric distributions as PNG files.

    Tile panels: SAR false colour, opt_v2, opt_v3 and ground truth in true colour
    (one shared 2-98 % stretch of the ground truth), |opt_v3 - ground truth| and
    the SAR edges over opt_v3, with the tile's metrics in the title.
    """
    import json

    import numpy as np

    from axion.engine.history import HISTORY_FILE, read_history
    from axion.viz.figures import metric_distributions, tile_panel, training_curves
    from axion.viz.results import TILE_ARRAYS, load_results

    loaded = load_results(results)
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: output directory is a file")
    if history is None:
        run_dir = loaded.summary.get("run_dir")
        history = Path(run_dir) / HISTORY_FILE if run_dir else None
    elif not history.is_file():
        raise DataError(f"{history}: training history not found")
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    rows = {row["name"]: row for row in loaded.rows}
    if loaded.tiles and max_tiles > 0:
        (output_dir / "tiles").mkdir(exist_ok=True)
    for npz in loaded.tiles[:max_tiles]:
        with np.load(npz) as data:
            missing = [key for key in TILE_ARRAYS if key not in data.files]
            if missing:
                raise DataError(f"{npz}: missing array {missing[0]!r}")
            arrays = {key: data[key] for key in TILE_ARRAYS}
        written.append(
            tile_panel(arrays, rows.get(npz.stem), npz.stem, output_dir / "tiles" / f"{npz.stem}.png", dpi)
        )
    if not loaded.tiles:
        console.print(f"note: {results} has no tile arrays (evaluate --save-arrays 0); no tile panels drawn")

    if history is not None and history.is_file():
        planned = None
        config = Path(loaded.summary.get("run_dir", "")) / "config.json"
        if config.is_file():
            planned = json.loads(config.read_text()).get("training", {}).get("epochs")
        written.append(
            training_curves(read_history(history), output_dir / "training_curves.png", dpi, planned)
        )
    else:
        console.print(
            f"note: no training history at {history}; pass --history PATH/metrics.jsonl for training curves"
        )

    if loaded.rows:
        written.append(metric_distributions(loaded.rows, output_dir / "metric_distributions.png", dpi))
    console.print(f"Wrote {len(written)} figures to {output_dir}")
