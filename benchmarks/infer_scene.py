"""Measure scene inference: pixels per second and peak memory, per arm, and the writer's own cost.

Run from the repository root::

    python benchmarks/infer_scene.py --size 2048
    python benchmarks/infer_scene.py --size 512 --arms terramind none writer

The scene is the real Sen1Floods11 chip (``../shared/data``, or ``$AXION_SHARED/data``)
repeated to ``--size`` x ``--size`` px; its S1 is put at twice the pixel size so that it is
warped onto opt_v2's grid on the fly, as for a new user's scene. Each arm runs in a fresh
subprocess (so its peak resident memory is its own) through the same code as
``axion stage3 infer --s1-scene ...``: the model rebuilt from an untrained checkpoint of
``--model-size`` with random weights (the cost does not depend on the weights), ``--timesteps``
DDIM steps, the blended COG written and its STAC-ready metadata. Arms:

- ``terramind``: TerraMind + LoRA + the fusion head.
- ``none``: the fusion network alone (``--generator none``), where this version of the model
  has that setting; otherwise the arm reports that it is not available.
- ``writer``: no model (opt_v2 returned as it is): reading, warping, blending and writing the
  COG, i.e. the cost of everything around the model.

The table gives seconds, pixels per second and peak RSS of each arm, and each arm's time
relative to the writer's, all from this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARMS = ("terramind", "none", "writer")


def shared_data() -> Path:
    root = Path(os.environ.get("AXION_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    return root / "data" / "sen1floods11-sample"


def make_scene(size: int, folder: Path) -> tuple[Path, Path]:
    """A ``size`` px square opt_v2 (EPSG:4326) and its S1 at twice the pixel size, from the real chip."""
    import rasterio
    from affine import Affine

    data = shared_data()
    with rasterio.open(data / "S1" / "Spain_7370579_S1Hand.tif") as src:
        s1, crs, t = src.read().astype(np.float32), src.crs, src.transform
    with rasterio.open(data / "S2" / "Spain_7370579_S2Hand.tif") as src:
        s2 = src.read([2, 3, 4, 8]).astype(np.float32)
    reps = -(-size // 512)
    opt = np.tile(s2, (1, reps, reps))[:, :size, :size]
    coarse = np.tile(s1[:, ::2, ::2], (1, reps, reps))[:, : size // 2, : size // 2]
    paths = []
    for name, array, transform in (
        ("s1.tif", coarse, Affine(t.a * 2, 0, t.c, 0, t.e * 2, t.f)),
        ("opt_v2.tif", opt, t),
    ):
        profile = {
            "driver": "GTiff",
            "height": array.shape[1],
            "width": array.shape[2],
            "count": array.shape[0],
        }
        profile.update(
            dtype="float32", crs=crs, transform=transform, tiled=True, blockxsize=256, blockysize=256
        )
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(array)
        paths.append(folder / name)
    return paths[0], paths[1]


def generator_none_supported() -> bool:
    """Whether this version's model settings have ``generator: none`` (detected, never assumed)."""
    from typing import get_args

    from axion.config import ModelConfig

    field = ModelConfig.model_fields.get("generator")
    return field is not None and "none" in get_args(field.annotation)


def write_checkpoint(arm: str, model_size: str, timesteps: int, path: Path) -> Path:
    """An untrained checkpoint of the arm (random weights: the cost does not depend on them)."""
    from axion.config import ModelConfig
    from axion.model import build_stage3_model
    from axion.training.checkpoint import Checkpoint

    settings = {"model_size": model_size, "pretrained": False, "timesteps": timesteps}
    if arm == "none":
        settings["generator"] = "none"
    cfg = ModelConfig(**settings)
    model = build_stage3_model(cfg)
    state = {"model": cfg.model_dump(mode="json"), "other": {"seed": 0}}
    return Checkpoint(epoch=0, model_state_dict=model.trainable_state_dict(), config=state).write(path)


def run_arm(args: argparse.Namespace) -> dict[str, float]:
    """One arm, in this process: seconds of the scene run (model build excluded), time in the model."""
    import torch

    from axion.config import InferConfig
    from axion.prediction.predict import predictor_for
    from axion.prediction.scene import Prediction, SceneOutputs, run_scene, validate_scene
    from axion.training.checkpoint import Checkpoint

    folder = Path(args.folder)
    s1, opt = folder / "s1.tif", folder / "opt_v2.tif"
    outputs = SceneOutputs.beside(folder / f"opt_v3_{args.arm}.tif")
    info = validate_scene(s1, opt, outputs.tif, overwrite=True)
    in_model = [0.0]
    if args.arm == "writer":

        def predict_fn(s1: np.ndarray, opt_v2: np.ndarray, names: list[str]) -> np.ndarray:
            return opt_v2

    else:
        checkpoint = write_checkpoint(args.arm, args.model_size, args.timesteps, folder / f"{args.arm}.pt")
        settings = InferConfig(checkpoint=checkpoint, precision=args.precision, batch_size=args.batch_size)
        predictor = predictor_for(settings, Checkpoint.read(checkpoint))

        def predict_fn(s1: np.ndarray, opt_v2: np.ndarray, names: list[str]) -> Prediction:
            start = time.perf_counter()
            mean, std, _ = predictor.samples(
                torch.from_numpy(s1), torch.from_numpy(opt_v2), names, args.samples
            )
            in_model[0] += time.perf_counter() - start
            return Prediction(mean.numpy(), None if std is None else std.numpy())

    start = time.perf_counter()
    grid = run_scene(
        info,
        outputs.tif,
        predict_fn,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        dtype=args.dtype,
        std_output=outputs.std if args.samples > 1 and args.arm != "writer" else None,
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "model_seconds": in_model[0],
        "tiles": len(grid),
        "pixels": info.height * info.width,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=2048, help="scene side in pixels")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--model-size", default="tiny")
    parser.add_argument("--timesteps", type=int, default=1)
    parser.add_argument("--tile-size", type=int, default=224)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--dtype", default="float32", choices=("float32", "uint16"))
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # one arm, in a child process
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm is not None:
        print(json.dumps(run_arm(args)))
        return

    import torch

    print(
        f"scene {args.size} x {args.size} px, tiles {args.tile_size} px (overlap {args.overlap}), "
        f"T={args.timesteps}, {args.model_size}, samples {args.samples}, precision {args.precision}, "
        f"{args.dtype}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}, {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory(prefix="axion-bench-") as tmp:
        make_scene(args.size, Path(tmp))
        results: dict[str, dict[str, float]] = {}
        for arm in args.arms:
            if arm == "none" and not generator_none_supported():
                print("arm none: not available in this version (the model has no 'generator: none' setting)")
                continue
            child = [sys.executable, __file__, *sys.argv[1:], "--arm", arm, "--folder", tmp]
            proc = subprocess.run(child, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"arm {arm}: failed\n{proc.stderr[-2000:]}")
                continue
            results[arm] = json.loads(proc.stdout.strip().splitlines()[-1])
    writer = results.get("writer", {}).get("seconds")
    print("| arm | tiles | seconds | pixels/s | in the model | peak RSS | x writer |")
    print("|---|---|---|---|---|---|---|")
    for arm, r in results.items():
        ratio = f"{r['seconds'] / writer:.1f}" if writer else "-"
        print(
            f"| {arm} | {int(r['tiles'])} | {r['seconds']:.1f} s | {r['pixels'] / r['seconds']:,.0f} | "
            f"{r['model_seconds']:.1f} s | {r['peak_rss_gib']:.2f} GiB | {ratio} |"
        )


if __name__ == "__main__":
    main()
