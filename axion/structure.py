"""SAR and optical structure maps: the common ground of the SAR loss, SAR agreement and the figures.

Both images are reduced to one intensity (mean reflectance of the four optical
bands; mean of VV and VH in dB), smoothed against speckle, and differentiated
with a Sobel stencil. How far SAR can be trusted per pixel follows from the VV
backscatter.
"""

from __future__ import annotations

import kornia
import torch
from torch import Tensor

from axion.bands import to_reflectance
from axion.masked import erode, masked_mean

#: VV backscatter (dB) at and below which SAR carries no usable structure: about
#: the noise-equivalent sigma zero of Sentinel-1 IW. Confidence is 0 here.
NOISE_FLOOR_DB: float = -22.0
#: VV backscatter (dB) from which SAR is fully trusted; confidence ramps linearly
#: from 0 at :data:`NOISE_FLOOR_DB` to 1 here.
FULL_CONFIDENCE_DB: float = -18.0
#: Gaussian pre-smoothing (speckle suppression) applied to both intensities
#: before any gradient is taken: kernel size and sigma in pixels.
SMOOTH_KERNEL: int = 5
SMOOTH_SIGMA: float = 1.0
#: Radius of the Sobel stencil.
SOBEL_RADIUS: int = 1
#: How far a pixel's gradient reaches into its neighbours (smoothing + Sobel).
GRADIENT_RADIUS: int = SMOOTH_KERNEL // 2 + SOBEL_RADIUS
#: Keeps the gradient magnitude's square root differentiable at 0.
_GRAD_EPS = 1e-12


def optical_intensity(optical: Tensor) -> Tensor:
    """Mean reflectance of the four optical bands: (B, 1, H, W)."""
    return to_reflectance(optical).mean(dim=1, keepdim=True)


def sar_intensity(s1: Tensor) -> Tensor:
    """Mean of VV and VH backscatter in dB: (B, 1, H, W)."""
    return s1.mean(dim=1, keepdim=True)


def masked_smooth(x: Tensor, valid: Tensor) -> Tensor:
    """Gaussian smoothing that only averages valid pixels (normalised convolution).

    Padded pixels never leak into valid ones, whatever they hold.
    """
    v = valid.to(x.dtype)
    filled = torch.where(valid, x, torch.zeros_like(x))
    kernel, sigma = (SMOOTH_KERNEL, SMOOTH_KERNEL), (SMOOTH_SIGMA, SMOOTH_SIGMA)
    num = kornia.filters.gaussian_blur2d(filled, kernel, sigma, border_type="reflect")
    den = kornia.filters.gaussian_blur2d(v, kernel, sigma, border_type="reflect")
    return num / den.clamp_min(1e-6)


def gradient(x: Tensor) -> Tensor:
    """Sobel gradient (kornia, normalised kernel) of a (B, 1, H, W) map: (B, 2, H, W), x then y."""
    return kornia.filters.spatial_gradient(x, mode="sobel", order=1, normalized=True)[:, 0]


def gradient_magnitude(x: Tensor) -> Tensor:
    """Sobel gradient magnitude of a (B, 1, H, W) map: (B, 1, H, W)."""
    return (gradient(x).pow(2).sum(dim=1, keepdim=True) + _GRAD_EPS).sqrt()


def structure_maps(optical: Tensor, s1: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Smoothed intensities and their gradient magnitudes for optical and SAR.

    Returns:
        (optical intensity, SAR intensity, optical gradient, SAR gradient), each
        (B, 1, H, W); optical in reflectance, SAR in dB.
    """
    i_o = masked_smooth(optical_intensity(optical), valid)
    i_s = masked_smooth(sar_intensity(s1), valid)
    return i_o, i_s, gradient_magnitude(i_o), gradient_magnitude(i_s)


def sar_edges(s1: Tensor, valid: Tensor) -> Tensor:
    """The SAR gradient map that SAR agreement compares against: (B, 1, H, W)."""
    return gradient_magnitude(masked_smooth(sar_intensity(s1), valid))


def sar_confidence(s1: Tensor, valid: Tensor) -> Tensor:
    """How far SAR can be trusted, per pixel, in [0, 1]: (B, 1, H, W).

    A linear ramp on the smoothed VV backscatter (dB): 0 at or below
    :data:`NOISE_FLOOR_DB`, 1 at or above :data:`FULL_CONFIDENCE_DB`. Padded
    pixels get 0.
    """
    vv = masked_smooth(s1[:, :1], valid)
    conf = ((vv - NOISE_FLOOR_DB) / (FULL_CONFIDENCE_DB - NOISE_FLOOR_DB)).clamp(0.0, 1.0)
    return torch.where(valid, conf, torch.zeros_like(conf))


def sar_structure_weight(s1: Tensor, valid: Tensor) -> Tensor:
    """Where the radar sees structure, per pixel: (B, 1, H, W), mean 1 over the weighted pixels.

    The SAR gradient magnitude :func:`sar_edges` divided by its mean, times the SAR
    confidence, over the pixels whose gradient footprint is entirely valid. A pixel on a
    strong radar edge counts several times an average one; a pixel at the noise floor, or
    in a flat radar area, counts little or nothing. It weights the SAR consistency loss and
    SAR agreement, which compare an optical image with the ground truth *there*: the SAR
    chooses where to look, the ground truth says what the structure should be.
    """
    edges = sar_edges(s1, valid)
    base = sar_confidence(s1, valid) * erode(valid, GRADIENT_RADIUS)
    scale = masked_mean(edges, base).clamp_min(1e-6)[:, None, None, None]
    return (base * edges / scale).detach()
