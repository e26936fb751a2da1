"""Per-sample reductions over valid pixels, shared by the losses, the metrics and LPIPS.

Images are (B, C, H, W) with a valid-pixel mask (B, 1, H, W) (1 = valid, 0 = padding
or an invalid source pixel). Every reduction returns one value per sample, so a
sample's result never depends on its batch mates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

#: Keeps divisions by empty weights finite.
TINY = 1e-12

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
    return (x * weight).sum(dim=(1, 2, 3)) / total.clamp_min(TINY)


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
    defined = denom > TINY
    r = cov / torch.where(defined, denom, torch.ones_like(denom))
    return torch.where(defined, r, torch.zeros_like(r)).clamp(-1.0, 1.0)
