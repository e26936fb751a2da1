"""``axion stage3 evaluate`` on real test tiles with a checkpoint trained by ``axion stage3 train``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.commands.conftest import half_cloud, run_cli, stage2_from_targets

pytestmark = pytest.mark.slow
HEADLINE = ("psnr", "ssim", "sam_deg", "mae", "rmse", "lpips", "sar_agreement")


def test_writes_summary_csv_and_tile_arrays(evaluation, checkpoint: Path, tiles_dir: Path) -> None:
    out, result = evaluation
    summary = json.loads((out / "summary.json").read_text())
    test_tiles = sorted(p.stem for p in (tiles_dir / "test").glob("*.npz"))
    assert summary["checkpoint"] == str(checkpoint.resolve())
    assert summary["split"] == "test" and summary["tiles"] == len(test_tiles)
    assert summary["opt_v2_source"] == "proxy" and summary["lpips"] is True
    for source in ("opt_v2", "opt_v3"):
        for key in HEADLINE:
            stats = summary["metrics"][source][key]
            assert stats["count"] == len(test_tiles) and math.isfinite(stats["mean"]), (source, key)
    # The ground truth scores 1 on SAR agreement by definition; its SAR edge correlation is the reference.
    assert set(summary["metrics"]["target"]) == {"sar_edge_correlation"}
    # Versions of this evaluation and of the run that wrote the checkpoint.
    assert summary["provenance"]["versions"]["torch"] and summary["provenance"]["run"]["host"]
    assert summary["provenance"]["checkpoint"]["versions"]["axion"]

    with (out / "per_tile.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == test_tiles
    for key in HEADLINE:
        assert {f"opt_v2_{key}", f"opt_v3_{key}"} <= set(rows[0])
    assert "target_sar_edge_correlation" in rows[0]
    # The summary is the mean of the per-tile rows.
    mean_psnr = np.mean([float(r["opt_v3_psnr"]) for r in rows])
    assert summary["metrics"]["opt_v3"]["psnr"]["mean"] == pytest.approx(mean_psnr, abs=1e-4)

    for name in test_tiles:
        with np.load(out / "tiles" / f"{name}.npz") as arrays:
            assert arrays["s1"].shape == (2, 64, 64) and arrays["mask"].shape == (64, 64)
            for key in ("opt_v2", "opt_v3", "target"):
                assert arrays[key].shape == (4, 64, 64) and np.isfinite(arrays[key]).all()
    assert "opt_v2 (input)" in result.output and "SAR agreement" in result.output


def test_refuses_to_mix_with_earlier_results(evaluation, checkpoint: Path, tiles_dir: Path) -> None:
    out, _ = evaluation
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    result = run_cli(f"stage3 evaluate --checkpoint {checkpoint} --data-dir {tiles_dir} --output-dir {out}")
    assert result.exit_code == 2
    assert "already holds evaluation results" in result.output and "Traceback" not in result.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_missing_checkpoint_is_one_line(tiles_dir: Path, tmp_path: Path) -> None:
    result = run_cli(
        f"stage3 evaluate --checkpoint {tmp_path / 'nope.pt'} --data-dir {tiles_dir} --output-dir {tmp_path / 'r'}"
    )
    assert result.exit_code == 2
    assert "nope.pt: checkpoint not found" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_rebuilt_model_reproduces_training_validation(checkpoint: Path, tiles_dir: Path) -> None:
    """The checkpoint alone (config + trainable weights + seed) rebuilds the model training validated."""
    from axion.data.dataset import TileDataset, collate_tiles
    from axion.metrics import sar_agreement
    from axion.prediction.predict import load_predictor, predict
    from axion.seeding import Stream, stream_seed
    from axion.training.checkpoint import Checkpoint

    state = Checkpoint.read(checkpoint)
    predictor = load_predictor(state)
    val = TileDataset(tiles_dir, "val", max_samples=1)
    batch = collate_tiles([val[0]])
    seed = state.config["other"]["seed"]
    seeds = [stream_seed(seed, Stream.VAL_NOISE, name) for name in batch["name"]]
    opt_v3 = predict(predictor.model, batch, seeds, predictor.timesteps, precision=predictor.precision)
    measured = float(sar_agreement(opt_v3, batch["target"], batch["s1"], batch["mask"]).mean())
    assert measured == pytest.approx(state.val_stats["sar_agreement"], abs=2e-3)


def test_an_export_folder_evaluates_like_its_checkpoint(
    checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    assert run_cli(f"stage3 export --checkpoint {checkpoint} --output-dir {export}").exit_code == 0
    summaries = []
    for source, name in ((checkpoint, "from-checkpoint"), (export, "from-export")):
        result = run_cli(
            f"stage3 evaluate --checkpoint {source} --data-dir {tiles_dir} --output-dir {tmp_path / name} "
            "--lpips-weight 0 --num-workers 0 --quiet --save-arrays 0"
        )
        assert result.exit_code == 0, result.output
        summaries.append(json.loads((tmp_path / name / "summary.json").read_text()))
    assert summaries[0]["metrics"] == summaries[1]["metrics"]
    assert summaries[0]["seed"] == summaries[1]["seed"] and summaries[0]["epoch"] == summaries[1]["epoch"]


def test_cloudy_opt_v2_is_also_scored_on_its_clear_pixels(
    untrained_checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    """Stage 2 files with an ``opt_v2_mask``: a second table over the clear pixels, in summary.json too."""
    stage2 = stage2_from_targets(tiles_dir, tmp_path / "stage2", half_cloud)
    out = tmp_path / "results"
    result = run_cli(
        f"stage3 evaluate --checkpoint {untrained_checkpoint} --data-dir {tiles_dir} --stage2-dir {stage2} "
        f"--output-dir {out} --lpips-weight 0 --save-arrays 0"
    )
    assert result.exit_code == 0, result.output
    assert "On opt_v2's clear pixels only (opt_v2_mask; 50 % of the valid pixels)" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clear"]["clear_fraction"]["mean"] == pytest.approx(0.5)
    # The untrained model returns the opt_v2 it is given: exact on the clear half, and under the
    # cloud a fill from the clear half (axion.cloudfill), far closer to the truth than the cloud.
    clear_psnr = summary["clear"]["metrics"]["opt_v3"]["psnr"]["mean"]
    assert clear_psnr > 60
    assert summary["clear"]["metrics"]["opt_v2"]["psnr"]["mean"] == pytest.approx(clear_psnr)
    whole = {image: summary["metrics"][image]["psnr"]["mean"] for image in ("opt_v2", "opt_v3")}
    assert whole["opt_v2"] < 20 and whole["opt_v3"] > whole["opt_v2"] + 5
    with (out / "per_tile.csv").open() as handle:
        assert {"clear_fraction", "clear_opt_v3_psnr"} <= set(next(csv.DictReader(handle)))


def test_all_clear_stage2_outputs_get_no_second_table(
    untrained_checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    stage2 = stage2_from_targets(tiles_dir, tmp_path / "stage2", lambda target, _: {"opt_v2": target * 1.1})
    out = tmp_path / "results"
    result = run_cli(
        f"stage3 evaluate --checkpoint {untrained_checkpoint} --data-dir {tiles_dir} --stage2-dir {stage2} "
        f"--output-dir {out} --lpips-weight 0 --save-arrays 0"
    )
    assert result.exit_code == 0, result.output
    assert "clear pixels only" not in result.output
    assert json.loads((out / "summary.json").read_text())["clear"] is None
