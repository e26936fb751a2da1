"""The fill the network sees in place of cloudy opt_v2 pixels (``axion.cloudfill``)."""

from __future__ import annotations

import numpy as np
import torch

from axion.cloudfill import fill_cloudy_arrays, fill_masked, network_opt_v2
from axion.data.cloudmask import clear_sky_mask


def test_known_pixels_are_kept_and_holes_interpolated_smoothly() -> None:
    rows, cols = torch.meshgrid(torch.arange(40.0), torch.arange(56.0), indexing="ij")
    ramp = (100.0 + 3.0 * rows + 2.0 * cols).expand(2, 4, 40, 56).clone()
    known = torch.ones(2, 1, 40, 56)
    known[:, :, 10:22, 15:35] = 0  # a 12 x 20 px hole
    x = torch.where(known > 0, ramp, torch.full_like(ramp, 5000.0))  # a bright "cloud" in it
    filled = fill_masked(x, known)
    assert torch.equal(filled[known.expand_as(x) > 0], x[known.expand_as(x) > 0])
    hole = known.expand_as(x) == 0
    # The cloud is gone: every filled value lies within the known values' range ...
    assert float(filled[hole].min()) >= float(ramp.min()) and float(filled[hole].max()) <= float(ramp.max())
    # ... and close to the plane the known pixels lie on (the cloud's 5000 is 4800+ away).
    assert float((filled - ramp)[hole].abs().mean()) < 15.0


def test_nothing_to_fill_and_nothing_known_leave_the_image_as_it_is() -> None:
    x = torch.rand(2, 4, 32, 32) * 3000
    assert fill_masked(x, torch.ones(2, 1, 32, 32)) is x
    known = torch.ones(2, 1, 32, 32)
    known[1] = 0  # the second tile has no clear pixel: nothing to fill it from
    known[0, :, :8, :8] = 0
    filled = fill_masked(x, known)
    assert torch.equal(filled[1], x[1])
    assert not torch.equal(filled[0, :, :8, :8], x[0, :, :8, :8])


def test_network_opt_v2_fills_cloudy_valid_pixels_only() -> None:
    opt_v2 = torch.rand(1, 4, 32, 32) * 3000
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 24:] = 0  # padding: neither filled nor trusted less
    trust = torch.ones(1, 1, 32, 32)
    trust[..., :8, :8] = 0
    trust[..., :, 28:] = 0  # zeros inside the padding too, as the tile padding writes them
    assert network_opt_v2({"opt_v2": opt_v2}) is opt_v2
    assert network_opt_v2({"opt_v2": opt_v2, "opt_v2_mask": torch.ones(1, 1, 32, 32)}) is opt_v2
    out = network_opt_v2({"opt_v2": opt_v2, "opt_v2_mask": trust, "mask": mask})
    changed = (out != opt_v2).any(dim=1)[0]
    assert bool(changed[:8, :8].all()) and int(changed.sum()) == 64


def test_fill_of_a_real_cloudy_acquisition_is_closer_to_the_clear_image(
    cloudy_and_clear: tuple[np.ndarray, np.ndarray],
) -> None:
    """SEN12MS-CR, autumn patch: under the clouds the fill is far closer to the clear image than
    the cloudy acquisition is; on the clear pixels nothing changes."""
    cloudy, clear = cloudy_and_clear
    trust = clear_sky_mask(cloudy)
    assert 0.05 < trust.mean() < 0.5  # partly cloudy: both kinds of pixel present
    filled = fill_masked(torch.from_numpy(cloudy)[None], torch.from_numpy(trust)[None, None])[0].numpy()
    under = trust == 0
    before = np.abs(cloudy - clear)[:, under].mean()
    after = np.abs(filled - clear)[:, under].mean()
    assert after < 0.5 * before, (before, after)
    np.testing.assert_array_equal(filled[:, ~under], cloudy[:, ~under])


def test_scene_arrays_fill_with_invalid_pixels_neither_filled_nor_used(
    cloudy_and_clear: tuple[np.ndarray, np.ndarray],
) -> None:
    """The Python API's fill of a whole array: no-data and NaN pixels stay as they are, and their
    values do not leak into the fill (the same fill whatever they hold)."""
    cloudy, clear = cloudy_and_clear
    trust = clear_sky_mask(cloudy) > 0
    scene = cloudy.copy()
    scene[:, :16, :16] = -9999.0  # a no-data corner
    scene[:, 40, 40] = np.nan
    filled = fill_cloudy_arrays(scene[None], trust[None, None], nodata=-9999.0)[0]
    assert (filled[:, :16, :16] == -9999.0).all() and np.isnan(filled[:, 40, 40]).all()
    valid = np.isfinite(scene).all(axis=0) & (scene != -9999.0).all(axis=0)
    np.testing.assert_array_equal(filled[:, trust & valid], cloudy[:, trust & valid])
    under = ~trust & valid
    assert np.abs(filled - clear)[:, under].mean() < 0.5 * np.abs(cloudy - clear)[:, under].mean()
    assert np.isfinite(filled[:, under]).all()  # no NaN leaked into the fill
    # The no-data corner is left out exactly as NaN pixels are: the same fill either way.
    as_nan = scene.copy()
    as_nan[:, :16, :16] = np.nan
    as_nan[:, 40, 40] = np.inf
    np.testing.assert_array_equal(
        fill_cloudy_arrays(as_nan[None], trust[None, None], nodata=-9999.0)[0][:, under], filled[:, under]
    )
