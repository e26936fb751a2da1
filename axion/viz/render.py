"""What ``axion stage3 visualize`` draws: every figure of one evaluation results directory.

Every input (``summary.json``, ``per_tile.csv``, the tile arrays to draw, the training
history) is read and checked before the first figure is drawn, so a damaged file is one
line naming it and no figure is written. Figures are drawn into a hidden staging folder
of the output directory and moved into place only when all of them are done.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from axion.config import VisualizeConfig
from axion.errors import DataError
from axion.records.monitor import DEFAULT_MONITOR, MONITORS
from axion.viz.page import PAGE_FILE

#: Figures are drawn into ``<output-dir>/.visualize-<pid>-<random>/`` first.
STAGING = "visualize"
#: Shape of each tile array: channels (None: a 2-D array).
_TILE_CHANNELS: dict[str, int | None] = {"s1": 2, "opt_v2": 4, "opt_v3": 4, "target": 4, "mask": None}


@dataclass
class Rendered:
    """The PNG files written, the results page tying them together, and notes on what could not be drawn."""

    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    page: Path | None = None


def read_tile_arrays(npz: Path) -> dict[str, np.ndarray]:
    """The arrays of one ``tiles/<name>.npz`` of a results directory, checked.

    Raises:
        DataError: unreadable, a missing array, a wrong shape or non-finite values, naming the file.
    """
    from axion.data.tilefile import load_arrays

    try:
        arrays = load_arrays(npz, tuple(_TILE_CHANNELS))
    except ValueError as exc:
        raise DataError(f"{npz}: {exc}") from None
    if arrays["mask"].ndim != 2:
        raise DataError(f"{npz}: array 'mask' has shape {arrays['mask'].shape}, expected (H, W)")
    height, width = arrays["mask"].shape
    for key, channels in _TILE_CHANNELS.items():
        expected = (height, width) if channels is None else (channels, height, width)
        if arrays[key].shape != expected:
            raise DataError(f"{npz}: array {key!r} has shape {arrays[key].shape}, expected {expected}")
        if not np.issubdtype(arrays[key].dtype, np.number):
            raise DataError(f"{npz}: array {key!r} has non-numeric dtype {arrays[key].dtype}")
        if key != "mask" and not np.isfinite(arrays[key]).all():
            raise DataError(f"{npz}: array {key!r} has NaN/inf values")
    return arrays


@dataclass(frozen=True)
class RunPlan:
    """What the run's config.json says about its length and model selection."""

    epochs: int | None = None
    max_steps: int | None = None
    monitor: str = DEFAULT_MONITOR
    delta: float = 0.0


def _run_plan(run_dir: str | None) -> tuple[RunPlan, str | None]:
    """The run's plan from its config.json, and a note when that cannot be read."""
    config = Path(run_dir or "") / "config.json"
    if not run_dir or not config.is_file():
        return RunPlan(), None
    try:
        saved = json.loads(config.read_text())
        training, stopping = saved.get("training", {}), saved.get("early_stopping", {})
        epochs, max_steps = training.get("epochs"), training.get("max_steps")
        monitor, delta = stopping.get("monitor"), stopping.get("early_stop_delta")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return RunPlan(), f"{config} is unreadable; the best epoch and the early-stopping point may be off"
    return RunPlan(
        epochs=epochs if isinstance(epochs, int) else None,
        max_steps=max_steps if isinstance(max_steps, int) else None,
        monitor=monitor if monitor in MONITORS else DEFAULT_MONITOR,
        delta=float(delta) if isinstance(delta, int | float) else 0.0,
    ), None


def _write_page(
    staging: Path, summary: dict, rows: list[dict], figures: list[Path], output_dir: Path
) -> Path:
    """The results page in the staging folder, pointing at the figures' final places."""
    from axion.viz.page import write_results_page

    relative = [figure.relative_to(output_dir).as_posix() for figure in figures]
    panels = {Path(path).stem: path for path in relative if path.startswith("tiles/")}
    titles = {"training_curves.png": "Training curves", "metric_distributions.png": "Metric distributions"}
    others = [(titles[path], path) for path in relative if path in titles]
    return write_results_page(staging / PAGE_FILE, summary, rows, panels, others)


def visualize(settings: VisualizeConfig, on_figure: Callable[[Path], None] | None = None) -> Rendered:
    """Tile panels, training curves and metric distributions as PNG files, and ``index.html``
    (:mod:`axion.viz.page`) that shows them with the scores.

    Raises:
        DataError: the results directory, a tile array file or the history is missing, unreadable
            or malformed, or the output directory cannot be written; nothing is written then.
    """
    from axion.outputs import check_writable_dir, clean_stale, remove_stale_folders, staging_name
    from axion.records.history import HISTORY_FILE, read_history
    from axion.records.results import load_results

    loaded = load_results(settings.results)
    output_dir = Path(settings.output_dir)
    check_writable_dir(output_dir)
    history = settings.history
    if history is None:
        run_dir = loaded.summary.get("run_dir")
        history = Path(run_dir) / HISTORY_FILE if isinstance(run_dir, str) and run_dir else None
    elif not history.is_file():
        raise DataError(f"{history}: training history not found")
    done = Rendered()
    rows_by_name = {row["name"]: row for row in loaded.rows}
    panels = [(npz, read_tile_arrays(npz)) for npz in loaded.tiles[: settings.max_tiles]]
    rows_of_history = read_history(history) if history is not None and history.is_file() else None
    plan, note = _run_plan(loaded.summary.get("run_dir"))
    if note:
        done.notes.append(note)

    from axion.viz.figures import metric_distributions, tile_panel, training_curves

    drawn: list[tuple[Path, Path]] = []  # (staged file, final place)
    output_dir.mkdir(parents=True, exist_ok=True)
    clean_stale(output_dir, output_dir / "tiles")
    remove_stale_folders(output_dir, STAGING)
    staging = output_dir / staging_name(STAGING)
    staging.mkdir()
    try:
        if panels:
            (staging / "tiles").mkdir()
        for npz, arrays in panels:
            relative = Path("tiles") / f"{npz.stem}.png"
            tile_panel(arrays, rows_by_name.get(npz.stem), npz.stem, staging / relative, settings.dpi)
            drawn.append((staging / relative, output_dir / relative))
        if not loaded.tiles:
            done.notes.append(
                f"{settings.results} has no tile arrays (evaluate --save-arrays 0); no tile panels drawn"
            )
        if rows_of_history is not None:
            name = "training_curves.png"
            training_curves(
                rows_of_history,
                staging / name,
                settings.dpi,
                plan.epochs,
                plan.max_steps,
                plan.monitor,
                plan.delta,
            )
            drawn.append((staging / name, output_dir / name))
        else:
            done.notes.append(
                f"no training history at {history}; pass --history PATH/metrics.jsonl for training curves"
            )
        if loaded.rows:
            name = "metric_distributions.png"
            metric_distributions(loaded.rows, staging / name, settings.dpi)
            drawn.append((staging / name, output_dir / name))
        page = _write_page(staging, loaded.summary, loaded.rows, [final for _, final in drawn], output_dir)
        for staged, final in drawn:
            final.parent.mkdir(exist_ok=True)
            staged.replace(final)
            done.figures.append(final)
            if on_figure is not None:
                on_figure(final)
        page.replace(output_dir / PAGE_FILE)  # last: it shows the figures moved in before it
        done.page = output_dir / PAGE_FILE
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done
