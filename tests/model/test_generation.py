"""Generation behaviour: identity start, reproducibility, batch independence, timesteps, autocast."""

from __future__ import annotations

import pytest
import torch

from axion.model.terramind import S2_TARGET


def test_identity_at_initialisation(tiny_model, real_batch):
    s1, opt_v2 = real_batch
    assert torch.equal(tiny_model(s1, opt_v2, seeds=[0, 1]), opt_v2)
    assert torch.equal(tiny_model.generate(s1, opt_v2, seeds=[0, 1]), opt_v2)


def test_random_weights_are_announced(tiny_build):
    _, messages = tiny_build
    assert any("random" in m.lower() and "tiny" in m for m in messages), messages


def test_sample_does_not_depend_on_batch_mates(tiny_model, real_batch, wake):
    wake()
    s1, opt_v2 = real_batch
    pair = tiny_model.generate(s1, opt_v2, seeds=[7, 8])
    alone = tiny_model.generate(s1[1:], opt_v2[1:], seeds=[8])
    assert not torch.equal(pair[1], opt_v2[1])  # the pieces are awake: the output really moved
    # fp32 kernels may sum in another order for another batch size: up to ~1e-4 of the value apart
    # (tile units reach thousands); a batch mate leaking in would move pixels by hundreds.
    torch.testing.assert_close(pair[1:], alone, atol=0.05, rtol=2e-4)


def test_seeds_reproduce_and_differ(tiny_model, real_batch, wake):
    wake()
    s1, opt_v2 = real_batch
    first = tiny_model.generate(s1, opt_v2, seeds=[1, 2])
    again = tiny_model.generate(s1, opt_v2, seeds=[1, 2])
    other = tiny_model.generate(s1, opt_v2, seeds=[3, 4])
    assert torch.equal(first, again)
    assert (first - other).abs().amax(dim=(1, 2, 3)).min() > 0.1


def test_global_rng_reproduces_and_token_order_draws_nothing(tiny_model, real_batch, wake):
    wake()
    s1, opt_v2 = real_batch
    torch.manual_seed(123)
    first = tiny_model.generate(s1, opt_v2)
    after_first = torch.rand(1)
    torch.manual_seed(123)
    again = tiny_model.generate(s1, opt_v2)
    assert torch.equal(first, again)
    # Only the diffusion noise (one randn of the output's shape) consumed the global stream.
    torch.manual_seed(123)
    torch.randn(2, 12, 64, 64)
    assert torch.equal(torch.rand(1), after_first)


@pytest.mark.parametrize("timesteps", [1, 2, 3])
def test_timesteps_set_denoiser_calls(tiny_model, real_batch, timesteps):
    """--timesteps T is T UNet calls, also where 1000 is not a multiple of T (3 ran 4)."""
    s1, opt_v2 = real_batch
    calls = []
    unet = tiny_model.generator.tokenizer[S2_TARGET].decoder
    handle = unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        tiny_model.generate(s1[:1], opt_v2[:1], seeds=[0], timesteps=timesteps)
    finally:
        handle.remove()
    assert len(calls) == timesteps


def test_the_schedule_holds_exactly_t_steps_and_terratorchs_where_it_runs_t(tiny_model):
    """The tokenizer's spacing holds T + 1 steps for T = 3, 6, 9, 15; the first T are run. Where
    it holds T steps, the schedule is terratorch's own, the last step going to the clean sample."""
    from axion.model.diffusion import ddim_timesteps

    unroll = tiny_model.arm.denoise
    for timesteps in (3, 6, 9, 15):
        steps = ddim_timesteps(unroll.scheduler(timesteps), timesteps)
        assert len(steps) == timesteps and len(unroll.scheduler(timesteps).timesteps) == timesteps + 1
        assert steps[0] == 999 and steps[-1] == 999 - (timesteps - 1) * (1000 // timesteps)
    for timesteps in (1, 2, 4, 5, 8, 10, 20, 25, 40, 50):
        theirs = unroll.scheduler(timesteps).timesteps.tolist()
        assert ddim_timesteps(unroll.scheduler(timesteps), timesteps) == theirs


def test_bf16_autocast_trains_and_stays_close(tiny_model, real_batch, wake):
    wake()
    s1, opt_v2 = real_batch[0][:1], real_batch[1][:1]
    reference = tiny_model.generate(s1, opt_v2, seeds=[5])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny_model(s1, opt_v2, seeds=[5])
    out.abs().mean().backward()
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in tiny_model.fusion.parameters())
    # bf16 moves the output by a small fraction of the (awake) correction itself.
    correction = (reference - opt_v2).abs().max()
    assert correction > 1.0
    assert (out.detach() - reference).abs().max() < 0.2 * correction


def test_rejects_bad_shapes(tiny_model, real_batch):
    s1, opt_v2 = real_batch
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny_model.generate(s1[..., :40, :40], opt_v2[..., :40, :40], seeds=[0, 1])
    with pytest.raises(ValueError, match="opt_v2"):
        tiny_model.generate(s1, opt_v2[:, :3], seeds=[0, 1])
    with pytest.raises(ValueError, match="seeds"):
        tiny_model.generate(s1, opt_v2, seeds=[0])


@pytest.mark.parametrize(("height", "width"), [(48, 48), (32, 64), (16, 16)])
def test_grids_terramind_cannot_take_are_padded_and_cropped_back(tiny_model, real_batch, wake, height, width):
    """A 3 x 3 token grid fails inside TerraMind's UNet and its grid must be square: such tiles
    run on the next square multiple of 32 px, and come back at their own size."""
    wake()
    s1, opt_v2 = real_batch[0][:1, :, :height, :width], real_batch[1][:1, :, :height, :width]
    opt_v3, generated = tiny_model.outputs(s1, opt_v2, seeds=[3])
    assert opt_v3.shape == generated.shape == opt_v2.shape
    assert torch.isfinite(opt_v3).all() and torch.isfinite(generated).all()
    assert (opt_v3 - opt_v2).abs().max() > 0.1  # the pieces are awake: the generation reached opt_v3
