"""The fusion network: identity at initialisation, a receptive field of at least 64 px, any 16-multiple size."""

from __future__ import annotations

import pytest
import torch

from axion.model.fusion import FusionNet


def _receptive_field(net: FusionNet, size: int = 192) -> int:
    """Side of the input square that one output pixel depends on (from the input gradient)."""
    with torch.no_grad():
        net.out.weight.normal_(0, 0.1)  # a trained last layer: the zero start would hide everything
    x = torch.randn(1, net.in_channels, size, size, requires_grad=True)
    net(x)[0, 0, size // 2, size // 2].backward()
    reach = x.grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = reach.any(dim=1).nonzero(), reach.any(dim=0).nonzero()
    return int(min(rows.max() - rows.min(), cols.max() - cols.min())) + 1


def test_starts_at_zero_and_sees_far() -> None:
    torch.manual_seed(0)
    net = FusionNet(10)
    x = torch.randn(2, 10, 64, 64)
    assert torch.equal(net(x), torch.zeros(2, 4, 64, 64))
    assert _receptive_field(net) >= 64


@pytest.mark.parametrize("size", [(16, 16), (48, 32), (128, 128)])
def test_any_multiple_of_16(size: tuple[int, int]) -> None:
    net = FusionNet(6)
    assert net(torch.randn(1, 6, *size)).shape == (1, 4, *size)
