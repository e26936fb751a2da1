"""The figures of ``axion stage3 visualize``: tile panels, training curves, metric distributions.

Every function imports matplotlib with the Agg backend inside its body and writes
one PNG; nothing needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from axion.atomic import atomic_path
from axion.bands import RGB_INDICES, to_reflectance
from axion.records.monitor import DEFAULT_MONITOR, MONITORS, EarlyStopping, all_finite
from axion.records.results import METRICS

#: Percentiles of the shared true-colour stretch (taken from the ground truth).
STRETCH_PERCENTILES: tuple[float, float] = (2.0, 98.0)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, dpi: int) -> Path:
    try:
        with atomic_path(path, keep_suffix=True) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def stretch_limits(image: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band 2-98 % percentiles (C,) of a (C, H, W) image over valid pixels."""
    pixels = image[:, valid] if valid.any() else image.reshape(image.shape[0], -1)
    low, high = np.percentile(pixels, STRETCH_PERCENTILES, axis=1)
    return low, np.maximum(high, low + 1e-6)


def true_colour(optical: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(4, H, W) tile units -> (H, W, 3) RGB in [0, 1] with the given per-band limits."""
    rgb = optical[list(RGB_INDICES)]
    lo, hi = low[list(RGB_INDICES)], high[list(RGB_INDICES)]
    return np.clip((rgb - lo[:, None, None]) / (hi - lo)[:, None, None], 0.0, 1.0).transpose(1, 2, 0)


def sar_false_colour(s1: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(2, H, W) dB -> (H, W, 3): R = VV, G = VH, B = VV - VH, each stretched 2-98 %."""
    channels = np.stack([s1[0], s1[1], s1[0] - s1[1]])
    low, high = stretch_limits(channels, valid)
    return np.clip((channels - low[:, None, None]) / (high - low)[:, None, None], 0, 1).transpose(1, 2, 0)


def sar_edges(s1: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W) SAR gradient magnitude (smoothed, Sobel): where SAR agreement looks."""
    import torch

    from axion.structure import sar_edges as edges

    s1_t = torch.from_numpy(s1[None].astype(np.float64))
    valid_t = torch.from_numpy(valid[None, None])
    return edges(s1_t, valid_t)[0, 0].numpy()


def _title(name: str, row: Mapping[str, Any] | None) -> str:
    if row is None:
        return name
    parts = []
    for src, label in (("opt_v2", "opt_v2"), ("opt_v3", "opt_v3")):
        psnr, ssim, sar = (row.get(f"{src}_{k}", math.nan) for k in ("psnr", "ssim", "sar_agreement"))
        parts.append(f"{label}: PSNR {psnr:.2f} dB, SSIM {ssim:.3f}, SAR agr. {sar:.3f}")
    return f"{name}\n" + "  |  ".join(parts)


def tile_panel(
    arrays: Mapping[str, np.ndarray], row: Mapping[str, Any] | None, name: str, path: Path, dpi: int
) -> Path:
    """Six panels of one tile: SAR, opt_v2, opt_v3, ground truth (one shared stretch), |error|, SAR edges."""
    plt = _pyplot()
    s1, opt_v2, opt_v3, target = (arrays[k].astype(np.float64) for k in ("s1", "opt_v2", "opt_v3", "target"))
    valid = arrays["mask"].astype(bool)
    low, high = stretch_limits(target, valid)
    error = to_reflectance(np.abs(opt_v3 - target).mean(axis=0))
    edges = sar_edges(s1, valid)
    fig, axes = plt.subplots(2, 3, figsize=(13, 9))
    axes[0, 0].imshow(sar_false_colour(s1, valid))
    axes[0, 0].set_title("SAR false colour (R VV, G VH, B VV-VH)")
    for ax, image, title in (
        (axes[0, 1], opt_v2, "opt_v2 (input)"),
        (axes[0, 2], opt_v3, "opt_v3 (output)"),
        (axes[1, 0], target, "ground truth"),
    ):
        ax.imshow(true_colour(image, low, high))
        ax.set_title(f"{title}, true colour")
    shown = axes[1, 1].imshow(error, cmap="magma", vmin=0, vmax=max(float(np.percentile(error, 99)), 1e-6))
    axes[1, 1].set_title("|opt_v3 - ground truth| (reflectance, band mean)")
    fig.colorbar(shown, ax=axes[1, 1], fraction=0.046, pad=0.04)
    axes[1, 2].imshow(true_colour(opt_v3, low, high).mean(axis=2), cmap="gray", vmin=0, vmax=1)
    strong = np.ma.masked_less(edges, np.percentile(edges, 80))
    axes[1, 2].imshow(strong, cmap="autumn", alpha=0.8)
    axes[1, 2].set_title("SAR edges (Sobel, top 20 %) over opt_v3")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        _title(name, row) + "\ntrue colour: B4/B3/B2, 2-98 % stretch of the ground truth, shared", fontsize=10
    )
    return _save(fig, path, dpi)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = [
        (float(r["epoch"]), float(r[key]))
        for r in history
        if isinstance(r.get(key), int | float) and math.isfinite(float(r[key]))
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _stop_label(
    history: Sequence[Mapping[str, Any]], last: float, planned: int | None, max_steps: int | None
) -> str | None:
    """Why the run ended before its planned epochs, or None when it did not."""
    steps = [r["step"] for r in history if isinstance(r.get("step"), int | float)]
    if max_steps is not None and steps and max(steps) >= max_steps:
        return f"--max-steps {max_steps} reached at epoch {last:g}"
    if planned is not None and last < planned:
        return f"early stop after epoch {last:g} of {planned}"
    return None


def monitored_best(
    history: Sequence[Mapping[str, Any]], monitor: str, delta: float = 0.0
) -> tuple[float, float] | None:
    """(epoch, value) of the best validation by ``monitor``; None without one.

    The history is replayed through the trainer's own :class:`EarlyStopping` (same ``delta``,
    same refusal of non-finite validations), so the epoch is the one ``best_model.pt`` holds.
    """
    watched = MONITORS[monitor]
    stopping = EarlyStopping(patience=len(history) + 1, delta=delta, mode=watched.mode)
    for row in history:
        value = row.get(watched.history_key)
        if not isinstance(value, int | float):
            continue
        val_stats = {k: v for k, v in row.items() if k.startswith("val_")}
        stopping.update(float(value), int(row["epoch"]), finite=all_finite(val_stats))
    return None if stopping.best_epoch == 0 else (float(stopping.best_epoch), stopping.best)


def training_curves(
    history: Sequence[Mapping[str, Any]],
    path: Path,
    dpi: int,
    planned_epochs: int | None = None,
    max_steps: int | None = None,
    monitor: str = DEFAULT_MONITOR,
    delta: float = 0.0,
) -> Path:
    """Losses, loss terms, the monitored validation value and learning rate per epoch; best epoch and stop marked.

    ``monitor`` and ``delta`` are the run's ``--monitor`` and ``--early-stop-delta``: the
    monitored validation value is drawn bottom right and its best epoch (the one
    ``best_model.pt`` holds) is marked on every panel.

    Constrained layout keeps titles, tick labels and axis labels apart; legends of crowded
    panels sit outside the data, and the best epoch and the stopping point are legend entries
    of their vertical lines rather than text placed among the curves, so nothing is clipped or
    covered however the values fall.
    """
    plt = _pyplot()
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(15, 9), layout="constrained")
    style = {"marker": "o", "markersize": 4}
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        axes[0, 0].plot(*_series(history, key), label=label, **style)
    axes[0, 0].set_title("Total loss")
    terms = sorted(
        {k.split("_", 1)[1] for r in history for k in r if k.startswith("train_")} - {"loss", "skipped_steps"}
    )
    for term in terms:
        for split, line in (("train", "-"), ("val", "--")):
            x, y = _series(history, f"{split}_{term}")
            if x:
                axes[0, 1].plot(x, y, line, label=f"{split} {term}", **style)
    axes[0, 1].set_title("Loss terms (solid: train, dashed: validation)")
    watched = MONITORS[monitor]
    x, score = _series(history, watched.history_key)
    axes[1, 1].plot(x, score, color="tab:green", label=f"validation {watched.quantity}", **style)
    axes[1, 1].set_title(f"Validation {watched.quantity}: the --monitor ({watched.better} is better)")
    best = monitored_best(history, monitor, delta)
    if best is not None:
        for ax in axes.flat:
            ax.axvline(best[0], color="tab:green", linestyle=":", linewidth=1)
        axes[1, 1].lines[-1].set_label(f"best: epoch {best[0]:g} ({best[1]:.4f})")
        last = max(x)
        stop = _stop_label(history, last, planned_epochs, max_steps)
        if stop is not None:
            for ax in axes.flat:
                ax.axvline(last, color="tab:red", linestyle="--", linewidth=1)
            axes[1, 1].lines[-1].set_label(stop)
    axes[1, 0].plot(*_series(history, "lr"), color="tab:purple", **style)
    axes[1, 0].set_title("Learning rate")
    axes[1, 0].yaxis.set_major_formatter(FormatStrFormatter("%.1e"))
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in (axes[0, 0], axes[0, 1]):
        values = [v for line in ax.get_lines() for v in line.get_ydata() if v > 0]
        if values and max(values) / min(values) > 100:
            ax.set_yscale("log")
    for ax in (axes[0, 0], axes[1, 1]):
        if ax.get_yscale() == "linear":
            ax.ticklabel_format(axis="y", useOffset=False)  # no "1e-5+5.25e-1" above the axis
    axes[0, 0].legend(fontsize=8, loc="best")
    for ax in (axes[0, 1], axes[1, 1]):  # the right column: legends beside the figure's edge
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.suptitle("Training history (metrics.jsonl)")
    return _save(fig, path, dpi)


def metric_distributions(rows: Sequence[Mapping[str, Any]], path: Path, dpi: int) -> Path:
    """Per-tile distributions of every headline metric, opt_v2 vs opt_v3."""
    plt = _pyplot()
    keys = [k for k in METRICS if rows and f"opt_v3_{k}" in rows[0]]
    cols = min(4, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.8 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        label, unit, higher = METRICS[key]
        sources = [("opt_v2", "opt_v2"), ("opt_v3", "opt_v3")] + (
            [("target", "ground truth")] if f"target_{key}" in rows[0] else []
        )
        data = [
            [float(r[f"{src}_{key}"]) for r in rows if math.isfinite(float(r[f"{src}_{key}"]))]
            for src, _ in sources
        ]
        ax.boxplot(data, tick_labels=[name for _, name in sources], showmeans=True)
        for i, values in enumerate(data, start=1):
            jitter = np.linspace(-0.08, 0.08, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(i + jitter, values, s=10, alpha=0.6, color="tab:blue")
        ax.set_title(f"{label}{f' ({unit})' if unit else ''} {'↑' if higher else '↓'}")
        ax.grid(alpha=0.3, axis="y")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(f"Per-tile metrics, {len(rows)} tiles: opt_v2 (input) vs opt_v3 (output)")
    fig.tight_layout()
    return _save(fig, path, dpi)
