"""The training loop: a small class with one hook per kind of step.

:class:`Stage3Trainer` owns the optimisation (accumulation, clipping, the
schedule, non-finite losses, signals) and calls two hooks, :meth:`training_step`
and :meth:`validation_step`, which hold what is specific to Stage 3: run the model
on a batch and score it. Every epoch it validates, updates early stopping, and
writes ``checkpoint_epoch_N.pt`` (and ``best_model.pt`` on improvement).
"""

from __future__ import annotations

import math
import signal
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from axion.console import plural
from axion.engine.checkpoint import Checkpoint, CheckpointSaver
from axion.engine.early_stopping import MONITORS, EarlyStopping, all_finite
from axion.engine.history import MetricsHistory
from axion.engine.reporter import Reporter
from axion.engine.sampler import EpochSampler
from axion.engine.schedule import WarmupCosine
from axion.errors import TrainingError
from axion.seeding import Stream, stream_seed

if TYPE_CHECKING:
    from axion.config import TrainConfig

#: Consecutive non-finite losses after which training stops.
MAX_NONFINITE_IN_A_ROW = 5


@dataclass
class Optimization:
    """The optimizer and its learning-rate schedule (``schedule`` is the multiplier inside ``scheduler``)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    schedule: WarmupCosine


@dataclass
class RunOutput:
    """Where a run reports to: the console, checkpoint files, the metrics history, its provenance."""

    reporter: Reporter
    saver: CheckpointSaver
    history: MetricsHistory | None = None
    #: Versions and run identity, recorded in every checkpoint of the run.
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoopState:
    """Where the loop is; everything here goes into checkpoints."""

    epoch: int = 0  # last completed epoch
    optimizer_steps: int = 0
    partial_batches: int = 0  # batches of epoch+1 already done (interrupted runs)
    nonfinite_in_a_row: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class _Sums:
    """Per-sample sums of named values, all-reduced across ranks at the end."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0

    def add(self, values: dict[str, Tensor]) -> None:
        batch = next(iter(values.values())).shape[0]
        for key, value in values.items():
            self.sums[key] += float(value.detach().float().sum())
        self.count += batch

    def means(self, fabric) -> dict[str, float]:  # noqa: ANN001 (lightning Fabric)
        keys = sorted(self.sums)
        packed = torch.tensor([self.sums[k] for k in keys] + [float(self.count)], dtype=torch.float64)
        if fabric.world_size > 1:
            packed = fabric.all_reduce(packed.to(fabric.device), reduce_op="sum").cpu()
        count = max(1.0, float(packed[-1]))
        return {k: float(packed[i]) / count for i, k in enumerate(keys)}


def validation_metrics(opt_v3: Tensor, target: Tensor, s1: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Per-sample SAR agreement, PSNR and SAM of a validation batch."""
    from axion.metrics import psnr, sam_deg, sar_agreement

    return {
        "sar_agreement": sar_agreement(opt_v3, s1, mask),
        "psnr": psnr(opt_v3, target, mask),
        "sam_deg": sam_deg(opt_v3, target, mask),
    }


class Stage3Trainer:
    """Fits the trainable weights of a Stage 3 model.

    Args:
        fabric: Lightning Fabric (device, precision, data parallelism).
        model: the Fabric-wrapped :class:`~axion.model.Stage3Model`.
        optimization: Fabric-wrapped AdamW over the trainable parameters, and its schedule.
        loss_fn: callable returning per-sample loss terms including ``total``.
        cfg: the run's settings (loop settings are read from it; stored in checkpoints).
        output: console, checkpoint saver and metrics history.
    """

    def __init__(
        self,
        fabric,
        model: torch.nn.Module,
        optimization: Optimization,
        loss_fn,
        cfg: TrainConfig,
        output: RunOutput,
    ) -> None:  # noqa: ANN001 (lightning Fabric, the loss callable)
        self.fabric, self.model = fabric, model
        self.optimization = optimization
        self.optimizer = optimization.optimizer
        self.loss_fn = loss_fn
        self.cfg = cfg
        self.config = cfg.to_json_dict()
        self.reporter, self.saver, self.history = output.reporter, output.saver, output.history
        self.seed = cfg.other.seed
        self.monitor = cfg.early_stopping.monitor
        self.monitor_label, self.monitor_key, mode = MONITORS[self.monitor]
        self.early_stopping = EarlyStopping(
            cfg.early_stopping.early_stop_patience, cfg.early_stopping.early_stop_delta, mode
        )
        #: The highest validation SAR agreement so far, whatever the monitor (the checkpoint's
        #: ``best_sar_agreement``).
        self.best_sar_agreement = -math.inf
        self.state = LoopState()
        self.stop_requested: str | None = None
        self.provenance = output.provenance

    @property
    def module(self) -> torch.nn.Module:
        """The unwrapped Stage 3 model (for its trainable state dict)."""
        return getattr(self.model, "module", self.model)

    # --- hooks ---------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], epoch: int) -> dict[str, Tensor]:
        """Per-sample loss terms for one batch, with gradients."""
        seeds = [stream_seed(self.seed, Stream.TRAIN_NOISE, epoch, name) for name in batch["name"]]
        opt_v3 = self.model(batch["s1"], batch["opt_v2"], seeds=seeds)
        return self.loss_fn(
            opt_v3, batch["opt_v2"], batch["target"], batch["s1"], batch["mask"], batch["opt_v2_mask"]
        )

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Per-sample loss terms and metrics; the noise is fixed per tile."""
        seeds = [stream_seed(self.seed, Stream.VAL_NOISE, name) for name in batch["name"]]
        opt_v3 = self.model(batch["s1"], batch["opt_v2"], seeds=seeds)
        terms = self.loss_fn(
            opt_v3, batch["opt_v2"], batch["target"], batch["s1"], batch["mask"], batch["opt_v2_mask"]
        )
        return {**terms, **validation_metrics(opt_v3, batch["target"], batch["s1"], batch["mask"])}

    # --- state ---------------------------------------------------------------
    def checkpoint(self, train_stats: dict[str, Any], val_stats: dict[str, Any]) -> Checkpoint:
        """A checkpoint of the current state (its keys: docs/training.md)."""
        scaler = getattr(self.fabric.strategy.precision, "scaler", None)
        return Checkpoint(
            epoch=self.state.epoch,
            model_state_dict={k: v.detach().cpu() for k, v in self.module.trainable_state_dict().items()},
            optimizer_state_dict=self.optimizer.state_dict(),
            scheduler_state_dict=self.optimization.scheduler.state_dict(),
            scaler_state_dict=scaler.state_dict() if scaler is not None else {},
            train_stats={
                **train_stats,
                "optimizer_steps": self.state.optimizer_steps,
                "partial_batches": self.state.partial_batches,
            },
            val_stats={
                **val_stats,
                "early_stopping": {**self.early_stopping.state_dict(), "monitor": self.monitor},
            },
            best_sar_agreement=float(self.best_sar_agreement),
            config=self.config,
            provenance=self.provenance,
        )

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from a checkpoint: weights, optimizer, schedule, scaler, loop and early stopping."""
        self.module.load_trainable_state_dict(ckpt.model_state_dict)
        self.optimizer.load_state_dict(ckpt.optimizer_state_dict)
        horizon = self.optimization.schedule.total_steps
        self.optimization.scheduler.load_state_dict(ckpt.scheduler_state_dict)
        self.optimization.schedule.total_steps = horizon  # --epochs may have grown
        scaler = getattr(self.fabric.strategy.precision, "scaler", None)
        if scaler is not None and ckpt.scaler_state_dict:
            scaler.load_state_dict(ckpt.scaler_state_dict)
        saved = ckpt.val_stats["early_stopping"]
        if saved.get("monitor", "sar_agreement") == self.monitor:
            self.early_stopping.load_state_dict(saved)
        else:
            self.reporter.info(
                f"Early stopping now watches {self.monitor_label} (the checkpoint watched "
                f"{saved.get('monitor', 'sar_agreement')}): its count starts again"
            )
        self.best_sar_agreement = float(ckpt.best_sar_agreement)
        self.state.epoch = int(ckpt.epoch)
        self.state.optimizer_steps = int(ckpt.train_stats.get("optimizer_steps", 0))
        self.state.partial_batches = int(ckpt.train_stats.get("partial_batches", 0))

    def learning_rates(self) -> dict[str, float]:
        """``lr`` (the LoRA rate, the guide's learning rate) and ``lr_fusion``; ``lr`` alone without LoRA."""
        rates = {
            group.get("name", str(i)): group["lr"] for i, group in enumerate(self.optimizer.param_groups)
        }
        if "lora" in rates:
            return {"lr": rates["lora"], "lr_fusion": rates["fusion"]}
        return {"lr": rates["fusion"]}

    # --- signals -------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.stop_requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.stop_requested = name
        self.reporter.info(f"{name} received: finishing the current step, then saving a checkpoint")

    # --- loop ----------------------------------------------------------------
    def fit(self, train_loader: Iterable, val_loader: Iterable, sampler: EpochSampler) -> LoopState:
        """Train until ``epochs``, early stopping, or a stop signal."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self.state.epoch < self.cfg.training.epochs:
                epoch = self.state.epoch + 1
                started = time.perf_counter()
                rates = self.learning_rates()  # the rates this epoch starts with, as the summary shows
                sampler.set_epoch(epoch, skip=self.state.partial_batches * self.cfg.training.batch_size)
                train_stats = self.train_epoch(train_loader, epoch)
                if self.stop_requested:
                    path = self.saver.save_interrupted(self.checkpoint(train_stats, {}))
                    self.reporter.info(
                        f"Stopped by {self.stop_requested} in epoch {epoch} after "
                        f"{plural(self.state.partial_batches, 'batch', 'batches')}; saved {path}. "
                        f"Resume with the same command plus --resume {path}"
                    )
                    return self.state
                val_stats = self.validate(val_loader, epoch)
                self.state.epoch, self.state.partial_batches = epoch, 0
                finite = all_finite(val_stats)
                score = val_stats[self.monitor_key]
                improved = self.early_stopping.update(score, epoch, finite=finite)
                if not finite:
                    self.reporter.info(f"Validation of epoch {epoch} is not finite: not an improvement")
                elif math.isfinite(val_stats["sar_agreement"]):
                    self.best_sar_agreement = max(self.best_sar_agreement, val_stats["sar_agreement"])
                row = {
                    "epoch": epoch,
                    **rates,
                    "time_s": time.perf_counter() - started,
                    **{f"train_{k}": v for k, v in train_stats.items()},
                    **{f"val_{k}": v for k, v in val_stats.items()},
                }
                self.reporter.epoch_summary(epoch, row)
                checkpoint = self.checkpoint(train_stats, val_stats)
                if self.fabric.is_global_zero:
                    if self.history is not None:
                        self.history.append(row)
                    self.saver.save_epoch(checkpoint)
                    if improved:
                        self.saver.save_best(checkpoint)
                self.fabric.barrier()
                stopping = self.early_stopping
                if improved:
                    self.reporter.improved(self.monitor_label, score)
                else:
                    self.reporter.no_improvement(self.monitor_label, stopping.wait, stopping.patience)
                    if stopping.should_stop:
                        self.reporter.early_stop(self.monitor_label, stopping.best, stopping.best_epoch)
                        break
            return self.state
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def train_epoch(self, loader: Iterable, epoch: int) -> dict[str, Any]:
        """One pass over ``loader`` with accumulation and optimizer steps; returns the epoch's mean loss terms."""
        training = self.cfg.training
        self.model.eval()  # frozen base, no dropout in adapters: train and eval behave the same
        sums, skipped = _Sums(), 0
        total = len(loader)  # type: ignore[arg-type]
        done_before = self.state.partial_batches
        cycle_skip = False
        with self.reporter.bar(f"Epoch {epoch}", total) as bar:
            for i, batch in enumerate(loader):
                batch = self.fabric.to_device(batch)
                position = done_before + i  # index of this batch within the epoch
                epoch_len = done_before + total
                cycle_start = (position // training.grad_accum) * training.grad_accum
                cycle_len = min(training.grad_accum, epoch_len - cycle_start)  # the last cycle may be short
                last_in_cycle = position + 1 == cycle_start + cycle_len
                with self.fabric.no_backward_sync(self.model, enabled=not last_in_cycle):
                    terms = self.training_step(batch, epoch)
                    loss = terms["total"].mean()
                    if torch.isfinite(loss):
                        # Mean over the cycle's micro-batches, so a short last cycle is not down-weighted.
                        self.fabric.backward(loss / cycle_len)
                        self.state.nonfinite_in_a_row = 0
                        sums.add(terms)
                    else:
                        skipped += 1
                        cycle_skip = True
                        self.state.nonfinite_in_a_row += 1
                        if self.state.nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
                            raise TrainingError(
                                f"the loss was not finite for {MAX_NONFINITE_IN_A_ROW} steps in a row "
                                f"(epoch {epoch}, batch {position + 1}); lower --lr or use --precision 32"
                            )
                if last_in_cycle:
                    if not cycle_skip:
                        self.fabric.clip_gradients(
                            self.model, self.optimizer, max_norm=training.max_grad_norm
                        )
                        self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.optimization.scheduler.step()
                    self.state.optimizer_steps += 1
                    cycle_skip = False
                bar.advance(loss=float(loss.detach()))
                self.state.partial_batches = position + 1
                if self.stop_requested and last_in_cycle:
                    break
        stats = sums.means(self.fabric)
        return {"loss": stats.pop("total", math.nan), **stats, "skipped_steps": skipped}

    @torch.no_grad()
    def validate(self, loader: Iterable, epoch: int) -> dict[str, float]:
        """Mean loss terms and metrics over the validation loader."""
        sums = _Sums()
        with self.reporter.bar(f"Validation {epoch}", len(loader)) as bar:  # type: ignore[arg-type]
            for batch in loader:
                values = self.validation_step(self.fabric.to_device(batch))
                sums.add(values)
                bar.advance(loss=float(values["total"].mean()), sar_agr=float(values["sar_agreement"].mean()))
        stats = sums.means(self.fabric)
        return {"loss": stats.pop("total", math.nan), **stats}
