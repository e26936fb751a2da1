"""``axion stage3 evaluate``: score a checkpoint on a split, opt_v2 (input) against opt_v3 (output).

Parses the flags into :class:`axion.config.EvaluateConfig`, runs
:func:`axion.prediction.evaluate.evaluate` and prints its summary table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from axion.cli._common import (
    config_file_option,
    config_option,
    prediction_option,
    print_config_option,
    resolve_settings,
    user_errors,
)
from axion.cli.app import Command, stage3_app
from axion.config import EvaluateConfig

_IO, _RUN = "Input and output", "Run"


def _opt(name: str, panel: str = _IO, **kwargs: Any) -> Any:
    return config_option(EvaluateConfig, name, panel=panel, **kwargs)


@stage3_app.command(cls=Command, no_args_is_help=True)
@user_errors
def evaluate(
    ctx: typer.Context,
    checkpoint: Path | None = prediction_option("checkpoint"),
    data_dir: Path | None = _opt("data_dir"),
    output_dir: Path | None = _opt("output_dir"),
    split: str = _opt("split"),
    stage2_dir: Path | None = _opt("stage2_dir"),
    max_samples: int | None = _opt("max_samples"),
    max_bad_fraction: float = _opt("max_bad_fraction"),
    save_arrays: int = _opt("save_arrays"),
    overwrite: bool = _opt("overwrite"),
    timesteps: int | None = prediction_option("timesteps"),
    seed: int | None = prediction_option("seed"),
    precision: str = prediction_option("precision"),
    pretrained: bool | None = prediction_option("pretrained", "--pretrained/--no-pretrained"),
    weights_dir: Path | None = prediction_option("weights_dir"),
    lpips_weight: float = _opt("lpips_weight", _RUN),
    lpips_weights: Path | None = _opt("lpips_weights", _RUN),
    batch_size: int = prediction_option("batch_size", panel=_RUN),
    num_workers: str = _opt("num_workers", _RUN),
    quiet: bool = prediction_option("quiet", panel=_RUN),
    log_format: str = prediction_option("log_format", panel=_RUN),
    config: Path | None = config_file_option(_RUN),
    print_config: bool = print_config_option(_RUN),
) -> None:
    """Evaluate a checkpoint: PSNR, SSIM, SAM, MAE, RMSE, LPIPS and SAR agreement of opt_v2 vs opt_v3.

    Metrics are per tile over valid pixels (reflectance = tile units / 10000); the
    ground truth's own SAR agreement is reported as the reference.
    """
    settings = resolve_settings(ctx, EvaluateConfig, locals(), config=config, print_config=print_config)

    from axion.prediction.evaluate import evaluate as run_evaluation
    from axion.records.results import PER_TILE_FILE, SUMMARY_FILE
    from axion.runtime.reporter import Reporter

    reporter = Reporter.for_terminal(quiet=settings.quiet, log_format=settings.log_format)
    result = run_evaluation(settings, reporter)
    if reporter.machine_readable:
        reporter.result("evaluate", result.summary)
    else:
        reporter.console.print(summary_table(result.summary))
        if result.summary.get("clear"):
            reporter.console.print(summary_table(result.summary, clear=True))
    saved = len(list((result.output_dir / "tiles").glob("*.npz")))
    reporter.info(
        f"Wrote {result.output_dir / SUMMARY_FILE}, {result.output_dir / PER_TILE_FILE} and {saved} tile arrays"
    )


def _fmt(value: float | None, key: str, signed: bool = False) -> str:
    if value is None:
        return "-"
    sign = "+" if signed else ""
    return f"{value:{sign}.3f}" if key in ("psnr", "sam_deg") else f"{value:{sign}.5f}"


def summary_table(summary: dict[str, Any], clear: bool = False) -> Any:
    """The means of opt_v2 (input) and opt_v3 (output), side by side, and the ground truth's SAR agreement.

    With ``clear``, the same over the pixels where opt_v2 is clear (``summary["clear"]``).
    """
    from rich.table import Table

    from axion.console import plural
    from axion.records.results import METRICS

    metrics = summary["clear"]["metrics"] if clear else summary["metrics"]
    title = f"Evaluation: {plural(summary['tiles'], summary['split'] + ' tile')} (mean over tiles)"
    if clear:
        share = summary["clear"]["clear_fraction"]["mean"]
        title = f"On opt_v2's clear pixels only (opt_v2_mask; {100 * share:.0f} % of the valid pixels)"
    table = Table(title=title, title_justify="left")
    for column, justify in (
        ("metric", "left"),
        ("opt_v2 (input)", "right"),
        ("opt_v3 (output)", "right"),
        ("change", "right"),
        ("ground truth", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for key, (label, unit, higher) in METRICS.items():
        if key not in metrics.get("opt_v3", {}):
            continue
        before, after = metrics["opt_v2"][key]["mean"], metrics["opt_v3"][key]["mean"]
        change = "-" if before is None or after is None else _fmt(after - before, key, signed=True)
        truth = metrics.get("target", {}).get(key, {}).get("mean")
        name = f"{label} ({unit})" if unit else label
        table.add_row(
            f"{name} {'↑' if higher else '↓'}", _fmt(before, key), _fmt(after, key), change, _fmt(truth, key)
        )
    return table
