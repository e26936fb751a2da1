"""The fusion network: a residual correction on top of Stage 2, zero at initialisation.

It looks at Stage 2's optical, the SAR and (in the TerraMind arm) TerraMind's generated
optical, all standardised, and predicts a per-band correction to Stage 2. It is a small
U-Net: the correction a pixel needs depends on structure tens of pixels around it
(a blurred field edge, a road seen by the radar), so it must see far, but it stays
cheap: a few hundred thousand weights at full resolution only in its first and last
levels. Its last convolution starts at zero, so an untrained model returns Stage 2
exactly: training can only start from "no harm done", even on random TerraMind weights.
It always runs in fp32.

Its correction may pass a fixed Gaussian low-pass before it is added to Stage 2
(``--correction-smoothing`` sigma, off by default): a network trained on blurred proxies learns to
sharpen whatever it is given, and adds more fine detail to a sharp input than the truth has. The
low-pass trades some of the gain on blurred inputs for less of that (docs/model.md has both).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Channel widths of the levels, full resolution first; each further level halves the resolution.
DEFAULT_WIDTHS: tuple[int, ...] = (32, 64, 128)


def _conv(c_in: int, c_out: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, padding_mode="replicate")


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection (1x1 when the width changes)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(c_in, c_out), nn.SiLU(), _conv(c_out, c_out))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.skip(x))


class FusionNet(nn.Module):
    """A residual U-Net: stem, one block per level down, a bottleneck block, one block per level up.

    Args:
        in_channels: stacked standardised inputs (opt_v2 4 + SAR 2, plus 4 generated bands in the
            TerraMind arm).
        out_channels: optical bands corrected (4).
        widths: channel width per level, full resolution first. Inputs must be divisible by
            ``2 ** (len(widths) - 1)`` (tiles are padded to multiples of 16).
    """

    def __init__(
        self, in_channels: int, out_channels: int = 4, widths: Sequence[int] = DEFAULT_WIDTHS
    ) -> None:
        super().__init__()
        widths = tuple(widths)
        self.in_channels = in_channels
        self.stem = nn.Sequential(_conv(in_channels, widths[0]), nn.SiLU())
        self.down = nn.ModuleList(
            ResBlock(a, b) for a, b in zip((widths[0], *widths[:-1]), widths, strict=True)
        )
        self.middle = ResBlock(widths[-1], widths[-1])
        self.up = nn.ModuleList(
            ResBlock(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1))
        )
        self.out = nn.Conv2d(widths[0], out_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def levels(self) -> int:
        """How many resolutions the network works at."""
        return len(self.down)

    def forward(self, features: Tensor) -> Tensor:
        """Standardised correction (B, out_channels, H, W) from stacked features (B, in_channels, H, W)."""
        x = self.stem(features)
        skips = []
        for index, block in enumerate(self.down):
            if index:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        x = self.middle(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.out(x)


def smooth_correction(correction: Tensor, sigma: float) -> Tensor:
    """The correction low-passed by a Gaussian of ``sigma`` px (``ceil(3 sigma)`` taps each side,
    replicated borders like the network's own padding); itself when ``sigma`` is 0."""
    if sigma <= 0.0:
        return correction
    side = 2 * math.ceil(3.0 * sigma) + 1
    return kornia.filters.gaussian_blur2d(correction, (side, side), (sigma, sigma), border_type="replicate")
