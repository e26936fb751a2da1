"""The training loop: a small class with one hook per kind of step.

:class:`Stage3Trainer` owns the optimisation (accumulation, clipping, the
schedule, non-finite losses, signals) and calls two hooks, :meth:`training_step`
and :meth:`validation_step`, which hold what is specific to Stage 3: run the model
on a batch and score it. Every epoch it validates, updates early stopping, and
writes ``checkpoint_epoch_N.pt`` (and ``best_model.pt`` on improvement). Inside an epoch it
can also validate every ``--val-every-steps`` optimizer steps, write
``checkpoint_step_N.pt`` every ``--checkpoint-every-steps``, and stop at ``--max-steps``.

The hooks are shaped like those of torchgeo's ``BaseTask``. What is not the loop has units of
its own: the epoch's running sums and partial-epoch resume in :mod:`axion.training.epoch`,
the bad samples skipped (``bad_samples.jsonl``, ``--max-bad-fraction``) in :mod:`axion.records.badlog`,
the TensorBoard panels in :mod:`axion.training.panels`, the checkpoints in
:mod:`axion.training.checkpoint`.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from axion.cloudfill import network_opt_v2
from axion.console import plural
from axion.errors import TrainingError
from axion.records.badlog import MIN_SEEN, BadSampleLog, check_bad_fraction
from axion.records.history import MetricsHistory
from axion.records.monitor import MONITORS, EarlyStopping, all_finite
from axion.runtime.reporter import Reporter
from axion.seeding import Stream, stream_seed
from axion.training.checkpoint import Checkpoint, CheckpointSaver
from axion.training.ema import WeightAverage
from axion.training.epoch import PartialEpoch, Sums, accumulation_cycle, reduce_sum
from axion.training.panels import ValidationPanels
from axion.training.sampler import EpochSampler
from axion.training.schedule import WarmupCosine

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
    #: Where ``bad_samples.jsonl`` goes (None: bad samples are only counted).
    run_dir: Path | None = None


@dataclass
class LoopState:
    """Where the loop is; everything here goes into checkpoints."""

    epoch: int = 0  # last completed epoch
    optimizer_steps: int = 0
    partial_batches: int = 0  # batches of epoch+1 already done (interrupted runs)
    nonfinite_in_a_row: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


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
        watched = MONITORS[self.monitor]
        self.monitor_label, self.monitor_key = watched.label, watched.key
        self.early_stopping = EarlyStopping(
            cfg.early_stopping.early_stop_patience, cfg.early_stopping.early_stop_delta, watched.mode
        )
        #: The highest validation SAR agreement so far, whatever the monitor (the checkpoint's
        #: ``best_sar_agreement``).
        self.best_sar_agreement = -math.inf
        self.state = LoopState()
        self.stop_requested: str | None = None
        #: Why the run ended before ``epochs`` other than by a signal: ``max_steps`` or ``early_stopping``.
        self.finished: str | None = None
        #: The epoch in progress as checkpoints inside it carry it (and a resumed one starts from).
        self.partial = PartialEpoch()
        self.provenance = output.provenance
        self.val_loader: Iterable = ()
        self.epoch_started = time.perf_counter()
        self.epoch_batches = 0  # batches of the epoch in progress (with those done before a resume)
        self.epoch_rates: dict[str, float] = {}
        #: TensorBoard panels of the last validation that drew them.
        self.panels = ValidationPanels()
        #: Bad samples skipped in the training pass and in validation, and where they are listed.
        self.bad = BadSampleLog(output.run_dir, "train")
        self.val_bad = BadSampleLog(output.run_dir, "val")
        #: This process's last batch with a good sample: what keeps data-parallel processes in step
        #: when one of them meets a batch of bad samples only (:meth:`_keep_in_step`).
        self.last_batch: dict[str, Any] | None = None
        #: The moving average of the trainable weights that validation and checkpoints use.
        self.average = WeightAverage(self.module, cfg.training.ema_decay)

    @property
    def module(self) -> torch.nn.Module:
        """The unwrapped Stage 3 model (for its trainable state dict)."""
        return getattr(self.model, "module", self.model)

    # --- hooks ---------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], epoch: int) -> dict[str, Tensor]:
        """Per-sample loss terms for one batch, with gradients."""
        seeds = [stream_seed(self.seed, Stream.TRAIN_NOISE, epoch, name) for name in batch["name"]]
        opt_v3 = self.model(
            batch["s1"], network_opt_v2(batch), seeds=seeds, acquired=batch.get("opt_v2_acquired")
        )
        return self.loss_fn(
            opt_v3,
            batch["opt_v2"],
            batch["target"],
            batch["s1"],
            batch["mask"],
            batch["opt_v2_mask"],
            warmup_scale=self.warmup_scale(),
        )

    def warmup_scale(self) -> float:
        """Factor on the weights of every term but the spectral L1 at this optimizer step.

        It rises linearly to 1 over the first ``--loss-warmup`` share of the run's steps: the
        network first learns the image from the pixel loss, then the structure and the guards
        weigh in at the guide's weights (the order of super-resolution training: a pixel loss,
        then perceptual terms). In full from the first step they slowed the first epochs
        (docs/losses.md, "Loss warm-up"). Validation always uses the full weights.
        """
        ramp = self.cfg.loss.loss_warmup * self.optimization.schedule.total_steps
        if ramp <= 0:
            return 1.0
        return min(1.0, (self.state.optimizer_steps + 1) / ramp)

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Per-sample loss terms and metrics; the noise is fixed per tile.

        The output itself comes back under ``opt_v3`` (for the TensorBoard panels); every other
        value is per sample and averaged over the pass.
        """
        seeds = [stream_seed(self.seed, Stream.VAL_NOISE, name) for name in batch["name"]]
        opt_v3 = self.model(
            batch["s1"], network_opt_v2(batch), seeds=seeds, acquired=batch.get("opt_v2_acquired")
        )
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
        (:meth:`~axion.training.epoch.Sums.totals`), so that a resumed epoch reports its means over all its batches.
        """
        scaler = getattr(self.fabric.strategy.precision, "scaler", None)
        partial = (
            {"epoch_sums": epoch_sums, "epoch_skipped": train_stats["skipped_steps"]} if epoch_sums else {}
        )
        raw = {k: v.detach().cpu() for k, v in self.module.trainable_state_dict().items()}
        averaged = self.average.enabled
        return Checkpoint(
            epoch=self.state.epoch,
            # What evaluate, infer and export load: the average when there is one.
            model_state_dict=self.average.state_dict() if averaged else raw,
            training_state_dict=raw if averaged else None,
            optimizer_state_dict=self.optimizer.state_dict(),
            scheduler_state_dict=self.optimization.scheduler.state_dict(),
            scaler_state_dict=scaler.state_dict() if scaler is not None else {},
            train_stats={
                **train_stats,
                "optimizer_steps": self.state.optimizer_steps,
                "partial_batches": self.state.partial_batches,
                "ema_updates": self.average.updates,
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
        """Continue from a checkpoint: weights and their average, optimizer, schedule, scaler, loop and
        early stopping."""
        raw = ckpt.training_state_dict if ckpt.training_state_dict is not None else ckpt.model_state_dict
        self.module.load_trainable_state_dict(raw)
        if ckpt.training_state_dict is not None and self.average.enabled:
            self.average.load_state_dict(ckpt.model_state_dict, int(ckpt.train_stats.get("ema_updates", 0)))
        else:  # no average saved (or none wanted): one starts at the weights resumed from
            self.average.reset()
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
            self.partial.restore(ckpt.train_stats)

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
                    path = self.saver.save_interrupted(self.checkpoint(train_stats, {}, self.partial.sums))
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
            if self.panels.drawn:
                self.history.add_images(self.panels.drawn, steps)
        return val_stats, improved

    def _after_step(self, epoch: int, sums: Sums, skipped: int) -> bool:
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
        checkpoint = self.checkpoint(train_stats, val_stats, self.partial.sums)
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

    def _train_stats(self, sums: Sums, skipped: int) -> dict[str, Any]:
        """The epoch's means so far, its skipped steps, its good samples (``samples``) and bad ones."""
        stats = self.partial.train_stats(sums, skipped, self.fabric)
        counts = reduce_sum(self.bad.stats(), self.fabric)
        samples = int(self.partial.sums["count"]) if self.partial.sums else 0
        return {**stats, "samples": samples, **{k: int(v) for k, v in counts.items()}}

    def _check_bad(self, epoch: int, good: int, *, final: bool) -> None:
        """Stop when more than ``--max-bad-fraction`` of the epoch's samples so far are bad.

        Inside the epoch only once :data:`~axion.records.badlog.MIN_SEEN` samples were seen;
        every process reaches the same verdict (the counts are summed over all of them).
        """
        counts = reduce_sum({"bad": self.bad.total, "good": good}, self.fabric)
        bad, seen = int(counts["bad"]), int(counts["bad"] + counts["good"])
        if final or seen >= MIN_SEEN:
            check_bad_fraction(
                bad,
                seen,
                self.cfg.data.max_bad_fraction,
                where=f"epoch {epoch}",
                first=self.bad.first,
                path=self.bad.path,
            )

    def _with_stand_in(self, loader: Iterable) -> Iterable[dict[str, Any]]:
        """The loader's batches; before a batch of bad samples only, with no good batch yet, the next
        good batch is found ahead and kept as :attr:`last_batch` (it is still trained on in its turn)."""
        batches = iter(loader)
        for batch in batches:
            if batch["name"] or self.last_batch is not None:
                yield batch
                continue
            ahead = [batch]
            for later in batches:
                ahead.append(later)
                if later["name"]:
                    self.last_batch = self.fabric.to_device({k: v for k, v in later.items() if k != "bad"})
                    break
            yield from ahead

    def _keep_in_step(self, epoch: int) -> None:
        """A batch of bad samples only, with other processes training: a step of weight 0 on this
        process's last good batch, so that every process takes part in the gradient exchange."""
        if self.last_batch is None:
            raise TrainingError(
                f"process {self.fabric.global_rank} met only bad samples in epoch {epoch}; "
                "fix or remove them (see bad_samples.jsonl) or train on one device"
            )
        terms = self.training_step(self.last_batch, epoch)
        self.fabric.backward(torch.nan_to_num(terms["total"].mean()) * 0.0)

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
        sums, skipped, bad_counts = self.partial.begin(done_before, self.fabric.is_global_zero)
        self.bad.start(bad_counts)
        self.epoch_batches = done_before + total
        cycle_skip = False
        cycle_learned = False  # a backward pass in this accumulation cycle (not all its samples were bad)
        distributed = self.fabric.world_size > 1
        with self.reporter.bar(f"Epoch {epoch}", total) as bar:
            for i, batch in enumerate(self._with_stand_in(loader) if distributed else loader):
                self.bad.add(batch.pop("bad", ()), epoch)
                batch = self.fabric.to_device(batch)
                position = done_before + i  # index of this batch within the epoch
                epoch_len = done_before + total
                cycle_len, last_in_cycle = accumulation_cycle(position, epoch_len, training.grad_accum)
                loss = None
                with self.fabric.no_backward_sync(self.model, enabled=not last_in_cycle):
                    if not batch["name"]:  # bad samples only: nothing to learn from
                        if distributed and last_in_cycle:
                            self._keep_in_step(epoch)
                            cycle_learned = True  # every process steps on the same exchanged gradients
                    else:
                        self.last_batch = batch
                        terms = self.training_step(batch, epoch)
                        loss = terms["total"].mean()
                    if loss is None:
                        pass
                    elif torch.isfinite(loss):
                        # Mean over the cycle's micro-batches, so a short last cycle is not down-weighted.
                        self.fabric.backward(loss / cycle_len)
                        cycle_learned = True
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
                    if cycle_learned and not cycle_skip:
                        self.fabric.clip_gradients(
                            self.model, self.optimizer, max_norm=training.max_grad_norm
                        )
                        self.optimizer.step()
                        self.average.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.optimization.scheduler.step()
                    self.state.optimizer_steps += 1
                    cycle_skip = cycle_learned = False
                bar.advance(**({} if loss is None else {"loss": float(loss.detach())}))
                self.state.partial_batches = position + 1
                if not distributed or last_in_cycle:
                    self._check_bad(epoch, sums.count, final=position + 1 == epoch_len)
                if not last_in_cycle:
                    continue
                if self.stop_requested:
                    break
                if position + 1 < epoch_len and self._after_step(epoch, sums, skipped):
                    break
        return self._train_stats(sums, skipped)

    @torch.no_grad()
    def validate(self, loader: Iterable, epoch: int | str, *, images: bool = False) -> dict[str, float]:
        """Mean loss terms and metrics over the validation loader, with the averaged weights.

        Args:
            loader: the validation loader.
            epoch: how the progress bar names this validation.
            images: also draw the panels of the first :data:`~axion.viz.panels.PANEL_TILES` tiles
                into :attr:`panels` (from the opt_v3 this pass computes anyway).
        """
        sums = Sums()
        self.panels.start()
        self.val_bad.start()
        with (
            self.average.applied(),
            self.reporter.bar(f"Validation {epoch}", len(loader)) as bar,  # type: ignore[arg-type]
        ):
            for batch in loader:
                self.val_bad.add(batch.pop("bad", ()), self.state.epoch + 1)
                if not batch["name"]:
                    bar.advance()
                    continue
                batch = self.fabric.to_device(batch)
                values = self.validation_step(batch)
                opt_v3 = values.pop("opt_v3", None)
                if images and opt_v3 is not None:
                    self.panels.add(batch, opt_v3)
                sums.add(values)
                bar.advance(loss=float(values["total"].mean()), sar_agr=float(values["sar_agreement"].mean()))
        stats = sums.means(self.fabric)
        bad = {k: int(v) for k, v in reduce_sum(self.val_bad.stats(), self.fabric).items()}
        return {"loss": stats.pop("total", math.nan), **stats, **bad}
