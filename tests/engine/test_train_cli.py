"""``axion stage3 train`` through the real CLI on real tiles (tiny model, 64 px, one DDIM step)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from axion.cli import app
from axion.runtime.device import cpu_has_native_bf16
from axion.training.checkpoint import CHECKPOINT_KEYS, META_KEY, OPTIONAL_KEYS, Checkpoint

from .conftest import FAST

runner = CliRunner()


def train(tiles: Path, out: Path, *extra: str) -> str:
    args = ["stage3", "train", "--data-dir", str(tiles), "--output-dir", str(out), *FAST, *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def three_epochs(tiles_64: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One uninterrupted run of 3 epochs: 3 train tiles, accumulation 2 (a short last cycle)."""
    out = tmp_path_factory.mktemp("run") / "a"
    output = train(tiles_64, out, "--epochs", "3", "--max-samples", "3", "--grad-accum", "2", "--lr", "1e-3")
    return out, output


def test_run_writes_every_file_with_every_key(three_epochs: tuple[Path, str]) -> None:
    out, output = three_epochs
    for name in ("config.json", "checkpoint_epoch_1.pt", "checkpoint_epoch_2.pt", "checkpoint_epoch_3.pt"):
        assert (out / name).is_file(), name
    assert (out / "best_model.pt").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["model_size"] == "tiny" and config["training"]["grad_accum"] == 2
    record = config.pop("provenance")
    assert set(record["versions"]) == {"axion", "torch", "terratorch", "peft", "python"}
    assert record["run"]["host"] and record["run"]["started"]

    raw = torch.load(out / "checkpoint_epoch_3.pt", weights_only=True)
    assert tuple(raw) == (*CHECKPOINT_KEYS, *OPTIONAL_KEYS, META_KEY)
    assert raw[META_KEY]["provenance"] == record  # the same run, the same versions
    ckpt = raw
    assert ckpt["epoch"] == 3 and ckpt["config"] == config
    # Trainable weights only: LoRA adapters and the head, nothing of the frozen base.
    names = list(ckpt["model_state_dict"])
    assert names and all("lora_" in n or n.startswith("fusion.") for n in names)
    assert 0.0 <= ckpt["best_sar_agreement"] <= 1.0
    for key in ("loss", "sar", "cycle", "identity", "lpips", "spectral", "skipped_steps"):
        assert key in ckpt["train_stats"], key
    for key in ("loss", "sar_agreement", "psnr", "sam_deg", "spectral"):
        assert key in ckpt["val_stats"], key

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert {"train_loss", "val_loss", "val_sar_agreement", "lr", "time_s", "train_sar"} <= set(rows[0])

    # Console: the guide's summary and early-stopping messages.
    assert "Epoch 1 Summary:" in output and "Val SAR agreement:" in output
    assert "✓ SAR agreement improved to" in output
    label = "bf16 mixed precision (CPU)" if cpu_has_native_bf16() else "fp32 (this CPU has no native bf16)"
    assert "Trainable parameters:" in output and f"Precision: {label}" in output
    assert "effective batch size 2" in output


def test_plain_logs_are_whole_lines_with_rate_and_eta(tiles_64: Path, tmp_path: Path) -> None:
    """Output that is not a terminal (CI, | tee) never wraps, and progress lines carry rate and ETA."""
    out = tmp_path / ("a-run-directory-with-a-long-name-" * 5) / "run"
    output = train(
        tiles_64, out, "--epochs", "1", "--max-samples", "3", "--grad-accum", "1", "--log-every", "2"
    )
    assert f"Last checkpoint: {out / 'checkpoint_epoch_1.pt'}" in output.splitlines()
    progress = [line for line in output.splitlines() if line.startswith("Epoch 1: ")]
    assert [line.split(" [")[0] for line in progress] == ["Epoch 1: 2/3", "Epoch 1: 3/3"]
    assert all("<" in line and "it/s, loss=" in line and not line.endswith(", ]") for line in progress)
    assert "Done: 1 epoch in" in output


def test_json_logs_are_one_object_per_line_for_pipelines(tiles_64: Path, tmp_path: Path) -> None:
    """--log-format json: every stdout line of train and evaluate is a JSON object with time and event."""
    out = tmp_path / "json"
    args = [
        "stage3",
        "train",
        "--data-dir",
        str(tiles_64),
        "--output-dir",
        str(out),
        *FAST,
        "--generator",
        "none",
    ]
    args += [
        "--epochs",
        "2",
        "--max-samples",
        "3",
        "--grad-accum",
        "1",
        "--log-every",
        "1",
        "--log-format",
        "json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all({"time", "event"} <= set(event) for event in events)
    kinds = [event["event"] for event in events]
    assert {"message", "progress", "summary", "improved"} <= set(kinds), kinds
    progress = [e for e in events if e["event"] == "progress" and e["label"] == "Epoch 1"]
    assert [(e["done"], e["total"]) for e in progress] == [(1, 3), (2, 3), (3, 3)]
    assert all(e["eta_s"] >= 0 and e["rate_per_s"] > 0 and "loss" in e for e in progress)
    summaries = [e for e in events if e["event"] == "summary"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s["epoch"] for s in summaries] == [1, 2]
    assert summaries[-1]["val_psnr"] == pytest.approx(rows[-1]["val_psnr"])  # the row of metrics.jsonl
    assert any(e["event"] == "message" and e["message"].startswith("Done: 2 epochs") for e in events)

    evaluation = runner.invoke(
        app,
        ["stage3", "evaluate", "--checkpoint", str(out / "best_model.pt"), "--data-dir", str(tiles_64),
         "--split", "val", "--lpips-weight", "0", "--output-dir", str(tmp_path / "eval"), "--log-format", "json"],
    )  # fmt: skip
    assert evaluation.exit_code == 0, evaluation.output
    events = [json.loads(line) for line in evaluation.stdout.splitlines()]
    result_event = next(e for e in events if e["event"] == "result")
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert result_event["metrics"]["opt_v3"]["psnr"]["mean"] == pytest.approx(
        summary["metrics"]["opt_v3"]["psnr"]["mean"]
    )


def test_accumulation_remainder_is_flushed(three_epochs: tuple[Path, str]) -> None:
    out, _ = three_epochs
    # 3 batches with accumulation 2: one full cycle and one cycle of one batch, each epoch.
    ckpt = Checkpoint.read(out / "checkpoint_epoch_1.pt")
    assert ckpt.train_stats["optimizer_steps"] == 2
    assert ckpt.scheduler_state_dict["last_epoch"] == 2
    assert Checkpoint.read(out / "checkpoint_epoch_3.pt").train_stats["optimizer_steps"] == 6


def test_training_changes_the_weights(three_epochs: tuple[Path, str]) -> None:
    out, _ = three_epochs
    first = Checkpoint.read(out / "checkpoint_epoch_1.pt").model_state_dict
    last = Checkpoint.read(out / "checkpoint_epoch_3.pt").model_state_dict
    # With random TerraMind weights the UNet's output conv is zero, which blocks every gradient
    # into the adapters (tests/model covers them with that conv made non-zero); the fusion head
    # always learns.
    head = [name for name in first if name.startswith("fusion.")]
    assert head and all(not torch.equal(first[name], last[name]) for name in head)


def test_resume_gives_the_same_weights(
    three_epochs: tuple[Path, str], tiles_64: Path, tmp_path: Path
) -> None:
    out, _ = three_epochs
    resumed = tmp_path / "b"
    output = train(tiles_64, resumed, "--resume", str(out / "checkpoint_epoch_2.pt"))
    assert "Resumed from" in output
    expected = Checkpoint.read(out / "checkpoint_epoch_3.pt")
    got = Checkpoint.read(resumed / "checkpoint_epoch_3.pt")
    assert got.config["training"]["grad_accum"] == 2  # settings come from the checkpoint
    for key in ("model_state_dict", "training_state_dict"):  # the average and the raw weights
        for name, tensor in getattr(expected, key).items():
            torch.testing.assert_close(getattr(got, key)[name], tensor, rtol=1e-5, atol=1e-6)
    assert got.best_sar_agreement == pytest.approx(expected.best_sar_agreement, abs=1e-6)
    assert not (resumed / "checkpoint_epoch_1.pt").exists()


@pytest.mark.slow
def test_resume_from_a_path_alone_latest_or_a_run_directory(tiles_64: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiles_64, out, "--epochs", "1", "--max-samples", "1", "--grad-accum", "1", "--lr", "1e-3")
    # The checkpoint alone: data, output directory and settings come from it.
    result = runner.invoke(
        app, ["stage3", "train", "--resume", str(out / "checkpoint_epoch_1.pt"), "--epochs", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "Resumed from" in result.output and (out / "checkpoint_epoch_2.pt").is_file()
    # "latest" in --output-dir, and a run directory, both find epoch 2; a changed setting is reported.
    result = runner.invoke(
        app,
        ["stage3", "train", "--resume", "latest", "--output-dir", str(out), "--epochs", "3", "--lr", "5e-4"],
    )
    assert result.exit_code == 0, result.output
    assert "Resuming with lr = 0.0005 (the checkpoint had 0.001)" in result.output
    assert "Resumed from " + str(out / "checkpoint_epoch_2.pt") in result.output
    result = runner.invoke(app, ["stage3", "train", "--resume", str(out), "--epochs", "4", "--quiet"])
    assert result.exit_code == 0 and "Resumed from " + str(out / "checkpoint_epoch_3.pt") in result.output
    assert Checkpoint.read(out / "checkpoint_epoch_4.pt").config["training"]["lr"] == 5e-4
    for args, needle in (
        (["--resume", "latest"], "--resume latest needs --output-dir"),
        (["--resume", str(tmp_path / "nowhere")], "checkpoint or run directory not found"),
        (["--resume", "latest", "--output-dir", str(tmp_path)], "no checkpoint to resume from"),
    ):
        result = runner.invoke(app, ["stage3", "train", *args])
        assert result.exit_code == 2 and needle in result.output, result.output


def test_refuses_to_mix_runs_and_mismatched_resume(three_epochs: tuple[Path, str], tiles_64: Path) -> None:
    out, _ = three_epochs
    before = (out / "checkpoint_epoch_3.pt").read_bytes()
    args = ["stage3", "train", "--data-dir", str(tiles_64), "--output-dir", str(out), *FAST]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "already holds a training run" in result.output
    result = runner.invoke(app, [*args, "--resume", str(out / "checkpoint_epoch_2.pt"), "--lora-rank", "4"])
    assert result.exit_code == 2 and "trained with --lora-rank 8, not 4" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(
        app, [*args, "--resume", str(out / "checkpoint_epoch_2.pt"), "--correction-smoothing", "1"]
    )
    assert result.exit_code == 2 and "trained with --correction-smoothing 0.0, not 1.0" in result.output
    assert (out / "checkpoint_epoch_3.pt").read_bytes() == before


def test_early_stopping_message(tiles_64: Path, tmp_path: Path) -> None:
    # lr is tiny, so SAR agreement cannot improve by more than the huge delta after epoch 1.
    output = train(
        tiles_64, tmp_path / "es", "--epochs", "5", "--max-samples", "1", "--grad-accum", "1",
        "--lr", "1e-9", "--early-stop-patience", "1", "--early-stop-delta", "0.5",
    )  # fmt: skip
    assert "No improvement in SAR agreement (1/1)" in output
    assert "⚠ Early stopping triggered!" in output and "Best SAR agreement:" in output
    assert "at epoch 1" in output
    assert not (tmp_path / "es" / "checkpoint_epoch_3.pt").exists()


def test_fusion_network_has_its_own_rate(three_epochs: tuple[Path, str]) -> None:
    out, output = three_epochs
    ckpt = Checkpoint.read(out / "checkpoint_epoch_1.pt")
    groups = ckpt.optimizer_state_dict["param_groups"]
    assert [g["name"] for g in groups] == ["lora", "fusion"]
    assert groups[0]["initial_lr"] == pytest.approx(1e-3) and groups[1]["initial_lr"] == pytest.approx(1e-3)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "lr_fusion" in rows[0] and "Fusion learning rate:" in output


def test_monitor_picks_the_best_model_by_its_score(tiles_64: Path, tmp_path: Path) -> None:
    out = tmp_path / "psnr"
    output = train(
        tiles_64, out, "--epochs", "3", "--max-samples", "2", "--grad-accum", "1", "--head-lr", "3e-3",
        "--monitor", "psnr", "--early-stop-delta", "0",
    )  # fmt: skip
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best_epoch = max(rows, key=lambda row: row["val_psnr"])["epoch"]
    best = Checkpoint.read(out / "best_model.pt")
    assert best.epoch == best_epoch
    assert best.val_stats["early_stopping"]["monitor"] == "psnr"
    assert "validation PSNR improved to" in output
    # The guide's key keeps its meaning: the highest validation SAR agreement so far.
    assert best.best_sar_agreement <= max(row["val_sar_agreement"] for row in rows) + 1e-9
    last = Checkpoint.read(out / "checkpoint_epoch_3.pt")
    assert last.best_sar_agreement == pytest.approx(max(row["val_sar_agreement"] for row in rows))


def test_generator_none_is_the_fusion_network_alone(tiles_64: Path, tmp_path: Path) -> None:
    """The control arm: no terratorch import, no weights; evaluate and infer take its checkpoint."""
    out = tmp_path / "none"
    args = [
        "stage3", "train", "--data-dir", str(tiles_64), "--output-dir", str(out), "--generator", "none",
        "--pretrained", "--epochs", "2", "--max-samples", "2", "--grad-accum", "1", "--lpips-weight", "0",
        "--num-workers", "0", "--quiet",
    ]  # fmt: skip
    # The loop also checks, on two threads, that every thread computes with subnormals flushed to zero
    # (they slowed training 4-5x): 1e-20 squared is subnormal, so a share left non-zero was computed
    # by a thread started before the flush.
    probe = (
        "import torch\nfrom axion.training.trainer import Stage3Trainer\ntorch.set_num_threads(2)\n"
        "fit = Stage3Trainer.fit\n"
        "def probed(self, *a, **k):\n"
        "    x = torch.full((1 << 22,), 1e-20)\n"
        "    print('SUBNORMAL', (x * x != 0).float().mean().item())\n"
        "    return fit(self, *a, **k)\n"
        "Stage3Trainer.fit = probed\n"
    )
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom axion.cli import app\n"
        + probe
        + f"result = CliRunner().invoke(app, {args!r})\n"
        "print(result.output)\nprint('EXIT', result.exit_code, 'terratorch' in sys.modules)\n"
    )
    env = {**os.environ, "LIGHTLY_DID_VERSION_CHECK": "True"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.stdout.strip().endswith("EXIT 0 False"), done.stdout + done.stderr
    assert "Generator: none" in done.stdout
    assert "SUBNORMAL 0.0" in done.stdout, done.stdout
    best = Checkpoint.read(out / "best_model.pt")
    assert best.config["model"]["generator"] == "none"
    assert all(name.startswith("fusion.") for name in best.model_state_dict)
    result = runner.invoke(
        app,
        ["stage3", "evaluate", "--checkpoint", str(out / "best_model.pt"), "--data-dir", str(tiles_64),
         "--output-dir", str(tmp_path / "eval"), "--split", "val", "--lpips-weight", "0", "--quiet",
         "--num-workers", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["tiles"] >= 1 and summary["metrics"]["opt_v3"]["psnr"]["mean"] is not None
    result = runner.invoke(
        app,
        ["stage3", "infer", "--checkpoint", str(out / "best_model.pt"), "--input-dir", str(tiles_64 / "val"),
         "--output-dir", str(tmp_path / "inferred"), "--proxy-from-ground-truth", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "inferred").glob("*.npz"))
    result = runner.invoke(
        app,
        ["stage3", "infer", "--checkpoint", str(out / "best_model.pt"), "--input-dir", str(tiles_64 / "val"),
         "--output-dir", str(tmp_path / "generated"), "--proxy-from-ground-truth", "--save-generated"],
    )  # fmt: skip
    assert result.exit_code == 2 and "trained with --generator none (nothing is generated)" in result.output
    assert not (tmp_path / "generated").exists()


def test_s1_product_of_the_tiles_must_be_the_models(tiles_64: Path, tmp_path: Path) -> None:
    import shutil

    tiles = tmp_path / "tiles"
    shutil.copytree(tiles_64, tiles)
    sidecars = sorted((tiles / "train").glob("*.json")) + sorted((tiles / "val").glob("*.json"))

    def mark(paths: list[Path], product: str) -> None:
        for path in paths:
            meta = json.loads(path.read_text())
            path.write_text(json.dumps({**meta, "s1_product": product}))

    mark(sidecars[:1], "rtc")
    mark(sidecars[1:], "grd")
    args = [
        "stage3",
        "train",
        "--data-dir",
        str(tiles),
        "--output-dir",
        str(tmp_path / "o"),
        *FAST,
        "--epochs",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "tiles mix Sentinel-1 products" in result.output
    mark(sidecars, "rtc")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "use --s1-product rtc" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_bad_data_fails_before_training(tmp_path: Path) -> None:
    """A split whose tiles are all bad would stop the run: it is refused before a model is built."""
    from tests.data.conftest import write_tile

    (tmp_path / "tiles" / "train").mkdir(parents=True)
    (tmp_path / "tiles" / "train" / "t.npz").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "tiles" / "train" / "t.json").write_text('{"split": "train"}')
    write_tile(tmp_path / "tiles" / "val", "v", "val", size=(32, 32))
    result = runner.invoke(
        app,
        [
            "stage3",
            "train",
            "--data-dir",
            str(tmp_path / "tiles"),
            "--output-dir",
            str(tmp_path / "o"),
            *FAST,
        ],
    )
    assert result.exit_code == 2 and "t.npz" in result.output and "Traceback" not in result.output
    assert "1 of 1 train tiles are bad" in result.output
    assert not (tmp_path / "o").exists()


# --- separate processes: signals and data parallelism ---------------------------------------------


def _spawn(tiles: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LIGHTLY_DID_VERSION_CHECK": "True"}
    cmd = [
        sys.executable,
        "-m",
        "axion",
        "stage3",
        "train",
        "--data-dir",
        str(tiles),
        "--output-dir",
        str(out),
    ]
    return subprocess.Popen(
        [*cmd, *FAST, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def _wait_for(proc: subprocess.Popen, condition, timeout: float = 300) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_resumes(tiles_64: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _spawn(tiles_64, out, "--epochs", "2", "--max-samples", "3", "--grad-accum", "1")
    _wait_for(proc, lambda: (out / "config.json").exists())
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    # A stop by SIGTERM exits as the shell expects of a terminated process, after its checkpoint.
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM received" in output and "--resume" in output
    ckpt = Checkpoint.read(out / "checkpoint_interrupted.pt")
    assert ckpt.train_stats["partial_batches"] >= 1
    output = train(tiles_64, out, "--resume", str(out / "checkpoint_interrupted.pt"))
    assert "Resumed from" in output
    assert Checkpoint.read(out / "checkpoint_epoch_2.pt").epoch == 2
    # The later epoch checkpoints supersede the interrupted one, which is removed.
    assert not (out / "checkpoint_interrupted.pt").exists()


@pytest.mark.slow
def test_sigkill_leaves_loadable_checkpoints(tiles_64: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _spawn(tiles_64, out, "--epochs", "20", "--max-samples", "1", "--grad-accum", "1")
    _wait_for(proc, lambda: (out / "checkpoint_epoch_2.pt").exists())
    proc.kill()
    proc.wait(timeout=60)
    checkpoints = sorted(out.glob("*.pt"))
    assert checkpoints
    for path in checkpoints:
        assert tuple(torch.load(path, weights_only=True)) == (*CHECKPOINT_KEYS, *OPTIONAL_KEYS, META_KEY)
        Checkpoint.read(path)
    last = max(Checkpoint.read(p).epoch for p in out.glob("checkpoint_epoch_*.pt"))
    output = train(
        tiles_64, out, "--resume", str(out / f"checkpoint_epoch_{last}.pt"), "--epochs", str(last + 1)
    )
    assert Checkpoint.read(out / f"checkpoint_epoch_{last + 1}.pt").epoch == last + 1
    assert "Resumed from" in output


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiles_64: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = _spawn(tiles_64, out, "--epochs", "1", "--max-samples", "2", "--grad-accum", "1", "--devices", "2")
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "Devices: 2 x cpu" in output
    ckpt = Checkpoint.read(out / "checkpoint_epoch_1.pt")
    assert ckpt.epoch == 1 and ckpt.train_stats["optimizer_steps"] == 1


@pytest.mark.slow
def test_step_flags_count_global_steps_with_two_processes(tiles_64: Path, tmp_path: Path) -> None:
    """--max-steps, --val-every-steps and --checkpoint-every-steps in DDP: both ranks stop, validate
    and save at the same optimizer steps, and a checkpoint inside an epoch carries both ranks' sums."""
    out = tmp_path / "ddp-steps"
    steps = ["--max-steps", "3", "--val-every-steps", "1", "--checkpoint-every-steps", "1"]
    proc = _spawn(
        tiles_64, out, "--generator", "none", "--epochs", "2", "--max-samples", "4", "--batch-size", "1",
        "--grad-accum", "1", "--devices", "2", *steps,
    )  # fmt: skip
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    # 4 tiles over 2 ranks at batch 1: 2 steps per epoch; step 2 is epoch 1's own checkpoint.
    names = sorted(path.name for path in out.glob("checkpoint_*.pt"))
    assert names == ["checkpoint_epoch_1.pt", "checkpoint_step_1.pt", "checkpoint_step_3.pt"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    inside = Checkpoint.read(out / "checkpoint_step_1.pt")
    assert inside.train_stats["epoch_sums"]["count"] == 2  # one tile from each rank
    assert inside.train_stats["loss"] == pytest.approx(inside.train_stats["epoch_sums"]["total"] / 2)
    assert "Reached --max-steps 3 in epoch 2: stopping" in output
