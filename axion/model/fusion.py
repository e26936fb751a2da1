"""The fusion network: a residual correction on top of Stage 2, zero at initialisation.

It looks at Stage 2's optical, the SAR and (in the TerraMind arm) TerraMind's generated
optical, all standardised, and predicts a per-band correction to Stage 2. It is a small
U-Net: the correction a pixel needs depends on structure tens of pixels around it
(a blurred field edge, a road seen by the radar), so it must see far, but it stays
cheap: a few hundred thousand weights at full resolution only in its first and last
levels. Its last convolution starts at zero, so an untrained model returns Stage 2
exactly: training can only start from "no harm done", even on random TerraMind weights.
It always runs in fp32.

Told which tiles' opt_v2 is a real acquisition (sharp, maybe cloudy) rather than a Stage 2
estimate (blurred), it can also shift and scale every block's channels for those tiles
(:class:`Modulation`): the two kinds need opposite corrections (sharpen one, leave the other), and
a constant input plane alone reaches only the first convolution.

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


class Modulation(nn.Module):
    """A learned per-channel scale and shift of a block's output, applied in proportion to a
    per-tile condition: ``x * (1 + c * scale) + c * shift``, ``c`` 1 where opt_v2 is a real
    acquisition and 0 where it is a Stage 2 estimate (feature-wise linear modulation with a binary
    condition). Both start at zero, so an untrained network treats both kinds alike."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.shift = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        """``x`` (B, C, H, W) modulated by ``condition`` (B, 1, 1, 1)."""
        return x * (1 + condition * self.scale) + condition * self.shift


class FusionNet(nn.Module):
    """A residual U-Net: stem, one block per level down, a bottleneck block, one block per level up.

    Args:
        in_channels: stacked standardised inputs (opt_v2 4 + SAR 2, plus 4 generated bands in the
            TerraMind arm).
        out_channels: optical bands corrected (4).
        widths: channel width per level, full resolution first. Inputs must be divisible by
            ``2 ** (len(widths) - 1)`` (tiles are padded to multiples of 16).
        modulated: give every block a :class:`Modulation` by the per-tile condition ``forward``
            takes (whether opt_v2 is a real acquisition).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 4,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        modulated: bool = False,
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
        # One per block, in the order forward runs them: down, middle, up.
        blocks = [*widths, widths[-1], *(widths[i] for i in reversed(range(len(widths) - 1)))]
        self.modulations = nn.ModuleList(Modulation(c) for c in blocks) if modulated else None

    @property
    def levels(self) -> int:
        """How many resolutions the network works at."""
        return len(self.down)

    def forward(self, features: Tensor, condition: Tensor | None = None) -> Tensor:
        """Standardised correction (B, out_channels, H, W) from stacked features (B, in_channels, H, W).

        ``condition`` (B,): 1 where a tile's opt_v2 is a real acquisition, 0 where it is a Stage 2
        estimate; read only by a ``modulated`` network (None: all 0).
        """
        modulations = self.modulations if condition is not None else None
        c = None if condition is None else condition.reshape(-1, 1, 1, 1).to(features.dtype)

        def modulate(x: Tensor, index: int) -> Tensor:
            return x if modulations is None else modulations[index](x, c)

        x = self.stem(features)
        skips = []
        for index, block in enumerate(self.down):
            if index:
                x = F.avg_pool2d(x, 2)
            x = modulate(block(x), index)
            skips.append(x)
        x = modulate(self.middle(x), len(self.down))
        for index, (block, skip) in enumerate(zip(self.up, reversed(skips[:-1]), strict=True)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = modulate(block(torch.cat([x, skip], dim=1)), len(self.down) + 1 + index)
        return self.out(x)


def smooth_correction(correction: Tensor, sigma: float) -> Tensor:
    """The correction low-passed by a Gaussian of ``sigma`` px (``ceil(3 sigma)`` taps each side,
    replicated borders like the network's own padding); itself when ``sigma`` is 0."""
    if sigma <= 0.0:
        return correction
    side = 2 * math.ceil(3.0 * sigma) + 1
    return kornia.filters.gaussian_blur2d(correction, (side, side), (sigma, sigma), border_type="replicate")
