"""``axion stage3 infer`` from a new scene to GIS-ready files, through the real CLI.

S1 in EPSG:4326 and an opt_v2 on a 10 m UTM grid (real Sen1Floods11 data, see
tests/scenes.py). The untrained checkpoint returns opt_v2 exactly, so the outputs can be
checked pixel for pixel; the trained one checks that several processes give what one does.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.commands.conftest import run_cli
from tests.scenes import OPT_HOLE, floods_pair, read, s1_on_grid_of

pytestmark = pytest.mark.slow
SIZE, TILE, OVERLAP = 96, 64, 32


@pytest.fixture(scope="module")
def pair(sen1floods11: Path, tmp_path_factory: pytest.TempPathFactory):
    return floods_pair(sen1floods11, tmp_path_factory.mktemp("scene-in"), size=SIZE)


def _infer_scene(checkpoint: Path, pair, output: Path, *extra: str):
    return run_cli(
        [
            "stage3", "infer", "--checkpoint", checkpoint, "--s1-scene", pair.s1, "--opt-v2-scene", pair.opt_v2,
            "--output-scene", output, "--tile-size", TILE, "--overlap", OVERLAP, "--quiet", *extra,
        ]
    )  # fmt: skip


def test_a_new_scene_becomes_a_cog_with_its_spread_and_a_stac_item(
    untrained_checkpoint: Path, pair, tmp_path: Path
) -> None:
    import pystac
    import rasterio
    from pystac.validation import JsonSchemaSTACValidator
    from rio_cogeo.cogeo import cog_validate

    from axion.runtime.device import accelerator_name, resolve_precision
    from axion.training.checkpoint import Checkpoint

    out = tmp_path / "opt_v3.tif"
    result = _infer_scene(
        untrained_checkpoint,
        pair,
        out,
        "--samples",
        "2",
        "--dtype",
        "uint16",
        "--datetime",
        "2019-09-17T18:00:00Z",
    )
    assert result.exit_code == 0, result.output
    assert "reprojected onto the grid of" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opt_v3.json", "opt_v3.tif", "opt_v3_std.tif"]

    opt, opt_profile = read(pair.opt_v2)
    pixels, profile = read(out)
    assert profile["crs"] == opt_profile["crs"] and profile["transform"] == opt_profile["transform"]
    assert (profile["height"], profile["width"], profile["dtype"], profile["nodata"]) == (
        SIZE,
        SIZE,
        "uint16",
        0,
    )
    # The untrained model returns opt_v2: reflectance x 10000, rounded; nodata where either input has none.
    valid = np.isfinite(opt).all(axis=0) & np.isfinite(s1_on_grid_of(pair)).all(axis=0)
    assert (~valid).sum() > 100 and (~valid[OPT_HOLE]).all()
    assert (pixels[:, ~valid] == 0).all()
    diff = np.abs(pixels[:, valid].astype(np.int64) - np.clip(np.rint(opt[:, valid]), 1, 65535))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999
    spread, _ = read(tmp_path / "opt_v3_std.tif")
    assert (spread == 0).all()  # the untrained model ignores the noise: both samples agree exactly

    for path in (out, tmp_path / "opt_v3_std.tif"):
        assert cog_validate(str(path), strict=True)[0]
    with rasterio.open(out) as src:
        tags = src.tags()
    assert tags["AXION_VERSION"] and tags["AXION_CHECKPOINT"] == str(untrained_checkpoint.resolve())
    assert tags["AXION_CHECKPOINT_SHA256"] == hashlib.sha256(untrained_checkpoint.read_bytes()).hexdigest()
    assert (tags["AXION_TIMESTEPS"], tags["AXION_SEED"], tags["AXION_SAMPLES"]) == ("1", "0", "2")
    model = Checkpoint.read_config(untrained_checkpoint)["model"]
    assert tags["AXION_TOKEN_SAMPLING"] == model.get(
        "token_sampling", "soft"
    )  # "soft": before the setting existed
    assert tags["AXION_PRECISION"] == resolve_precision("auto", accelerator_name()).fabric
    assert tags["AXION_S1_REPROJECTED"] == "yes" and tags["AXION_PRODUCT"] == "opt_v3"

    item = json.loads((tmp_path / "opt_v3.json").read_text())
    JsonSchemaSTACValidator().validate_core(item, pystac.STACObjectType.ITEM, item["stac_version"])
    assert item["properties"]["datetime"] == "2019-09-17T18:00:00Z"
    assert item["properties"]["axion:checkpoint_sha256"] == tags["AXION_CHECKPOINT_SHA256"]
    assert item["properties"]["proj:code"] == "EPSG:32630"
    assert {k: a["href"] for k, a in item["assets"].items()} == {
        "opt_v3": "./opt_v3.tif",
        "opt_v3_std": "./opt_v3_std.tif",
    }
    assert item["assets"]["opt_v3"]["raster:bands"][0]["data_type"] == "uint16"


def test_an_existing_scene_is_kept_unless_overwrite(untrained_checkpoint: Path, pair, tmp_path: Path) -> None:
    out = tmp_path / "opt_v3.tif"
    assert _infer_scene(untrained_checkpoint, pair, out, "--samples", "2").exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    refused = _infer_scene(untrained_checkpoint, pair, out)
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "already exists" in refused.output and "--overwrite" in refused.output
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    replaced = _infer_scene(untrained_checkpoint, pair, out, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    # One sample: no spread; the earlier one went with the result it belonged to.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opt_v3.json", "opt_v3.tif"]
    item = json.loads((tmp_path / "opt_v3.json").read_text())
    assert list(item["assets"]) == ["opt_v3"] and item["properties"]["axion:samples"] == "1"


def test_prepared_inference_tiles_run_without_ground_truth(
    untrained_checkpoint: Path, pair, tmp_path: Path
) -> None:
    tiles = tmp_path / "tiles"
    prepared = run_cli(
        ["stage3", "prepare", "--s1", pair.s1, "--opt-v2", pair.opt_v2, "--tile-size", 64, "--stride", 32]
        + ["--max-nodata", "0.5", "-o", tiles]
    )
    assert prepared.exit_code == 0, prepared.output
    out = tmp_path / "out"
    result = run_cli(
        ["stage3", "infer", "--checkpoint", untrained_checkpoint, "--input-dir", tiles / "infer"]
        + ["--stage2-dir", tiles / "stage2", "--output-dir", out, "--quiet"]
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.stem for p in (tiles / "infer").glob("*.npz"))
    assert len(names) == 4
    manifest = json.loads((out / "infer.json").read_text())
    assert manifest["opt_v2"] == "stage2" and manifest["tiles"] == 4
    assert sorted(manifest["outputs"]) == sorted([f"{n}.npz" for n in names] + [f"{n}.tif" for n in names])
    for name in names:
        with np.load(tiles / "infer" / f"{name}.npz") as tile:
            valid = tile["valid"].astype(bool) if "valid" in tile.files else np.ones((64, 64), bool)
        opt_v2 = np.load(tiles / "stage2" / f"{name}.npz")["opt_v2"]
        opt_v3 = np.load(out / f"{name}.npz")["opt_v3"]
        np.testing.assert_array_equal(opt_v3[:, valid], np.maximum(opt_v2[:, valid], 0))
        assert np.isnan(opt_v3[:, ~valid]).all()
        pixels, profile = read(out / f"{name}.tif")
        np.testing.assert_array_equal(pixels, opt_v3)
        assert profile["crs"].to_string() == "EPSG:32630"


def _spawn_infer(args: list[object]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LIGHTLY_DID_VERSION_CHECK": "True"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    command = [sys.executable, "-m", "axion", "stage3", "infer", *map(str, args), "--devices", "2", "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def _fewer_than_two_gpus() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.device_count() < 2


@pytest.mark.skipif(_fewer_than_two_gpus(), reason="--devices 2 on a GPU machine needs 2 GPUs")
def test_two_processes_give_what_one_gives(checkpoint: Path, pair, tmp_path: Path) -> None:
    """Scene strips shared over 2 CPU processes (Fabric, gloo): the same files as one process."""
    scene = ["--checkpoint", checkpoint, "--s1-scene", pair.s1, "--opt-v2-scene", pair.opt_v2]
    scene += ["--tile-size", TILE, "--overlap", OVERLAP, "--samples", "2"]
    assert (
        run_cli(["stage3", "infer", *scene, "--output-scene", tmp_path / "one.tif", "--quiet"]).exit_code == 0
    )
    proc = _spawn_infer([*scene, "--output-scene", tmp_path / "two.tif"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 processes" in proc.stdout and "2 x cpu" in proc.stdout
    for one, two in (("one.tif", "two.tif"), ("one_std.tif", "two_std.tif")):
        np.testing.assert_array_equal(read(tmp_path / one)[0], read(tmp_path / two)[0])
    scene_out, opt = read(tmp_path / "one.tif")[0], read(pair.opt_v2)[0]
    valid = np.isfinite(scene_out).all(axis=0)
    assert np.abs(scene_out[:, valid] - opt[:, valid]).max() > 0.5  # the trained model does change opt_v2


class _Share:
    """Rank ``rank`` of ``world_size``, run one after the other in this process."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def gather(self, arrays: dict) -> list[dict]:
        raise AssertionError("tile mode gathers nothing")

    def barrier(self) -> None:
        return None


def test_tile_shards_together_write_what_one_process_writes(
    checkpoint: Path, tiles_dir: Path, tmp_path: Path
) -> None:
    from axion.config import InferConfig
    from axion.prediction.infer import PROXY, tiles_worker

    args = [
        "--checkpoint",
        checkpoint,
        "--input-dir",
        tiles_dir / "test",
        "--proxy-from-ground-truth",
        "--quiet",
    ]
    assert run_cli(["stage3", "infer", *args, "--output-dir", tmp_path / "one"]).exit_code == 0
    settings = InferConfig(
        checkpoint=checkpoint,
        input_dir=tiles_dir / "test",
        output_dir=tmp_path / "two",
        proxy_from_ground_truth=True,
    )
    (tmp_path / "two").mkdir()
    tiles_worker(_Share(1, 2), settings, PROXY, [], None)
    assert not (tmp_path / "two" / "infer.json").exists()  # only the first process writes the manifest
    half = {p.name for p in (tmp_path / "two").iterdir()}
    tiles_worker(_Share(0, 2), settings, PROXY, [], None)
    npz = sorted((tmp_path / "one").glob("*.npz"))
    assert len(npz) >= 2 and 0 < len([n for n in half if n.endswith(".npz")]) < len(npz)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
    for path in npz:
        np.testing.assert_array_equal(
            np.load(path)["opt_v3"], np.load(tmp_path / "two" / path.name)["opt_v3"]
        )
    one, two = (json.loads((tmp_path / d / "infer.json").read_text()) for d in ("one", "two"))
    assert one["outputs"] == two["outputs"] and one["tiles"] == two["tiles"] == len(npz)
