"""Evaluation metrics, per sample (B,): SAR agreement and image quality.

Inputs are in tile units (optical: reflectance x 10000, B2, B3, B4, B8; SAR: dB,
VV, VH) with a valid-pixel mask (B, 1, H, W) (1 = valid). Image-quality metrics
read reflectance as ``tile / 10000`` clamped to [0, 1] and are computed over
valid pixels only. Metrics run without gradients, in float64 (LPIPS in fp32).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from axion.bands import OPTICAL_BANDS, to_reflectance
from axion.masked import check_shapes, erode, masked_pearson, valid_pixels
from axion.structure import GRADIENT_RADIUS, sar_structure_weight, structure_maps

if TYPE_CHECKING:
    from axion.perceptual import PerceptualLoss

#: PSNR is capped here (dB): it reaches it when the squared error is <= 1e-10.
PSNR_CAP_DB: float = 100.0
#: SSIM window: Gaussian, 11 px, sigma 1.5 (the standard settings).
SSIM_KERNEL: int = 11
SSIM_SIGMA: float = 1.5


@torch.no_grad()
def sar_agreement(optical: Tensor, target: Tensor, s1: Tensor, mask: Tensor) -> Tensor:
    """How well the optical image reproduces the real scene's structure where the radar sees it.

    In [0, 1], higher is better: ``max(0, r)`` with ``r`` the weighted Pearson correlation
    between the Sobel gradient magnitude of the smoothed optical intensity (mean reflectance of
    the four bands) and that of the ground truth, each pixel weighted by
    :func:`~axion.structure.sar_structure_weight` (SAR edge strength times SAR confidence).
    The SAR decides where to look; the ground truth decides what structure belongs there, so
    an image with more radar structure than the real scene has scores *lower*, not higher.

    Readings: the ground truth scores 1; optical noise or a constant image score 0; the
    ground truth shifted by 8 px against its SAR about 0.05 (median on real 64 px windows);
    the blurred training proxy of opt_v2 0.70. Without a ground truth there is nothing to
    compare with: see :func:`sar_edge_correlation`.

    Args:
        optical: (B, 4, H, W) tile units, the image scored.
        target: (B, 4, H, W) tile units, the ground truth.
        s1: (B, 2, H, W) VV, VH in dB.
        mask: (B, 1, H, W), 1 = valid.

    Returns:
        (B,) float32 in [0, 1]; 0 for a sample without valid pixels.
    """
    check_shapes(mask, optical=(optical, 4), target=(target, 4), s1=(s1, 2))
    valid = valid_pixels(mask)
    _, _, g_o, _ = structure_maps(optical.double(), s1.double(), valid)
    _, _, g_t, _ = structure_maps(target.double(), s1.double(), valid)
    r = masked_pearson(g_o, g_t, sar_structure_weight(s1.double(), valid))
    return r.clamp(0.0, 1.0).float()


@torch.no_grad()
def sar_edge_correlation(optical: Tensor, s1: Tensor, mask: Tensor) -> Tensor:
    """How much of the optical image's structure follows the radar's, without a ground truth.

    The Pearson correlation, in [-1, 1], between the Sobel gradient magnitudes of the
    smoothed optical intensity and of the smoothed SAR intensity (mean of VV and VH, dB),
    over valid pixels whose filter footprint is entirely valid. 0 for a map without
    gradient variation. It is not a quality score: real Sentinel-2 reads about 0.19 (median
    over 64 px windows of real scenes), and an image that copies the radar reads more. Read
    it against the ground truth's own value, or opt_v2's, on the same tiles.

    Returns:
        (B,) float32 in [-1, 1].
    """
    check_shapes(mask, optical=(optical, 4), s1=(s1, 2))
    valid = valid_pixels(mask)
    _, _, g_o, g_s = structure_maps(optical.double(), s1.double(), valid)
    return masked_pearson(g_o, g_s, erode(valid, GRADIENT_RADIUS)).float()


def _reflectance01(optical: Tensor) -> Tensor:
    return to_reflectance(optical.double()).clamp(0.0, 1.0)


def _band_means(x: Tensor, valid: Tensor) -> Tensor:
    """Mean of (B, C, H, W) over valid pixels, per sample and band: (B, C); NaN without valid pixels."""
    v = valid.to(x.dtype)
    return (x * v).sum(dim=(2, 3)) / v.sum(dim=(2, 3))


def _psnr_from_mse(mse: Tensor) -> Tensor:
    return (10.0 * torch.log10(1.0 / mse.clamp_min(10 ** (-PSNR_CAP_DB / 10)))).float()


def _errors(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-band mean absolute and squared error over valid pixels: two (B, C)."""
    check_shapes(mask, pred=(pred, pred.shape[1]), target=(target, pred.shape[1]))
    valid = valid_pixels(mask)
    diff = _reflectance01(pred) - _reflectance01(target)
    return _band_means(diff.abs(), valid), _band_means(diff**2, valid)


@torch.no_grad()
def mae(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error in reflectance [0, 1] over valid pixels and bands: (B,)."""
    return _errors(pred, target, mask)[0].mean(dim=1).float()


@torch.no_grad()
def rmse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Root mean squared error in reflectance [0, 1] over valid pixels and bands: (B,)."""
    return _errors(pred, target, mask)[1].mean(dim=1).sqrt().float()


@torch.no_grad()
def psnr(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """PSNR in dB, data range 1 (reflectance [0, 1]), from the MSE over valid pixels and bands: (B,)."""
    return _psnr_from_mse(_errors(pred, target, mask)[1].mean(dim=1))


@torch.no_grad()
def ssim_per_band(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """SSIM per band, (B, C): the SSIM map (torchmetrics) averaged over valid pixels.

    Padded pixels are set to 0 in both images before filtering, so their content
    does not matter. Images must be larger than 5 px on each side.
    """
    check_shapes(mask, pred=(pred, pred.shape[1]), target=(target, pred.shape[1]))
    valid = valid_pixels(mask)
    zero = torch.zeros((), dtype=torch.float64, device=pred.device)
    p = torch.where(valid, _reflectance01(pred), zero)
    t = torch.where(valid, _reflectance01(target), zero)
    _, full = structural_similarity_index_measure(
        p,
        t,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_KERNEL,
        reduction="none",
        data_range=1.0,
        return_full_image=True,
    )
    return _band_means(full, valid).float()


@torch.no_grad()
def ssim(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """SSIM averaged over bands: (B,). See :func:`ssim_per_band`."""
    return ssim_per_band(pred, target, mask).mean(dim=1)


@torch.no_grad()
def sam_deg(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Spectral angle in degrees, averaged over valid pixels: (B,).

    The angle between the two reflectance spectra of a pixel (all bands). Pixels
    where either spectrum is all zero have no angle and are left out; a sample
    with no pixel left is NaN.
    """
    check_shapes(mask, pred=(pred, pred.shape[1]), target=(target, pred.shape[1]))
    p, t = _reflectance01(pred), _reflectance01(target)
    dot = (p * t).sum(dim=1, keepdim=True)
    norms = p.norm(dim=1, keepdim=True) * t.norm(dim=1, keepdim=True)
    # atan2 of |p||t|sin and |p||t|cos: accurate near 0 degrees, unlike acos.
    sine = (norms**2 - dot**2).clamp_min(0.0).sqrt()
    angle = torch.rad2deg(torch.atan2(sine, dot))
    usable = valid_pixels(mask) & (norms > 0)
    return _band_means(angle, usable)[:, 0].float()


@torch.no_grad()
def image_metrics(
    pred: Tensor, target: Tensor, mask: Tensor, lpips: PerceptualLoss | None = None
) -> dict[str, Tensor]:
    """Every image-quality metric, per sample (B,).

    Args:
        pred: (B, 4, H, W) tile units.
        target: (B, 4, H, W) tile units.
        mask: (B, 1, H, W), 1 = valid.
        lpips: a built LPIPS term; without it there is no ``"lpips"`` key.

    Returns:
        ``psnr`` (dB), ``ssim``, ``sam_deg``, ``mae``, ``rmse`` (reflectance [0, 1]),
        ``lpips`` when given, and per band ``psnr_<band>``, ``ssim_<band>``,
        ``mae_<band>``, ``rmse_<band>`` for each band in ``OPTICAL_BANDS``.
        A sample with no valid pixel gets NaN throughout.
    """
    check_shapes(mask, pred=(pred, len(OPTICAL_BANDS)), target=(target, len(OPTICAL_BANDS)))
    abs_err, sq_err = _errors(pred, target, mask)
    ssim_bands = ssim_per_band(pred, target, mask)
    out: dict[str, Tensor] = {
        "psnr": _psnr_from_mse(sq_err.mean(dim=1)),
        "ssim": ssim_bands.mean(dim=1),
        "sam_deg": sam_deg(pred, target, mask),
        "mae": abs_err.mean(dim=1).float(),
        "rmse": sq_err.mean(dim=1).sqrt().float(),
    }
    if lpips is not None:
        out["lpips"] = lpips(pred, target, mask).float()
    for i, band in enumerate(OPTICAL_BANDS):
        out[f"psnr_{band}"] = _psnr_from_mse(sq_err[:, i])
        out[f"ssim_{band}"] = ssim_bands[:, i]
        out[f"mae_{band}"] = abs_err[:, i].float()
        out[f"rmse_{band}"] = sq_err[:, i].sqrt().float()
    return out
