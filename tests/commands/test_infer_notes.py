"""``infer`` says what it does: equal samples from a deterministic model, and one rule for output folders.

Real tiles and a real scene (Sen1Floods11, see tests/scenes.py); a checkpoint of the fusion network
alone (``--generator none``), trained for one epoch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands.conftest import run_cli
from tests.scenes import floods_pair

NOTE = "opt_v3_std is 0 everywhere"


@pytest.fixture(scope="module")
def fusion_only(tiles_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fusion-only") / "run"
    result = run_cli(
        f"stage3 train --data-dir {tiles_dir} --output-dir {out} --generator none --lpips-weight 0 "
        "--epochs 1 --grad-accum 1 --max-samples 1 --num-workers 0 --quiet"
    )
    assert result.exit_code == 0, result.output
    return out / "best_model.pt"


@pytest.fixture(scope="module")
def pair(sen1floods11: Path, tmp_path_factory: pytest.TempPathFactory):
    return floods_pair(sen1floods11, tmp_path_factory.mktemp("scene-in"), size=64)


def _scene(checkpoint: Path, pair, output: Path, *extra: str):
    return run_cli(
        [
            "stage3", "infer", "--checkpoint", checkpoint, "--s1-scene", pair.s1, "--opt-v2-scene", pair.opt_v2,
            "--output-scene", output, "--tile-size", 64, "--overlap", 0, *extra,
        ]
    )  # fmt: skip


def test_samples_of_the_fusion_network_alone_get_a_note(
    fusion_only: Path, tiles_dir: Path, pair, tmp_path: Path
) -> None:
    result = run_cli(
        f"stage3 infer --checkpoint {fusion_only} --input-dir {tiles_dir / 'test'} --output-dir {tmp_path / 'tiles'} "
        "--proxy-from-ground-truth --samples 2 --max-samples 1"
    )
    assert result.exit_code == 0, result.output
    (note,) = [line for line in result.output.splitlines() if NOTE in line]
    assert (
        note.startswith(f"note: {fusion_only}")
        and "--generator none" in note
        and "2 samples are equal" in note
    )
    result = _scene(fusion_only, pair, tmp_path / "opt_v3.tif", "--samples", "2")
    assert result.exit_code == 0, result.output
    assert sum(NOTE in line for line in result.output.splitlines()) == 1
    # One sample: nothing to say.
    result = _scene(fusion_only, pair, tmp_path / "tiles" / "opt_v3.tif")
    assert result.exit_code == 0, result.output
    assert NOTE not in result.output


def test_scene_mode_creates_a_missing_output_folder_as_tile_mode_does(
    fusion_only: Path, tiles_dir: Path, pair, tmp_path: Path
) -> None:
    tiles_out = tmp_path / "new" / "tiles"
    result = run_cli(
        f"stage3 infer --checkpoint {fusion_only} --input-dir {tiles_dir / 'test'} --output-dir {tiles_out} "
        "--proxy-from-ground-truth --max-samples 1 --quiet"
    )
    assert result.exit_code == 0, result.output
    assert list(tiles_out.glob("*.npz"))
    scene_out = tmp_path / "new" / "scenes" / "opt_v3.tif"
    result = _scene(fusion_only, pair, scene_out, "--quiet")
    assert result.exit_code == 0, result.output
    assert scene_out.is_file() and scene_out.with_suffix(".json").is_file()
