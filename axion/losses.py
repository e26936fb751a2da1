"""The Stage 3 training loss: five per-sample terms and their weighted sum.

``Total = a*SAR_consistency + b*Cycle + c*Identity + d*LPIPS + e*Spectral``

Every term takes tensors in tile units (optical: reflectance x 10000, channels
B2, B3, B4, B8; SAR: dB, channels VV, VH) of shape (B, C, H, W) and a valid-pixel
mask (B, 1, H, W) (1 = valid, 0 = padding), and returns one value per sample,
shape (B,). Nothing is normalised across the batch, so a sample's loss never
depends on its batch mates. Optical values are read as reflectance (tile / 10000)
so the terms live on the scale of a reflectance L1 (about 0.01-0.05). Each term
runs in fp32 with autocast switched off, so it stays finite under bf16/fp16 AMP.
A sample with no valid pixel contributes 0 to every term.

The formulas are written out in ``docs/losses.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from axion.bands import REFLECTANCE_SCALE

if TYPE_CHECKING:
    from axion.config import LossConfig
    from axion.perceptual import PerceptualLoss

#: Keys of the dict :class:`Stage3Loss` returns; each is logged on its own.
LOSS_KEYS: tuple[str, ...] = ("sar", "cycle", "identity", "lpips", "spectral", "total")

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
#: Side of the square window of the local texture correlation, in pixels.
TEXTURE_WINDOW: int = 7
#: Radius of the Sobel stencil.
_SOBEL_RADIUS = 1
#: Keeps the gradient magnitude's square root differentiable at 0.
_GRAD_EPS = 1e-12
_TINY = 1e-12

_P = ParamSpec("_P")
_R = TypeVar("_R")


def in_fp32(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` with autocast off and every floating-point tensor argument cast to fp32.

    The device type for autocast is taken from the first tensor argument.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"

        def cast(value: object) -> object:
            if isinstance(value, Tensor) and value.is_floating_point():
                return value.float()
            return value

        with torch.autocast(device_type=device_type, enabled=False):
            return fn(
                *(cast(a) for a in args),  # type: ignore[arg-type]
                **{k: cast(v) for k, v in kwargs.items()},  # type: ignore[arg-type]
            )

    return wrapper


# --- shared building blocks (also used by axion.metrics) ----------------------
def check_shapes(mask: Tensor, **tensors: tuple[Tensor, int]) -> None:
    """Check that every tensor is (B, C, H, W) with the expected C and that ``mask`` is (B, 1, H, W).

    Args:
        mask: valid-pixel mask.
        **tensors: name -> (tensor, expected channel count).

    Raises:
        ValueError: naming the offending argument and the shapes involved.
    """
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, H, W), got {tuple(mask.shape)}")
    b, _, h, w = mask.shape
    for name, (tensor, channels) in tensors.items():
        if tuple(tensor.shape) != (b, channels, h, w):
            raise ValueError(f"{name} must be {(b, channels, h, w)} to match mask, got {tuple(tensor.shape)}")


def valid_pixels(mask: Tensor) -> Tensor:
    """Boolean (B, 1, H, W) map of valid pixels (mask > 0.5)."""
    return mask > 0.5


def erode(valid: Tensor, radius: int) -> Tensor:
    """Keep only pixels whose whole (2r+1)^2 neighbourhood is valid.

    Outside the image counts as valid: filters handle the image border by
    reflection, only padding inside the tile is excluded.
    """
    if radius <= 0:
        return valid
    invalid = (~valid).float()
    grown = F.max_pool2d(invalid, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return grown < 0.5


def masked_mean(x: Tensor, weight: Tensor) -> Tensor:
    """Weighted mean over channels and pixels, per sample: (B,). 0 where the weights sum to 0."""
    weight = weight.to(x.dtype).expand_as(x)
    total = weight.sum(dim=(1, 2, 3))
    return (x * weight).sum(dim=(1, 2, 3)) / total.clamp_min(_TINY)


def masked_pearson(x: Tensor, y: Tensor, weight: Tensor) -> Tensor:
    """Weighted Pearson correlation of two (B, 1, H, W) maps, per sample.

    Returns 0 (no evidence either way) where either map has no variance over
    the weighted pixels, so the result is always defined.
    """
    mx = masked_mean(x, weight)[:, None, None, None]
    my = masked_mean(y, weight)[:, None, None, None]
    dx, dy = x - mx, y - my
    cov = masked_mean(dx * dy, weight)
    var_x = masked_mean(dx * dx, weight)
    var_y = masked_mean(dy * dy, weight)
    denom = (var_x * var_y).sqrt()
    defined = denom > _TINY
    r = cov / torch.where(defined, denom, torch.ones_like(denom))
    return torch.where(defined, r, torch.zeros_like(r)).clamp(-1.0, 1.0)


def reflectance(optical: Tensor) -> Tensor:
    """Tile units (reflectance x 10000) -> reflectance."""
    return optical / REFLECTANCE_SCALE


def optical_intensity(optical: Tensor) -> Tensor:
    """Mean reflectance of the four optical bands: (B, 1, H, W)."""
    return reflectance(optical).mean(dim=1, keepdim=True)


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


def gradient_magnitude(x: Tensor) -> Tensor:
    """Sobel gradient magnitude (kornia, normalised kernel) of a (B, 1, H, W) map."""
    grad = kornia.filters.spatial_gradient(x, mode="sobel", order=1, normalized=True)  # (B, 1, 2, H, W)
    return (grad.pow(2).sum(dim=2) + _GRAD_EPS).sqrt()


#: How far a pixel's gradient reaches into its neighbours (smoothing + Sobel).
GRADIENT_RADIUS: int = SMOOTH_KERNEL // 2 + _SOBEL_RADIUS


def structure_maps(optical: Tensor, s1: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Smoothed intensities and their gradient magnitudes for optical and SAR.

    Returns:
        (optical intensity, SAR intensity, optical gradient, SAR gradient), each
        (B, 1, H, W); optical in reflectance, SAR in dB.
    """
    i_o = masked_smooth(optical_intensity(optical), valid)
    i_s = masked_smooth(sar_intensity(s1), valid)
    return i_o, i_s, gradient_magnitude(i_o), gradient_magnitude(i_s)


def sar_confidence(s1: Tensor, valid: Tensor) -> Tensor:
    """How far SAR can be trusted, per pixel, in [0, 1]: (B, 1, H, W).

    A linear ramp on the smoothed VV backscatter (dB): 0 at or below
    :data:`NOISE_FLOOR_DB`, 1 at or above :data:`FULL_CONFIDENCE_DB`. Padded
    pixels get 0.
    """
    vv = masked_smooth(s1[:, :1], valid)
    conf = ((vv - NOISE_FLOOR_DB) / (FULL_CONFIDENCE_DB - NOISE_FLOOR_DB)).clamp(0.0, 1.0)
    return torch.where(valid, conf, torch.zeros_like(conf))


# --- the five terms -----------------------------------------------------------
def _edge_alignment(g_o: Tensor, g_s: Tensor, weight: Tensor) -> Tensor:
    """Weighted L1 between the optical gradient map and the SAR gradient map
    standardised to the optical one's (detached) mean and spread."""
    mu_o = masked_mean(g_o, weight).detach()
    sd_o = masked_mean((g_o - mu_o[:, None, None, None]) ** 2, weight).sqrt().detach()
    mu_s = masked_mean(g_s, weight)
    sd_s = masked_mean((g_s - mu_s[:, None, None, None]) ** 2, weight).sqrt()
    has_structure = sd_s > 1e-6
    z_s = (g_s - mu_s[:, None, None, None]) / sd_s.clamp_min(1e-6)[:, None, None, None]
    target = (mu_o[:, None, None, None] + sd_o[:, None, None, None] * z_s).detach()
    term = masked_mean((g_o - target).abs(), weight)
    return torch.where(has_structure, term, torch.zeros_like(term))


def _box(x: Tensor) -> Tensor:
    return kornia.filters.box_blur(x, (TEXTURE_WINDOW, TEXTURE_WINDOW), border_type="reflect")


def _texture_correlation(i_o: Tensor, i_s: Tensor, weight: Tensor) -> Tensor:
    """Local (window) squared correlation deficit, weighted by the optical local std (detached)."""
    # Centre first: fewer cancellation errors in E[x^2] - E[x]^2.
    i_o = i_o - masked_mean(i_o, weight).detach()[:, None, None, None]
    i_s = i_s - masked_mean(i_s, weight).detach()[:, None, None, None]
    mu_o, mu_s = _box(i_o), _box(i_s)
    var_o = (_box(i_o * i_o) - mu_o**2).clamp_min(0.0)
    var_s = (_box(i_s * i_s) - mu_s**2).clamp_min(0.0)
    cov = _box(i_o * i_s) - mu_o * mu_s
    rho2 = (cov**2 / (var_o * var_s + _TINY)).clamp(0.0, 1.0)
    return masked_mean(var_o.sqrt().detach() * (1.0 - rho2), weight)


@in_fp32
def sar_consistency_loss(optical: Tensor, s1: Tensor, mask: Tensor) -> Tensor:
    """SAR consistency: edge alignment plus local texture correlation, backscatter-weighted.

    Both images are reduced to one intensity (mean reflectance of the four bands;
    mean of VV and VH in dB), smoothed, and compared on (1) Sobel gradient
    magnitude and (2) local correlation in :data:`TEXTURE_WINDOW` windows. Pixels
    are weighted by :func:`sar_confidence` (VV in dB). Only pixels whose filter
    footprint is entirely valid count. 0 when the optical structure is an affine
    image of the SAR structure.

    Args:
        optical: (B, 4, H, W) tile units.
        s1: (B, 2, H, W) VV, VH in dB.
        mask: (B, 1, H, W), 1 = valid.

    Returns:
        (B,) in reflectance units: ``0.5 * (edge + texture)``.
    """
    check_shapes(mask, optical=(optical, 4), s1=(s1, 2))
    valid = valid_pixels(mask)
    i_o, i_s, g_o, g_s = structure_maps(optical, s1, valid)
    conf = sar_confidence(s1, valid)
    edge_w = conf * erode(valid, GRADIENT_RADIUS)
    tex_w = conf * erode(valid, SMOOTH_KERNEL // 2 + TEXTURE_WINDOW // 2)
    return 0.5 * (_edge_alignment(g_o, g_s, edge_w) + _texture_correlation(i_o, i_s, tex_w))


@in_fp32
def cycle_loss(opt_v3: Tensor, opt_v2: Tensor, mask: Tensor) -> Tensor:
    """Cycle: mean absolute change from Stage 2 to Stage 3 over valid pixels and bands (reflectance)."""
    check_shapes(mask, opt_v3=(opt_v3, 4), opt_v2=(opt_v2, 4))
    return masked_mean(reflectance(opt_v3 - opt_v2).abs(), valid_pixels(mask))


@in_fp32
def identity_loss(opt_v3: Tensor, opt_v2: Tensor, s1: Tensor, mask: Tensor) -> Tensor:
    """Identity: mean absolute change from Stage 2 where SAR confidence is low (reflectance).

    Weighted mean of ``|opt_v3 - opt_v2|`` with pixel weight ``1 - sar_confidence``
    over valid pixels: where VV is at the noise floor SAR cannot justify a change.
    0 for a sample with no low-confidence pixel.
    """
    check_shapes(mask, opt_v3=(opt_v3, 4), opt_v2=(opt_v2, 4), s1=(s1, 2))
    valid = valid_pixels(mask)
    weight = (1.0 - sar_confidence(s1, valid)) * valid
    return masked_mean(reflectance(opt_v3 - opt_v2).abs(), weight)


@in_fp32
def spectral_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Spectral: L1 to ground truth over valid pixels and the four bands (reflectance)."""
    check_shapes(mask, pred=(pred, 4), target=(target, 4))
    return masked_mean(reflectance(pred - target).abs(), valid_pixels(mask))


class Stage3Loss(nn.Module):
    """The guide's five-term loss, built from :class:`~axion.config.LossConfig`.

    ``forward`` returns a dict with the keys :data:`LOSS_KEYS`, each a (B,)
    tensor. ``"lpips"`` is always present: zeros when ``lpips_weight == 0`` (then
    LPIPS is never built and :attr:`perceptual` is ``None``).

    Args:
        config: the loss weights and the LPIPS weights path.
        perceptual: an already built LPIPS term to use instead of building one
            (ignored when ``lpips_weight == 0``).

    Raises:
        WeightsError: LPIPS is enabled and its backbone weights cannot be found.
    """

    def __init__(self, config: LossConfig, perceptual: PerceptualLoss | None = None) -> None:
        super().__init__()
        self.weights: dict[str, float] = {
            "sar": config.sar_weight,
            "cycle": config.cycle_weight,
            "identity": config.identity_weight,
            "lpips": config.lpips_weight,
            "spectral": config.spectral_weight,
        }
        self.perceptual: PerceptualLoss | None = None
        if config.lpips_weight > 0:
            if perceptual is None:
                from axion.perceptual import build_perceptual_loss

                perceptual = build_perceptual_loss(config.lpips_weights)
            self.perceptual = perceptual

    def forward(
        self, opt_v3: Tensor, opt_v2: Tensor, target: Tensor, s1: Tensor, mask: Tensor
    ) -> dict[str, Tensor]:
        """Per-sample terms and their weighted total.

        Args:
            opt_v3: (B, 4, H, W) Stage 3 output, tile units.
            opt_v2: (B, 4, H, W) Stage 2 input, tile units.
            target: (B, 4, H, W) ground truth, tile units.
            s1: (B, 2, H, W) VV, VH in dB.
            mask: (B, 1, H, W), 1 = valid.

        Returns:
            ``{"sar", "cycle", "identity", "lpips", "spectral", "total"}``, each (B,) fp32.
        """
        terms = {
            "sar": sar_consistency_loss(opt_v3, s1, mask),
            "cycle": cycle_loss(opt_v3, opt_v2, mask),
            "identity": identity_loss(opt_v3, opt_v2, s1, mask),
            "lpips": (
                self.perceptual(opt_v3, target, mask)
                if self.perceptual is not None
                else opt_v3.new_zeros(opt_v3.shape[0], dtype=torch.float32)
            ),
            "spectral": spectral_loss(opt_v3, target, mask),
        }
        terms["total"] = sum(self.weights[k] * terms[k] for k in self.weights)  # type: ignore[assignment]
        return terms
