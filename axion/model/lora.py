"""LoRA adapters on TerraMind's generator, through peft.

Two groups of layers adapt: the encoder-decoder's cross-attention (where the
decoder reads the SAR + optical encoding) and the self-attention of the
tokenizer's diffusion UNet (which draws the pixels). Module names are matched
by regex, not substring: the tokenizer also has ``q``, ``kv``, ``proj`` and
``cross_attn`` modules that must stay untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

#: Decoder cross-attention projections (nn.Linear).
DECODER_CROSS_ATTENTION = r"sampler\.model\.decoder\.\d+\.cross_attn\.(q|kv|proj)"
#: Diffusion UNet self-attention projections (nn.Conv1d, kernel 1).
DENOISER_ATTENTION = r"tokenizer\.tok_sen2l2a@224\.decoder\..*\.(qkv|proj_out)"
#: peft ``target_modules``: a regex that must match a module's full name.
TARGET_MODULES = rf"({DECODER_CROSS_ATTENTION})|({DENOISER_ATTENTION})"


def inject_lora(
    generator: nn.Module, rank: int, alpha: int, target_modules: str = TARGET_MODULES
) -> nn.Module:
    """Add LoRA adapters in place and freeze every other parameter of the generator."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=target_modules
    )
    generator = inject_adapter_in_model(config, generator)
    for name, param in generator.named_parameters():
        param.requires_grad = "lora_" in name
    return generator


def lora_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Every adapted layer, by its module name."""
    from peft.tuners.lora import LoraLayer

    return {name: layer for name, layer in module.named_modules() if isinstance(layer, LoraLayer)}


def merge_lora(module: nn.Module) -> int:
    """Fold every adapter into its base weight (inference only); returns how many merged."""
    layers = lora_layers(module)
    for layer in layers.values():
        layer.merge()
    return len(layers)


def unmerge_lora(module: nn.Module) -> int:
    """Undo :func:`merge_lora`; returns how many layers were unmerged."""
    layers = lora_layers(module)
    for layer in layers.values():
        layer.unmerge()
    return len(layers)
