"""The proxy's blur (scipy) matches the separable numpy loop it replaced, borders included."""

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


@pytest.mark.parametrize("shape", [(4, 32, 32), (4, 48, 20), (4, 5, 7)])
@pytest.mark.parametrize("sigma", [0.4, 1.5, 2.2, 3.0])
def test_blur_matches_the_numpy_loop(shape: tuple[int, int, int], sigma: float) -> None:
    image = np.random.default_rng(3).uniform(0, 10_000, shape).astype(np.float32)
    np.testing.assert_allclose(gaussian_blur(image, sigma), _reference_blur(image, sigma), rtol=0, atol=1e-9)


def test_proxy_computed_in_place_equals_the_formula() -> None:
    """blur x gain + offset + noise, clipped at 0: the in-place arithmetic changes no value."""
    from axion.bands import OPTICAL_STD
    from axion.data.proxy import BLUR_SIGMA_RANGE, GAIN_SD, NOISE_SD, OFFSET_SD, degrade_to_proxy

    target = np.random.default_rng(3).uniform(-200.0, 9000.0, size=(4, 40, 56)).astype(np.float32)
    target[:, :20, :20] = 0.0  # dark: offset and noise take some pixels below 0, clipped
    rng = np.random.default_rng(11)
    std = np.asarray(OPTICAL_STD[:4], dtype=np.float64)[:, None, None]
    sigma = rng.uniform(*BLUR_SIGMA_RANGE)
    gain = rng.normal(1.0, GAIN_SD, size=(4, 1, 1))
    offset = rng.normal(0.0, OFFSET_SD, size=(4, 1, 1)) * std
    noise = rng.normal(0.0, 1.0, size=target.shape) * (NOISE_SD * std)
    expected = np.clip(gaussian_blur(target, sigma) * gain + offset + noise, 0.0, None).astype(np.float32)
    proxy = degrade_to_proxy(target, 11)
    assert proxy.dtype == np.float32 and (proxy == 0).any()
    np.testing.assert_array_equal(proxy, expected)
