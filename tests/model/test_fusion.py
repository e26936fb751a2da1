"""The fusion network: identity at initialisation, a receptive field of at least 64 px, any 16-multiple size."""

from __future__ import annotations

import pytest
import torch

from axion.config import ModelConfig
from axion.model import build_stage3_model
from axion.model.fusion import FusionNet, smooth_correction
from axion.model.stage3 import Stage3Model


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


def test_correction_low_pass_keeps_coarse_and_drops_finest_detail() -> None:
    flat = torch.full((1, 4, 32, 32), 0.3)
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1.0  # +-1, 2 px period
    fine = checker.expand(1, 4, 32, 32)
    assert torch.equal(smooth_correction(fine, 0.0), fine)
    assert torch.allclose(smooth_correction(flat, 1.0), flat)
    assert smooth_correction(fine, 1.0)[..., 4:-4, 4:-4].abs().max() < 0.01  # Nyquist detail: gone
    ramp = torch.linspace(0, 1, 32).expand(1, 4, 32, 32)  # coarse content: kept inside the borders
    assert torch.allclose(smooth_correction(ramp, 1.0)[..., 4:-4], ramp[..., 4:-4], atol=1e-5)


def test_model_output_is_opt_v2_plus_the_smoothed_correction() -> None:
    unsmoothed = build_stage3_model(ModelConfig(generator="none"))  # the fusion network alone: cheap
    assert unsmoothed.cfg.correction_smoothing == 0.0  # off by default
    model = Stage3Model(unsmoothed.fusion, unsmoothed.cfg.model_copy(update={"correction_smoothing": 1.0}))
    torch.manual_seed(0)
    with torch.no_grad():
        model.fusion.out.weight.normal_(0, 0.1)  # a trained last layer
        s1 = torch.randn(1, 2, 32, 32) * 3 - 12
        opt_v2 = torch.rand(1, 4, 32, 32) * 3000
        smoothed, raw = model(s1, opt_v2) - opt_v2, unsmoothed(s1, opt_v2) - opt_v2
    assert torch.allclose(smoothed, smooth_correction(raw, 1.0), atol=1e-2)
    assert not torch.allclose(smoothed, raw, atol=1.0)


def test_the_network_is_told_which_tiles_are_real_acquisitions() -> None:
    """One more input plane: 1 for a tile whose opt_v2 is a real acquisition, 0 for a Stage 2
    estimate (and when not told); a trained network answers each tile by its own flag."""
    from axion.model.stage3 import fusion_inputs

    cfg = ModelConfig(generator="none")
    assert cfg.acquisition_input and fusion_inputs(cfg) == 7
    assert fusion_inputs(cfg.model_copy(update={"acquisition_input": False})) == 6
    torch.manual_seed(0)
    model = build_stage3_model(cfg)
    with torch.no_grad():
        model.fusion.out.weight.normal_(0, 0.1)  # a trained last layer
        s1 = (torch.randn(1, 2, 32, 32) * 3 - 12).expand(2, -1, -1, -1)
        opt_v2 = (torch.rand(1, 4, 32, 32) * 3000).expand(2, -1, -1, -1)
        told = model(s1, opt_v2, acquired=torch.tensor([0.0, 1.0]))
        untold = model(s1, opt_v2)
    assert torch.equal(untold[0], told[0]) and torch.equal(untold[1], told[0])
    assert not torch.allclose(told[0], told[1], atol=1.0)
    with pytest.raises(ValueError, match="acquired has 3 values for a batch of 2"):
        model(s1, opt_v2, acquired=torch.ones(3))


def test_acquisitions_get_their_own_scale_and_shift_in_every_block(real_batch) -> None:
    """With ``acquisition_modulation`` every block's output is scaled and shifted per channel for
    acquired tiles only; both start at zero (no change), and training reaches them. One real
    terramind-examples crop, given once as a Stage 2 estimate and once as an acquisition."""
    cfg = ModelConfig(generator="none")
    assert cfg.acquisition_modulation
    torch.manual_seed(0)
    model = build_stage3_model(cfg)
    plain = build_stage3_model(cfg.model_copy(update={"acquisition_modulation": False}))
    assert plain.fusion.modulations is None
    blocks = len(model.fusion.down) + 1 + len(model.fusion.up)
    assert len(model.fusion.modulations) == blocks
    plain.fusion.load_state_dict(model.fusion.state_dict(), strict=False)  # the same weights but those
    s1 = real_batch[0][:1].expand(2, -1, -1, -1)
    opt_v2 = real_batch[1][:1].expand(2, -1, -1, -1)
    acquired = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        for net in (model, plain):
            net.fusion.out.weight.copy_(
                torch.linspace(-0.1, 0.1, net.fusion.out.weight.numel()).view_as(net.fusion.out.weight)
            )
        assert torch.equal(model(s1, opt_v2, acquired=acquired), plain(s1, opt_v2, acquired=acquired))
    model.fusion.zero_grad()
    model(s1, opt_v2, acquired=acquired).square().mean().backward()
    assert all(
        m.scale.grad.abs().sum() > 0 and m.shift.grad.abs().sum() > 0 for m in model.fusion.modulations
    )
    with torch.no_grad():
        for m in model.fusion.modulations:
            m.shift.normal_(0, 0.1)
        moved, unmoved = model(s1, opt_v2, acquired=acquired), plain(s1, opt_v2, acquired=acquired)
    assert torch.equal(moved[0], unmoved[0])  # a Stage 2 estimate: untouched
    assert not torch.allclose(moved[1], unmoved[1], atol=1.0)  # an acquisition: its own correction
