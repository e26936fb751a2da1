"""Does opt_v3 beat opt_v2 on real tiles never trained on? Both arms, a fixed budget, one run.

Trains the head-only baseline (``--generator none``) and the TerraMind arm (random weights
unless ``--weights-dir`` holds the pretrained files) with ``axion stage3 train`` on real Sentinel-1 GRD /
Sentinel-2 tiles, then scores each run's ``best_model.pt`` with ``axion stage3 evaluate`` on
tiles of other places, and prints opt_v2 against opt_v3 (PSNR, SSIM, SAM, SAR agreement):

- **train / val**: the Sen1Floods11 scene (Spain), cut into 64 px windows every 32 px;
  ``prepare`` puts whole 4x4-window blocks into train or val, and drops windows that reach
  into the other split.
- **test, proxy**: the two SEN12MS-CR patches (China and a winter scene: other places, other
  dates), opt_v2 the training proxy of their clear image.
- **test, real cloudy**: the same tiles with opt_v2 = their real cloudy acquisition
  (``prepare --s2-cloudy`` -> ``--stage2-dir``), scored over all pixels and over opt_v2's clear
  pixels apart; the model is the one trained on the proxy.
- **test, stand-in**: opt_v2 predicted from the SAR alone by ``benchmarks/stage2_standin.py``, a
  small SAR-to-optical network trained on other places (terramind-examples, BigEarthNet): the
  errors of a generative Stage 2 (colour by land cover, invented texture, missing detail). The
  Stage 3 model for this row trains on the stand-in's opt_v2 of the Spain tiles (``--stage2-dir``).

Each arm is trained under two loss recipes at the same optimizer steps: the guide's defaults
(five terms, SAR agreement as the monitor; no loss flags) and ``spectral`` (the spectral L1
alone, PSNR as the monitor). With
``--monitor-study`` every epoch's checkpoint is also scored on the proxy test tiles, to show
which epoch each monitor would pick and what that epoch scores on unseen tiles.

Usage (from the repository root; ../shared/data beside it)::

    python benchmarks/quality.py                        # both arms, both recipes
    python benchmarks/quality.py --arms none --epochs 40 --monitor-study
    python benchmarks/quality.py --recipes spectral --epochs 118 --weights-dir DIR  # pretrained TerraMind
    python benchmarks/quality.py --arms none --jobs 4 --monitor-study  # four trainings at once, one thread each

Figures depend on the machine only through time; quality depends on the budget (epochs x
steps per epoch), which is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stage2_standin import build_standin

REPO = Path(__file__).resolve().parents[1]
#: Loss settings of each recipe (flags of ``axion stage3 train``).
RECIPES: dict[str, list[str]] = {
    "guide": [],
    "spectral": [
        "--sar-weight", "0", "--cycle-weight", "0", "--identity-weight", "0", "--lpips-weight", "0",
        "--monitor", "psnr",
    ],
}  # fmt: skip
ARMS = ("none", "terramind")
METRICS = (
    ("psnr", "PSNR (dB)", 3),
    ("ssim", "SSIM", 4),
    ("sam_deg", "SAM (deg)", 3),
    ("sar_agreement", "SAR agr.", 4),
)
SEN12MSCR = ("ROIs1970_fall_139_p839", "ROIs2017_winter_112_p797")
#: Extra environment of every ``axion`` process (``--jobs`` > 1: one thread each).
THREADS: dict[str, str] = {}


def axion(*args: str | Path, log: Path | None = None) -> None:
    """Run ``axion`` as a user would (a fresh process); stop the benchmark if it fails."""
    command = [sys.executable, "-m", "axion", *map(str, args)]
    env = {**os.environ, "LIGHTLY_DID_VERSION_CHECK": "True", **THREADS}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(
            f"failed ({done.returncode}): {shlex.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )


def prepare(shared: Path, work: Path) -> tuple[Path, Path]:
    """Train/val tiles of the Spain scene and test tiles (with real cloudy opt_v2) of SEN12MS-CR."""
    floods, mscr = work / "tiles" / "floods", work / "tiles" / "sen12mscr"
    if not (floods / "prepare.json").is_file():
        scene = shared / "sen1floods11-sample"
        axion(
            "stage3", "prepare", "-o", floods, "--overwrite", "--tile-size", "64", "--stride", "32",
            "--block-size", "4", "--split-ratios", "0.7,0.3,0",
            "--s1", scene / "S1" / "Spain_7370579_S1Hand.tif", "--s2", scene / "S2" / "Spain_7370579_S2Hand.tif",
        )  # fmt: skip
    if not (mscr / "prepare.json").is_file():
        args: list[str | Path] = ["stage3", "prepare", "-o", mscr, "--overwrite", "--tile-size", "64"]
        args += ["--split-ratios", "0,0,1"]
        root = shared / "sen12mscr-sample"
        for patch in SEN12MSCR:
            args += ["--s1", root / "s1" / f"{patch}.tif", "--s2", root / "s2_cloudfree" / f"{patch}.tif"]
            args += ["--s2-cloudy", root / "s2_cloudy" / f"{patch}.tif"]
        axion(*args)
    return floods, mscr


def arm_flags(arm: str, options: argparse.Namespace) -> list[str]:
    """``train`` flags of one arm: the TerraMind arm is pretrained only when ``--weights-dir`` is given."""
    if arm == "none":
        return ["--generator", "none"]
    base = ["--weights-dir", str(options.weights_dir)] if options.weights_dir else ["--no-pretrained"]
    sizes = ["--model-size", options.model_size, "--timesteps", str(options.timesteps)]
    return ["--generator", "terramind", *base, *sizes]


def arm_name(arm: str, options: argparse.Namespace) -> str:
    """The arm as named in the table and its run folder (finished runs are reused by name, so a
    pretrained or larger TerraMind never takes the place of another)."""
    if arm == "none":
        return arm
    weights = "pretrained" if options.weights_dir else "random"
    return f"{arm}-{options.model_size}-T{options.timesteps}-{weights}"


def run_dir(work: Path, task: tuple[str, str, str], options: argparse.Namespace) -> Path:
    """The run folder of one (arm, opt_v2 kind, recipe)."""
    arm, kind, recipe = task
    return work / "runs" / (f"{arm_name(arm, options)}_{recipe}" + ("" if kind == "proxy" else f"_{kind}"))


def train(
    arm: str, recipe: str, floods: Path, run: Path, options: argparse.Namespace, stage2: Path | None
) -> float:
    """Train one arm under one recipe (on the proxy, or on Stage 2 files); returns the wall time in
    seconds (that of the earlier run if already trained)."""
    if (run / "best_model.pt").is_file() and (run / "done").is_file():
        return float((run / "done").read_text())
    lpips = ["--lpips-weights", options.lpips_weights] if options.lpips_weights.is_file() else []
    inputs = ["--stage2-dir", stage2] if stage2 is not None else []
    started = time.perf_counter()
    axion(
        "stage3", "train", "--data-dir", floods, "--output-dir", run, *inputs, *arm_flags(arm, options),
        *RECIPES[recipe], *lpips,
        "--epochs", str(options.epochs), "--batch-size", str(options.batch_size), "--grad-accum", "1",
        "--early-stop-patience", str(options.epochs), "--num-workers", "0", "--seed", str(options.seed), "--quiet",
        log=run.parent / f"{run.name}.log" if run.parent.is_dir() else None,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    (run / "done").write_text(f"{seconds:.1f}")
    return seconds


def evaluate(checkpoint: Path, mscr: Path, out: Path, stage2: Path | None) -> dict:
    """``summary.json`` of evaluate on the SEN12MS-CR test tiles (proxy, or opt_v2 from ``stage2``)."""
    if not (out / "summary.json").is_file():
        stage2 = ["--stage2-dir", stage2] if stage2 is not None else []
        axion(
            "stage3", "evaluate", "--checkpoint", checkpoint, "--data-dir", mscr, "--split", "test", *stage2,
            "--lpips-weight", "0", "--save-arrays", "0", "--output-dir", out, "--quiet",
        )  # fmt: skip
    return json.loads((out / "summary.json").read_text())


def filled_baseline(mscr: Path) -> str:
    """PSNR of the real cloudy opt_v2 as the network is given it (cloudy pixels filled from clear
    ones, ``axion.cloudfill``) over all valid pixels: what the fill alone gains, before any network."""
    import numpy as np

    from axion.cloudfill import network_opt_v2
    from axion.data.dataset import TileDataset, collate_tiles
    from axion.metrics import psnr

    tiles = TileDataset(mscr, "test", stage2_dir=mscr / "stage2")
    before, after = [], []
    for i in range(len(tiles)):
        batch = collate_tiles([tiles[i]])
        before.append(float(psnr(batch["opt_v2"], batch["target"], batch["mask"])))
        after.append(float(psnr(network_opt_v2(batch), batch["target"], batch["mask"])))
    gain = np.mean(after) - np.mean(before)
    return (
        f"real cloudy opt_v2 as the network is given it (cloudy pixels filled from clear ones), all "
        f"pixels: PSNR {np.mean(before):.3f} -> {np.mean(after):.3f} ({gain:+.3f}) before any network"
    )


def row(label: str, metrics: dict) -> str:
    cells = []
    for key, _, digits in METRICS:
        before = metrics["opt_v2"][key]["mean"]
        after = metrics["opt_v3"][key]["mean"]
        cells.append(f"{before:.{digits}f} -> {after:.{digits}f} ({after - before:+.{digits}f})")
    return f"| {label} | " + " | ".join(cells) + " |"


def monitor_study(
    run: Path, mscr: Path, work: Path, stage2: Path | None, jobs: int = 1
) -> tuple[list[str], dict[int, float]]:
    """Which epoch each monitor picks from validation, and what each epoch scores on test (the
    opt_v2 the run trained on: proxy, or the Stage 2 files in ``stage2``), ``jobs`` at a time.

    Returns the report's lines and the test dPSNR by epoch.
    """
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    picks = {
        "sar_agreement (max)": max(rows, key=lambda r: r["val_sar_agreement"])["epoch"],
        "psnr (max)": max(rows, key=lambda r: r["val_psnr"])["epoch"],
        "val_loss (min)": min(rows, key=lambda r: r["val_loss"])["epoch"],
    }
    # The picked epochs and about eight more spread over the run (scoring all costs too much).
    every = max(1, len(rows) // 8)
    epochs = sorted({*picks.values(), *(r["epoch"] for r in rows[every - 1 :: every])})
    scored = [e for e in epochs if (run / f"checkpoint_epoch_{e}.pt").is_file()]

    def gain(epoch: int) -> float:
        out = work / "eval" / f"{run.name}_epoch{epoch}"
        metrics = evaluate(run / f"checkpoint_epoch_{epoch}.pt", mscr, out, stage2)["metrics"]
        return metrics["opt_v3"]["psnr"]["mean"] - metrics["opt_v2"]["psnr"]["mean"]

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        test = dict(zip(scored, pool.map(gain, scored), strict=True))
    best = max(test.values()) if test else float("nan")
    lines = [f"monitor study, {run.name}: test dPSNR by epoch, and the epoch each monitor picks"]
    lines.append("  " + ", ".join(f"{epoch}: {gain:+.3f}" for epoch, gain in sorted(test.items())))
    for name, epoch in picks.items():
        gain = test.get(epoch, float("nan"))
        lines.append(
            f"  {name:<22} epoch {epoch:>3}: {gain:+.3f} dB ({gain - best:+.3f} from the best scored)"
        )
    return lines, test


def per_step(curves: dict[str, dict[int, float]], per_epoch: int) -> list[str]:
    """Test dPSNR of every run at the same optimizer steps: which learns faster per step."""
    names = list(curves)
    epochs = sorted(set.intersection(*(set(curve) for curve in curves.values())))
    lines = ["| step | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for epoch in epochs:
        cells = " | ".join(f"{curves[name][epoch]:+.3f}" for name in names)
        lines.append(f"| {epoch * per_epoch} (epoch {epoch}) | {cells} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/axion-quality"), help="tiles, runs, evaluations"
    )
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=["guide", "spectral"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="pretrained TerraMind files for the terramind arm (default: random weights, --no-pretrained)",
    )
    parser.add_argument("--model-size", choices=("tiny", "small", "base", "large"), default="tiny")
    parser.add_argument("--timesteps", type=int, default=1, help="DDIM steps of the terramind arm")
    parser.add_argument(
        "--opt-v2",
        nargs="+",
        choices=("proxy", "standin"),
        default=["proxy", "standin"],
        help="which opt_v2 to train and test on (the proxy run is also tested on real cloudy opt_v2)",
    )
    parser.add_argument(
        "--standin-steps", type=int, default=800, help="training steps of the Stage 2 stand-in"
    )
    parser.add_argument("--monitor-study", action="store_true", help="score every epoch's checkpoint on test")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trainings and evaluations run at once, one thread each (>1 on a machine with that many cores)",
    )
    parser.add_argument(
        "--lpips-weights",
        type=Path,
        default=REPO.parent / "shared" / "weights" / "alexnet-features-imagenet.pth",
        help="AlexNet weights for the guide recipe's LPIPS term (offline)",
    )
    options = parser.parse_args()
    if options.jobs > 1:
        THREADS.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    work = options.work
    (work / "runs").mkdir(parents=True, exist_ok=True)
    floods, mscr = prepare(options.shared, work)
    train_tiles = len(list((floods / "train").glob("*.npz")))
    per_epoch = -(-train_tiles // options.batch_size)

    load = os.getloadavg()[0]
    table = [
        f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), load {load:.1f} at the start; "
        f"{train_tiles} train tiles, batch {options.batch_size}: {per_epoch} optimizer steps per epoch",
        "test: 32 SEN12MS-CR tiles (64 px) of places and dates never trained on; mean over tiles; "
        "opt_v2 -> opt_v3 (change)",
        "",
        "| arm / recipe / opt_v2 | "
        + " | ".join(label for _, label, _ in METRICS)
        + " | steps | train time |",
        "|---" * (len(METRICS) + 3) + "|",
    ]
    studies: list[str] = []
    curves: dict[str, dict[str, dict[int, float]]] = {}
    standin = work / "stage2" / "standin"
    if "standin" in options.opt_v2:
        build_standin(
            options.shared,
            work,
            [floods / "train", floods / "val", mscr / "test"],
            standin,
            options.standin_steps,
            0,
        )
    plan = [
        (arm, kind, recipe) for arm in options.arms for kind in options.opt_v2 for recipe in options.recipes
    ]

    def train_one(task: tuple[str, str, str]) -> float:
        arm, kind, recipe = task
        stage2 = standin if kind == "standin" else None
        return train(arm, recipe, floods, run_dir(work, task, options), options, stage2)

    with ThreadPoolExecutor(max_workers=options.jobs) as pool:  # every training first, side by side
        seconds_of = dict(zip(plan, pool.map(train_one, plan), strict=True))
    gains: dict[tuple[str, str, str], float] = {}
    for arm in options.arms:
        for kind in options.opt_v2:
            stage2 = standin if kind == "standin" else None
            for recipe in options.recipes:
                name = arm_name(arm, options)
                run = run_dir(work, (arm, kind, recipe), options)
                seconds = seconds_of[(arm, kind, recipe)]
                epochs = sum(1 for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip())
                tests = [("proxy", None)] if kind == "proxy" else [(kind, stage2)]
                if kind == "proxy":
                    tests.append(("real cloudy", mscr / "stage2"))
                for label, folder in tests:
                    out = work / "eval" / f"{run.name}_{label.replace(' ', '-')}"
                    summary = evaluate(run / "best_model.pt", mscr, out, folder)
                    head = f"{name} / {recipe} / {label} (epoch {summary['epoch']})"
                    table.append(
                        row(head, summary["metrics"]) + f" {per_epoch * epochs} | {seconds / 60:.1f} min |"
                    )
                    gains[(arm, recipe, label)] = (
                        summary["metrics"]["opt_v3"]["psnr"]["mean"]
                        - summary["metrics"]["opt_v2"]["psnr"]["mean"]
                    )
                    if summary.get("clear"):
                        table.append(
                            row(f"{name} / {recipe} / {label}, clear pixels", summary["clear"]["metrics"])
                            + " | |"
                        )
                if options.monitor_study:
                    lines, curve = monitor_study(run, mscr, work, stage2, options.jobs)
                    curves.setdefault(f"{name} / {kind}", {})[recipe] = curve
                    studies += lines
    if "proxy" in options.opt_v2:
        table += ["", filled_baseline(mscr)]
    for (arm, recipe, label), gain in sorted(gains.items()):
        if recipe == "guide" and (arm, "spectral", label) in gains:
            behind = gains[(arm, "spectral", label)] - gain
            studies.append(
                f"{arm} / {label}: the guide's recipe {gain:+.3f} dB, spectral-only {gain + behind:+.3f} dB"
            )
    for title, by_recipe in curves.items():
        if len(by_recipe) > 1:
            studies += ["", f"{title}: test dPSNR (dB) of each recipe at the same optimizer steps"]
            studies += per_step(by_recipe, per_epoch)
    print("\n".join(table + [""] + studies))


if __name__ == "__main__":
    main()
