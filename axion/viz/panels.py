"""Validation image panels for TensorBoard: SAR | opt_v2 | opt_v3 | target, side by side.

A panel is one (H, W, 3) array in [0, 1]: the SAR VV channel as grey, then opt_v2, opt_v3
and the target in true colour (B4, B3, B2). The colour stretch comes from the target alone
(2-98 % per band over valid pixels, as ``axion stage3 visualize`` does), and the target never
changes, so a tile's panels are comparable from one epoch to the next. Only numpy is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from axion.viz.figures import stretch_limits, true_colour

#: Columns of background between the four images of a panel.
GAP = 2
#: At most this many validation tiles get panels.
PANEL_TILES = 4


@dataclass(frozen=True)
class Stretch:
    """Fixed display limits of one tile: optical per band (4,), SAR VV (low, high)."""

    optical_low: np.ndarray
    optical_high: np.ndarray
    sar_low: float
    sar_high: float

    @classmethod
    def of(cls, s1: np.ndarray, target: np.ndarray, valid: np.ndarray) -> Stretch:
        """Limits from a tile's target (optical) and SAR VV, over its valid pixels."""
        low, high = stretch_limits(target.astype(np.float64), valid)
        vv_low, vv_high = stretch_limits(s1[:1].astype(np.float64), valid)
        return cls(low, high, float(vv_low[0]), float(vv_high[0]))


def validation_panel(
    s1: np.ndarray, opt_v2: np.ndarray, opt_v3: np.ndarray, target: np.ndarray, stretch: Stretch
) -> np.ndarray:
    """(H, 4 W + 3 GAP, 3) float32 panel of one tile: SAR VV (grey), opt_v2, opt_v3, target.

    Args:
        s1: (2, H, W) SAR in dB (VV first).
        opt_v2, opt_v3, target: (4, H, W) optical in tile units.
        stretch: the tile's fixed limits (:meth:`Stretch.of`).
    """
    vv = np.clip((s1[0] - stretch.sar_low) / (stretch.sar_high - stretch.sar_low), 0.0, 1.0)
    images = [np.repeat(vv[..., None], 3, axis=2)] + [
        true_colour(image.astype(np.float64), stretch.optical_low, stretch.optical_high)
        for image in (opt_v2, opt_v3, target)
    ]
    gap = np.ones((vv.shape[0], GAP, 3))
    parts: list[np.ndarray] = []
    for image in images:
        parts += [image, gap]
    return np.concatenate(parts[:-1], axis=1).astype(np.float32)
