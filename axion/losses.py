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

from typing import TYPE_CHECKING

import kornia
import torch
from torch import Tensor, nn

from axion.bands import to_reflectance
from axion.masked import TINY, check_shapes, erode, in_fp32, masked_mean, valid_pixels
from axion.structure import GRADIENT_RADIUS, SMOOTH_KERNEL, sar_confidence, structure_maps

if TYPE_CHECKING:
    from axion.config import LossConfig
    from axion.perceptual import PerceptualLoss

#: Keys of the dict :class:`Stage3Loss` returns; each is logged on its own.
LOSS_KEYS: tuple[str, ...] = ("sar", "cycle", "identity", "lpips", "spectral", "total")

#: Side of the square window of the local texture correlation, in pixels.
TEXTURE_WINDOW: int = 7


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
    rho2 = (cov**2 / (var_o * var_s + TINY)).clamp(0.0, 1.0)
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
    """Cycle: mean absolute change from Stage 2 to Stage 3 over valid pixels and bands (reflectance).

    ``mask`` may be the valid mask times the opt_v2 trust mask: where opt_v2 is cloudy the
    change is free.
    """
    check_shapes(mask, opt_v3=(opt_v3, 4), opt_v2=(opt_v2, 4))
    return masked_mean(to_reflectance(opt_v3 - opt_v2).abs(), valid_pixels(mask))


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
    return masked_mean(to_reflectance(opt_v3 - opt_v2).abs(), weight)


@in_fp32
def spectral_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Spectral: L1 to ground truth over valid pixels and the four bands (reflectance)."""
    check_shapes(mask, pred=(pred, 4), target=(target, 4))
    return masked_mean(to_reflectance(pred - target).abs(), valid_pixels(mask))


class Stage3Loss(nn.Module):
    """The five-term loss of docs/losses.md, built from :class:`~axion.config.LossConfig`.

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
        self,
        opt_v3: Tensor,
        opt_v2: Tensor,
        target: Tensor,
        s1: Tensor,
        mask: Tensor,
        opt_v2_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Per-sample terms and their weighted total.

        Args:
            opt_v3: (B, 4, H, W) Stage 3 output, tile units.
            opt_v2: (B, 4, H, W) Stage 2 input, tile units.
            target: (B, 4, H, W) ground truth, tile units.
            s1: (B, 2, H, W) VV, VH in dB.
            mask: (B, 1, H, W), 1 = valid.
            opt_v2_mask: (B, 1, H, W), 1 where opt_v2 can be trusted; the cycle and identity terms,
                which hold opt_v3 close to opt_v2, count only there (None: everywhere).

        Returns:
            ``{"sar", "cycle", "identity", "lpips", "spectral", "total"}``, each (B,) fp32.
        """
        trusted = mask if opt_v2_mask is None else mask * opt_v2_mask
        terms = {
            "sar": sar_consistency_loss(opt_v3, s1, mask),
            "cycle": cycle_loss(opt_v3, opt_v2, trusted),
            "identity": identity_loss(opt_v3, opt_v2, s1, trusted),
            "lpips": (
                self.perceptual(opt_v3, target, mask)
                if self.perceptual is not None
                else opt_v3.new_zeros(opt_v3.shape[0], dtype=torch.float32)
            ),
            "spectral": spectral_loss(opt_v3, target, mask),
        }
        terms["total"] = sum(self.weights[k] * terms[k] for k in self.weights)  # type: ignore[assignment]
        return terms
