"""Where a cloudy optical image can be trusted: a simple clear-sky mask for real opt_v2.

``prepare --s2-cloudy`` writes the cloudy acquisition as opt_v2 together with this mask
(``opt_v2_mask``: 1 where opt_v2 looks clear, 0 where it does not). The cycle and identity
terms then do not pull opt_v3 towards clouds, and ``evaluate`` scores the clear pixels apart.

The rule is deliberately simple: a pixel is cloud when its blue band (B2) exceeds
:data:`CLOUD_B2` (reflectance 0.2: measured on the SEN12MS-CR samples, clear land sits at
0.10-0.15 in B2, thick cloud at 0.2-0.5), grown by :data:`DILATION` pixels to cover the soft
cloud edges. It flags thick bright cloud only: thin haze, cloud shadow and fog stay "clear",
and snow or bright sand would be flagged as cloud. Give a better mask (Fmask, s2cloudless,
SCL classes) by writing ``opt_v2_mask`` into the Stage 2 files yourself.
"""

from __future__ import annotations

import numpy as np

#: B2 (blue) above this, in reflectance x 10000, is cloud.
CLOUD_B2 = 2000.0
#: Pixels a cloud is grown by on every side.
DILATION = 5


def grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a (H, W) boolean mask by a square of side ``2 * radius + 1``."""
    if radius <= 0 or not mask.any():
        return mask.copy()
    padded = np.pad(mask.astype(np.int32), radius)
    summed = padded.cumsum(axis=0).cumsum(axis=1)
    summed = np.pad(summed, ((1, 0), (1, 0)))
    side = 2 * radius + 1
    h, w = mask.shape
    window = (
        summed[side : side + h, side : side + w]
        - summed[:h, side : side + w]
        - summed[side : side + h, :w]
        + summed[:h, :w]
    )
    return window > 0


def clear_sky_mask(optical: np.ndarray) -> np.ndarray:
    """(H, W) uint8, 1 where ``optical`` (B2, B3, B4, B8 in reflectance x 10000) looks clear."""
    cloud = grow(np.asarray(optical[0]) > CLOUD_B2, DILATION)
    return (~cloud).astype(np.uint8)
