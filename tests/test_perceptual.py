"""LPIPS: offline construction, clear errors without weights, the masked per-sample term."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import Tensor

import axion.perceptual
from axion.config import LossConfig
from axion.errors import WeightsError
from axion.losses import Stage3Loss
from axion.perceptual import (
    TORCHVISION_ALEXNET_FILE,
    PerceptualLoss,
    build_perceptual_loss,
    to_lpips_input,
)

#: LPIPS-alex v0.1 between the two 64 px true-colour crops below (0..3000 -> -1..1),
#: computed once with the lpips package's own non-spatial forward, its AlexNet
#: convolutions assigned directly from the shared weights file.
PINNED_LPIPS = 0.38293
#: Our value averages the upsampled spatial map instead of each layer's map.
PINNED_TOL = 5e-4


def _crop(root: Path, name: str) -> Tensor:
    with rasterio.open(root / "S2L2A" / f"{name}.tif") as src:
        return torch.from_numpy(src.read([2, 3, 4, 8]).astype(np.float32)[None, :, :64, :64])


@pytest.fixture(scope="module")
def perceptual(lpips_weights: Path) -> PerceptualLoss:
    return build_perceptual_loss(lpips_weights)


@pytest.fixture(scope="module")
def pair(terramind_examples: Path) -> tuple[Tensor, Tensor]:
    return _crop(terramind_examples, "38D_378R_2_3"), _crop(terramind_examples, "433D_629L_3_1")


def test_reproduces_pinned_value(perceptual: PerceptualLoss, pair: tuple[Tensor, Tensor]) -> None:
    a, b = pair
    value = perceptual(a, b, torch.ones(1, 1, 64, 64))
    assert value.shape == (1,)
    assert value.item() == pytest.approx(PINNED_LPIPS, abs=PINNED_TOL)
    assert perceptual(a, a, torch.ones(1, 1, 64, 64)).item() == pytest.approx(0.0, abs=1e-6)


def test_input_is_true_colour_from_fixed_range() -> None:
    optical = torch.tensor([0.0, 1500.0, 3000.0, 9000.0]).view(1, 4, 1, 1)  # B2, B3, B4, B8
    rgb = to_lpips_input(optical).flatten().tolist()
    assert rgb == [1.0, 0.0, -1.0]  # R = B4 (3000 -> 1), G = B3, B = B2 (0 -> -1)
    assert to_lpips_input(torch.full((1, 4, 1, 1), 8000.0)).max().item() == 1.0


def test_masked_padding_and_batch_mates(perceptual: PerceptualLoss, pair: tuple[Tensor, Tensor]) -> None:
    a, b = pair
    mask = torch.ones(1, 1, 64, 64)
    mask[..., 40:, :] = 0
    before = perceptual(a, b, mask)
    pad = mask < 0.5
    after = perceptual(torch.where(pad, 9999.0, a), torch.where(pad, -50.0, b), mask)
    torch.testing.assert_close(after, before)
    batched = perceptual(torch.cat([a, b]), torch.cat([b, b]), torch.cat([mask, mask]))
    # Convolution kernels may sum in another order for another batch size: float noise only.
    torch.testing.assert_close(batched[:1], before, rtol=1e-3, atol=1e-5)
    assert batched[1].item() == pytest.approx(0.0, abs=1e-6)


def test_stays_frozen_and_deterministic_in_training_mode(
    perceptual: PerceptualLoss, pair: tuple[Tensor, Tensor]
) -> None:
    a, b = pair
    perceptual.train()
    try:
        assert perceptual.training and not perceptual.net.training
        assert not any(p.requires_grad for p in perceptual.parameters())
        mask = torch.ones(1, 1, 64, 64)
        torch.testing.assert_close(perceptual(a, b, mask), perceptual(a, b, mask), rtol=0, atol=0)
    finally:
        perceptual.eval()


def test_finite_gradients_under_bf16_autocast(
    perceptual: PerceptualLoss, pair: tuple[Tensor, Tensor]
) -> None:
    a, b = pair
    pred = a.to(torch.bfloat16).requires_grad_(True)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        value = perceptual(pred, b.to(torch.bfloat16), torch.ones(1, 1, 64, 64))
    assert value.dtype == torch.float32 and torch.isfinite(value).all()
    value.sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_never_downloads(monkeypatch: pytest.MonkeyPatch, lpips_weights: Path) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("LPIPS tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    assert isinstance(build_perceptual_loss(lpips_weights), PerceptualLoss)


def test_missing_configured_weights(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "alexnet.pth"
    with pytest.raises(WeightsError) as err:
        build_perceptual_loss(missing)
    message = str(err.value)
    assert str(missing) in message
    for hint in ("--lpips-weights", "AXION_LPIPS_WEIGHTS", "--lpips-weight 0"):
        assert hint in message


def test_missing_cache_names_where_it_looked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as err:
        Stage3Loss(LossConfig(lpips_weight=0.1))
    message = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / TORCHVISION_ALEXNET_FILE) in message
    assert "--lpips-weights" in message and "--lpips-weight 0" in message


def test_uses_torchvision_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lpips_weights: Path) -> None:
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copyfile(lpips_weights, cache / TORCHVISION_ALEXNET_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    loss = Stage3Loss(LossConfig(lpips_weight=0.1))
    assert isinstance(loss.perceptual, PerceptualLoss)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"features.0.weight": torch.zeros(64, 3, 11, 11)}, "missing features.0.bias"),
        (None, "cannot read"),
    ],
)
def test_unusable_weights_file(tmp_path: Path, content: dict[str, Tensor] | None, expected: str) -> None:
    path = tmp_path / "weights.pth"
    if content is None:
        path.write_bytes(b"not a checkpoint")
    else:
        torch.save(content, path)
    with pytest.raises(WeightsError, match=expected):
        build_perceptual_loss(path)


def test_weight_zero_never_builds_lpips(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("LPIPS was built although lpips_weight is 0")

    monkeypatch.setattr(axion.perceptual, "build_perceptual_loss", refuse)
    loss = Stage3Loss(LossConfig(lpips_weight=0.0, lpips_weights=tmp_path / "missing.pth"))
    assert loss.perceptual is None


def test_stage3_loss_includes_lpips(
    perceptual: PerceptualLoss, pair: tuple[Tensor, Tensor], terramind_examples: Path
) -> None:
    a, b = pair
    with rasterio.open(terramind_examples / "S1RTC" / "38D_378R_2_3.tif") as src:
        s1 = torch.from_numpy(src.read().astype(np.float32)[None, :, :64, :64])
    mask = torch.ones(1, 1, 64, 64)
    loss = Stage3Loss(LossConfig(), perceptual=perceptual)
    out = loss(b, a, a, s1, mask)
    torch.testing.assert_close(out["lpips"], perceptual(b, a, mask))
    without = Stage3Loss(LossConfig(lpips_weight=0.0))(b, a, a, s1, mask)
    torch.testing.assert_close(out["total"], without["total"] + LossConfig().lpips_weight * out["lpips"])
