"""Benchmark one training step of the engine against a bare forward + backward.

Prints samples per second, the split of a step (data, forward, backward,
optimizer, metrics), peak memory, and the ratio of a full engine step (the real
:class:`~axion.training.trainer.Stage3Trainer` loop: data, autocast, loss, backward,
clipping, optimizer, schedule, progress) to a bare model forward + backward,
all measured in the same run on the same batches. The engine is assembled with
the same builders as ``axion stage3 train`` (:mod:`axion.training.fit`).

Usage::

    python benchmarks/train_step.py --model-size tiny --steps 5
    python benchmarks/train_step.py --model-size base --precision bf16-mixed
    python benchmarks/train_step.py --timesteps 10 --compare-grad-steps 1 10

``--compare-grad-steps`` runs one configuration per number of gradient steps (K), each in
its own process so that its peak memory is its own, and prints them side by side with the
ratio of each step time to the last (full backpropagation when the last K equals T).

Reads real 224 px S1/S2 scenes from ../shared/data/terramind-examples (``--data``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")

REPO = Path(__file__).resolve().parents[1]


def _prepare_tiles(data: Path, out: Path, tile_size: int) -> None:
    from axion.config import PrepareConfig
    from axion.data.prepare.api import prepare

    pairs = sorted((data / "S1RTC").glob("*.tif"))
    prepare(
        PrepareConfig(
            output_dir=out,
            tile_size=tile_size,
            split_ratios="1,0,0",
            s1=pairs,
            s2=[data / "S2L2A" / p.name for p in pairs],
        )
    )


def _timed(fn, sync) -> float:  # noqa: ANN001
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-size", default="tiny", choices=["tiny", "small", "base", "large"])
    parser.add_argument("--tile-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5, help="measured steps (after one warm-up)")
    parser.add_argument("--timesteps", type=int, default=1)
    parser.add_argument("--grad-steps", type=int, default=1, help="DDIM steps that carry gradients")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16-mixed", "fp16-mixed", "32"])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "terramind-examples")
    parser.add_argument(
        "--compare-grad-steps", type=int, nargs="+", metavar="K", help="compare these K side by side"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line of figures (for --compare)")
    args = parser.parse_args()
    if args.compare_grad_steps:
        compare_grad_steps(args)
        return

    import torch

    from axion.config import TrainConfig
    from axion.losses import Stage3Loss
    from axion.model import build_stage3_model
    from axion.runtime.device import build_fabric
    from axion.runtime.reporter import Reporter
    from axion.training.checkpoint import CheckpointSaver
    from axion.training.fit import RunInputs, build_loaders, build_optimization
    from axion.training.trainer import RunOutput, Stage3Trainer, validation_metrics

    tmp = Path(tempfile.mkdtemp(prefix="axion-bench-"))
    _prepare_tiles(args.data, tmp / "tiles", args.tile_size)
    n = args.steps + 1
    cfg = TrainConfig.model_validate(
        {
            "data": {"data_dir": tmp / "tiles", "output_dir": tmp / "run"},
            "model": {
                "model_size": args.model_size,
                "pretrained": False,
                "timesteps": args.timesteps,
                "grad_steps": args.grad_steps,
            },
            "training": {"precision": args.precision, "grad_accum": 1, "epochs": 2},
            "loss": {"lpips_weight": 0.0},
            "other": {"num_workers": 0, "max_samples": n},
        }
    )
    from axion.data.dataset import TileDataset

    dataset = TileDataset(cfg.data.data_dir, "train", max_samples=n)
    inputs = RunInputs(train_set=dataset, val_set=dataset, perceptual=None, resume=None)

    fabric, precision = build_fabric(cfg.training)
    cuda = fabric.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = build_stage3_model(cfg.model)
    loss_fn = Stage3Loss(cfg.loss).to(fabric.device)
    loaders = build_loaders(inputs, cfg)
    optimization = build_optimization(model, cfg.training, math.ceil(len(dataset) / cfg.training.grad_accum))
    wrapped, optimization.optimizer = fabric.setup(model, optimization.optimizer)
    optimizer = optimization.optimizer

    loaders.sampler.set_epoch(0)
    batches = [fabric.to_device(b) for b in loaders.train]
    while len(batches) < n:
        batches += batches[: n - len(batches)]

    # --- the split of a step, measured piece by piece -------------------------------------
    split: dict[str, list[float]] = {k: [] for k in ("data", "forward", "backward", "optimizer", "metrics")}
    bare: list[float] = []
    it = iter(loaders.train)
    for i, batch in enumerate(batches):
        split_data = _timed(lambda: next(it, None), sync)
        holder: dict[str, torch.Tensor] = {}

        def forward(batch=batch, holder=holder, i=i) -> None:  # noqa: ANN001
            out = wrapped(batch["s1"], batch["opt_v2"], seeds=[i])
            holder["out"] = out
            holder["loss"] = loss_fn(out, batch["opt_v2"], batch["target"], batch["s1"], batch["mask"])[
                "total"
            ].mean()

        t_fwd = _timed(forward, sync)
        t_bwd = _timed(lambda holder=holder: fabric.backward(holder["loss"]), sync)
        t_opt = _timed(lambda: (optimizer.step(), optimizer.zero_grad(set_to_none=True)), sync)
        with torch.no_grad():
            t_met = _timed(
                lambda batch=batch, holder=holder: validation_metrics(
                    holder["out"].detach().float(), batch["target"], batch["s1"], batch["mask"]
                ),
                sync,
            )
        if i:  # the first step warms caches up
            for key, value in zip(split, (split_data, t_fwd, t_bwd, t_opt, t_met), strict=True):
                split[key].append(value)
            bare.append(t_fwd + t_bwd)

    # --- the real engine loop over the same tiles ------------------------------------------
    output = RunOutput(reporter=Reporter.silent(), saver=CheckpointSaver(tmp))
    trainer = Stage3Trainer(fabric, wrapped, optimization, loss_fn, cfg, output)
    # The dataset already holds the first n tiles; the engine's sampler yields (tile, epoch) pairs.
    sub = dataset
    engine = build_loaders(RunInputs(train_set=sub, val_set=sub, perceptual=None, resume=None), cfg)
    engine.sampler.set_epoch(1)
    trainer.train_epoch(engine.train, epoch=1)  # warm-up epoch
    engine.sampler.set_epoch(2)
    engine_time = _timed(lambda: trainer.train_epoch(engine.train, epoch=2), sync) / len(sub)

    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    med = {k: statistics.median(v) for k, v in split.items()}
    bare_step = statistics.median(bare)
    device = (
        torch.cuda.get_device_name()
        if cuda
        else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    )
    if args.json:
        figures = {"engine_step_s": engine_time, "bare_step_s": bare_step, "peak_gib": peak, "device": device}
        print(json.dumps({**figures, "precision": precision.label, "grad_steps": args.grad_steps}))
        return
    print(f"machine: {device}; precision: {precision.label}")
    print(
        f"model: TerraMind-{args.model_size} (random weights), tile {args.tile_size} px, timesteps {args.timesteps}"
    )
    print(f"engine step: {engine_time:.3f} s  ->  {1 / engine_time:.2f} samples/s (batch 1)")
    print("split (median s): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
    print(f"bare forward+backward: {bare_step:.3f} s")
    print(f"ratio engine / bare: {engine_time / bare_step:.3f}")
    print(f"peak memory: {peak:.2f} GiB ({'GPU allocated' if cuda else 'process RSS'})")


def compare_grad_steps(args: argparse.Namespace) -> None:
    """One process per K; a table of step time, peak memory and the ratio to the last K."""
    rows = []
    for k in args.compare_grad_steps:
        cmd = [
            sys.executable, __file__, "--json", "--grad-steps", str(k), "--timesteps", str(args.timesteps),
            "--model-size", args.model_size, "--tile-size", str(args.tile_size), "--steps", str(args.steps),
            "--precision", args.precision, "--data", str(args.data),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"K = {k} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    reference = rows[-1]["engine_step_s"]
    print(f"machine: {rows[0]['device']}; precision: {rows[0]['precision']}")
    print(f"TerraMind-{args.model_size} (random weights), tile {args.tile_size} px, T = {args.timesteps}")
    print("| grad steps K | engine step (s) | samples/s | peak memory (GiB) | step / last K |")
    print("|---|---|---|---|---|")
    for row in rows:
        step = row["engine_step_s"]
        print(
            f"| {row['grad_steps']} | {step:.2f} | {1 / step:.3f} | {row['peak_gib']:.2f} | {step / reference:.2f} |"
        )


if __name__ == "__main__":
    main()
