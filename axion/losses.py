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

Every term is 0 at the ground truth, so none of them pulls opt_v3 away from it: the
SAR term compares with the truth's structure where the radar sees structure, cycle
and identity only charge changes that leave a neighbourhood further from the truth than Stage 2
left it, and LPIPS only charges a perceptual step back from Stage 2.

The formulas are written out in ``docs/losses.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import kornia
import torch
from torch import Tensor, nn

from axion.bands import to_reflectance
from axion.masked import TINY, check_shapes, erode, in_fp32, masked_mean, valid_pixels
from axion.structure import (
    SMOOTH_KERNEL,
    gradient,
    masked_smooth,
    optical_intensity,
    sar_confidence,
    sar_intensity,
    sar_structure_weight,
)

if TYPE_CHECKING:
    from axion.config import LossConfig
    from axion.perceptual import PerceptualLoss

#: Keys of the dict :class:`Stage3Loss` returns; each is logged on its own.
LOSS_KEYS: tuple[str, ...] = ("sar", "cycle", "identity", "lpips", "spectral", "total")

#: The terms that rise from 0 to their weights over ``--loss-warmup``: all but the spectral L1.
WARMUP_KEYS: tuple[str, ...] = ("sar", "cycle", "identity", "lpips")

#: Side of the square window of the local texture correlation, in pixels.
TEXTURE_WINDOW: int = 7

#: Side of the neighbourhood over which cycle and identity compare opt_v3's error with Stage 2's,
#: in pixels (80 m at 10 m).
STEP_BACK_WINDOW: int = 8


# --- the five terms -----------------------------------------------------------
def _neighbourhood(x: Tensor) -> Tensor:
    """Mean over the :data:`STEP_BACK_WINDOW` square around each pixel (reflect-padded)."""
    return kornia.filters.box_blur(x, (STEP_BACK_WINDOW, STEP_BACK_WINDOW), border_type="reflect")


def _box(x: Tensor) -> Tensor:
    return kornia.filters.box_blur(x, (TEXTURE_WINDOW, TEXTURE_WINDOW), border_type="reflect")


def _sar_projection(i_o: Tensor, i_s: Tensor, weight: Tensor) -> Tensor:
    """How strongly the optical intensity follows the SAR's local pattern: (B, 1, H, W).

    In :data:`TEXTURE_WINDOW` windows, the local covariance of the two intensities divided by
    the SAR's local standard deviation, ``cov(o, s) / sd(s) = sd(o) * rho(o, s)``: the optical
    texture (reflectance) along the radar's, signed, and linear in the optical image.
    """
    # Centre first: fewer cancellation errors in E[xy] - E[x]E[y].
    i_o = i_o - masked_mean(i_o, weight).detach()[:, None, None, None]
    i_s = i_s - masked_mean(i_s, weight).detach()[:, None, None, None]
    mu_s = _box(i_s)
    var_s = (_box(i_s * i_s) - mu_s**2).clamp_min(0.0)
    cov = _box(i_o * i_s) - _box(i_o) * mu_s
    return cov / (var_s + TINY).sqrt()


@in_fp32
def sar_consistency_loss(optical: Tensor, target: Tensor, s1: Tensor, mask: Tensor) -> Tensor:
    """SAR consistency: edge alignment plus texture correlation where the radar sees structure.

    Both optical images are reduced to one intensity (mean reflectance of the four bands),
    smoothed, and compared with the ground truth's at the pixels the SAR points at
    (:func:`sar_structure_weight`: SAR edge strength times backscatter confidence):

    - edge alignment: mean length of the difference of the two Sobel gradient *vectors*,
      ``|grad(optical) - grad(target)|``;
    - texture correlation: mean ``|p(optical) - p(target)|`` of the local projection on the
      SAR's texture (:func:`_sar_projection`, ``sd(o) * rho(o, s)``).

    Both are 0 at the ground truth and grow when the image has less structure there (blur),
    more than the real scene has (radar edges copied in), or structure of the wrong sign or
    orientation. Both are linear in the image before the absolute value, so where the truth's
    structure is uncertain the term, like the spectral L1, prefers the expected structure to an
    invented one (a magnitude-only comparison rewards any edge of the right strength).
    Only pixels whose filter footprint is entirely valid count.

    Args:
        optical: (B, 4, H, W) tile units, the image trained.
        target: (B, 4, H, W) tile units, the ground truth.
        s1: (B, 2, H, W) VV, VH in dB.
        mask: (B, 1, H, W), 1 = valid.

    Returns:
        (B,) in reflectance units: ``0.5 * (edge + texture)``.
    """
    check_shapes(mask, optical=(optical, 4), target=(target, 4), s1=(s1, 2))
    valid = valid_pixels(mask)
    i_o = masked_smooth(optical_intensity(optical), valid)
    i_t = masked_smooth(optical_intensity(target), valid)
    i_s = masked_smooth(sar_intensity(s1), valid)
    where = sar_structure_weight(s1, valid)
    step = gradient(i_o) - gradient(i_t).detach()
    edge = masked_mean((step.pow(2).sum(dim=1, keepdim=True) + TINY).sqrt(), where)
    tex_w = where * erode(valid, SMOOTH_KERNEL // 2 + TEXTURE_WINDOW // 2)
    p_o = _sar_projection(i_o, i_s, tex_w)
    p_t = _sar_projection(i_t, i_s, tex_w)
    texture = masked_mean((p_o - p_t.detach()).abs(), tex_w)
    return 0.5 * (edge + texture)


def _step_back(opt_v3: Tensor, opt_v2: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """How much further from the truth opt_v3 is than Stage 2 was, around each pixel: (B, 4, H, W).

    ``max(0, box(|opt_v3 - target|) - box(|opt_v2 - target|))`` in reflectance, ``box`` the mean
    over the :data:`STEP_BACK_WINDOW` neighbourhood of the pixels in ``mask`` (bool, (B, 1, H, W);
    padded pixels never count, whatever they hold). 0 wherever opt_v3 is
    on average at least as close to the truth as opt_v2 around the pixel: a change that improves
    on Stage 2 there is free; one that makes the neighbourhood worse costs.

    The comparison is over a neighbourhood, not per pixel, because the network cannot know a
    pixel's fine detail: per pixel, every guess that misses some detail Stage 2 happened to get
    right is charged, which pulls all uncertain predictions towards opt_v2 (docs/losses.md).
    """
    count = _neighbourhood(mask.to(opt_v3.dtype)).clamp_min(TINY)
    error = torch.where(mask, to_reflectance(opt_v3 - target).abs(), 0.0)
    before = torch.where(mask, to_reflectance(opt_v2 - target).abs().detach(), 0.0)
    return ((_neighbourhood(error) - _neighbourhood(before)) / count).clamp_min(0.0)


@in_fp32
def cycle_loss(opt_v3: Tensor, opt_v2: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Cycle: mean step back from Stage 2 (reflectance), the change from Stage 2 that makes it worse.

    Mean over valid pixels and bands of :func:`_step_back`: Stage 3 keeps what Stage 2 got right
    and is free to correct what it got wrong. ``mask`` may be the valid mask times the opt_v2 trust
    mask: where opt_v2 is cloudy the change is free.
    """
    check_shapes(mask, opt_v3=(opt_v3, 4), opt_v2=(opt_v2, 4), target=(target, 4))
    valid = valid_pixels(mask)
    return masked_mean(_step_back(opt_v3, opt_v2, target, valid), valid)


@in_fp32
def identity_loss(opt_v3: Tensor, opt_v2: Tensor, target: Tensor, s1: Tensor, mask: Tensor) -> Tensor:
    """Identity: the cycle term's step back from Stage 2, where SAR confidence is low (reflectance).

    Mean over valid pixels of :func:`_step_back` times ``1 - sar_confidence``: where VV is at the
    noise floor the SAR cannot justify a change, so Stage 2 is preserved unless it was wrong. 0 for
    a sample with no low-confidence pixel. Averaged over all valid pixels, not over the
    low-confidence ones alone: a pixel weighs at most what it weighs in the cycle term, however
    little of the tile is at the noise floor (docs/losses.md has what the other mean cost).
    """
    check_shapes(mask, opt_v3=(opt_v3, 4), opt_v2=(opt_v2, 4), target=(target, 4), s1=(s1, 2))
    valid = valid_pixels(mask)
    low_confidence = 1.0 - sar_confidence(s1, valid)
    return masked_mean(_step_back(opt_v3, opt_v2, target, valid) * low_confidence, valid)


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

    def _perceptual(self, opt_v3: Tensor, opt_v2: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """LPIPS to the ground truth beyond Stage 2's own: ``max(0, LPIPS(opt_v3) - LPIPS(opt_v2))``.

        Plain LPIPS at the guide's weight outweighs the spectral term on blurred inputs and buys a
        lower LPIPS with invented detail that costs PSNR (docs/losses.md, "What was tried"); as a
        guard it keeps opt_v3 at least as close to the truth, perceptually, as Stage 2 was.
        """
        if self.perceptual is None:
            return opt_v3.new_zeros(opt_v3.shape[0], dtype=torch.float32)
        with torch.no_grad():
            reference = self.perceptual(opt_v2, target, mask)
        return (self.perceptual(opt_v3, target, mask) - reference).clamp_min(0.0)

    def forward(
        self,
        opt_v3: Tensor,
        opt_v2: Tensor,
        target: Tensor,
        s1: Tensor,
        mask: Tensor,
        opt_v2_mask: Tensor | None = None,
        warmup_scale: float = 1.0,
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
            warmup_scale: factor on the weights of :data:`WARMUP_KEYS` in the total (the loss
                warm-up of training; 1 = the configured weights).

        Returns:
            ``{"sar", "cycle", "identity", "lpips", "spectral", "total"}``, each (B,) fp32.
        """
        trusted = mask if opt_v2_mask is None else mask * opt_v2_mask
        terms = {
            "sar": sar_consistency_loss(opt_v3, target, s1, mask),
            "cycle": cycle_loss(opt_v3, opt_v2, target, trusted),
            "identity": identity_loss(opt_v3, opt_v2, target, s1, trusted),
            "lpips": self._perceptual(opt_v3, opt_v2, target, mask),
            "spectral": spectral_loss(opt_v3, target, mask),
        }
        scale = {k: warmup_scale if k in WARMUP_KEYS else 1.0 for k in self.weights}
        terms["total"] = sum(scale[k] * self.weights[k] * terms[k] for k in self.weights)  # type: ignore[assignment]
        return terms
