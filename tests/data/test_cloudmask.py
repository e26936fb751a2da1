"""The clear-sky mask ``prepare --s2-cloudy`` writes beside real cloudy opt_v2."""

from __future__ import annotations

import numpy as np
import pytest

from axion.data.cloudmask import CLOUD_B2, clear_sky_mask, grow


def _grow_naive(mask: np.ndarray, radius: int) -> np.ndarray:
    out = np.zeros_like(mask)
    for r, c in zip(*np.nonzero(mask), strict=True):
        out[max(0, r - radius) : r + radius + 1, max(0, c - radius) : c + radius + 1] = True
    return out


@pytest.mark.parametrize("radius", [0, 1, 5])
def test_grow_is_a_square_dilation(radius: int) -> None:
    mask = np.random.default_rng(radius).random((23, 31)) > 0.97
    mask[0, 0] = mask[-1, -1] = True  # corners: the square is cut at the border
    np.testing.assert_array_equal(grow(mask, radius), _grow_naive(mask, radius))


def test_real_cloudy_scene_is_flagged_and_its_clear_image_is_not(
    cloudy_and_clear: tuple[np.ndarray, np.ndarray],
) -> None:
    cloudy, clear = cloudy_and_clear
    flagged = 1.0 - clear_sky_mask(cloudy).mean()
    # About 45 % of the pixels are brighter than the threshold in B2 (thick cloud); grown, more.
    assert (cloudy[0] > CLOUD_B2).mean() > 0.4 and flagged > 0.6
    assert clear_sky_mask(clear).mean() > 0.95  # a few bright surfaces (roofs) read as cloud
    # Where the mask says clear, the cloudy image is close to the clear one; where not, far from it.
    mask = clear_sky_mask(cloudy).astype(bool)
    error = np.abs(cloudy - clear).mean(axis=0)
    assert error[mask].mean() < 0.5 * error[~mask].mean()
