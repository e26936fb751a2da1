"""Generation is TerraMind's own: the same weights, tokens and noise give terratorch's S2L2A.

terratorch's ``TerraMindGeneration.forward`` is run end to end (standardisation, encoder,
decoder, token scatter, FSQ lookup, its diffusion pipeline, de-standardisation) with two
interventions only: the tokens it samples are replaced by ours, and its noise generator is
seeded like ours. The weights are non-degenerate (the random UNet's zero layers and the LoRA
B matrices get small random values).
"""

from __future__ import annotations

import pytest
import torch

from axion import bands
from axion.model.standardize import standardize_optical, standardize_s1
from axion.model.terramind import S2_TARGET


def _terratorch_generation(model, s1, opt_v2, tokens, seed, timesteps, monkeypatch):
    generator = model.generator
    sampler = generator.sampler
    tokenizer = generator.tokenizer[S2_TARGET]
    captured = {}
    forward_enc_dec = sampler.forward_enc_dec_roar_batched

    def capture_positions(*args, **kwargs):
        logits, positions = forward_enc_dec(*args, **kwargs)
        captured["positions"] = positions
        return logits, positions

    def our_tokens(logits, *args, **kwargs):  # in terratorch's (shuffled) decoding order
        chosen = tokens.gather(1, captured["positions"])
        return chosen, torch.ones_like(chosen, dtype=torch.float32)

    decode_quant = tokenizer.decode_quant

    def seeded_noise(quant, **kwargs):
        return decode_quant(quant, **{**kwargs, "generator": torch.Generator().manual_seed(seed)})

    monkeypatch.setattr(sampler, "forward_enc_dec_roar_batched", capture_positions)
    monkeypatch.setattr(sampler, "sample_tokens_batched", our_tokens)
    monkeypatch.setattr(tokenizer, "decode_quant", seeded_noise)
    # The raw 12-band S2L2A input: opt_v2 in its slots, the pretraining mean elsewhere.
    s2l2a = torch.tensor(bands.S2L2A_MEAN).view(1, -1, 1, 1).repeat(1, 1, *opt_v2.shape[-2:])
    s2l2a[:, list(bands.S2L2A_SLOTS)] = opt_v2
    with torch.no_grad():
        out = generator({"S1GRD": s1.clone(), "S2L2A": s2l2a}, timesteps=timesteps)
    assert captured, "terratorch's generation did not decode through the patched sampler"
    return out["S2L2A"][:, list(bands.S2L2A_SLOTS)]


@pytest.mark.parametrize("timesteps", [1, 2, 10])
def test_generation_equals_terratorchs_for_the_same_tokens_and_noise(
    tiny_model, real_batch, wake, monkeypatch, timesteps
):
    wake()
    s1, opt_v2 = real_batch[0][:1], real_batch[1][:1]
    seed = 7
    arm = tiny_model.arm
    with torch.no_grad():
        logits, tokens = arm.tokens(standardize_s1(s1), standardize_optical(opt_v2), [seed])
        ours = arm.decode(logits, tokens, [seed], timesteps, tuple(opt_v2.shape[-2:]))
    theirs = _terratorch_generation(tiny_model, s1, opt_v2, tokens, seed, timesteps, monkeypatch)
    theirs_std = standardize_optical(theirs)
    assert ours.std() > 0.05  # a real image, not the constant of a degenerate UNet
    assert (ours - theirs_std).abs().max() <= 1e-5
    # The public method gives the same bands in tile units.
    public = tiny_model.generated_bands(s1, opt_v2, seeds=[seed], timesteps=timesteps)
    torch.testing.assert_close(public, theirs, atol=2e-3, rtol=1e-6)
    # And those bands are exactly what the fusion network sees.
    assert public.shape == opt_v2.shape


def test_argmax_tokens_equal_terratorchs_temperature_zero_choice(tiny_model, real_batch, wake):
    """Without any patch, terratorch at temperature 0 picks the tokens our argmax picks."""
    wake()
    s1, opt_v2 = real_batch[0][:1], real_batch[1][:1]
    logits, tokens = tiny_model.arm.tokens(standardize_s1(s1), standardize_optical(opt_v2), [0])
    theirs, _ = tiny_model.generator.sampler.sample_tokens_batched(logits.detach(), temperature=0.0)
    assert torch.equal(theirs, tokens)


def test_top_p_draws_from_terratorchs_nucleus(tiny_model, real_batch, wake):
    """Our nucleus is terratorch's (top_k_top_p_filtering at p = 0.8); draws are seeded per tile."""
    from axion.model.tokens import choose_tokens, top_p_filter

    wake()
    s1, opt_v2 = real_batch[0][:1], real_batch[1][:1]
    logits, _ = tiny_model.arm.tokens(standardize_s1(s1), standardize_optical(opt_v2), [0])
    # Sharpen the flat random logits until nuclei hold a few tokens, as a trained decoder's do.
    scale = next(
        s
        for s in (40.0, 20.0, 10.0, 5.0, 2.0)
        if int(torch.isfinite(top_p_filter(logits * s, 0.8)).sum(-1).max()) > 1
    )
    logits = logits.detach() * scale
    ours = top_p_filter(logits, 0.8)
    theirs = tiny_model.generator.sampler.top_k_top_p_filtering(logits[0].clone(), top_p=0.8)
    assert torch.equal(torch.isfinite(ours[0]), torch.isfinite(theirs))
    kept = torch.isfinite(ours).sum(dim=-1)
    assert 1 <= int(kept.min()) and 1 < int(kept.max()) < logits.shape[-1]
    first = choose_tokens(logits, "top-p", top_p=0.8, seeds=[11])
    assert torch.equal(first, choose_tokens(logits, "top-p", top_p=0.8, seeds=[11]))
    others = [choose_tokens(logits, "top-p", top_p=0.8, seeds=[seed]) for seed in range(12, 22)]
    assert any(not torch.equal(first, other) for other in others)
    assert bool(torch.isfinite(ours.gather(-1, first.unsqueeze(-1))).all())  # always inside the nucleus
