"""The training loop: a small class with one hook per kind of step.

:class:`Stage3Trainer` owns the optimisation (accumulation, clipping, the
schedule, non-finite losses, signals) and calls two hooks, :meth:`training_step`
and :meth:`validation_step`, which hold what is specific to Stage 3: run the model
on a batch and score it. Every epoch it validates, updates early stopping, and
writes ``checkpoint_epoch_N.pt`` (and ``best_model.pt`` on improvement). Inside an epoch it
can also validate every ``--val-every-steps`` optimizer steps, write
``checkpoint_step_N.pt`` every ``--checkpoint-every-steps``, and stop at ``--max-steps``.
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


def _per_sample(totals: dict[str, float]) -> dict[str, float]:
    """Means from :meth:`_Sums.totals`."""
    count = max(1.0, totals["count"])
    return {k: v / count for k, v in totals.items() if k != "count"}


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

    def totals(self, fabric) -> dict[str, float]:  # noqa: ANN001 (lightning Fabric)
        """The sums over every rank, with the sample count under ``"count"``."""
        keys = sorted(self.sums)
        packed = torch.tensor([self.sums[k] for k in keys] + [float(self.count)], dtype=torch.float64)
        if fabric.world_size > 1:
            packed = fabric.all_reduce(packed.to(fabric.device), reduce_op="sum").cpu()
        return {**{k: float(packed[i]) for i, k in enumerate(keys)}, "count": float(packed[-1])}

    def means(self, fabric) -> dict[str, float]:  # noqa: ANN001 (lightning Fabric)
        return _per_sample(self.totals(fabric))

    @classmethod
    def resumed(cls, totals: dict[str, float] | None, rank_zero: bool) -> _Sums:
        """Sums that start from a checkpoint's :meth:`totals` (on rank 0 only: they cover every rank)."""
        sums = cls()
        if totals and rank_zero:
            sums.count = int(totals.get("count", 0))
            sums.sums.update({k: float(v) for k, v in totals.items() if k != "count"})
        return sums


def validation_metrics(opt_v3: Tensor, target: Tensor, s1: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Per-sample SAR agreement, PSNR and SAM of a validation batch."""
    from axion.metrics import psnr, sam_deg, sar_agreement

    return {
        "sar_agreement": sar_agreement(opt_v3, target, s1, mask),
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
        #: Why the run ended before ``epochs`` other than by a signal: ``max_steps`` or ``early_stopping``.
        self.finished: str | None = None
        #: The current epoch's training sums so far (all ranks), carried by checkpoints inside it.
        self.epoch_sums: dict[str, float] | None = None
        #: Sums and skipped steps of a resumed partial epoch, consumed by its :meth:`train_epoch`.
        self.resumed_sums: dict[str, float] | None = None
        self.resumed_skipped = 0
        self.provenance = output.provenance
        self.val_loader: Iterable = ()
        self.epoch_started = time.perf_counter()
        self.epoch_batches = 0  # batches of the epoch in progress (with those done before a resume)
        self.epoch_rates: dict[str, float] = {}
        #: TensorBoard panels of the last validation that drew them, by tile name.
        self.panels: dict[str, Any] = {}
        self.stretches: dict[str, Any] = {}  # each panel tile's fixed colour stretch

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
        """Per-sample loss terms and metrics; the noise is fixed per tile.

        The output itself comes back under ``opt_v3`` (for the TensorBoard panels); every other
        value is per sample and averaged over the pass.
        """
        seeds = [stream_seed(self.seed, Stream.VAL_NOISE, name) for name in batch["name"]]
        opt_v3 = self.model(batch["s1"], batch["opt_v2"], seeds=seeds)
        terms = self.loss_fn(
            opt_v3, batch["opt_v2"], batch["target"], batch["s1"], batch["mask"], batch["opt_v2_mask"]
        )
        metrics = validation_metrics(opt_v3, batch["target"], batch["s1"], batch["mask"])
        return {**terms, **metrics, "opt_v3": opt_v3}

    # --- state ---------------------------------------------------------------
    def checkpoint(
        self,
        train_stats: dict[str, Any],
        val_stats: dict[str, Any],
        epoch_sums: dict[str, float] | None = None,
    ) -> Checkpoint:
        """A checkpoint of the current state (its keys: docs/training.md).

        ``epoch_sums``: inside an epoch, the running sums of its training terms so far
        (:meth:`_Sums.totals`), so that a resumed epoch reports its means over all its batches.
        """
        scaler = getattr(self.fabric.strategy.precision, "scaler", None)
        partial = (
            {"epoch_sums": epoch_sums, "epoch_skipped": train_stats["skipped_steps"]} if epoch_sums else {}
        )
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
                **partial,
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
        if self.state.partial_batches:
            self.resumed_sums = ckpt.train_stats.get("epoch_sums")
            self.resumed_skipped = int(ckpt.train_stats.get("epoch_skipped", 0))

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
        """Train until ``epochs``, ``max_steps``, early stopping, or a stop signal."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.val_loader = val_loader
        try:
            if self._at_max_steps():
                self.finished = "max_steps"
                self.reporter.info(
                    f"--max-steps {self.cfg.training.max_steps} already reached "
                    f"({plural(self.state.optimizer_steps, 'optimizer step')}): nothing to train"
                )
                return self.state
            while self.state.epoch < self.cfg.training.epochs and self.finished is None:
                epoch = self.state.epoch + 1
                self.epoch_started = time.perf_counter()
                # The rates this epoch starts with, as every summary of the epoch shows (one meaning
                # for the ``lr`` column, also in rows of validations inside the epoch).
                rates = self.epoch_rates = self.learning_rates()
                sampler.set_epoch(epoch, skip=self.state.partial_batches * self.cfg.training.batch_size)
                train_stats = self.train_epoch(train_loader, epoch)
                if self.stop_requested:
                    path = self.saver.save_interrupted(self.checkpoint(train_stats, {}, self.epoch_sums))
                    self.reporter.info(
                        f"Stopped by {self.stop_requested} in epoch {epoch} after "
                        f"{plural(self.state.partial_batches, 'batch', 'batches')}; saved {path}. "
                        f"Resume with the same command plus --resume {path}"
                    )
                    return self.state
                if self.finished is not None:  # --max-steps or early stopping inside the epoch
                    break
                self.state.epoch, self.state.partial_batches = epoch, 0
                val_stats, improved = self._validate_and_record(epoch, train_stats, rates, end_of_epoch=True)
                checkpoint = self.checkpoint(train_stats, val_stats)
                if self.fabric.is_global_zero:
                    self.saver.save_epoch(checkpoint)
                    if improved:
                        self.saver.save_best(checkpoint)
                self.fabric.barrier()
                self._report_early_stopping(improved, val_stats[self.monitor_key])
                if self.finished is None and self._at_max_steps():
                    self.finished = "max_steps"
                    self._report_max_steps(epoch)
            return self.state
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _at_max_steps(self) -> bool:
        limit = self.cfg.training.max_steps
        return limit is not None and self.state.optimizer_steps >= limit

    def _report_max_steps(self, epoch: int) -> None:
        self.reporter.info(f"Reached --max-steps {self.cfg.training.max_steps} in epoch {epoch}: stopping")

    def _report_early_stopping(self, improved: bool, score: float) -> None:
        """The early-stopping line of one validation; sets :attr:`finished` when patience ran out."""
        stopping = self.early_stopping
        if improved:
            self.reporter.improved(self.monitor_label, score)
            return
        self.reporter.no_improvement(self.monitor_label, stopping.wait, stopping.patience)
        if stopping.should_stop:
            self.reporter.early_stop(self.monitor_label, stopping.best, self.best_where())
            self.finished = "early_stopping"

    def best_where(self) -> str:
        """Where the best validation was: ``23`` (the guide's epoch), or with its step once
        validations also happen inside epochs (``--val-every-steps``)."""
        stopping = self.early_stopping
        if self.cfg.training.val_every_steps is None or stopping.best_step <= 0:
            return str(stopping.best_epoch)
        return f"{stopping.best_epoch}, step {stopping.best_step}"

    def _validate_and_record(
        self, epoch: int, train_stats: dict[str, Any], rates: dict[str, float], *, end_of_epoch: bool
    ) -> tuple[dict[str, float], bool]:
        """Validate, update early stopping, print the summary and append the history row.

        Returns:
            The validation statistics, and whether they improved on the best (the caller
            saves the checkpoints, then calls :meth:`_report_early_stopping`).
        """
        steps = self.state.optimizer_steps
        every = self.cfg.other.log_images_every
        images = end_of_epoch and every > 0 and epoch % every == 0 and self.fabric.is_global_zero
        label = str(epoch) if end_of_epoch else f"{epoch}, step {steps}"
        val_stats = self.validate(self.val_loader, label, images=images)
        finite = all_finite(val_stats)
        score = val_stats[self.monitor_key]
        improved = self.early_stopping.update(score, epoch, step=steps, finite=finite)
        if not finite:
            where = f"epoch {epoch}" if end_of_epoch else f"step {steps}"
            self.reporter.info(f"Validation of {where} is not finite: not an improvement")
        elif math.isfinite(val_stats["sar_agreement"]):
            self.best_sar_agreement = max(self.best_sar_agreement, val_stats["sar_agreement"])
        # Inside an epoch, the epoch is a fraction: 1.5 is half-way through epoch 2.
        position = self.state.epoch + self.state.partial_batches / max(1, self.epoch_batches)
        row = {
            "epoch": epoch if end_of_epoch else round(position, 4),
            "step": steps,
            **rates,
            "time_s": time.perf_counter() - self.epoch_started,
            **{f"train_{k}": v for k, v in train_stats.items()},
            **{f"val_{k}": v for k, v in val_stats.items()},
        }
        title = None if end_of_epoch else f"Step {steps} (epoch {position:.2f})"
        self.reporter.epoch_summary(epoch, row, title=title)
        if self.history is not None:
            self.history.append(row)
            if self.panels:
                self.history.add_images(self.panels, steps)
        return val_stats, improved

    def _after_step(self, epoch: int, sums: _Sums, skipped: int) -> bool:
        """Validation and checkpoint due after an optimizer step inside an epoch; True to stop the epoch.

        Not called for the epoch's last step: the epoch's own validation and checkpoint follow it.
        """
        training, steps = self.cfg.training, self.state.optimizer_steps
        at_max = self._at_max_steps()
        validate = at_max or (training.val_every_steps is not None and steps % training.val_every_steps == 0)
        save = at_max or (
            training.checkpoint_every_steps is not None and steps % training.checkpoint_every_steps == 0
        )
        if not (validate or save):
            return False
        train_stats = self._train_stats(sums, skipped)
        val_stats: dict[str, float] = {}
        improved = False
        if validate:
            val_stats, improved = self._validate_and_record(
                epoch, train_stats, self.epoch_rates, end_of_epoch=False
            )
        checkpoint = self.checkpoint(train_stats, val_stats, self.epoch_sums)
        if self.fabric.is_global_zero:
            if save:
                self.saver.save_step(checkpoint)
            if improved:
                self.saver.save_best(checkpoint)
        self.fabric.barrier()
        if validate:
            self._report_early_stopping(improved, val_stats[self.monitor_key])
        if at_max and self.finished is None:
            self.finished = "max_steps"
            self._report_max_steps(epoch)
        return self.finished is not None

    def _train_stats(self, sums: _Sums, skipped: int) -> dict[str, Any]:
        self.epoch_sums = sums.totals(self.fabric)  # what a checkpoint inside this epoch carries
        stats = _per_sample(self.epoch_sums)
        return {"loss": stats.pop("total", math.nan), **stats, "skipped_steps": skipped}

    def train_epoch(self, loader: Iterable, epoch: int) -> dict[str, Any]:
        """One pass over ``loader`` with accumulation and optimizer steps; returns the epoch's mean loss terms.

        It ends early on a stop signal, at ``--max-steps``, or when a validation inside the
        epoch (``--val-every-steps``) stops early; :attr:`finished` tells which of the last two.
        """
        training = self.cfg.training
        self.model.eval()  # frozen base, no dropout in adapters: train and eval behave the same
        total = len(loader)  # type: ignore[arg-type]
        done_before = self.state.partial_batches
        # A resumed epoch goes on from the sums its checkpoint carried: its means cover all its batches.
        sums = _Sums.resumed(self.resumed_sums if done_before else None, self.fabric.is_global_zero)
        skipped = self.resumed_skipped if done_before and self.fabric.is_global_zero else 0
        self.resumed_sums, self.resumed_skipped = None, 0
        self.epoch_batches = done_before + total
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
                if not last_in_cycle:
                    continue
                if self.stop_requested:
                    break
                if position + 1 < epoch_len and self._after_step(epoch, sums, skipped):
                    break
        return self._train_stats(sums, skipped)

    @torch.no_grad()
    def validate(self, loader: Iterable, epoch: int | str, *, images: bool = False) -> dict[str, float]:
        """Mean loss terms and metrics over the validation loader.

        Args:
            loader: the validation loader.
            epoch: how the progress bar names this validation.
            images: also draw the panels of the first :data:`~axion.viz.panels.PANEL_TILES` tiles
                into :attr:`panels` (from the opt_v3 this pass computes anyway).
        """
        sums = _Sums()
        self.panels = {}
        with self.reporter.bar(f"Validation {epoch}", len(loader)) as bar:  # type: ignore[arg-type]
            for batch in loader:
                batch = self.fabric.to_device(batch)
                values = self.validation_step(batch)
                opt_v3 = values.pop("opt_v3", None)
                if images and opt_v3 is not None:
                    self._draw_panels(batch, opt_v3)
                sums.add(values)
                bar.advance(loss=float(values["total"].mean()), sar_agr=float(values["sar_agreement"].mean()))
        stats = sums.means(self.fabric)
        return {"loss": stats.pop("total", math.nan), **stats}

    def _draw_panels(self, batch: dict[str, Any], opt_v3: Tensor) -> None:
        """Panels of a batch's tiles until :data:`~axion.viz.panels.PANEL_TILES` are drawn.

        The validation order is fixed (sorted names, no shuffling), so the same tiles come
        first every time; each tile's colour stretch is computed once, from its target.
        """
        from axion.viz.panels import PANEL_TILES, Stretch, validation_panel

        def numpy(tensor: Tensor, i: int) -> Any:
            return tensor[i].detach().float().cpu().numpy()

        for i, name in enumerate(batch["name"]):
            if len(self.panels) >= PANEL_TILES:
                return
            s1, target = numpy(batch["s1"], i), numpy(batch["target"], i)
            if name not in self.stretches:
                self.stretches[name] = Stretch.of(s1, target, numpy(batch["mask"], i)[0] > 0)
            self.panels[name] = validation_panel(
                s1, numpy(batch["opt_v2"], i), numpy(opt_v3, i), target, self.stretches[name]
            )
