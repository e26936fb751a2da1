"""What adapts and what is frozen, parameter counts, and band statistics against terratorch."""

from __future__ import annotations

import re

import torch

from axion import bands
from axion.model.lora import DECODER_CROSS_ATTENTION, DENOISER_ATTENTION, lora_layers
from axion.model.stage3 import format_parameter_counts
from axion.model.terramind import S1_INPUT, S2_INPUT, S2_TARGET


def test_adapted_modules_are_exactly_the_attention_projections(tiny_model):
    from terratorch.models.backbones.terramind.tokenizer.models.unet.unet import AttentionBlock

    gen = tiny_model.generator
    depth = len(gen.sampler.model.decoder)
    expected = {
        f"sampler.model.decoder.{i}.cross_attn.{p}" for i in range(depth) for p in ("q", "kv", "proj")
    }
    unet_prefix = f"tokenizer.{S2_TARGET}.decoder."
    attention = [
        n for n, m in gen.tokenizer[S2_TARGET].decoder.named_modules() if isinstance(m, AttentionBlock)
    ]
    assert attention
    expected |= {f"{unet_prefix}{n}.{p}" for n in attention for p in ("qkv", "proj_out")}
    adapted = set(lora_layers(gen))
    assert adapted == expected
    assert all(
        re.fullmatch(DECODER_CROSS_ATTENTION, n) or re.fullmatch(DENOISER_ATTENTION, n) for n in adapted
    )


def _lora_count(layer: torch.nn.Module, rank: int) -> int:
    base = layer.base_layer
    if isinstance(base, torch.nn.Linear):
        return rank * (base.in_features + base.out_features)
    assert isinstance(base, torch.nn.Conv1d)
    # A: Conv1d(in, r, kernel k), B: Conv1d(r, out, 1), no biases.
    return rank * (base.in_channels * base.kernel_size[0] + base.out_channels)


def test_trainable_count_follows_from_rank_and_layer_sizes(tiny_model):
    rank = tiny_model.cfg.lora_rank
    expected_lora = sum(_lora_count(layer, rank) for layer in lora_layers(tiny_model.generator).values())
    head = tiny_model.fusion
    expected_head = sum(
        conv.weight.numel() + conv.bias.numel()
        for conv in head.modules()
        if isinstance(conv, torch.nn.Conv2d)
    )
    # A scale and a shift per channel of every block, for acquisitions.
    expected_head += sum(2 * block.body[-1].out_channels for block in (*head.down, head.middle, *head.up))
    trainable, total = tiny_model.parameter_counts()
    assert trainable == expected_lora + expected_head
    assert total == sum(p.numel() for p in tiny_model.parameters())
    assert trainable / total < 0.01
    assert format_parameter_counts(trainable, total).startswith(f"Trainable parameters: {trainable:,} of")


def test_everything_but_lora_and_head_is_frozen(tiny_model):
    for name, p in tiny_model.named_parameters():
        assert p.requires_grad == ("lora_" in name or name.startswith("fusion.")), name
    assert all(p.dtype == torch.float32 for p in tiny_model.fusion.parameters())


def test_band_slots_and_statistics_equal_terratorch(tiny_model):
    from terratorch.models.backbones.terramind.model import terramind_register as reg

    names = reg.PRETRAINED_BANDS[S2_INPUT]
    assert [names[i] for i in bands.S2L2A_SLOTS] == ["BLUE", "GREEN", "RED", "NIR_BROAD"]
    assert len(names) == len(bands.S2L2A_BANDS)
    for key in (S2_INPUT, S2_TARGET):
        assert reg.v1_pretraining_mean[key] == list(bands.S2L2A_MEAN)
        assert reg.v1_pretraining_std[key] == list(bands.S2L2A_STD)
    assert reg.v1_pretraining_mean[S1_INPUT] == list(bands.S1GRD_MEAN)
    assert reg.v1_pretraining_std[S1_INPUT] == list(bands.S1GRD_STD)
    # ... and those are the statistics the built generator carries.
    built = tiny_model.generator.pretraining_mean[S2_INPUT].flatten()
    torch.testing.assert_close(built, torch.tensor(bands.S2L2A_MEAN, dtype=built.dtype))


def test_random_base_does_not_depend_on_the_callers_rng(tiny_model):
    """Checkpoints hold only adapters, so a rebuilt random base must be the same base."""
    import torch

    from axion.config import ModelConfig
    from axion.model import build_stage3_model

    torch.manual_seed(12345)
    other = build_stage3_model(ModelConfig(model_size="tiny", pretrained=False, timesteps=1))
    frozen = {n: p for n, p in tiny_model.named_parameters() if not p.requires_grad}
    for name, param in other.named_parameters():
        if not param.requires_grad:
            assert torch.equal(param, frozen[name]), name


def test_rtc_product_uses_terramind_s1rtc_input_and_statistics(real_batch) -> None:
    from terratorch.models.backbones.terramind.model import terramind_register as reg

    from axion.config import ModelConfig
    from axion.model import build_stage3_model
    from axion.model.standardize import standardize_s1
    from axion.model.terramind import S1_INPUTS

    model = build_stage3_model(
        ModelConfig(model_size="tiny", pretrained=False, timesteps=1, s1_product="rtc")
    )
    assert S1_INPUTS["rtc"] in model.generator.encoder_embeddings
    assert S1_INPUTS["grd"] not in model.generator.encoder_embeddings
    assert reg.v1_pretraining_mean[S1_INPUTS["rtc"]] == list(bands.S1RTC_MEAN)
    assert reg.v1_pretraining_std[S1_INPUTS["rtc"]] == list(bands.S1RTC_STD)
    s1 = real_batch[0]
    expected = (s1 - torch.tensor(bands.S1RTC_MEAN).view(1, 2, 1, 1)) / torch.tensor(bands.S1RTC_STD).view(
        1, 2, 1, 1
    )
    torch.testing.assert_close(standardize_s1(s1, "rtc"), expected)
    out = model.generate(s1, real_batch[1], seeds=[0, 1])
    assert torch.equal(out, real_batch[1])  # identity start, whatever the product
