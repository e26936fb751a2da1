"""The five loss terms and Stage3Loss, on real S1/S2 crops from terramind-examples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import kornia
import numpy as np
import pytest
import rasterio
import torch
from torch import Tensor

from axion.config import LossConfig
from axion.losses import (
    LOSS_KEYS,
    Stage3Loss,
    cycle_loss,
    identity_loss,
    sar_consistency_loss,
    spectral_loss,
)
from axion.structure import FULL_CONFIDENCE_DB, NOISE_FLOOR_DB, masked_smooth, sar_confidence, sar_intensity

CROP = 64
SCENES = ("38D_378R_2_3", "433D_629L_3_1", "637U_59R_1_3")


def _crop(root: Path, name: str) -> tuple[Tensor, Tensor]:
    """(S2 B2,B3,B4,B8 tile units, S1 VV,VH dB), each (1, C, 64, 64) float32."""
    with rasterio.open(root / "S2L2A" / f"{name}.tif") as src:
        s2 = src.read([2, 3, 4, 8]).astype(np.float32)
    with rasterio.open(root / "S1RTC" / f"{name}.tif") as src:
        s1 = src.read().astype(np.float32)
    return torch.from_numpy(s2[None, :, :CROP, :CROP]), torch.from_numpy(s1[None, :, :CROP, :CROP])


@pytest.fixture(scope="module")
def batch(terramind_examples: Path) -> dict[str, Tensor]:
    """Three real crops: target (ground truth), opt_v2 (target + fixed noise), s1, a padded mask."""
    pairs = [_crop(terramind_examples, name) for name in SCENES]
    target = torch.cat([p[0] for p in pairs])
    s1 = torch.cat([p[1] for p in pairs])
    gen = torch.Generator().manual_seed(0)
    opt_v2 = target + 200.0 * torch.randn(target.shape, generator=gen)
    mask = torch.ones(len(SCENES), 1, CROP, CROP)
    mask[:, :, 48:, :] = 0  # bottom rows are padding
    mask[:, :, :, 56:] = 0  # so are the right-hand columns
    return {"target": target, "opt_v2": opt_v2, "s1": s1, "mask": mask}


def _sar_sharpened(target: Tensor, s1: Tensor, strength: float) -> Tensor:
    """The ground truth with the SAR's fine structure (its high-pass) added to every band."""
    intensity = masked_smooth(sar_intensity(s1), torch.ones_like(s1[:, :1]) > 0.5)
    high = intensity - kornia.filters.gaussian_blur2d(intensity, (9, 9), (3.0, 3.0), border_type="reflect")
    high = high / high.std(dim=(2, 3), keepdim=True)
    return target + strength * target.std(dim=(1, 2, 3), keepdim=True) * high


def _blurred(target: Tensor, sigma: float) -> Tensor:
    return kornia.filters.gaussian_blur2d(target, (9, 9), (sigma, sigma), border_type="reflect")


TERMS: dict[str, Callable[[dict[str, Tensor], Tensor], Tensor]] = {
    "sar": lambda b, x: sar_consistency_loss(x, b["target"], b["s1"], b["mask"]),
    "cycle": lambda b, x: cycle_loss(x, b["opt_v2"], b["target"], b["mask"]),
    "identity": lambda b, x: identity_loss(x, b["opt_v2"], b["target"], b["s1"], b["mask"]),
    "spectral": lambda b, x: spectral_loss(x, b["target"], b["mask"]),
}


def test_spectral_and_cycle_match_hand_values(batch: dict[str, Tensor]) -> None:
    target, mask = batch["target"], batch["mask"]
    shifted = target + 100.0  # 0.01 reflectance in every band and pixel
    torch.testing.assert_close(spectral_loss(shifted, target, mask), torch.full((3,), 0.01))
    assert spectral_loss(target, target, mask).abs().max() == 0
    # Stage 2 right (opt_v2 = target): every change from it is unjustified.
    torch.testing.assert_close(cycle_loss(shifted, target, target, mask), torch.full((3,), 0.01))
    # Stage 2 off by 0.01: a move to the truth is free, and so is any change that ends nearer the truth.
    opt_v2 = target - 100.0
    assert cycle_loss(target, opt_v2, target, mask).abs().max() == 0
    assert cycle_loss(target - 50.0, opt_v2, target, mask).abs().max() == 0
    assert cycle_loss(target + 50.0, opt_v2, target, mask).abs().max() == 0
    # An overshoot that ends further from the truth than Stage 2 costs what it adds: 0.015 - 0.01.
    torch.testing.assert_close(cycle_loss(target + 150.0, opt_v2, target, mask), torch.full((3,), 0.005))
    # So does the wrong way: 0.03 - 0.01.
    torch.testing.assert_close(cycle_loss(target - 300.0, opt_v2, target, mask), torch.full((3,), 0.02))


def _best_flat_prediction(truth: Tensor, opt_v2: Tensor, candidates: Tensor) -> float:
    """The constant prediction among ``candidates`` that minimises spectral + 0.5 cycle."""
    mask = torch.ones_like(truth[:, :1])

    def total(value: float) -> float:
        pred = torch.full_like(truth, value)
        return float(spectral_loss(pred, truth, mask) + 0.5 * cycle_loss(pred, opt_v2, truth, mask))

    return float(candidates[int(torch.tensor([total(float(c)) for c in candidates]).argmin())])


def test_cycle_does_not_pull_an_uncertain_prediction_towards_a_wrong_stage2() -> None:
    """When Stage 2 is far off and the truth uncertain, the best prediction under spectral + cycle
    is the spectral one (the truth's median): cycle adds nothing near it."""
    gen = torch.Generator().manual_seed(0)
    truth = 5000.0 + 300.0 * torch.randn(1, 4, 64, 64, generator=gen)  # one scene, spread of truths
    opt_v2 = torch.full_like(truth, 2000.0)  # Stage 2 0.3 reflectance off
    best = _best_flat_prediction(truth, opt_v2, torch.linspace(4000.0, 6000.0, 201))
    assert abs(best - float(truth.median())) <= 20.0


def test_cycle_does_not_pull_towards_stage2_where_fine_detail_is_unpredictable() -> None:
    """Stage 2 with a bias and the truth with fine detail nobody can predict: the best flat
    prediction under spectral + cycle is still the truth's median. Charged per pixel instead of per
    neighbourhood, every guess that misses detail Stage 2 happened to match would cost, and the
    best prediction would move about 60 (0.006 reflectance) towards opt_v2."""
    gen = torch.Generator().manual_seed(1)
    truth = 5000.0 + 300.0 * torch.randn(1, 4, 64, 64, generator=gen)
    opt_v2 = torch.full_like(truth, float(truth.median()) + 200.0)
    best = _best_flat_prediction(truth, opt_v2, torch.linspace(4700.0, 5400.0, 141))
    assert abs(best - float(truth.median())) <= 10.0


def test_cycle_charges_a_neighbourhood_made_worse(batch: dict[str, Tensor]) -> None:
    """A change that leaves one 16 px block 0.02 further from the truth than Stage 2 costs there."""
    target, mask = batch["target"], batch["mask"]
    opt_v2 = target + 100.0
    worse = opt_v2.clone()
    worse[:, :, 8:24, 8:24] += 200.0
    cost = cycle_loss(worse, opt_v2, target, mask)
    assert (cost > 0.001).all() and (cycle_loss(opt_v2, opt_v2, target, mask) == 0).all()


def test_cycle_and_identity_never_pull_away_from_the_truth(batch: dict[str, Tensor]) -> None:
    """At the ground truth both terms are 0 and have no gradient, whatever Stage 2's errors."""
    for name in ("cycle", "identity"):
        pred = batch["target"].clone().requires_grad_(True)
        value = TERMS[name](batch, pred)
        assert value.abs().max() == 0, name
        value.sum().backward()
        assert pred.grad is not None and pred.grad.abs().max() == 0, name


def test_sar_confidence_ramp() -> None:
    mask = torch.ones(1, 1, 16, 16)
    for vv, expected in [
        (NOISE_FLOOR_DB - 5, 0.0),
        ((NOISE_FLOOR_DB + FULL_CONFIDENCE_DB) / 2, 0.5),
        (-5.0, 1.0),
    ]:
        s1 = torch.stack([torch.full((16, 16), vv), torch.full((16, 16), vv - 6)])[None]
        torch.testing.assert_close(sar_confidence(s1, mask > 0.5), torch.full((1, 1, 16, 16), expected))


def test_identity_only_counts_low_confidence_pixels() -> None:
    size = 32
    s1 = torch.full((1, 2, size, size), -10.0)
    s1[:, :, :, : size // 2] = -30.0  # left half below the noise floor: no confidence
    mask = torch.ones(1, 1, size, size)
    opt_v2 = torch.full((1, 4, size, size), 1000.0)
    changed_right = opt_v2.clone()
    changed_right[..., size // 2 + 4 :] += 500.0  # confident region, clear of the smoothing ramp
    # Stage 2 is right here (target = opt_v2): every change is unjustified.
    assert identity_loss(changed_right, opt_v2, opt_v2, s1, mask).item() == 0.0
    changed_all = opt_v2 + 500.0
    # A step back of 0.05 reflectance everywhere, counted at the low-confidence share of the tile
    # (the left half and the smoothing ramp beside it): a mean over every valid pixel.
    low = 1.0 - sar_confidence(s1, mask > 0.5)
    assert 0.5 <= low.mean().item() < 0.6
    torch.testing.assert_close(identity_loss(changed_all, opt_v2, opt_v2, s1, mask), 0.05 * low.mean()[None])
    confident = torch.full((1, 2, size, size), -10.0)
    assert identity_loss(changed_all, opt_v2, opt_v2, confident, mask).item() == 0.0
    # Where Stage 2 was wrong by as much, the same change is a correction and free.
    assert identity_loss(changed_all, opt_v2, changed_all, s1, mask).item() == 0.0


def test_identity_weighs_a_pixel_at_most_as_the_cycle_term_does(batch: dict[str, Tensor]) -> None:
    """A small low-confidence patch is not magnified: identity <= cycle for any prediction."""
    size = 32
    s1 = torch.full((1, 2, size, size), -10.0)
    s1[:, :, :8, :8] = -30.0  # one patch below the noise floor, a sixteenth of the tile
    mask = torch.ones(1, 1, size, size)
    opt_v2 = torch.full((1, 4, size, size), 1000.0)
    stray = opt_v2.clone()
    stray[:, :, :8, :8] += 500.0  # Stage 2 was right: an unjustified change, only in the patch
    cycle = cycle_loss(stray, opt_v2, opt_v2, mask)
    identity = identity_loss(stray, opt_v2, opt_v2, s1, mask)
    assert 0 < identity.item() <= cycle.item()
    for scale in (0.5, 2.0):  # and on real tiles, a prediction that overshoots or falls short
        pred = batch["opt_v2"] + scale * (batch["opt_v2"] - batch["target"])
        assert bool((TERMS["identity"](batch, pred) <= TERMS["cycle"](batch, pred) + 1e-7).all())


def test_sar_consistency_is_smallest_at_the_ground_truth(batch: dict[str, Tensor]) -> None:
    """0 at the truth; more SAR structure than the truth has costs, and so does less."""
    target, s1, mask = batch["target"], batch["s1"], batch["mask"]
    at_truth = sar_consistency_loss(target, target, s1, mask)
    assert at_truth.abs().max() < 1e-6, at_truth
    for strength in (0.1, 0.3, 1.0):
        sharpened = sar_consistency_loss(_sar_sharpened(target, s1, strength), target, s1, mask)
        assert (sharpened > at_truth + 1e-4).all(), (strength, sharpened)
    for sigma in (1.0, 2.0):
        blurred = sar_consistency_loss(_blurred(target, sigma), target, s1, mask)
        assert (blurred > at_truth + 1e-4).all(), (sigma, blurred)
    # Copying the SAR in outright is far from the truth too.
    copy = (s1[:, [0, 1, 0, 1]] + 30.0) * 100.0
    assert (
        sar_consistency_loss(copy, target, s1, mask) > sar_consistency_loss(target + 50.0, target, s1, mask)
    ).all()


def test_sar_consistency_grows_with_sar_exaggeration(batch: dict[str, Tensor]) -> None:
    target, s1, mask = batch["target"], batch["s1"], batch["mask"]
    values = [sar_consistency_loss(_sar_sharpened(target, s1, k), target, s1, mask) for k in (0.1, 0.3, 1.0)]
    for lower, higher in zip(values, values[1:], strict=False):
        assert (higher > lower).all(), values


def test_sar_consistency_prefers_no_structure_to_the_wrong_structure(batch: dict[str, Tensor]) -> None:
    """Detail of the truth's strength but the opposite sign costs more than leaving the detail out:
    under uncertainty the term, like the spectral L1, does not pay for invented structure."""
    target, s1, mask = batch["target"], batch["s1"], batch["mask"]
    smooth = _blurred(target, 3.0)
    inverted = 2.0 * smooth - target  # the truth's fine structure, every edge turned round
    assert (
        sar_consistency_loss(inverted, target, s1, mask)
        > 1.5 * sar_consistency_loss(smooth, target, s1, mask)
    ).all()


def test_terms_are_zero_at_their_optimum(batch: dict[str, Tensor]) -> None:
    for name in TERMS:
        assert TERMS[name](batch, batch["target"]).abs().max() < 1e-6, name
    assert TERMS["cycle"](batch, batch["opt_v2"]).abs().max() == 0
    assert TERMS["identity"](batch, batch["opt_v2"]).abs().max() == 0


@pytest.mark.parametrize("term", sorted(TERMS))
def test_padded_pixels_change_nothing(batch: dict[str, Tensor], term: str) -> None:
    pred = batch["target"] + 50.0
    before = TERMS[term](batch, pred)
    pad = batch["mask"] < 0.5
    garbage = torch.randn(pred.shape, generator=torch.Generator().manual_seed(1)) * 1e4
    scrambled = {key: torch.where(pad, garbage[:, : value.shape[1]], value) for key, value in batch.items()}
    scrambled["mask"] = batch["mask"]
    after = TERMS[term](scrambled, torch.where(pad, -garbage, pred))
    torch.testing.assert_close(after, before)


@pytest.mark.parametrize("term", sorted(TERMS))
def test_sample_independent_of_batch_mates(batch: dict[str, Tensor], term: str) -> None:
    pred = batch["target"] + 30.0 * torch.randn(
        batch["target"].shape, generator=torch.Generator().manual_seed(2)
    )
    together = TERMS[term](batch, pred)
    for i in range(len(SCENES)):
        alone = TERMS[term]({k: v[i : i + 1] for k, v in batch.items()}, pred[i : i + 1])
        torch.testing.assert_close(alone, together[i : i + 1], rtol=1e-5, atol=1e-7)


def test_empty_mask_gives_zero_not_nan(batch: dict[str, Tensor]) -> None:
    empty = {**batch, "mask": torch.zeros_like(batch["mask"])}
    for name, fn in TERMS.items():
        value = fn(empty, batch["target"] + 10.0)
        assert torch.equal(value, torch.zeros(len(SCENES))), name


def _loss_config(**overrides: object) -> LossConfig:
    return LossConfig(lpips_weight=0.0).model_copy(update=overrides)


def test_stage3_loss_keys_shapes_and_total(batch: dict[str, Tensor]) -> None:
    loss = Stage3Loss(_loss_config())
    assert loss.perceptual is None
    pred = batch["target"] + 40.0
    out = loss(pred, batch["opt_v2"], batch["target"], batch["s1"], batch["mask"])
    assert tuple(out) == LOSS_KEYS
    for key, value in out.items():
        assert value.shape == (len(SCENES),) and value.dtype == torch.float32, key
    assert torch.equal(out["lpips"], torch.zeros(len(SCENES)))
    cfg = LossConfig()
    expected = (
        cfg.sar_weight * out["sar"]
        + cfg.cycle_weight * out["cycle"]
        + cfg.identity_weight * out["identity"]
        + cfg.spectral_weight * out["spectral"]
    )
    torch.testing.assert_close(out["total"], expected)
    torch.testing.assert_close(out["spectral"], spectral_loss(pred, batch["target"], batch["mask"]))


def test_stage3_loss_total_follows_weights(batch: dict[str, Tensor]) -> None:
    args = (batch["target"] + 40.0, batch["opt_v2"], batch["target"], batch["s1"], batch["mask"])
    only_cycle = Stage3Loss(
        _loss_config(sar_weight=0.0, identity_weight=0.0, spectral_weight=0.0, cycle_weight=2.0)
    )
    out = only_cycle(*args)
    torch.testing.assert_close(out["total"], 2.0 * out["cycle"])


def test_warmup_scale_weighs_every_term_but_spectral(batch: dict[str, Tensor]) -> None:
    """The loss warm-up scales SAR, cycle and identity (and LPIPS) in the total, never spectral."""
    args = (batch["target"] + 2000.0, batch["opt_v2"], batch["target"], batch["s1"], batch["mask"])
    cfg = _loss_config()
    loss = Stage3Loss(cfg)
    full, half, none = (loss(*args, warmup_scale=scale) for scale in (1.0, 0.5, 0.0))
    kept = cfg.spectral_weight * full["spectral"]
    ramped = cfg.sar_weight * full["sar"] + cfg.cycle_weight * full["cycle"]
    ramped = ramped + cfg.identity_weight * full["identity"]
    assert bool((ramped > 0).all())  # the ramped terms are not zero here, so the scale is seen
    torch.testing.assert_close(none["total"], kept)
    torch.testing.assert_close(half["total"], kept + 0.5 * ramped)
    torch.testing.assert_close(full["total"], kept + ramped)
    for key in ("sar", "cycle", "identity", "spectral"):
        torch.testing.assert_close(none[key], full[key])  # the terms themselves are logged unscaled


def _check_finite_under_autocast(batch: dict[str, Tensor], device: str, dtype: torch.dtype) -> None:
    loss = Stage3Loss(_loss_config()).to(device)
    pred = (batch["target"] + 40.0).to(device=device, dtype=dtype).requires_grad_(True)
    flat = torch.full_like(pred, 1234.0).requires_grad_(True)  # no gradients at all: sqrt(0) territory
    inputs = {k: v.to(device=device, dtype=dtype) for k, v in batch.items()}
    for p in (pred, flat):
        with torch.autocast(device_type=device, dtype=dtype):
            out = loss(p, inputs["opt_v2"], inputs["target"], inputs["s1"], inputs["mask"])
        for key, value in out.items():
            assert value.dtype == torch.float32 and torch.isfinite(value).all(), (key, value)
        out["total"].sum().backward()
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


def test_finite_with_finite_gradients_under_bf16_autocast(batch: dict[str, Tensor]) -> None:
    _check_finite_under_autocast(batch, "cpu", torch.bfloat16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast needs CUDA")
def test_finite_with_finite_gradients_under_fp16_autocast(batch: dict[str, Tensor]) -> None:
    _check_finite_under_autocast(batch, "cuda", torch.float16)


def test_shape_mismatch_is_refused(batch: dict[str, Tensor]) -> None:
    with pytest.raises(ValueError, match="s1 must be"):
        sar_consistency_loss(batch["target"], batch["target"], batch["s1"][:, :1], batch["mask"])
    with pytest.raises(ValueError, match="mask must be"):
        spectral_loss(batch["target"], batch["target"], batch["mask"][:, 0])


def test_lpips_term_guards_against_a_perceptual_step_back(
    batch: dict[str, Tensor], lpips_weights: Path
) -> None:
    """0 at the truth and at Stage 2 itself; positive only when opt_v3 looks further from the truth."""
    loss = Stage3Loss(LossConfig(lpips_weights=lpips_weights))
    target, opt_v2, s1, mask = batch["target"], batch["opt_v2"], batch["s1"], batch["mask"]
    for pred in (target, opt_v2):
        assert loss(pred, opt_v2, target, s1, mask)["lpips"].abs().max() < 1e-6
    worse = opt_v2 + 600.0 * torch.randn(opt_v2.shape, generator=torch.Generator().manual_seed(4))
    step_back = loss(worse, opt_v2, target, s1, mask)["lpips"]
    assert loss.perceptual is not None
    expected = loss.perceptual(worse, target, mask) - loss.perceptual(opt_v2, target, mask)
    assert (expected > 0).all()
    torch.testing.assert_close(step_back, expected)
