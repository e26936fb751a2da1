"""Benchmark one training step of the engine against a bare forward + backward.

Prints samples per second, the split of a step (data, forward, backward,
optimizer, metrics), peak memory, and the ratio of a full engine step (the real
:class:`~axion.engine.trainer.Stage3Trainer` loop: data, autocast, loss, backward,
clipping, optimizer, schedule, progress) to a bare model forward + backward,
all measured in the same run on the same batches.

Usage::

    python benchmarks/train_step.py --model-size tiny --steps 5
    python benchmarks/train_step.py --model-size base --precision bf16-mixed

Reads real 224 px S1/S2 scenes from ../shared/data/terramind-examples (``--data``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")

REPO = Path(__file__).resolve().parents[1]


def _prepare_tiles(data: Path, out: Path, tile_size: int) -> None:
    from typer.testing import CliRunner

    from axion.cli import app

    args = ["stage3", "prepare", "--output-dir", str(out), "--tile-size", str(tile_size)]
    args += ["--split-ratios", "1,0,0"]
    for s1 in sorted((data / "S1RTC").glob("*.tif")):
        args += ["--s1", str(s1), "--s2", str(data / "S2L2A" / s1.name)]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise SystemExit(result.output)


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
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16-mixed", "fp16-mixed", "32"])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "terramind-examples")
    args = parser.parse_args()

    import torch
    from torch.utils.data import DataLoader

    from axion.config import LossConfig, ModelConfig, TrainingConfig
    from axion.data.dataset import TileDataset, collate_tiles
    from axion.engine.checkpoint import CheckpointSaver
    from axion.engine.early_stopping import EarlyStopping
    from axion.engine.fit import validation_metrics
    from axion.engine.reporter import Reporter
    from axion.engine.runtime import build_fabric
    from axion.engine.sampler import EpochSampler
    from axion.engine.schedule import warmup_cosine
    from axion.engine.trainer import Stage3Trainer
    from axion.losses import Stage3Loss
    from axion.model import build_stage3_model

    tmp = Path(tempfile.mkdtemp(prefix="axion-bench-"))
    _prepare_tiles(args.data, tmp / "tiles", args.tile_size)
    dataset = TileDataset(tmp / "tiles", "train")
    n = args.steps + 1

    fabric, precision = build_fabric(TrainingConfig(precision=args.precision))
    cuda = fabric.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = build_stage3_model(
        ModelConfig(model_size=args.model_size, pretrained=False, timesteps=args.timesteps)
    )
    loss_fn = Stage3Loss(LossConfig(lpips_weight=0.0)).to(fabric.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    scheduler = warmup_cosine(optimizer, 0, 1000)
    module = model
    model, optimizer = fabric.setup(model, optimizer)

    sampler = EpochSampler(len(dataset), seed=0)
    loader = DataLoader(dataset, batch_size=1, sampler=sampler, collate_fn=collate_tiles, num_workers=0)
    batches = [fabric.to_device(b) for b, _ in zip(loader, range(n), strict=False)]
    while len(batches) < n:
        batches += batches[: n - len(batches)]

    # --- the split of a step, measured piece by piece -------------------------------------
    split: dict[str, list[float]] = {k: [] for k in ("data", "forward", "backward", "optimizer", "metrics")}
    bare: list[float] = []
    it = iter(loader)
    for i, batch in enumerate(batches):
        split_data = _timed(lambda: next(it, None), sync)
        holder: dict[str, torch.Tensor] = {}

        def forward(batch=batch, holder=holder, i=i) -> None:  # noqa: ANN001
            out = model(batch["s1"], batch["opt_v2"], seeds=[i])
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
    trainer = Stage3Trainer(
        fabric=fabric,
        model=model,
        module=module,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        metrics_fn=validation_metrics,
        config={},
        reporter=Reporter(__import__("rich.console").console.Console(quiet=True), live=False),
        saver=CheckpointSaver(tmp),
        history=None,
        seed=0,
        batch_size=1,
        grad_accum=1,
        max_grad_norm=1.0,
        epochs=1,
        early_stopping=EarlyStopping(5, 1e-4),
    )
    sub = torch.utils.data.Subset(dataset, list(range(min(len(dataset), n))))
    engine_sampler = EpochSampler(len(sub), seed=0)
    engine_loader = DataLoader(sub, batch_size=1, sampler=engine_sampler, collate_fn=collate_tiles)
    engine_sampler.set_epoch(1)
    trainer._train_epoch(engine_loader, epoch=1)  # warm-up epoch
    engine_sampler.set_epoch(2)
    engine_time = _timed(lambda: trainer._train_epoch(engine_loader, epoch=2), sync) / len(sub)

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
    print(f"machine: {device}; precision: {precision.label}")
    print(
        f"model: TerraMind-{args.model_size} (random weights), tile {args.tile_size} px, timesteps {args.timesteps}"
    )
    print(f"engine step: {engine_time:.3f} s  ->  {1 / engine_time:.2f} samples/s (batch 1)")
    print("split (median s): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
    print(f"bare forward+backward: {bare_step:.3f} s")
    print(f"ratio engine / bare: {engine_time / bare_step:.3f}")
    print(f"peak memory: {peak:.2f} GiB ({'GPU allocated' if cuda else 'process RSS'})")


if __name__ == "__main__":
    main()
