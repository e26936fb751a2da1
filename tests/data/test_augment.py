"""Training draws on real tiles: a fresh proxy per epoch, one geometry for every array, fixed validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from axion.data.augment import TrainingDraws, flip_rotate
from axion.data.dataset import TileDataset
from axion.data.proxy import degrade_to_proxy, tile_seed


@pytest.fixture(scope="module")
def real_tiles(terramind_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from axion.config import PrepareConfig
    from axion.data.prepare.api import prepare

    out = tmp_path_factory.mktemp("augment") / "tiles"
    scene = "433D_629L_3_1"
    prepare(
        PrepareConfig(
            output_dir=out,
            s1=[terramind_examples / "S1RTC" / f"{scene}.tif"],
            s2=[terramind_examples / "S2L2A" / f"{scene}.tif"],
            tile_size=64,
            block_size=1,
            split_ratios="1,0,0",
        )
    )
    return out


def test_flip_rotate_moves_every_array_alike() -> None:
    a = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    out = flip_rotate({"x": a, "y": a[:1] * 2}, flip=True, turns=1)
    assert out["x"].shape == (2, 6, 4)
    np.testing.assert_array_equal(out["y"][0], out["x"][0] * 2)
    np.testing.assert_array_equal(np.rot90(a[..., ::-1], 1, axes=(-2, -1)), out["x"])


def test_each_epoch_draws_anew_and_reproducibly(real_tiles: Path) -> None:
    draws = TrainingDraws(seed=3, augment=True, crop_size=None)
    data = TileDataset(real_tiles, "train", draws=draws)
    again = TileDataset(real_tiles, "train", draws=draws)
    fixed = TileDataset(real_tiles, "train")
    epoch1, epoch2 = data[(0, 1)], data[(0, 2)]
    torch.testing.assert_close(epoch1["opt_v2"], again[(0, 1)]["opt_v2"], rtol=0, atol=0)
    assert not torch.equal(epoch1["opt_v2"], epoch2["opt_v2"])
    # An index without an epoch (validation, evaluation) is the fixed proxy and geometry.
    name = fixed.names[0]
    plain = fixed[0]
    expected = degrade_to_proxy(plain["target"].numpy(), tile_seed(name))
    np.testing.assert_allclose(plain["opt_v2"].numpy(), expected, rtol=0, atol=0)
    torch.testing.assert_close(data[0]["opt_v2"], plain["opt_v2"], rtol=0, atol=0)


def test_a_share_of_training_proxies_is_sharp(real_tiles: Path) -> None:
    """With --proxy-sharp-share 0.2 a fifth of the training proxies are not blurred; the fixed proxy
    of validation and evaluation always is, and the default share is 0. Only the blur depends on
    the share."""
    from axion.config import TrainingConfig
    from axion.data.proxy import MIN_SIGMA, blur_sigma

    sigmas = np.array([blur_sigma(np.random.default_rng(seed), 0.2) for seed in range(4000)])
    assert abs(float((sigmas < 1.5).mean()) - 0.2) < 0.03 and set(sigmas[sigmas < 1.5]) == {MIN_SIGMA}
    assert TrainingConfig().proxy_sharp_share == 0.0
    fixed = np.array([blur_sigma(np.random.default_rng(seed)) for seed in range(4000)])
    assert fixed.min() >= 1.5 and fixed.max() <= 3.0

    draws = TrainingDraws(seed=3, augment=False, proxy_sharp_share=0.2)
    data = TileDataset(real_tiles, "train", draws=draws)
    target = data[0]["target"].numpy()

    def detail(image: np.ndarray) -> float:  # mean absolute horizontal difference: fine detail
        return float(np.abs(np.diff(image, axis=-1)).mean())

    drawn = [detail(data[(0, epoch)]["opt_v2"].numpy()) for epoch in range(1, 41)]
    plain = [detail(degrade_to_proxy(target, seed)) for seed in range(40)]
    # Some training proxies keep most of the target's detail; no fixed proxy does.
    assert max(drawn) > 0.7 * detail(target) > max(plain)
    # One uniform draw sets the blur whatever the share, so gain, offset and noise stay the seed's.
    sharp, blurred = degrade_to_proxy(target, 5, 0.999), degrade_to_proxy(target, 5)
    np.testing.assert_allclose(sharp.mean(axis=(1, 2)), blurred.mean(axis=(1, 2)), rtol=0.01)


def test_a_share_of_training_proxies_has_cloud_gaps(real_tiles: Path) -> None:
    """With --proxy-cloud-share 0.5 about half the training proxies carry cloud gaps in opt_v2_mask
    (blobs, 5-50 % of the tile, moved with the tile); validation proxies never do."""
    from axion.config import TrainingConfig
    from axion.data.proxy import synthetic_clouds

    assert TrainingConfig().proxy_cloud_share == 0.3
    assert synthetic_clouds(1, (64, 64), 0.0) is None
    gaps = [synthetic_clouds(seed, (64, 64), 0.5) for seed in range(400)]
    drawn = [g for g in gaps if g is not None]
    assert abs(len(drawn) / len(gaps) - 0.5) < 0.08
    covers = np.array([1.0 - g.mean() for g in drawn])
    assert covers.min() >= 0.04 and covers.max() <= 0.51 and set(np.unique(drawn[0])) == {0.0, 1.0}
    # Blobs, not speckle: nearly every cloudy pixel has a cloudy right-hand neighbour.
    cloudy = 1.0 - drawn[0]
    assert (cloudy[:, :-1] * cloudy[:, 1:]).sum() > 0.8 * cloudy[:, :-1].sum()
    np.testing.assert_array_equal(
        drawn[0], synthetic_clouds(next(i for i, g in enumerate(gaps) if g is not None), (64, 64), 0.5)
    )

    data = TileDataset(real_tiles, "train", draws=TrainingDraws(seed=3, augment=True, proxy_cloud_share=0.5))
    masks = [data[(0, epoch)]["opt_v2_mask"] for epoch in range(1, 21)]
    with_gaps = [m for m in masks if bool((m == 0).any())]
    assert 3 <= len(with_gaps) <= 17 and all(m.shape == masks[0].shape for m in masks)
    assert bool((data[0]["opt_v2_mask"] == 1).all())  # no epoch: the fixed proxy (validation)
    plain = TileDataset(real_tiles, "train", draws=TrainingDraws(seed=3, augment=True, proxy_cloud_share=0.0))
    assert all(bool((plain[(0, epoch)]["opt_v2_mask"] == 1).all()) for epoch in range(1, 6))


def test_a_proxy_with_cloud_gaps_stands_for_a_real_acquisition(real_tiles: Path) -> None:
    """A training proxy with gaps is unblurred (a real acquisition is sharp) and marked
    ``opt_v2_acquired``; one without is blurred and not marked; validation proxies never are."""
    from axion.data.dataset import collate_tiles

    data = TileDataset(real_tiles, "train", draws=TrainingDraws(seed=3, augment=True, proxy_cloud_share=0.5))
    samples = [data[(0, epoch)] for epoch in range(1, 21)]
    acquired = [s for s in samples if bool(s["opt_v2_acquired"])]
    assert 3 <= len(acquired) <= 17
    for sample in samples:
        gaps = bool((sample["opt_v2_mask"] == 0).any())
        assert bool(sample["opt_v2_acquired"]) == gaps and sample["opt_v2_acquired"].shape == ()
        # Sharpness: the gradient energy of opt_v2 against the target's (same flips, same tile).
        clear = sample["opt_v2_mask"][0] > 0
        energy = [
            float((x[:, 1:, :] - x[:, :-1, :])[:, clear[1:, :] & clear[:-1, :]].abs().mean())
            for x in (sample["opt_v2"], sample["target"])
        ]
        ratio = energy[0] / energy[1]
        assert ratio > 0.8 if gaps else ratio < 0.7, (gaps, ratio)
    assert float(data[0]["opt_v2_acquired"]) == 0.0  # no epoch: the fixed proxy (validation)
    batch = collate_tiles(samples[:4])
    assert batch["opt_v2_acquired"].shape == (4,)
    assert batch["opt_v2_acquired"].tolist() == [float(s["opt_v2_acquired"]) for s in samples[:4]]


def test_geometry_is_shared_by_s1_target_and_mask(real_tiles: Path) -> None:
    data = TileDataset(real_tiles, "train", draws=TrainingDraws(seed=1, fresh_proxy=False))
    plain = data[0]
    moved = [data[(0, epoch)] for epoch in range(1, 9)]
    # Undo each draw's flip and rotation on S1: the same transform must bring back the target too.
    matched = 0
    for sample in moved:
        for flip in (False, True):
            for turns in range(4):
                back = {k: sample[k].numpy() for k in ("s1", "target", "opt_v2")}
                undone = flip_rotate(back, False, -turns)  # undo the rotation, then the flip
                undone = flip_rotate(undone, True, 0) if flip else undone
                if np.array_equal(undone["s1"], plain["s1"].numpy()):
                    np.testing.assert_array_equal(undone["target"], plain["target"].numpy())
                    np.testing.assert_array_equal(undone["opt_v2"], plain["opt_v2"].numpy())
                    matched += 1
    assert matched == len(moved)
    assert len({tuple(s["s1"].flatten()[:8].tolist()) for s in moved}) > 1  # the geometry does vary


def test_crops_are_multiples_of_the_patch_and_inside_the_tile(real_tiles: Path) -> None:
    data = TileDataset(real_tiles, "train", draws=TrainingDraws(seed=0, augment=False, crop_size=32))
    whole = data[0]["target"].numpy()
    for epoch in range(1, 5):
        sample = data[(0, epoch)]
        assert sample["target"].shape == (4, 32, 32) and sample["mask"].shape == (1, 32, 32)
        crop = sample["target"].numpy()
        hits = [
            (r, c)
            for r in range(0, 33)
            for c in range(0, 33)
            if np.array_equal(whole[:, r : r + 32, c : c + 32], crop)
        ]
        assert hits, "the crop is not a window of the tile"


def test_stage2_trust_mask_is_read_and_checked(real_tiles: Path, tmp_path: Path) -> None:
    from axion.errors import DataError

    fixed = TileDataset(real_tiles, "train")
    name = fixed.names[0]
    stage2 = tmp_path / "stage2"
    stage2.mkdir()
    trusted = np.ones((64, 64), np.uint8)
    trusted[:10] = 0
    np.savez(stage2 / f"{name}.npz", opt_v2=fixed[0]["target"].numpy(), opt_v2_mask=trusted)
    sample = TileDataset(real_tiles, "train", stage2_dir=stage2, max_samples=1)[0]
    assert float(sample["opt_v2_mask"][0, :10].sum()) == 0 and float(sample["opt_v2_mask"][0, 10:].min()) == 1
    np.savez(stage2 / f"{name}.npz", opt_v2=fixed[0]["target"].numpy(), opt_v2_mask=trusted[:10])
    with pytest.raises(DataError, match="opt_v2_mask has shape"):
        TileDataset(real_tiles, "train", stage2_dir=stage2, max_samples=1)
