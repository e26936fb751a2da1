"""What a training run shows: progress bars, epoch tables, early-stopping messages.

Live mode (a terminal) uses rich progress bars shaped like tqdm's
(``Epoch 1: 100% |████| 256/256 [02:15<00:00, 1.89it/s, loss=0.0234]``) and a
rich table after each epoch. Plain mode (``--quiet`` or output that is not a
terminal) writes the same information as ordinary log lines. ``--log-format json``
(:class:`JsonReporter`) writes it as JSON Lines for pipelines: one object per line
with ``time`` and ``event`` (events and fields: docs/cli.md).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from axion.records.badlog import bad_summary


class _RateColumn(ProgressColumn):
    """Iterations per second, tqdm style (``1.89it/s``)."""

    def render(self, task) -> Text:  # noqa: ANN001 (rich's Task)
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f}it/s" if speed else "?it/s")


class ProgressHandle:
    """Advance a bar and update its ``key=value`` postfix."""

    def __init__(self, progress: Progress | None, task: int | None, plain: _PlainBar | None) -> None:
        self._progress, self._task, self._plain = progress, task, plain

    def advance(self, **postfix: float) -> None:
        if self._progress is not None and self._task is not None:
            text = ", ".join(f"{k}={v:.4f}" for k, v in postfix.items())
            self._progress.update(self._task, advance=1, postfix=f", {text}" if text else "")
        elif self._plain is not None:
            self._plain.advance(postfix)


#: Progress lines a plain bar prints per pass unless told otherwise (plus the last one).
LINES_PER_BAR = 20


def _clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _PlainBar:
    """Log-line progress for logs: one line every ``every`` steps and the last, with rate and ETA."""

    def __init__(self, console: Console, label: str, total: int, every: int | None = None) -> None:
        self.console, self.label, self.total = console, label, total
        self.done, self.start = 0, time.perf_counter()
        self.every = every or max(1, -(-total // LINES_PER_BAR))

    def step(self) -> tuple[float, float, float] | None:
        """Count one step; (elapsed, eta, rate) when a line is due, else None."""
        self.done += 1
        if self.done % self.every and self.done != self.total:
            return None
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return elapsed, eta, rate

    def advance(self, postfix: dict[str, float]) -> None:
        due = self.step()
        if due is not None:
            elapsed, eta, rate = due
            timing = f"{_clock(elapsed)}<{_clock(eta)}, {rate:.2f}it/s"
            values = "".join(f", {k}={v:.4f}" for k, v in postfix.items())
            self.console.print(f"{self.label}: {self.done}/{self.total} [{timing}{values}]", markup=False)


class _JsonBar(_PlainBar):
    """The plain bar's progress lines as ``progress`` events."""

    def __init__(self, reporter: JsonReporter, label: str, total: int, every: int | None = None) -> None:
        super().__init__(reporter.console, label, total, every)
        self.reporter = reporter

    def advance(self, postfix: dict[str, float]) -> None:
        due = self.step()
        if due is not None:
            elapsed, eta, rate = due
            self.reporter.emit(
                "progress",
                label=self.label,
                done=self.done,
                total=self.total,
                elapsed_s=round(elapsed, 3),
                eta_s=round(eta, 3),
                rate_per_s=round(rate, 4),
                **postfix,
            )


class Reporter:
    """Console output of a training or prediction run; silent on every rank but the first.

    Args:
        console: where to write.
        live: rich live bars and tables (else plain lines).
        enabled: False on non-zero data-parallel ranks.
        log_every: in plain mode, one progress line every this many steps (default: about
            :data:`LINES_PER_BAR` per pass).
    """

    def __init__(
        self, console: Console, *, live: bool, enabled: bool = True, log_every: int | None = None
    ) -> None:
        self.console, self.live, self.enabled = console, live, enabled
        self.log_every = log_every

    @classmethod
    def silent(cls) -> Reporter:
        """A reporter that prints nothing (library use without a console)."""
        return cls(Console(quiet=True), live=False, enabled=False)

    @classmethod
    def for_terminal(cls, *, quiet: bool = False, log_format: str = "text") -> Reporter:
        """Live bars and tables on a terminal (unless ``quiet``), plain lines anywhere else;
        JSON Lines with ``log_format="json"``."""
        from axion.console import make_console

        console = make_console()
        if log_format == "json":
            return JsonReporter(console)
        return cls(console, live=not quiet and console.is_terminal)

    @property
    def machine_readable(self) -> bool:
        """Whether stdout is JSON Lines (commands then print no tables of their own)."""
        return False

    def result(self, name: str, values: dict[str, Any]) -> None:
        """A command's final result (evaluate's summary): only a JSON reporter writes it."""

    def info(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, markup=False, highlight=False)

    def warning(self, message: str) -> None:
        """Something the user should look at that does not stop the command (suspicious inputs)."""
        self.info(f"warning: {message}")

    @contextmanager
    def bar(self, label: str, total: int) -> Iterator[ProgressHandle]:
        """A progress bar for ``total`` steps."""
        if not self.enabled:
            yield ProgressHandle(None, None, None)
            return
        if not self.live:
            yield ProgressHandle(None, None, _PlainBar(self.console, label, total, self.log_every))
            return
        progress = Progress(
            TextColumn("{task.description}:"),
            TaskProgressColumn(),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("["),
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            TextColumn(","),
            _RateColumn(),
            TextColumn("{task.fields[postfix]}]"),
            console=self.console,
            transient=False,
        )
        with progress:
            task = progress.add_task(label, total=total, postfix="")
            yield ProgressHandle(progress, task, None)

    def epoch_summary(self, epoch: int, row: dict[str, Any], title: str | None = None) -> None:
        """The epoch summary, as a table (live) or indented lines (plain).

        ``title`` replaces ``Epoch N`` for a validation inside an epoch (``Step 40 (epoch 1.50)``).
        """
        if not self.enabled:
            return
        title = title or f"Epoch {epoch}"
        lines = [
            ("Train loss", f"{row['train_loss']:.6f}"),
            ("Val loss", f"{row['val_loss']:.6f}"),
            ("Val SAR agreement", f"{row['val_sar_agreement']:.6f}"),
            ("Learning rate", f"{row['lr']:.2e}"),
            ("Time", f"{row['time_s']:.2f}s"),
        ]
        extra = [
            (f"Val {name}", f"{row[key]:.4f}")
            for key, name in (("val_psnr", "PSNR (dB)"), ("val_sam_deg", "SAM (deg)"))
            if key in row
        ]
        if "lr_fusion" in row:
            extra.append(("Fusion learning rate", f"{row['lr_fusion']:.2e}"))
        if "train_samples" in row:
            extra.append(("Train samples", str(int(row["train_samples"]))))
        for prefix, name in (("train_", "Bad train samples"), ("val_", "Bad val samples")):
            bad = bad_summary(row, prefix)
            if bad is not None:
                extra.append((name, bad))
        if self.live:
            table = Table(title=f"{title} Summary", title_justify="left", show_header=False)
            table.add_column("metric", style="bold")
            table.add_column("value", justify="right")
            for name, value in lines + extra:
                table.add_row(name, value)
            self.console.print(table)
        else:
            self.console.print(f"{title} Summary:")
            for name, value in lines + extra:
                self.console.print(f"  {name}: {value}")

    def improved(self, label: str, value: float) -> None:
        self.info(f"✓ {label} improved to {value:.6f}")

    def no_improvement(self, label: str, wait: int, patience: int) -> None:
        self.info(f"No improvement in {label} ({wait}/{patience})")

    def early_stop(self, label: str, best: float, epoch: int | str) -> None:
        self.info("⚠ Early stopping triggered!")
        self.info(f"  Best {label}: {best:.6f} at epoch {epoch}")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become null (as in metrics.jsonl)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class JsonReporter(Reporter):
    """The same information as JSON Lines on stdout, one object per line, for pipelines.

    Every object has ``time`` (UTC, ISO 8601) and ``event``: ``message`` and ``warning``
    (``message``),
    ``progress`` (``label``, ``done``, ``total``, ``elapsed_s``, ``eta_s``, ``rate_per_s`` and
    the running values such as ``loss``), ``summary`` (``title``, ``epoch`` and the row of
    metrics.jsonl), ``improved`` / ``no_improvement`` / ``early_stop`` (``monitor``, values)
    and ``result`` (a command's final figures). Errors stay one line on stderr.
    """

    def __init__(self, console: Console, *, enabled: bool = True, log_every: int | None = None) -> None:
        super().__init__(console, live=False, enabled=enabled, log_every=log_every)

    @property
    def machine_readable(self) -> bool:
        return True

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        line = json.dumps({"time": now, "event": event, **_finite(fields)}, allow_nan=False)
        out = self.console.file  # stdout (or stderr) as it is now: test runners swap it
        out.write(line + "\n")
        out.flush()

    def info(self, message: str) -> None:
        self.emit("message", message=message)

    def warning(self, message: str) -> None:
        self.emit("warning", message=message)

    @contextmanager
    def bar(self, label: str, total: int) -> Iterator[ProgressHandle]:
        yield ProgressHandle(
            None, None, _JsonBar(self, label, total, self.log_every) if self.enabled else None
        )

    def epoch_summary(self, epoch: int, row: dict[str, Any], title: str | None = None) -> None:
        self.emit("summary", title=title or f"Epoch {epoch}", **row)

    def improved(self, label: str, value: float) -> None:
        self.emit("improved", monitor=label, value=value)

    def no_improvement(self, label: str, wait: int, patience: int) -> None:
        self.emit("no_improvement", monitor=label, wait=wait, patience=patience)

    def early_stop(self, label: str, best: float, epoch: int | str) -> None:
        self.emit("early_stop", monitor=label, best=best, best_epoch=epoch)

    def result(self, name: str, values: dict[str, Any]) -> None:
        self.emit("result", name=name, **values)
