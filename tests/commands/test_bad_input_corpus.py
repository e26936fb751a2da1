"""The bad-input corpus: every kind of bad input, built from real tiles, through every command.

Each case must end in one line on stderr that names the file and the problem, exit code 2,
no traceback, nothing written, and no model built. Values that are only suspicious are
warned about and recorded instead. (prepare's own cases: tests/data/test_prepare_reliability.py
and tests/data/test_bad_inputs.py; kills: tests/engine/test_crash_recovery.py.)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from axion.bands import S1_KEYS, S2_KEYS
from tests.commands.conftest import run_cli
from tests.conftest import killed_writer_leftover

FAST_TRAIN = (
    "--model-size tiny --no-pretrained --lpips-weight 0 --timesteps 1 --epochs 1 --num-workers 0 --quiet"
)
#: What a refusal may never show: a traceback, or signs that the slow work started.
SLOW_WORK = ("Traceback", "Trainable parameters", "Checkpoint:", "Wrote")


def assert_refused(result: Any, *needles: str, not_written: Path | None = None) -> str:
    """One line, exit 2, every needle in it, no sign of slow work, ``not_written`` absent."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not any(sign in result.output for sign in SLOW_WORK), result.output
    if not_written is not None:
        assert not not_written.exists(), f"{not_written} was written"
    return lines[0]


# --- tiles and Stage 2 outputs built from the real 64 px tiles -----------------------------------


def _set(key: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    def poison(arrays: dict) -> None:
        keys = S1_KEYS if key == "s1" else S2_KEYS if key == "s2" else (key,)
        for k in keys:
            arrays[k] = fn(arrays[k].astype(np.float32))

    return poison


def _block(value: float) -> Callable[[np.ndarray], np.ndarray]:
    def fn(band: np.ndarray) -> np.ndarray:
        band = band.copy()
        band[10:20, 10:20] = value
        return band

    return fn


def _no_valid(arrays: dict) -> None:
    arrays["valid"] = np.zeros(arrays["s1_vv"].shape, np.uint8)


#: Bad tiles: (what is done to the arrays, what the error says).
TILE_CASES: dict[str, tuple[Callable[[dict], None], str]] = {
    "s2_nan_block": (_set("s2_b3", _block(np.nan)), "'s2_b3' has 100 NaN/inf"),
    "s2_all_zero": (_set("s2", np.zeros_like), "no S2 signal: every value is 0"),
    "s2_negative": (_set("s2", lambda b: b - 3000.0), "S2 has negative reflectance"),
    "s2_1e30_pixels": (_set("s2_b4", _block(1e30)), "S2 above the reflectance ceiling"),
    "s2_reflectance_0_1": (_set("s2", lambda b: b / 10000.0), "looks like reflectance 0-1"),
    "s2_constant_band": (_set("s2_b8", lambda b: np.full_like(b, 2000.0)), "S2 B8 is constant"),
    "s1_all_zero": (_set("s1", np.zeros_like), "no S1 signal: every value is 0"),
    "s1_linear_power": (_set("s1", lambda b: 10.0 ** (b / 10.0)), "S1 looks like linear power, not dB"),
    "s1_1e30_pixels": (_set("s1_vv", _block(1e30)), "S1 values outside -100..60 dB"),
    "s1_unmasked_nodata": (_set("s1_vh", _block(-9999.0)), "S1 values outside -100..60 dB"),
    "no_valid_pixel": (_no_valid, "no valid S1 pixel"),
}
#: Bad Stage 2 outputs: (what is done to opt_v2 (4, H, W), what the error says).
STAGE2_CASES: dict[str, tuple[Callable[[np.ndarray], np.ndarray | bytes], str]] = {
    "opt_v2_nan_block": (lambda o: _block(np.nan)(o[0])[None].repeat(4, 0), "opt_v2 has 400 NaN/inf"),
    "opt_v2_1e30_pixels": (
        lambda o: np.concatenate([o[:1], _block(1e30)(o[1])[None], o[2:]]),
        "opt_v2 above",
    ),
    "opt_v2_all_zero": (np.zeros_like, "no opt_v2 signal"),
    "opt_v2_negative": (lambda o: o - 5000.0, "opt_v2 has negative reflectance"),
    "opt_v2_truncated": (lambda o: b"truncated", "unreadable NPZ"),
}


def _copy_tiles(tiles_dir: Path, root: Path) -> dict[str, Path]:
    """One real tile per split (train, val, test) copied into ``root``; their NPZ paths by split."""
    chosen = {}
    for split in ("train", "val", "test"):
        npz = sorted((tiles_dir / split).glob("*.npz"))[0]
        (root / split).mkdir(parents=True)
        shutil.copy(npz, root / split / npz.name)
        shutil.copy(npz.with_suffix(".json"), root / split / npz.with_suffix(".json").name)
        chosen[split] = root / split / npz.name
    return chosen


def bad_tiles(tiles_dir: Path, root: Path, case: str, split: str) -> tuple[Path, Path]:
    """Real tiles with the tile of ``split`` poisoned as ``case`` says: (data dir, poisoned file)."""
    tiles = _copy_tiles(tiles_dir, root / "tiles")
    poison, _ = TILE_CASES[case]
    with np.load(tiles[split]) as f:
        arrays = {k: f[k] for k in f.files}
    poison(arrays)
    np.savez(tiles[split], **arrays)
    return root / "tiles", tiles[split]


def stage2_for(tiles: dict[str, Path], root: Path) -> Path:
    """Stage 2 outputs for the tiles: their own S2 bands as opt_v2 (plausible, real values)."""
    stage2 = root / "stage2"
    stage2.mkdir()
    for npz in tiles.values():
        with np.load(npz) as f:
            np.savez(stage2 / npz.name, opt_v2=np.stack([f[k] for k in S2_KEYS]).astype(np.float32))
    return stage2


def bad_stage2(tiles_dir: Path, root: Path, case: str, split: str) -> tuple[Path, Path, Path]:
    """Good tiles, and Stage 2 outputs of which the one of ``split`` is poisoned: (tiles, stage2, file)."""
    tiles = _copy_tiles(tiles_dir, root / "tiles")
    stage2 = stage2_for(tiles, root)
    target = stage2 / tiles[split].name
    with np.load(target) as f:
        bad = STAGE2_CASES[case][0](f["opt_v2"])
    if isinstance(bad, bytes):
        target.write_bytes(bad)
    else:
        np.savez(target, opt_v2=bad)
    return root / "tiles", stage2, target


@pytest.mark.parametrize("case", sorted(TILE_CASES))
def test_train_refuses_bad_tiles(case: str, tiles_dir: Path, tmp_path: Path) -> None:
    data, bad = bad_tiles(tiles_dir, tmp_path, case, "train")
    out = tmp_path / "run"
    result = run_cli(f"stage3 train --data-dir {data} --output-dir {out} {FAST_TRAIN}")
    assert_refused(result, str(bad), TILE_CASES[case][1], not_written=out)


@pytest.mark.parametrize("case", sorted(STAGE2_CASES))
def test_train_refuses_bad_stage2(case: str, tiles_dir: Path, tmp_path: Path) -> None:
    data, stage2, bad = bad_stage2(tiles_dir, tmp_path, case, "val")
    out = tmp_path / "run"
    result = run_cli(f"stage3 train --data-dir {data} --stage2-dir {stage2} --output-dir {out} {FAST_TRAIN}")
    assert_refused(result, str(bad), STAGE2_CASES[case][1], not_written=out)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(TILE_CASES))
def test_evaluate_and_infer_refuse_bad_tiles(
    case: str, tiles_dir: Path, checkpoint: Path, tmp_path: Path
) -> None:
    data, bad = bad_tiles(tiles_dir, tmp_path, case, "test")
    out = tmp_path / "results"
    result = run_cli(
        f"stage3 evaluate --checkpoint {checkpoint} --data-dir {data} --output-dir {out} --lpips-weight 0"
    )
    assert_refused(result, str(bad), TILE_CASES[case][1], not_written=out)
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {data / 'test'} --output-dir {out} --proxy-from-ground-truth"
    )
    assert_refused(result, str(bad), TILE_CASES[case][1], not_written=out)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(STAGE2_CASES))
def test_evaluate_and_infer_refuse_bad_stage2(
    case: str, tiles_dir: Path, checkpoint: Path, tmp_path: Path
) -> None:
    data, stage2, bad = bad_stage2(tiles_dir, tmp_path, case, "test")
    out = tmp_path / "results"
    result = run_cli(
        f"stage3 evaluate --checkpoint {checkpoint} --data-dir {data} --stage2-dir {stage2} "
        f"--output-dir {out} --lpips-weight 0"
    )
    assert_refused(result, str(bad), STAGE2_CASES[case][1], not_written=out)
    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {data / 'test'} --stage2-dir {stage2} --output-dir {out}"
    )
    assert_refused(result, str(bad), STAGE2_CASES[case][1], not_written=out)


def test_unknown_product_level_in_a_tile_is_refused(tiles_dir: Path, tmp_path: Path) -> None:
    tiles = _copy_tiles(tiles_dir, tmp_path / "tiles")
    meta_path = tiles["val"].with_suffix(".json")
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "s1_product": "slc"}))
    out = tmp_path / "run"
    result = run_cli(f"stage3 train --data-dir {tmp_path / 'tiles'} --output-dir {out} {FAST_TRAIN}")
    assert_refused(result, str(tiles["val"]), "unknown s1_product 'slc'", not_written=out)


# --- checkpoints with flipped bytes -------------------------------------------------------------


def flip_bytes(path: Path, pick: Callable[[dict], torch.Tensor]) -> None:
    """Flip one byte in the middle of a tensor's stored bytes, in the file itself.

    A weight that training left as it was is stored twice, with the same bytes: in the weight
    average (``model_state_dict``) and in the raw weights (``training_state_dict``); the first copy
    is flipped, and the checksum covers both.
    """
    tensor = pick(torch.load(path, weights_only=True))
    raw = tensor.detach().contiguous().view(torch.uint8).numpy().tobytes()
    data = bytearray(path.read_bytes())
    at = data.find(raw)
    assert at >= 0, "tensor bytes not found in the file"
    data[at + len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _largest(tensors: list[torch.Tensor]) -> torch.Tensor:
    return max((t for t in tensors if t.is_floating_point() and bool(t.any())), key=lambda t: t.numel())


def optimizer_tensor(state: dict) -> torch.Tensor:
    return _largest([v for s in state["optimizer_state_dict"]["state"].values() for v in s.values()])


def fusion_tensor(state: dict) -> torch.Tensor:
    return _largest([v for k, v in state["model_state_dict"].items() if k.startswith("fusion.")])


@pytest.mark.slow
def test_flipped_bytes_in_the_optimizer_state_stop_a_resume(
    trained_run: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    damaged = tmp_path / "checkpoint_epoch_1.pt"
    shutil.copy(trained_run / "checkpoint_epoch_1.pt", damaged)
    flip_bytes(damaged, optimizer_tensor)
    out = tmp_path / "resumed"
    result = run_cli(
        f"stage3 train --data-dir {tiles_dir} --output-dir {out} --resume {damaged} {FAST_TRAIN}"
    )
    assert_refused(result, str(damaged), "checkpoint is damaged", not_written=out)


@pytest.mark.slow
def test_flipped_bytes_in_the_fusion_weights_stop_evaluate_and_infer(
    checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    # A long path: the message must come out whole, not cut at the console's width.
    folder = tmp_path / ("a_rather_long_folder_name_" * 6)
    folder.mkdir()
    damaged = folder / "best_model.pt"
    shutil.copy(checkpoint, damaged)
    flip_bytes(damaged, fusion_tensor)
    out = tmp_path / "out"
    result = run_cli(
        f"stage3 evaluate --checkpoint {damaged} --data-dir {tiles_dir} --output-dir {out} --lpips-weight 0"
    )
    line = assert_refused(result, str(damaged), not_written=out)
    assert (
        line.endswith("checkpoint is damaged (its checksum does not match its contents)") and len(line) > 200
    )
    result = run_cli(
        f"stage3 infer --checkpoint {damaged} --input-dir {tiles_dir / 'test'} --output-dir {out} --proxy-from-ground-truth"
    )
    assert_refused(result, str(damaged), "checkpoint is damaged", not_written=out)


@pytest.mark.slow
def test_checkpoint_with_non_finite_weights_is_refused(
    checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    from axion.training.checkpoint import checksum

    state = torch.load(checkpoint, weights_only=True)
    head = next(k for k in state["model_state_dict"] if k.startswith("fusion."))
    state["model_state_dict"][head].view(-1)[0] = float("nan")
    state["axion"]["sha256"] = checksum(state)  # intact file, NaN inside
    poisoned = tmp_path / "nan.pt"
    torch.save(state, poisoned)
    out = tmp_path / "out"
    result = run_cli(
        f"stage3 evaluate --checkpoint {poisoned} --data-dir {tiles_dir} --output-dir {out} --lpips-weight 0"
    )
    assert_refused(result, str(poisoned), "non-finite value", not_written=out)


class _Hostile:
    """Unpickled, it would create the marker file: what a hostile checkpoint does with real code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def _truncated(path: Path, marker: Path) -> None:
    torch.save({"model_state_dict": {"fusion.w": torch.ones(64, 64)}}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _hostile(path: Path, marker: Path) -> None:
    torch.save({"config": _Hostile(marker), "model_state_dict": {}}, path)


@pytest.mark.parametrize(
    ("make", "needle"), [(_truncated, "truncated or corrupted"), (_hostile, "could run code; not loaded")]
)
def test_damaged_or_hostile_checkpoints_get_a_short_safe_line(
    make: Callable[[Path, Path], None], needle: str, tiles_dir: Path, tmp_path: Path
) -> None:
    """The file and the problem in a short line; never torch's advice to load with weights_only=False."""
    bad, marker, out = tmp_path / "model.pt", tmp_path / "ran", tmp_path / "out"
    make(bad, marker)
    for command in (
        f"stage3 evaluate --checkpoint {bad} --data-dir {tiles_dir} --output-dir {out} --lpips-weight 0",
        f"stage3 infer --checkpoint {bad} --input-dir {tiles_dir / 'test'} --output-dir {out} "
        "--proxy-from-ground-truth",
    ):
        line = assert_refused(run_cli(command), str(bad), needle, not_written=out)
        assert "weights_only" not in line and len(line) - len(str(bad)) <= 160, line
    assert not marker.exists()


# --- output locations that cannot be written ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", ["prepare", "train", "evaluate", "infer", "infer-scene", "visualize"])
def test_output_under_a_regular_file_is_refused_before_work(
    command: str, tiles_dir: Path, checkpoint: Path, evaluation, terramind_examples: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    results, _ = evaluation
    s1 = terramind_examples / "S1RTC" / "282D_485L_3_3.tif"
    args = {
        "prepare": f"stage3 prepare --demo --output-dir {out}",
        "train": f"stage3 train --data-dir {tiles_dir} --output-dir {out} {FAST_TRAIN}",
        "evaluate": f"stage3 evaluate --checkpoint {checkpoint} --data-dir {tiles_dir} --output-dir {out} "
        "--lpips-weight 0",
        "infer": f"stage3 infer --checkpoint {checkpoint} --input-dir {tiles_dir / 'test'} --output-dir {out} "
        "--proxy-from-ground-truth",
        "infer-scene": f"stage3 infer --checkpoint {checkpoint} --s1-scene {s1} --opt-v2-scene {s1} "
        f"--output-scene {out / 'opt_v3.tif'}",
        "visualize": f"stage3 visualize --results {results} --output-dir {out}",
    }[command]
    if command == "infer-scene":
        # A 4-band opt_v2 scene on the S1 grid (its checks come first), then the output place.
        import rasterio

        with rasterio.open(terramind_examples / "S2L2A" / "282D_485L_3_3.tif") as src:
            profile = {**src.profile, "count": 4}
            pixels = src.read([2, 3, 4, 8])
        with rasterio.open(tmp_path / "opt_v2.tif", "w", **profile) as dst:
            dst.write(pixels)
        args = args.replace(f"--opt-v2-scene {s1}", f"--opt-v2-scene {tmp_path / 'opt_v2.tif'}")
    assert_refused(run_cli(args), "a_file")
    assert blocker.read_text() == "not a folder"


# --- visualize on damaged results ---------------------------------------------------------------


def _damage_tile(results: Path) -> Path:
    npz = sorted((results / "tiles").glob("*.npz"))[-1]
    npz.write_bytes(npz.read_bytes()[:-300])
    return npz


def _damage_csv(results: Path) -> Path:
    path = results / "per_tile.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("opt_v3_psnr")] = "fast"
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    return path


def _garbage_csv(results: Path) -> Path:
    path = results / "per_tile.csv"
    path.write_bytes(b"\x00\x01garbage;;\n\xff\xfe")
    return path


def _damage_summary(results: Path) -> Path:
    path = results / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "metrics": "none"}))
    return path


VISUALIZE_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated_tile_arrays": (_damage_tile, "unreadable NPZ"),
    "text_in_a_metric_column": (_damage_csv, "line 2: opt_v3_psnr is not a number ('fast')"),
    "garbage_per_tile_csv": (_garbage_csv, "per_tile.csv"),
    "summary_without_metrics": (_damage_summary, "not an evaluation summary"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(VISUALIZE_CASES))
def test_visualize_refuses_damaged_results(case: str, evaluation, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(evaluation[0], results)
    damage, needle = VISUALIZE_CASES[case]
    bad = damage(results)
    out = tmp_path / "viz"
    assert_refused(run_cli(f"stage3 visualize --results {results} --output-dir {out}"), str(bad), needle)
    assert not out.exists()  # no partial figures


@pytest.mark.slow
def test_visualize_refuses_a_malformed_history(evaluation, trained_run: Path, tmp_path: Path) -> None:
    history = tmp_path / "metrics.jsonl"
    rows = (trained_run / "metrics.jsonl").read_text()
    history.write_text(rows + '{"epoch": 2, "train_loss": 0.1, "val_lo\n')
    out = tmp_path / "viz"
    result = run_cli(f"stage3 visualize --results {evaluation[0]} --history {history} --output-dir {out}")
    assert_refused(result, str(history), "line 2 is not a metrics row", not_written=out)


# --- suspicious values: warned about and recorded, not refused ----------------------------------


@pytest.mark.slow
def test_suspicious_values_are_recorded_and_leftovers_removed(
    checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    tiles = _copy_tiles(tiles_dir, tmp_path / "tiles")
    stage2 = stage2_for(tiles, tmp_path)
    target = stage2 / tiles["test"].name
    with np.load(target) as f:
        opt_v2 = f["opt_v2"]
    opt_v2[0, :2, :2] = -15.0  # slightly negative: atmospheric correction noise, not refused
    np.savez(target, opt_v2=opt_v2)
    out = tmp_path / "results"
    # Leftovers of an evaluate and an infer killed while writing: removed when the commands start.
    leftovers = [
        killed_writer_leftover(out / "per_tile.csv"),
        killed_writer_leftover(out / "tiles" / "a.npz"),
    ]
    infer_out = tmp_path / "outputs"
    leftovers.append(killed_writer_leftover(infer_out / f"{tiles['test'].stem}.tif"))
    result = run_cli(
        f"stage3 evaluate --checkpoint {checkpoint} --data-dir {tmp_path / 'tiles'} --stage2-dir {stage2} "
        f"--output-dir {out} --lpips-weight 0 --save-arrays 0 --num-workers 0 --quiet"
    )
    assert result.exit_code == 0, result.output
    assert f"warning: {target}: opt_v2 has slightly negative reflectance" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input_warnings"] == [f"{target}: opt_v2 has slightly negative reflectance (min -15)"]
    assert summary["non_finite_tiles"] == []

    result = run_cli(
        f"stage3 infer --checkpoint {checkpoint} --input-dir {tmp_path / 'tiles' / 'test'} "
        f"--stage2-dir {stage2} --output-dir {infer_out} --quiet"
    )
    assert result.exit_code == 0, result.output
    recorded = json.loads((infer_out / "input_warnings.json").read_text())
    assert recorded == [
        {"file": str(target), "warning": "opt_v2 has slightly negative reflectance (min -15)"}
    ]
    assert not any(path.exists() for path in leftovers)
