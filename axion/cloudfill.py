"""What the network sees of opt_v2 where opt_v2 is cloudy: a fill from its clear pixels.

A Stage 2 input may carry ``opt_v2_mask`` (1 where opt_v2 can be trusted, 0 where it is cloudy;
``prepare --s2-cloudy`` writes it). The cycle and identity terms already ignore the cloudy pixels;
the network must not build on them either: given the cloud itself, a network trained on cloud-free
inputs returns it nearly unchanged. So the cloudy pixels are replaced, before the network sees
them, by a smooth interpolation of the clear pixels around them (push-pull: masked means on a
pyramid of halved resolutions, filled back coarse to fine), and opt_v3 is built on that image:
under a cloud it is the fill plus the network's correction from the SAR (docs/model.md has what
it scores). Clear pixels are passed through unchanged; so is a tile with no clear pixel.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from axion.masked import TINY


def fill_masked(x: Tensor, known: Tensor) -> Tensor:
    """``x`` (B, C, H, W) with the pixels where ``known`` (B, 1, H, W) is 0 interpolated from the others.

    Push-pull: the known pixels' masked means are taken on a pyramid of halved resolutions until
    one pixel is left; back up the pyramid, every unknown pixel takes the bilinear upsampling of
    the level below. Known pixels are returned exactly; a sample with no known pixel unchanged.
    """
    known = known.to(x.dtype)
    if bool((known > 0).all()):
        return x
    sums, weights = [x * known], [known]
    while min(sums[-1].shape[-2:]) > 1:
        sums.append(F.avg_pool2d(sums[-1], 2, ceil_mode=True))
        weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
    filled = sums[-1] / weights[-1].clamp_min(TINY)
    for s, w in zip(reversed(sums[:-1]), reversed(weights[:-1]), strict=True):
        up = F.interpolate(filled, size=s.shape[-2:], mode="bilinear", align_corners=False)
        filled = torch.where(w > 0, s / w.clamp_min(TINY), up)
    any_known = known.flatten(1).amax(dim=1) > 0
    return torch.where(any_known[:, None, None, None] & (known == 0), filled, x)


def network_opt_v2(batch: dict[str, Tensor]) -> Tensor:
    """The opt_v2 the network is given for a batch: cloudy valid pixels filled from clear ones.

    ``batch`` holds ``opt_v2``, and may hold ``opt_v2_mask`` and ``mask`` (the tile's valid
    pixels; padding is neither filled nor trusted less). Without ``opt_v2_mask``, or where it is
    1 everywhere valid, this is ``opt_v2`` itself.
    """
    opt_v2 = batch["opt_v2"]
    trust = batch.get("opt_v2_mask")
    if trust is None:
        return opt_v2
    valid = batch.get("mask")
    cloudy = (trust == 0) if valid is None else (trust == 0) & (valid > 0)
    if not bool(cloudy.any()):
        return opt_v2
    return fill_masked(opt_v2, ~cloudy)


def fill_cloudy_arrays(opt_v2: np.ndarray, clear: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """Scene arrays (B, C, H, W) with their valid cloudy pixels (``clear`` (B, 1, H, W) False) filled
    from their valid clear ones, as :func:`network_opt_v2` does for tiles.

    Invalid pixels (non-finite in a band, or ``nodata``) are neither filled nor used; they stay as
    they are, so prediction still marks them invalid.
    """
    x = torch.from_numpy(np.ascontiguousarray(opt_v2, dtype=np.float32))
    valid = torch.isfinite(x).all(dim=1, keepdim=True)
    if nodata is not None:
        valid &= (x != nodata).all(dim=1, keepdim=True)
    known = torch.from_numpy(np.array(clear, dtype=bool)) & valid  # a copy: masks may be read-only views
    if bool((known | ~valid).all()):
        return opt_v2
    filled = fill_masked(torch.where(valid, x, 0.0), known)
    return torch.where(valid & ~known, filled, x).numpy()
