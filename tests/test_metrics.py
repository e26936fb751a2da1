"""SAR agreement and SAR edge correlation on real scenes, and image-quality metrics against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    spectral_angle_mapper,
    structural_similarity_index_measure,
)

from axion.bands import OPTICAL_BANDS
from axion.metrics import (
    PSNR_CAP_DB,
    image_metrics,
    mae,
    psnr,
    rmse,
    sam_deg,
    sar_agreement,
    sar_edge_correlation,
    ssim,
)
from axion.perceptual import build_perceptual_loss

SCENES = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3")


@pytest.fixture(scope="module")
def scenes(terramind_examples: Path) -> tuple[Tensor, Tensor]:
    """All five 224 px scenes: (S2 B2,B3,B4,B8 tile units (5, 4, H, W), S1 VV,VH dB (5, 2, H, W))."""
    s2, s1 = [], []
    for name in SCENES:
        with rasterio.open(terramind_examples / "S2L2A" / f"{name}.tif") as src:
            s2.append(src.read([2, 3, 4, 8]).astype(np.float32))
        with rasterio.open(terramind_examples / "S1RTC" / f"{name}.tif") as src:
            s1.append(src.read().astype(np.float32))
    return torch.from_numpy(np.stack(s2)), torch.from_numpy(np.stack(s1))


def _full(x: Tensor) -> Tensor:
    return torch.ones(x.shape[0], 1, *x.shape[2:])


# --- SAR agreement --------------------------------------------------------------
WINDOW = 64


def _windows(x: Tensor, shift: int = 0) -> Tensor:
    """(5 * 9, C, 64, 64): the 3 x 3 grid of 64 px windows of every scene, moved by ``shift`` px."""
    return torch.cat(
        [
            x[:, :, y + shift : y + shift + WINDOW, c + shift : c + shift + WINDOW]
            for y in (0, 64, 128)
            for c in (0, 64, 128)
        ]
    )


@pytest.fixture(scope="module")
def windows(scenes: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    s2, s1 = scenes
    return _windows(s2), _windows(s1)


def _sar_exaggerated(target: Tensor, s1: Tensor, strength: float) -> Tensor:
    """The ground truth with the SAR's high-pass added to every band: radar edges beyond the truth's."""
    import kornia

    intensity = s1.mean(dim=1, keepdim=True)
    high = intensity - kornia.filters.gaussian_blur2d(intensity, (9, 9), (3.0, 3.0), border_type="reflect")
    high = high / high.std(dim=(2, 3), keepdim=True)
    return target + strength * target.std(dim=(1, 2, 3), keepdim=True) * high


def test_ground_truth_reads_good_and_misregistered_truth_does_not(
    scenes: tuple[Tensor, Tensor], windows: tuple[Tensor, Tensor]
) -> None:
    """The guide's bands: > 0.7 good. The truth co-registered with its SAR is; shifted 8 px, it is not."""
    target, s1 = windows
    truth = sar_agreement(target, target, s1, _full(s1))
    assert truth.median() >= 0.7, truth
    shifted = sar_agreement(_windows(scenes[0], shift=8), target, s1, _full(s1))
    assert shifted.median() <= 0.6, shifted
    assert (shifted < truth).float().mean() > 0.9


def test_noise_and_constant_score_at_most_chance(windows: tuple[Tensor, Tensor]) -> None:
    target, s1 = windows
    noise = 1500.0 + 500.0 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    assert (sar_agreement(noise, target, s1, _full(s1)) <= 0.5).all()
    flat = torch.full_like(target, 1200.0)
    assert (sar_agreement(flat, target, s1, _full(s1)) <= 0.5).all()


def test_noise_below_blurred_truth_below_truth(windows: tuple[Tensor, Tensor]) -> None:
    import kornia

    target, s1 = windows
    noise = 1500.0 + 500.0 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    blurred = kornia.filters.gaussian_blur2d(target, (9, 9), (2.0, 2.0), border_type="reflect")
    scores = [sar_agreement(x, target, s1, _full(s1)).median() for x in (noise, blurred, target)]
    assert scores[0] < scores[1] < scores[2], scores


def test_exaggerated_sar_edges_score_below_the_truth(windows: tuple[Tensor, Tensor]) -> None:
    """More radar structure than the real scene has is not better agreement (the old reading rose)."""
    target, s1 = windows
    truth = sar_agreement(target, target, s1, _full(s1))
    exaggerated = _sar_exaggerated(target, s1, 0.5)
    assert (sar_agreement(exaggerated, target, s1, _full(s1)) < truth).all()
    # ... although it does follow the radar more closely than the truth does.
    assert (
        sar_edge_correlation(exaggerated, s1, _full(s1)).median()
        > sar_edge_correlation(target, s1, _full(s1)).median()
    )


def test_always_in_unit_interval(scenes: tuple[Tensor, Tensor]) -> None:
    s2, s1 = (x[..., :96, :96] for x in scenes)
    inverse = (-s1[:, [0, 1, 0, 1]] + 30.0) * 100.0
    spiky = s2.clone()
    spiky[..., ::7, ::5] = 1e5
    for optical in (s2, inverse, spiky, torch.zeros_like(s2)):
        value = sar_agreement(optical, s2, s1, _full(s1))
        assert ((value >= 0) & (value <= 1)).all() and not torch.isnan(value).any()
    empty = sar_agreement(s2, s2, s1, torch.zeros_like(_full(s1)))
    assert torch.equal(empty, torch.zeros(len(SCENES)))


def test_independent_of_batch_mates_and_padding(scenes: tuple[Tensor, Tensor]) -> None:
    s2, s1 = (x[..., :96, :96] for x in scenes)
    pred = s2 + 200.0 * torch.randn(s2.shape, generator=torch.Generator().manual_seed(2))
    mask = _full(s1)
    mask[..., 70:, :] = 0
    together = sar_agreement(pred, s2, s1, mask)
    for i in range(len(SCENES)):
        torch.testing.assert_close(
            sar_agreement(pred[i : i + 1], s2[i : i + 1], s1[i : i + 1], mask[i : i + 1]), together[i : i + 1]
        )
    pad = mask < 0.5
    torch.testing.assert_close(
        sar_agreement(
            torch.where(pad, 0.0, pred), torch.where(pad, 9.0, s2), torch.where(pad, 40.0, s1), mask
        ),
        together,
    )


def test_sar_edge_correlation_readings(scenes: tuple[Tensor, Tensor]) -> None:
    """Without a ground truth: copied SAR ~ 1, noise ~ 0, a constant image exactly 0, real S2 between."""
    s2, s1 = scenes
    copy = (s1[:, [0, 1, 0, 1]] + 30.0) * 100.0
    assert (sar_edge_correlation(copy, s1, _full(s1)) >= 0.98).all()
    noise = 1500.0 + 500.0 * torch.randn(s2.shape, generator=torch.Generator().manual_seed(0))
    assert (sar_edge_correlation(noise, s1, _full(s1)).abs() < 0.1).all()
    assert torch.equal(
        sar_edge_correlation(torch.full_like(s2, 900.0), s1, _full(s1)), torch.zeros(len(SCENES))
    )
    real = sar_edge_correlation(s2, s1, _full(s1))
    assert (real > 0.05).all() and (real < 0.9).all(), real


# --- image quality: 2x2 images computed by hand ---------------------------------
@pytest.fixture
def tiny() -> tuple[Tensor, Tensor, Tensor]:
    """Target 0.1 reflectance everywhere; the prediction has B2 = 0.3 at one pixel of four."""
    target = torch.full((1, 4, 2, 2), 1000.0)
    pred = target.clone()
    pred[0, 0, 0, 0] = 3000.0
    return pred, target, torch.ones(1, 1, 2, 2)


def test_hand_computed_errors(tiny: tuple[Tensor, Tensor, Tensor]) -> None:
    pred, target, mask = tiny
    # One of 16 values is off by 0.2.
    assert mae(pred, target, mask).item() == pytest.approx(0.2 / 16)
    assert rmse(pred, target, mask).item() == pytest.approx(math.sqrt(0.04 / 16))
    assert psnr(pred, target, mask).item() == pytest.approx(10 * math.log10(16 / 0.04), rel=1e-6)
    # (0.3, 0.1, 0.1, 0.1) vs (0.1, 0.1, 0.1, 0.1): cos = 0.06 / (sqrt(0.12) * 0.2) = sqrt(3)/2 -> 30 degrees.
    assert sam_deg(pred, target, mask).item() == pytest.approx(30.0 / 4, rel=1e-6)


def test_mask_and_clamp(tiny: tuple[Tensor, Tensor, Tensor]) -> None:
    pred, target, mask = tiny
    mask[0, 0, 0, 0] = 0  # hide the only wrong pixel
    assert mae(pred, target, mask).item() == 0.0
    assert sam_deg(pred, target, mask).item() == pytest.approx(0.0, abs=1e-9)
    assert psnr(pred, target, mask).item() == pytest.approx(PSNR_CAP_DB)
    # Reflectance is clamped to [0, 1]: 1.2 and 1.0 are the same.
    full = torch.ones(1, 1, 2, 2)
    assert mae(torch.full((1, 4, 2, 2), 12000.0), torch.full((1, 4, 2, 2), 10000.0), full).item() == 0.0


def test_per_band_keys_and_values() -> None:
    target = torch.full((2, 4, 16, 16), 1000.0)
    pred = target.clone()
    pred[0, 0, :8] = 3000.0  # sample 0: half the B2 pixels off by 0.2
    out = image_metrics(pred, target, torch.ones(2, 1, 16, 16))
    per_band = {f"{m}_{b}" for m in ("psnr", "ssim", "mae", "rmse") for b in OPTICAL_BANDS}
    assert set(out) == {"psnr", "ssim", "sam_deg", "mae", "rmse"} | per_band
    assert all(v.shape == (2,) for v in out.values())
    assert out["mae_B2"][0].item() == pytest.approx(0.1)
    assert out["rmse_B2"][0].item() == pytest.approx(math.sqrt(0.02))
    assert out["psnr_B2"][0].item() == pytest.approx(10 * math.log10(1 / 0.02), rel=1e-6)
    assert out["mae_B3"][0].item() == 0.0 and out["psnr_B3"][0].item() == pytest.approx(PSNR_CAP_DB)
    assert out["mae"][0].item() == pytest.approx(0.1 / 4)
    assert out["ssim"][1].item() == pytest.approx(1.0) and out["mae"][1].item() == 0.0


# --- image quality: agreement with torchmetrics on real crops --------------------
@pytest.fixture(scope="module")
def real_pair(scenes: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    s2, _ = scenes
    target = s2[:2, :, :64, :64]
    noisy = target + 150.0 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    return noisy, target


def test_full_mask_matches_torchmetrics(real_pair: tuple[Tensor, Tensor]) -> None:
    pred, target = real_pair
    p, t = (pred.double() / 1e4).clamp(0, 1), (target.double() / 1e4).clamp(0, 1)
    mask = _full(pred)
    for i in range(2):
        expected = peak_signal_noise_ratio(p[i : i + 1], t[i : i + 1], data_range=1.0)
        assert psnr(pred, target, mask)[i].item() == pytest.approx(expected.item(), rel=1e-5)
    sam_ref = torch.rad2deg(spectral_angle_mapper(p, t, reduction="none").mean(dim=(1, 2)))
    torch.testing.assert_close(sam_deg(pred, target, mask), sam_ref.float(), rtol=1e-4, atol=1e-4)
    ssim_ref = structural_similarity_index_measure(p, t, data_range=1.0, reduction="none")
    torch.testing.assert_close(ssim(pred, target, mask), ssim_ref.float(), rtol=1e-5, atol=1e-6)


def test_image_metrics_ignore_padding_and_batch_mates(real_pair: tuple[Tensor, Tensor]) -> None:
    pred, target = real_pair
    mask = _full(pred)
    mask[..., :, 50:] = 0
    before = image_metrics(pred, target, mask)
    pad = mask < 0.5
    after = image_metrics(torch.where(pad, 7000.0, pred), torch.where(pad, 0.0, target), mask)
    alone = image_metrics(pred[1:], target[1:], mask[1:])
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, msg=key)
        torch.testing.assert_close(alone[key], value[1:], msg=key)


def test_image_metrics_lpips(real_pair: tuple[Tensor, Tensor], lpips_weights: Path) -> None:
    pred, target = real_pair
    perceptual = build_perceptual_loss(lpips_weights)
    out = image_metrics(pred, target, _full(pred), lpips=perceptual)
    torch.testing.assert_close(out["lpips"], perceptual(pred, target, _full(pred)))
    assert (out["lpips"] > 0).all()
