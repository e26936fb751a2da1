"""TileDataset and collate_tiles on small synthetic tiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from axion.data.dataset import TileDataset, collate_tiles
from axion.data.proxy import degrade_to_proxy, tile_seed
from axion.errors import DataError

from .conftest import write_tile


@pytest.fixture
def tiles(tmp_path: Path) -> Path:
    root = tmp_path / "tiles"
    # Folder names deliberately disagree with the JSON: only the JSON's split counts.
    write_tile(root / "val", "b_train", "train", seed=1)
    write_tile(root / "train", "a_train", "train", seed=2, size=(32, 16))
    write_tile(root / "deep" / "er", "c_train", "train", seed=3)
    write_tile(root / "train", "d_val", "val", seed=4)
    write_tile(root / "x", "e_test", "test", seed=5)
    np.savez(root / "x" / "stray.npz", opt_v2=np.zeros((4, 2, 2)))  # a Stage 2 output: not a tile
    return root


def test_split_selected_by_json_only(tiles: Path):
    assert TileDataset(tiles, "train").names == ["a_train", "b_train", "c_train"]
    assert TileDataset(tiles, "val").names == ["d_val"]
    assert TileDataset(tiles, "test").names == ["e_test"]
    assert len(TileDataset(tiles, None)) == 5


def test_sample_keys_padding_and_mask(tiles: Path):
    sample = TileDataset(tiles, "train")[1]  # b_train: 20 x 24 -> 32 x 32
    assert set(sample) == {"s1", "opt_v2", "target", "mask", "opt_v2_mask", "opt_v2_acquired", "name", "size"}
    assert sample["size"] == (20, 24)
    assert sample["name"] == "b_train"
    assert sample["s1"].shape == (2, 32, 32) and sample["s1"].dtype == torch.float32
    assert sample["opt_v2"].shape == sample["target"].shape == (4, 32, 32)
    assert sample["mask"].shape == (1, 32, 32)
    assert sample["mask"][0, :20, :24].eq(1).all() and sample["mask"].sum() == 20 * 24
    with np.load(tiles / "val" / "b_train.npz") as raw:
        np.testing.assert_array_equal(sample["target"][2, :20, :24].numpy(), raw["s2_b4"].astype(np.float32))
        np.testing.assert_array_equal(sample["s1"][1, :20, :24].numpy(), raw["s1_vh"])
        # Reflect padding: row 20 mirrors row 18.
        np.testing.assert_array_equal(sample["s1"][0, 20, :24].numpy(), raw["s1_vv"][18])


def test_max_samples_takes_first_by_name(tiles: Path):
    assert TileDataset(tiles, "train", max_samples=2).names == ["a_train", "b_train"]


def test_proxy_is_deterministic_per_tile_and_differs_between_tiles(tiles: Path):
    first, again = TileDataset(tiles, "train"), TileDataset(tiles, "train")
    for i in range(len(first)):
        assert torch.equal(first[i]["opt_v2"], again[i]["opt_v2"])
        assert torch.equal(first[i]["opt_v2"], first[i]["opt_v2"])
    target = np.full((4, 32, 32), 1500.0)
    a, b = degrade_to_proxy(target, tile_seed("a")), degrade_to_proxy(target, tile_seed("b"))
    assert not np.allclose(a, b)
    assert tile_seed("a", 0) != tile_seed("a", 1)


def test_proxy_is_a_blurred_noisy_version_of_the_target():
    rng = np.random.default_rng(0)
    target = np.clip(rng.normal(1500, 800, (4, 64, 64)), 0, None)
    proxy = degrade_to_proxy(target, 123)
    assert proxy.dtype == np.float32 and proxy.shape == target.shape and proxy.min() >= 0
    # Blur removes most of the white-noise texture but the band means stay close.
    assert proxy.std() < 0.6 * target.std()
    assert np.allclose(proxy.mean(axis=(1, 2)), target.mean(axis=(1, 2)), rtol=0.2)


def test_collate_pads_to_the_batch_max(tiles: Path):
    ds = TileDataset(tiles, "train")
    batch = collate_tiles([ds[0], ds[1]])  # 32x16 -> (32, 16) and 20x24 -> (32, 32)
    assert batch["name"] == ["a_train", "b_train"]
    assert batch["s1"].shape == (2, 2, 32, 32) and batch["mask"].shape == (2, 1, 32, 32)
    assert batch["mask"][0].sum() == 32 * 16 and batch["mask"][0, 0, :, 16:].eq(0).all()
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_tiles)
    assert next(iter(loader))["target"].shape == (3, 4, 32, 32)


def test_stage2_dir_is_used_and_missing_outputs_are_listed(tiles: Path, tmp_path: Path):
    stage2 = tmp_path / "stage2"
    stage2.mkdir()
    opt = np.arange(4 * 32 * 16, dtype=np.float32).reshape(4, 32, 16)
    np.savez(stage2 / "a_train.npz", opt_v2=opt)
    with pytest.raises(DataError) as err:
        TileDataset(tiles, "train", stage2_dir=stage2)
    assert "2 of 3" in str(err.value) and "b_train" in str(err.value) and "c_train" in str(err.value)
    ds = TileDataset(tiles, "train", stage2_dir=stage2, max_samples=1)
    np.testing.assert_array_equal(ds[0]["opt_v2"].numpy(), opt)
    assert float(ds[0]["opt_v2_acquired"]) == 0.0  # a Stage 2 estimate: no mask
    np.savez(stage2 / "a_train.npz", opt_v2=opt, opt_v2_mask=np.ones((32, 16), np.uint8))
    assert float(TileDataset(tiles, "train", stage2_dir=stage2, max_samples=1)[0]["opt_v2_acquired"]) == 1.0
    np.savez(stage2 / "b_train.npz", opt_v2=np.zeros((4, 5, 5)))
    with pytest.raises(DataError, match="b_train.npz: opt_v2 has shape"):
        TileDataset(tiles, "train", stage2_dir=stage2, max_samples=2)


def test_inference_tiles_without_ground_truth(tmp_path: Path):
    root = tmp_path / "infer"
    root.mkdir()
    np.savez(root / "scene_1.npz", s1_vv=np.full((16, 16), -12.0), s1_vh=np.full((16, 16), -19.0))
    (root / "scene_1.json").write_text("{}")
    stage2 = tmp_path / "s2"
    stage2.mkdir()
    np.savez(stage2 / "scene_1.npz", opt_v2=np.ones((4, 16, 16)))
    with pytest.raises(DataError, match="need Stage 2 outputs"):
        TileDataset(root, None, with_target=False)
    with pytest.raises(DataError, match="missing key 's2_b2'"):
        TileDataset(root, None, stage2_dir=stage2)
    sample = TileDataset(root, None, stage2_dir=stage2, with_target=False)[0]
    assert set(sample) == {"s1", "opt_v2", "mask", "opt_v2_mask", "opt_v2_acquired", "name", "size"}


def test_declared_units_are_converted(tmp_path: Path):
    root = tmp_path / "t"
    size = (16, 16)
    arrays = {"s1_vv": np.full(size, 0.1), "s1_vh": np.zeros(size), "s2_b2": np.full(size, 0.05)}
    write_tile(root, "lin", meta={"units": {"s1": "linear", "s2": "reflectance"}}, size=size, arrays=arrays)
    sample = TileDataset(root, "train")[0]
    assert torch.allclose(sample["s1"][0], torch.tensor(-10.0))
    assert torch.allclose(sample["s1"][1], torch.tensor(-50.0))  # 0 linear -> the -50 dB floor
    assert torch.allclose(sample["target"][0], torch.tensor(500.0))


def test_valid_key_folds_into_mask(tmp_path: Path):
    valid = np.ones((16, 16), np.uint8)
    valid[:4] = 0
    write_tile(tmp_path, "holed", size=(16, 16), arrays={"valid": valid})
    assert TileDataset(tmp_path, "train")[0]["mask"].sum() == 12 * 16


def test_dataset_build_errors(tiles: Path, tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        TileDataset(tmp_path / "nope", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no tiles for split 'val'"):
        TileDataset(tmp_path / "empty", "val")
    write_tile(tiles / "dup", "a_train", "train")
    with pytest.raises(DataError, match="duplicate tile name 'a_train'"):
        TileDataset(tiles, "train")
    (tiles / "dup" / "a_train.json").write_text(json.dumps({"split": "holdout"}))
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        TileDataset(tiles, "train")
