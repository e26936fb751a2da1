"""A Stage 2 stand-in: a small SAR-to-optical network whose opt_v2 makes Stage 2's kind of errors.

The real Stage 2 generates optical bands from SAR. Its errors are not a blur of the truth:
colour that follows land cover, texture that is invented, small objects that are missing.
The training proxy (``axion.data.proxy``: blur, gain, offset, noise of the ground truth)
flatters every score; this stand-in does not. It is a four-level convolutional encoder-decoder
that sees Sentinel-1 VV and VH (dB) only and predicts B2, B3, B4, B8 with an L1 loss.

It trains on places disjoint from the quality benchmark's: the five terramind-examples scenes
(``../shared/data``) and the six BigEarthNet pairs that ``axion stage3 prepare --demo`` cuts.
Its predictions for other tiles are written as Stage 2 outputs (``<name>.npz`` with key
``opt_v2``), which ``axion stage3 train|evaluate --stage2-dir`` read.

Usage (from the repository root)::

    python benchmarks/stage2_standin.py --tiles DIR [DIR ...] --output-dir STAGE2_DIR

``benchmarks/quality.py`` calls :func:`build_standin` itself.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from torch import Tensor, nn

from axion.bands import OPTICAL_MEAN, OPTICAL_STD, S1_KEYS, S1GRD_MEAN, S1GRD_STD, S2_KEYS

REPO = Path(__file__).resolve().parents[1]
TERRAMIND_SCENES = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3")
#: Side of the random training crops, pixels.
CROP = 64


class StandIn(nn.Module):
    """SAR (2 bands, dB) -> optical (4 bands, tile units): a small U-Net, standardised inside."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.GELU(), nn.Conv2d(cout, cout, 3, padding=1), nn.GELU()
            )

        widths = (width, 2 * width, 4 * width, 4 * width)
        self.down = nn.ModuleList(
            [block(2, widths[0])] + [block(a, b) for a, b in zip(widths, widths[1:], strict=False)]
        )
        self.up = nn.ModuleList([block(b + a, a) for a, b in zip(widths[:-1], widths[1:], strict=True)][::-1])
        self.head = nn.Conv2d(widths[0], 4, 1)
        self.register_buffer("s1_mean", torch.tensor(S1GRD_MEAN).view(1, 2, 1, 1))
        self.register_buffer("s1_std", torch.tensor(S1GRD_STD).view(1, 2, 1, 1))
        self.register_buffer("s2_mean", torch.tensor(OPTICAL_MEAN).view(1, 4, 1, 1))
        self.register_buffer("s2_std", torch.tensor(OPTICAL_STD).view(1, 4, 1, 1))

    def forward(self, s1: Tensor) -> Tensor:
        x = (s1 - self.s1_mean) / self.s1_std
        skips = []
        for i, down in enumerate(self.down):
            x = down(x if i == 0 else nn.functional.avg_pool2d(x, 2))
            skips.append(x)
        for up, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = up(torch.cat([nn.functional.interpolate(x, size=skip.shape[-2:]), skip], dim=1))
        return self.head(x) * self.s2_std + self.s2_mean


def _read(path: Path, bands: list[int]) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read([b + 1 for b in bands]).astype(np.float32)


def training_scenes(shared: Path, demo_tiles: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(S1 dB (2, H, W), optical (4, H, W)) pairs of the places the stand-in learns from."""
    root = shared / "terramind-examples"
    scenes = [
        (_read(root / "S1RTC" / f"{n}.tif", [0, 1]), _read(root / "S2L2A" / f"{n}.tif", [1, 2, 3, 7]))
        for n in TERRAMIND_SCENES
    ]
    for split in ("train", "val", "test"):
        for npz in sorted((demo_tiles / split).glob("*.npz")):
            with np.load(npz) as tile:
                scenes.append(
                    (
                        np.stack([tile[k] for k in S1_KEYS]),
                        np.stack([tile[k] for k in S2_KEYS]).astype(np.float32),
                    )
                )
    return [(np.nan_to_num(s1, nan=-25.0), s2) for s1, s2 in scenes]


def _batch(
    scenes: list[tuple[np.ndarray, np.ndarray]], size: int, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    s1s, s2s = [], []
    for _ in range(size):
        s1, s2 = scenes[rng.integers(len(scenes))]
        y, x = (rng.integers(0, dim - CROP + 1) for dim in s1.shape[1:])
        a, b = s1[:, y : y + CROP, x : x + CROP], s2[:, y : y + CROP, x : x + CROP]
        k = int(rng.integers(4))
        s1s.append(np.rot90(a, k, axes=(1, 2)).copy())
        s2s.append(np.rot90(b, k, axes=(1, 2)).copy())
    return torch.from_numpy(np.stack(s1s)), torch.from_numpy(np.stack(s2s))


def train_standin(scenes: list[tuple[np.ndarray, np.ndarray]], steps: int, seed: int) -> StandIn:
    """Fit the stand-in with L1 on random crops (rotated by multiples of 90 degrees)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = StandIn()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    for step in range(steps):
        s1, s2 = _batch(scenes, 8, rng)
        loss = ((model(s1) - s2).abs() / 10000.0).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"  stand-in step {step + 1}/{steps}: L1 {loss.item():.4f} (reflectance)", flush=True)
    return model.eval()


@torch.no_grad()
def write_predictions(model: StandIn, tile_dirs: list[Path], output_dir: Path) -> int:
    """Write ``<name>.npz`` (key ``opt_v2``) for every tile NPZ under ``tile_dirs``; returns the count."""
    output_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for folder in tile_dirs:
        for npz in sorted(folder.glob("*.npz")):
            with np.load(npz) as tile:
                s1 = np.nan_to_num(np.stack([tile[k] for k in S1_KEYS]), nan=-25.0)
            opt_v2 = model(torch.from_numpy(s1[None]))[0].clamp_min(0.0).numpy().astype(np.float32)
            np.savez(output_dir / npz.name, opt_v2=opt_v2)
            count += 1
    return count


def build_standin(
    shared: Path, work: Path, tile_dirs: list[Path], output_dir: Path, steps: int, seed: int
) -> None:
    """Prepare the demo tiles, train the stand-in (cached in ``work``) and write its opt_v2 for ``tile_dirs``."""
    demo = work / "tiles" / "demo"
    if not (demo / "prepare.json").is_file():
        command = [sys.executable, "-m", "axion", "stage3", "prepare", "--demo"]
        subprocess.run(
            [*command, "--output-dir", str(demo), "--overwrite"], check=True, cwd=REPO, capture_output=True
        )
    weights = work / f"standin-{steps}-{seed}.pt"
    if weights.is_file():
        model = StandIn()
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.eval()
    else:
        started = time.perf_counter()
        model = train_standin(training_scenes(shared, demo), steps, seed)
        torch.save(model.state_dict(), weights)
        print(f"  stand-in trained in {time.perf_counter() - started:.0f} s", flush=True)
    write_predictions(model, tile_dirs, output_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/axion-standin"))
    parser.add_argument(
        "--tiles", type=Path, nargs="+", required=True, help="folders of tile NPZs to predict"
    )
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    options.work.mkdir(parents=True, exist_ok=True)
    build_standin(
        options.shared, options.work, options.tiles, options.output_dir, options.steps, options.seed
    )


if __name__ == "__main__":
    main()
