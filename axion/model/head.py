"""The fusion head: a residual on top of Stage 2, zero at initialisation.

It looks at Stage 2's optical, TerraMind's generated optical and the SAR (all
standardised) and predicts a per-band correction to Stage 2. Its last
convolution starts at zero, so an untrained model returns Stage 2 unchanged:
training can only start from "no harm done", even on random TerraMind weights.
"""

from __future__ import annotations

from torch import Tensor, nn


class FusionHead(nn.Module):
    """Two 3x3 conv layers and a zero-initialised 1x1 output conv.

    Args:
        in_channels: stacked inputs (4 Stage 2 + 4 generated + 2 SAR = 10).
        out_channels: optical bands corrected (4).
        hidden: width of the hidden layers.
    """

    def __init__(self, in_channels: int = 10, out_channels: int = 4, hidden: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, padding_mode="replicate"),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="replicate"),
            nn.SiLU(),
        )
        self.out = nn.Conv2d(hidden, out_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: Tensor) -> Tensor:
        """Standardised correction (B, out_channels, H, W) from stacked features (B, in_channels, H, W)."""
        return self.out(self.body(features))
