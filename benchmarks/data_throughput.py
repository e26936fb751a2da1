"""How fast training data arrives: samples/s from a tile folder and from its shards, beside a training step.

One run cuts real 224 px S1RTC/S2L2A scenes into tiles (``--tile-size``, ``--stride``),
writes them again as shards (``prepare --from-tiles --format shards``), then reads one
training epoch of each through the loaders ``train`` uses (every sample validated, drawn,
padded and collated), with 0, 1 and 2 DataLoader workers, and prints samples/s. Beside
them: the samples/s of a training step of the model (``--model-size``, one DDIM step by
default), so a loader slower than the step shows at once.

A third row reads TerraMesh-layout shards (one Zarr zip per modality and sample, S2L2A and
S1RTC joined by key) made from the same scenes, each repeated ``--terramesh-copies`` times;
these samples are 224 px (TerraMesh's are 264, cropped to 256), so compare them per sample, not
per pixel, with the 64 px tiles above.

Usage::

    python benchmarks/data_throughput.py
    python benchmarks/data_throughput.py --tile-size 224 --stride 224 --model-size base

Reads ../shared/data/terramind-examples (``--data``).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")

REPO = Path(__file__).resolve().parents[1]


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


def _terramesh(data: Path, out: Path, copies: int) -> Path:
    """TerraMesh-layout shards of the five scenes, each repeated ``copies`` times (224 px samples)."""
    from tests.terramesh import write_terramesh

    scenes = sorted(p.stem for p in (data / "S1RTC").glob("*.tif"))
    return write_terramesh(data, out / "TerraMesh", {"train": scenes}, copies=copies)


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


def samples_per_second(source: Path, workers: int, batch_size: int, shards: bool, epochs: int) -> float:
    """The best of ``epochs`` epochs (worker start-up included, as every epoch pays it)."""
    loader, sampler, size = _loader(source, workers, batch_size, shards)
    best = float("inf")
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        seen = sum(len(batch["name"]) for batch in loader)
        best = min(best, time.perf_counter() - started)
        assert seen == size, f"{seen} of {size} samples"
    return size / best


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
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement (the best counts)")
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
        print(f"{'source':<22}" + "".join(f"{f'{w} workers':>12}" for w in args.workers))
        rates = {}
        terramesh = _terramesh(args.data, Path(tmp), args.terramesh_copies)
        for name, source, is_shards in (
            ("tile folder (NPZ)", tiles, False),
            ("shards (project)", shards, True),
            ("TerraMesh (224 px)", terramesh, True),
        ):
            rates[name] = [
                samples_per_second(source, w, args.batch_size, is_shards, args.epochs) for w in args.workers
            ]
            print(f"{name:<22}" + "".join(f"{rate:>12.1f}" for rate in rates[name]))
        print(f"{'shards / folder':<22}" + "".join(
            f"{s / f:>11.2f}x" for s, f in zip(rates["shards (project)"], rates["tile folder (NPZ)"], strict=True)
        ))  # fmt: skip
        step = step_samples_per_second(tiles, args.model_size, args.batch_size, args.steps)
        print(
            f"training step ({args.model_size}, batch {args.batch_size}, 1 DDIM step): {step:.1f} samples/s"
        )


if __name__ == "__main__":
    main()
