"""How fast training data arrives: samples/s from a tile folder and from its shards, beside a training step.

One run cuts real 224 px S1RTC/S2L2A scenes into tiles (``--tile-size``, ``--stride``),
writes them again as shards (``prepare --from-tiles --format shards``), then reads one
training epoch of each through the loaders ``train`` uses (every sample validated, drawn,
padded and collated), with 0, 1 and 2 DataLoader workers, and prints samples/s. Beside
them: the samples/s of a training step of the model (``--model-size``, one DDIM step by
default), so a loader slower than the step shows at once.

The machine may be shared: for each worker count the sources are read in ``--rounds``
interleaved rounds (one epoch of each per round, in a rotating order, after a warm-up round),
and the median samples/s is printed, with the median of the per-round shard/folder ratios and
the load average before and after. An epoch is timed whole, worker start-up included. With 0
workers the process's CPU time per sample is printed too: all of the loading work, and much less
moved by other people's work on the machine than wall time.

A third row reads TerraMesh-layout shards (one Zarr zip per modality and sample, S2L2A and
S1RTC joined by key) made from the same scenes, each repeated ``--terramesh-copies`` times;
these samples are 224 px (TerraMesh's are 264, cropped to 256), so compare them per sample, not
per pixel, with the 64 px tiles above.

Usage, from the repository root (the TerraMesh layout is written by the tests' fixture
builder, ``tests/terramesh.py``, which ``-m`` finds there)::

    python -m benchmarks.data_throughput
    python -m benchmarks.data_throughput --tile-size 224 --stride 224 --model-size base

Reads ../shared/data/terramind-examples (``--data``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")

REPO = Path(__file__).resolve().parents[1]


def _load() -> str:
    """The machine's 1, 5 and 15 minute load averages (other people's work counts too)."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def _prepare(data: Path, out: Path, tile_size: int, stride: int, shard_size: int) -> tuple[Path, Path]:
    from axion.config import PrepareConfig
    from axion.data.prepare.api import prepare
    from axion.data.shardwrite import write_shards

    pairs = sorted((data / "S1RTC").glob("*.tif"))
    tiles = out / "tiles"
    settings = PrepareConfig(
        output_dir=tiles,
        tile_size=tile_size,
        stride=stride,
        split_ratios="1,0,0",
        s1=pairs,
        s2=[data / "S2L2A" / p.name for p in pairs],
    )
    prepare(settings)
    write_shards(tiles, out / "shards", shard_size)
    return tiles, out / "shards"


def _terramesh(data: Path, out: Path, copies: int, shards: int) -> Path:
    """TerraMesh-layout shards of the five scenes, each repeated ``copies`` times (224 px samples),
    in ``shards`` shards (one per worker at least, or a worker idles)."""
    from tests.terramesh import write_terramesh

    scenes = sorted(p.stem for p in (data / "S1RTC").glob("*.tif"))
    return write_terramesh(data, out / "TerraMesh", {"train": scenes}, copies=copies, shards=shards)


def _loader(source: Path, workers: int, batch_size: int, shards: bool):  # noqa: ANN202
    from torch.utils.data import DataLoader

    from axion.data.augment import TrainingDraws
    from axion.data.dataset import TileDataset, collate_tiles
    from axion.data.sharddata import ShardDataset, ShardLoader, open_source
    from axion.training.sampler import EpochSampler

    draws = TrainingDraws(seed=0)
    common = {"batch_size": batch_size, "num_workers": workers, "collate_fn": collate_tiles}
    if shards:
        dataset = ShardDataset(open_source(source, "rtc"), "train", draws=draws, shuffle=True)
        loader = ShardLoader(dataset, **common)
        return loader, loader, len(dataset)
    dataset = TileDataset(source, "train", draws=draws, skip_bad=True)
    sampler = EpochSampler(len(dataset), seed=0, with_epoch=True)
    return DataLoader(dataset, sampler=sampler, **common), sampler, len(dataset)


def epoch_rate(loader: Any, sampler: Any, epoch: int, size: int) -> float:
    """Samples/s of one whole epoch (worker start-up included: every epoch pays it)."""
    sampler.set_epoch(epoch)
    started = time.perf_counter()
    seen = sum(len(batch["name"]) for batch in loader)
    elapsed = time.perf_counter() - started
    assert seen == size, f"{seen} of {size} samples"
    return seen / elapsed


def interleaved_rates(
    sources: dict[str, tuple[Path, bool]], workers: int, batch_size: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Samples/s of every source in each of ``rounds`` rounds; a round reads one epoch of each, in
    a rotating order, so a change in the machine's load falls on all of them alike. Also this
    process's CPU ms per sample in each round: with 0 workers all the loading work, and a figure
    that other people's work on the machine changes much less than the wall time."""
    loaders = {
        name: _loader(source, workers, batch_size, shards) for name, (source, shards) in sources.items()
    }
    rates: dict[str, list[float]] = {name: [] for name in sources}
    cpu_ms: dict[str, list[float]] = {name: [] for name in sources}
    names = list(sources)
    for epoch in range(rounds + 1):
        order = names[epoch % len(names) :] + names[: epoch % len(names)]
        for name in order:
            loader, sampler, size = loaders[name]
            cpu = time.process_time()
            rate = epoch_rate(loader, sampler, epoch + 1, size)
            if epoch:  # the first round warms up (imports, file cache)
                rates[name].append(rate)
                cpu_ms[name].append(1000 * (time.process_time() - cpu) / size)
    return rates, cpu_ms


def step_samples_per_second(tiles: Path, model_size: str, batch_size: int, steps: int) -> float:
    """Samples/s of forward + loss + backward + optimizer step on real tiles (after one warm-up step)."""
    import torch

    from axion.config import LossConfig, ModelConfig
    from axion.data.dataset import TileDataset, collate_tiles
    from axion.losses import Stage3Loss
    from axion.model import build_stage3_model

    model = build_stage3_model(ModelConfig(model_size=model_size, pretrained=False, timesteps=1))
    loss_fn = Stage3Loss(LossConfig(lpips_weight=0.0))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    dataset = TileDataset(tiles, "train")
    batch = collate_tiles([dataset[i] for i in range(min(batch_size, len(dataset)))])
    timings = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            opt_v3 = model(batch["s1"], batch["opt_v2"], seeds=list(range(len(batch["name"]))))
            terms = loss_fn(
                opt_v3, batch["opt_v2"], batch["target"], batch["s1"], batch["mask"], batch["opt_v2_mask"]
            )
        terms["total"].mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timings.append(time.perf_counter() - started)
    return len(batch["name"]) / min(timings[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "terramind-examples")
    parser.add_argument("--tile-size", type=int, default=64)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per worker count (median)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--terramesh-copies", type=int, default=20, help="copies of each scene (5 scenes)")
    parser.add_argument("--model-size", default="tiny")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    with tempfile.TemporaryDirectory() as tmp:
        tiles, shards = _prepare(args.data, Path(tmp), args.tile_size, args.stride, args.shard_size)
        count = len(list(tiles.rglob("*.npz")))
        print(
            f"{count} tiles of {args.tile_size} px; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
        )
        print(f"load average before: {_load()}")
        terramesh = _terramesh(args.data, Path(tmp), args.terramesh_copies, max(2, *args.workers))
        sources = {
            "tile folder (NPZ)": (tiles, False),
            "shards (project)": (shards, True),
            "TerraMesh (224 px)": (terramesh, True),
        }
        medians: dict[str, list[float]] = {name: [] for name in [*sources, "shards / folder"]}
        cpu: dict[str, list[float]] = {}
        for workers in args.workers:
            rates, cpu_ms = interleaved_rates(sources, workers, args.batch_size, args.rounds)
            for name, values in rates.items():
                medians[name].append(statistics.median(values))
            ratios = [
                s / f for s, f in zip(rates["shards (project)"], rates["tile folder (NPZ)"], strict=True)
            ]
            medians["shards / folder"].append(statistics.median(ratios))
            if workers == 0:
                cpu = cpu_ms
        print(f"median of {args.rounds} interleaved rounds, samples/s (whole epochs)")
        print(f"{'source':<22}" + "".join(f"{f'{w} workers':>12}" for w in args.workers))
        for name, values in medians.items():
            unit = "x" if name == "shards / folder" else ""
            print(f"{name:<22}" + "".join(f"{f'{v:.2f}{unit}' if unit else f'{v:.1f}':>12}" for v in values))
        if cpu:
            folder, shard = cpu["tile folder (NPZ)"], cpu["shards (project)"]
            ratio = statistics.median(f / s for f, s in zip(folder, shard, strict=True))
            listed = ", ".join(f"{name} {statistics.median(values):.2f}" for name, values in cpu.items())
            print(f"CPU ms per sample, 0 workers (median): {listed}; shards / folder {ratio:.2f}x")
        print(f"load average after: {_load()}")
        step = step_samples_per_second(tiles, args.model_size, args.batch_size, args.steps)
        print(
            f"training step ({args.model_size}, batch {args.batch_size}, 1 DDIM step): {step:.1f} samples/s"
        )


if __name__ == "__main__":
    main()
