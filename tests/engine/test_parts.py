"""Engine pieces in isolation: early stopping, schedule, sampler, checkpoints, precision."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from axion.atomic import atomic_path
from axion.errors import ConfigError, DataError
from axion.records.monitor import EarlyStopping
from axion.runtime.device import cpu_has_native_bf16, resolve_precision
from axion.seeding import stable_seed
from axion.training.checkpoint import (
    CHECKPOINT_KEYS,
    META_KEY,
    Checkpoint,
    CheckpointSaver,
    epoch_checkpoints,
)
from axion.training.sampler import EpochSampler
from axion.training.schedule import WarmupCosine
from axion.training.trainer import LoopState, Stage3Trainer


def test_early_stopping_on_a_crafted_sequence() -> None:
    stopper = EarlyStopping(patience=3, delta=0.01)
    sequence = [0.50, 0.55, 0.555, 0.56, 0.58, 0.585, 0.586, 0.589]
    decisions = []
    for epoch, value in enumerate(sequence, start=1):
        improved = stopper.update(value, epoch)
        decisions.append((improved, stopper.wait, stopper.should_stop))
        if stopper.should_stop:
            break
    # 0.555 and 0.56 are within delta of 0.55; 0.58 beats 0.55 + 0.01; then three misses.
    assert [d[0] for d in decisions] == [True, True, False, False, True, False, False, False]
    assert decisions[-1] == (False, 3, True)
    assert stopper.best == pytest.approx(0.58) and stopper.best_epoch == 5


def test_early_stopping_lower_is_better_and_nan_never_improves() -> None:
    stopper = EarlyStopping(patience=2, delta=0.001, mode="min")
    assert stopper.update(0.05, 1)
    assert not stopper.update(float("nan"), 2)  # a diverged validation is a miss, never a best
    assert stopper.update(0.04, 3) and stopper.best == pytest.approx(0.04)
    assert not stopper.update(0.0395, 4)  # within delta
    assert not stopper.update(float("inf"), 5) and stopper.should_stop
    highest = EarlyStopping(patience=5, delta=0.0)
    assert not highest.update(float("nan"), 1) and highest.best_epoch == 0


def test_early_stopping_state_round_trip() -> None:
    stopper = EarlyStopping(patience=5, delta=1e-4)
    stopper.update(0.7, 1)
    stopper.update(0.6, 2)
    other = EarlyStopping(patience=5, delta=1e-4)
    other.load_state_dict(stopper.state_dict())
    assert (other.best, other.best_epoch, other.wait) == (0.7, 1, 1)


def test_warmup_then_cosine() -> None:
    f = WarmupCosine(warmup_steps=4, total_steps=14)
    assert f(0) == pytest.approx(0.2) and f(3) == pytest.approx(0.8)
    assert f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.5)
    assert f(14) == pytest.approx(0.0, abs=1e-12) and f(100) == pytest.approx(0.0, abs=1e-12)
    values = [f(s) for s in range(4, 15)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_loss_warmup_ramps_over_its_share_of_the_run() -> None:
    def scale(share: float, step: int, total: int = 100) -> float:
        trainer = SimpleNamespace(
            cfg=SimpleNamespace(loss=SimpleNamespace(loss_warmup=share)),
            optimization=SimpleNamespace(schedule=WarmupCosine(0, total)),
            state=LoopState(optimizer_steps=step),
        )
        return Stage3Trainer.warmup_scale(trainer)  # type: ignore[arg-type]

    assert [scale(0.2, step) for step in (0, 9, 19, 20, 99)] == pytest.approx([0.05, 0.5, 1.0, 1.0, 1.0])
    assert scale(0.0, 0) == 1.0  # no warm-up: the configured weights from the first step
    assert scale(0.2, 4, total=10) == 1.0  # the share is of this run's steps


def test_scheduler_state_is_plain_data(tmp_path: Path) -> None:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(2, 10))
    for _ in range(3):
        opt.step()
        sched.step()
    torch.save({"s": sched.state_dict()}, tmp_path / "s.pt")
    restored = torch.load(tmp_path / "s.pt", weights_only=True)["s"]
    assert restored["last_epoch"] == 3


def test_sampler_deterministic_sharded_and_skipping() -> None:
    a = EpochSampler(10, seed=1)
    a.set_epoch(3)
    b = EpochSampler(10, seed=1)
    b.set_epoch(3)
    assert list(a) == list(b) and sorted(a) == list(range(10))
    b.set_epoch(4)
    assert list(a) != list(b)
    ranks = [EpochSampler(10, seed=1, num_replicas=3, rank=r) for r in range(3)]
    for r in ranks:
        r.set_epoch(3)
    shards = [list(r) for r in ranks]
    assert all(len(s) == 4 for s in shards)
    assert set(sum(shards, [])) == set(range(10))
    a.set_epoch(3, skip=4)
    full = EpochSampler(10, seed=1)
    full.set_epoch(3)
    assert list(a) == list(full)[4:] and len(a) == 6


def test_stable_seed() -> None:
    assert stable_seed(42, "val", "tile_1") == stable_seed(42, "val", "tile_1")
    assert stable_seed(42, "val", "tile_1") != stable_seed(42, "val", "tile_2")
    assert 0 <= stable_seed("x") < 2**63


def _state(epoch: int) -> Checkpoint:
    return Checkpoint(
        epoch=epoch,
        model_state_dict={"w": torch.ones(2) * epoch},
        train_stats={"loss": 0.1},
        val_stats={"sar_agreement": 0.5},
        best_sar_agreement=0.5,
        config={"model": {}},
    )


def test_checkpoint_saver_rotation_and_weights_only_load(tmp_path: Path) -> None:
    saver = CheckpointSaver(tmp_path, keep_last=2)
    for epoch in (1, 2, 3):
        saver.save_epoch(_state(epoch))
    saver.save_best(_state(2))
    assert [e for e, _ in epoch_checkpoints(tmp_path)] == [2, 3]
    raw = torch.load(tmp_path / "checkpoint_epoch_3.pt", weights_only=True)
    assert tuple(raw) == (*CHECKPOINT_KEYS, META_KEY)
    loaded = Checkpoint.read(tmp_path / "checkpoint_epoch_3.pt")
    assert torch.equal(loaded.model_state_dict["w"], torch.full((2,), 3.0))
    assert Checkpoint.read(tmp_path / "best_model.pt").epoch == 2
    assert not list(tmp_path.glob(".*tmp*"))


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_epoch_1.pt"
    _state(1).write(path)
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        torch.save({"bad": Unpicklable()}, tmp)
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name != path.name]


def test_load_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="checkpoint not found"):
        Checkpoint.read(tmp_path / "none.pt")
    good = tmp_path / "good.pt"
    _state(1).write(good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated.pt: not a readable axion checkpoint"):
        Checkpoint.read(truncated)
    partial = tmp_path / "partial.pt"
    torch.save({"epoch": 1}, partial)
    with pytest.raises(DataError, match="missing key\\(s\\) model_state_dict"):
        Checkpoint.read(partial)


def test_precision_resolution() -> None:
    native = "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    assert resolve_precision("auto", "cpu").fabric == native
    assert resolve_precision("auto", "cuda").fabric == "16-mixed"
    assert resolve_precision("auto", "cuda").uses_scaler
    assert resolve_precision("32", "cpu").fabric == "32-true"
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        resolve_precision("fp16-mixed", "cpu")


def test_auto_precision_is_fp32_on_a_cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulated bf16 autocast is about 100x slower than fp32, so ``auto`` never picks it."""
    import axion.runtime.device as device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert device.resolve_precision("auto", "cpu").fabric == "32-true"
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert device.resolve_precision("auto", "cpu").fabric == "bf16-mixed"
    assert device.resolve_precision("auto", "cuda").fabric == "16-mixed"
