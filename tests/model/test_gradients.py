"""Gradients reach every adapter and the head, and nothing frozen; a short real training loop learns."""

from __future__ import annotations

import torch

from axion.model.lora import lora_layers
from axion.model.terramind import S2_TARGET

from .conftest import make_pretrained_like, preserved


def test_one_backward_reaches_every_trainable_and_no_frozen(tiny_model, real_batch, wake):
    wake()
    s1, opt_v2 = real_batch[0][:1], real_batch[1][:1]
    calls = []
    handle = tiny_model.generator.tokenizer[S2_TARGET].decoder.register_forward_hook(
        lambda *_: calls.append(1)
    )
    try:
        # Flagged as a real acquisition, so the acquisition modulation's weights are reached too.
        out = tiny_model(s1, opt_v2, seeds=[0], timesteps=1, acquired=torch.ones(1))
        assert len(calls) == 1
        (out - opt_v2 * 1.1).abs().mean().backward()
    finally:
        handle.remove()
    # One gradient step (the default --grad-steps 1) is not checkpointed: no second denoiser call.
    assert len(calls) == 1
    trainable = {n: p for n, p in tiny_model.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in tiny_model.named_parameters() if not p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    no_grad = [n for n, p in trainable.items() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert no_grad == []
    assert [n for n, p in frozen.items() if p.grad is not None] == []


def test_short_training_from_true_init_changes_every_adapter(tiny_model, real_batch, unet_zero_weights):
    """AdamW from the real starting point (LoRA B = 0, head output = 0), on a tile flagged as a real
    acquisition so that the acquisition modulation trains too.

    Only the frozen UNet's zero-initialised weights get pretrained-like values:
    with random TerraMind weights they are zero and block the gradient.
    """
    s1, opt_v2 = real_batch[0][:1], real_batch[1][:1]
    target = opt_v2 * 0.9 + 50.0
    with preserved(tiny_model, unet_zero_weights):
        make_pretrained_like(tiny_model, unet_zero_weights)
        before = tiny_model.trainable_state_dict()
        params = [p for p in tiny_model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
        tiny_model.train()
        losses = []
        for step in range(4):
            optimizer.zero_grad()
            out = tiny_model(s1, opt_v2, seeds=[step], timesteps=1, acquired=torch.ones(1))
            loss = (out - target).abs().mean()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        tiny_model.train(False)
        after = tiny_model.trainable_state_dict()
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert unchanged == []
    lora_names = [n for n in before if "lora_" in n]
    assert len(lora_names) == 2 * len(lora_layers(tiny_model.generator))
    assert losses[-1] < losses[0]


def test_generator_stays_in_eval_mode(tiny_model):
    tiny_model.train()
    try:
        assert tiny_model.fusion.training
        assert not any(m.training for m in tiny_model.generator.modules())
    finally:
        tiny_model.train(False)


def test_grad_steps_truncate_backprop_through_the_sampler(tiny_model, real_batch, wake):
    """At T=2, K=1 backpropagates through the last UNet call only; K=2 through both, each
    checkpointed (recomputed in the backward pass)."""
    wake()
    s1, opt_v2 = real_batch[0][:1], real_batch[1][:1]
    unet = tiny_model.generator.tokenizer[S2_TARGET].decoder
    calls: list[bool] = []
    handle = unet.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    grads = {}
    try:
        for k in (1, 2):
            calls.clear()
            tiny_model.arm.grad_steps = k
            out = tiny_model(s1, opt_v2, seeds=[0], timesteps=2)
            forward = list(calls)
            (out - opt_v2 * 1.1).abs().mean().backward()
            grads[k] = {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}
            tiny_model.zero_grad(set_to_none=True)
            if k == 1:
                assert forward == [False, True] and len(calls) == 2
            else:
                assert len(forward) == 2 and len(calls) == 4
    finally:
        handle.remove()
        tiny_model.arm.grad_steps = tiny_model.cfg.grad_steps
    unet_lora = [n for n in grads[2] if "lora_" in n and "tokenizer" in n]
    assert unet_lora and all(n in grads[1] for n in unet_lora)
    # Truncation changes the gradient, but not the output.
    assert any(not torch.equal(grads[1][n], grads[2][n]) for n in unet_lora)


def test_grad_steps_equal_to_timesteps_is_full_backprop(tiny_model, real_batch, wake):
    """K = T backpropagates through every UNet call, also at T = 3 (its spacing holds 4 steps)."""
    wake()
    s1, opt_v2 = real_batch[0][:1], real_batch[1][:1]
    unet = tiny_model.generator.tokenizer[S2_TARGET].decoder
    calls: list[bool] = []
    handle = unet.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    try:
        tiny_model.arm.grad_steps = 3
        out = tiny_model(s1, opt_v2, seeds=[0], timesteps=3)
    finally:
        handle.remove()
        tiny_model.arm.grad_steps = tiny_model.cfg.grad_steps
    tiny_model.zero_grad(set_to_none=True)
    assert torch.isfinite(out).all()
    assert calls == [True, True, True]
