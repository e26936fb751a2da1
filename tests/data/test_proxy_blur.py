"""The proxy's blur (OpenCV, float32) matches the separable numpy loop and scipy's float64 blur it replaced,
borders included; the float32 proxy is the same formula in float64, to float32 rounding; its noise
is independent standard normal values, the same for a seed in every process."""

from __future__ import annotations

import numpy as np
import pytest

from axion.data.proxy import gaussian_blur


def _reference_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """The former hand-written blur: a normalised kernel of radius ceil(3 sigma), reflect padding."""
    radius = max(1, int(np.ceil(3.0 * sigma)))
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    out = image.astype(np.float64)
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        acc = np.zeros_like(out)
        for offset, weight in enumerate(kernel):
            acc += weight * np.take(padded, np.arange(offset, offset + out.shape[axis]), axis=axis)
        out = acc
    return out


def _float64_proxy(target: np.ndarray, seed: int) -> np.ndarray:
    """The proxy's formula in float64 with scipy's blur: the seed draws sigma, gain, offset and
    where in the noise bank the tile's noise starts."""
    from scipy import ndimage

    from axion.bands import OPTICAL_STD
    from axion.data.proxy import BLUR_SIGMA_RANGE, GAIN_SD, NOISE_BANK_SIZE, NOISE_SD, OFFSET_SD, noise_bank

    rng = np.random.default_rng(seed)
    std = np.asarray(OPTICAL_STD[:4], dtype=np.float64)[:, None, None]
    sigma = rng.uniform(*BLUR_SIGMA_RANGE)
    gain = rng.normal(1.0, GAIN_SD, size=(4, 1, 1))
    offset = rng.normal(0.0, OFFSET_SD, size=(4, 1, 1)) * std
    start = rng.integers(0, NOISE_BANK_SIZE - target.size + 1)
    noise = noise_bank()[start : start + target.size].reshape(target.shape) * (NOISE_SD * std)
    radius = max(1, int(np.ceil(3.0 * sigma)))
    blurred = ndimage.gaussian_filter(
        target.astype(np.float64), sigma, radius=radius, mode="mirror", axes=(1, 2)
    )
    return np.clip(blurred * gain + offset + noise, 0.0, None).astype(np.float32)


#: float32 blurring: a 19-tap kernel in two passes, a few float32 roundings (6e-8) of the values each.
_RELATIVE = 1e-6


@pytest.mark.parametrize("shape", [(4, 32, 32), (4, 48, 20), (4, 5, 7), (4, 1, 9)])
@pytest.mark.parametrize("sigma", [0.4, 1.5, 2.2, 3.0])
def test_blur_matches_the_numpy_loop(shape: tuple[int, int, int], sigma: float) -> None:
    image = np.random.default_rng(3).uniform(0, 10_000, shape).astype(np.float32)
    blurred = gaussian_blur(image, sigma)
    assert blurred.dtype == np.float32
    np.testing.assert_allclose(blurred, _reference_blur(image, sigma), rtol=0, atol=_RELATIVE * 10_000)


def test_blur_scales_and_shifts_each_channel_in_the_same_pass() -> None:
    image = np.random.default_rng(4).uniform(0, 10_000, (4, 30, 40)).astype(np.float32)
    gain, offset = np.array([0.9, 1.0, 1.1, 1.2]), np.array([-50.0, 0.0, 25.0, 100.0])
    expected = _reference_blur(image, 2.0) * gain[:, None, None] + offset[:, None, None]
    np.testing.assert_allclose(
        gaussian_blur(image, 2.0, gain, offset), expected, rtol=0, atol=_RELATIVE * 12_000
    )


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_the_float32_proxy_is_its_formula_in_float64(seed: int) -> None:
    """Same draws from the same seed, same formula (blur x gain + offset + noise, clipped at 0)."""
    from axion.data.proxy import degrade_to_proxy

    target = np.random.default_rng(3).uniform(-200.0, 9000.0, size=(4, 64, 80)).astype(np.float32)
    target[:, :20, :20] = 0.0  # dark: offset and noise take some pixels below 0, clipped
    proxy = degrade_to_proxy(target, seed)
    expected = _float64_proxy(target, seed)
    assert proxy.dtype == np.float32 and (proxy == 0).any() and (expected == 0).any()
    np.testing.assert_allclose(proxy, expected, rtol=0, atol=_RELATIVE * 10_000)
    assert np.abs(proxy - _float64_proxy(target, seed + 1)).max() > 1.0  # another seed: another proxy


def test_the_noise_bank_is_standard_normal_and_the_same_in_every_process() -> None:
    import subprocess
    import sys

    from axion.data.proxy import NOISE_BANK_SIZE, noise_bank

    bank = noise_bank()
    assert bank.shape == (NOISE_BANK_SIZE,) and bank.dtype == np.float32 and not bank.flags.writeable
    assert abs(float(bank.mean())) < 0.01 and abs(float(bank.std()) - 1.0) < 0.01
    # neighbouring values are independent: no correlation at a lag of one pixel or one 64 px row
    for lag in (1, 64):
        assert abs(float(np.corrcoef(bank[:-lag], bank[lag:])[0, 1])) < 0.01
    code = "from axion.data.proxy import noise_bank; print(repr(noise_bank()[:4].tolist()))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == repr(bank[:4].tolist())


def test_each_seed_takes_its_own_noise_and_a_tile_larger_than_the_bank_draws_its_own() -> None:
    from axion.data.proxy import NOISE_BANK_SIZE, standard_noise

    first = standard_noise(np.random.default_rng(1), (4, 64, 64))
    assert np.array_equal(first, standard_noise(np.random.default_rng(1), (4, 64, 64)))
    assert not np.allclose(first, standard_noise(np.random.default_rng(2), (4, 64, 64)))
    side = int(np.sqrt(NOISE_BANK_SIZE // 4)) + 1  # one row more than the bank holds
    large = standard_noise(np.random.default_rng(3), (4, side, side))
    assert large.shape == (4, side, side) and abs(float(large.std()) - 1.0) < 0.01
