"""The Stage 3 model: TerraMind's generator with LoRA, grounded in SAR, plus a residual fusion head.

Data flow (standardised with TerraMind's pretraining statistics)::

    s1 (VV, VH dB) ----------------------------+-----------------------------+
    opt_v2 (B2 B3 B4 B8) -> S2L2A slots 1 2 3 7 |                             |
                                                v                             |
      encoder-decoder (LoRA on decoder cross-attention) -> token logits      |
      -> softmax @ FSQ codebook (soft latent)                                 |
      -> UNet denoiser (LoRA on self-attention), T DDIM steps from noise      |
      -> generated S2L2A, slots 1 2 3 7                                       |
                                                v                             v
      fusion head([opt_v2, generated, s1]) -> correction (zero at init) -> opt_v3 = opt_v2 + correction
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from axion import bands
from axion.config import ModelConfig
from axion.errors import WeightsError
from axion.model import standardize as std
from axion.model.diffusion import DDIMUnroll, initial_noise, soft_latent
from axion.model.head import FusionHead
from axion.model.lora import TARGET_MODULES, inject_lora
from axion.model.terramind import S1_INPUT, S2_INPUT, S2_TARGET, build_generator, load_pretrained
from axion.model.weights import check_weights

#: Seed of the frozen base when built without pretrained weights.
RANDOM_BASE_SEED = 0
#: Version tag of the adapter/metadata layout.
ADAPTER_FORMAT = "axion-stage3-adapters/1"


@contextmanager
def _fixed_token_order(device: torch.device) -> Iterator[None]:
    """Fix ROAR's random token order without touching the caller's RNG streams.

    terratorch shuffles the target tokens with ``torch.rand`` from the global RNG.
    All tokens are predicted in one pass and the order is undone afterwards, so
    it only changes float rounding, but it would consume (and so shift) the
    global random stream the diffusion noise is drawn from.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.random.default_generator.manual_seed(0)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(0)
        yield


class Stage3Model(nn.Module):
    """opt_v2 + SAR -> opt_v3, in tile units.

    Build it with :func:`build_stage3_model`. Only the LoRA adapters and the
    fusion head train; TerraMind's own weights stay frozen (and in eval mode).
    """

    def __init__(self, generator: nn.Module, head: FusionHead, cfg: ModelConfig, target_modules: str) -> None:
        super().__init__()
        self.generator = generator
        self.head = head
        tokenizer = generator.tokenizer[S2_TARGET]
        self.denoise = DDIMUnroll(tokenizer.decoder, tokenizer.noise_scheduler)
        self.model_size = cfg.model_size
        self.lora_rank = cfg.lora_rank
        self.lora_alpha = cfg.lora_alpha
        self.timesteps = cfg.timesteps
        self.target_modules = target_modules

    # --- modes and parameters ------------------------------------------------
    def train(self, mode: bool = True) -> Stage3Model:
        """Only the head follows ``mode``; the frozen generator always runs in eval mode."""
        self.training = mode
        self.head.train(mode)
        self.generator.eval()
        return self

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Copies of the trainable tensors (LoRA + head), by parameter name."""
        return {name: p.detach().clone() for name, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load what :meth:`trainable_state_dict` returned; keys and shapes must match exactly."""
        own = {name: p for name, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if missing or unexpected:
            what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
            raise WeightsError(
                f"trainable weights do not fit this model ({what}; {len(missing)} missing, "
                f"{len(unexpected)} unexpected): built with another size, rank or layout?"
            )
        for name, param in own.items():
            if tuple(state[name].shape) != tuple(param.shape):
                raise WeightsError(
                    f"trainable weight {name} has shape {list(state[name].shape)}, "
                    f"this model needs {list(param.shape)} (another size or rank?)"
                )
        with torch.no_grad():
            for name, param in own.items():
                param.copy_(state[name].to(param.device, param.dtype))

    def adapter_metadata(self) -> dict[str, Any]:
        """What it takes to rebuild a model these adapters fit."""
        return {
            "format": ADAPTER_FORMAT,
            "model_size": self.model_size,
            "lora_rank": self.lora_rank,
            "lora_alpha": self.lora_alpha,
            "target_modules": self.target_modules,
            "timesteps": self.timesteps,
        }

    # --- the model -----------------------------------------------------------
    def _token_logits(self, s1_std: Tensor, s2_std: Tensor) -> Tensor:
        """Encoder-decoder logits (B, N, V) for every S2L2A token, in raster order."""
        from terratorch.models.backbones.terramind.model.generate import (
            init_empty_target_modality,
            init_full_input_modality,
        )
        from terratorch.models.backbones.terramind.model.modality_info import MODALITY_INFO

        b, _, h, w = s1_std.shape
        n = (h // bands.PATCH_SIZE) * (w // bands.PATCH_SIZE)
        device = s1_std.device
        mod_dict = {}
        for name, value in ((S1_INPUT, s1_std), (S2_INPUT, s2_std)):
            entry = {
                "tensor": value,
                "input_mask": torch.zeros(b, n, dtype=torch.bool, device=device),
                "target_mask": torch.ones(b, n, dtype=torch.bool, device=device),
                "decoder_attention_mask": torch.zeros(b, n, dtype=torch.bool, device=device),
            }
            mod_dict[name] = init_full_input_modality(entry, MODALITY_INFO, name, device)
        mod_dict[S2_TARGET] = init_empty_target_modality(MODALITY_INFO, S2_TARGET, b, n, device)
        with _fixed_token_order(device):
            logits, positions = self.generator.sampler.forward_enc_dec_roar_batched(
                mod_dict, S2_TARGET, num_select=n
            )
        order = positions.argsort(dim=1)
        return logits.gather(1, order.unsqueeze(-1).expand_as(logits))

    def forward(
        self,
        s1: Tensor,
        opt_v2: Tensor,
        seeds: Sequence[int] | None = None,
        timesteps: int | None = None,
    ) -> Tensor:
        """opt_v3 (B, 4, H, W) in tile units; differentiable in the LoRA and head weights.

        Args:
            s1: (B, 2, H, W) VV, VH in dB.
            opt_v2: (B, 4, H, W) B2, B3, B4, B8 in tile units (reflectance x 10000).
            seeds: one seed per sample for the diffusion noise (reproducible, independent
                of batch mates); None draws it from torch's global RNG.
            timesteps: DDIM steps (default: the configured number).

        H and W must be equal multiples of 16 (TerraMind's token grid is square).
        """
        _check_inputs(s1, opt_v2, seeds)
        s1_std = std.standardize_s1(s1)
        opt_std = std.standardize_optical(opt_v2)
        logits = self._token_logits(s1_std, std.optical_to_s2l2a(opt_std))
        b, _, h, w = opt_v2.shape
        grid = (h // bands.PATCH_SIZE, w // bands.PATCH_SIZE)
        latent = soft_latent(logits, self.generator.tokenizer[S2_TARGET].quantize.codebook, grid)
        noise = initial_noise((b, len(bands.S2L2A_BANDS), h, w), opt_v2.device, seeds)
        generated = std.s2l2a_to_optical(self.denoise(noise, latent, timesteps or self.timesteps))
        with torch.autocast(device_type=opt_v2.device.type, enabled=False):
            correction = self.head(torch.cat([opt_std, generated.float(), s1_std], dim=1))
        base = opt_v2 if opt_v2.is_floating_point() else opt_v2.float()
        return base + std.optical_std_to_tile_units(correction).to(base.dtype)

    @torch.no_grad()
    def generate(
        self,
        s1: Tensor,
        opt_v2: Tensor,
        seeds: Sequence[int] | None = None,
        timesteps: int | None = None,
    ) -> Tensor:
        """Inference: the same path as :meth:`forward`, without gradients.

        What the adapters learned through the soft path is exactly what runs here.
        With ``seeds`` the output is reproducible and each sample is independent of
        its batch mates.
        """
        return self.forward(s1, opt_v2, seeds=seeds, timesteps=timesteps)


def _check_inputs(s1: Tensor, opt_v2: Tensor, seeds: Sequence[int] | None) -> None:
    if s1.ndim != 4 or s1.shape[1] != len(bands.S1_KEYS):
        raise ValueError(f"s1 must be (B, 2, H, W), got {tuple(s1.shape)}")
    if opt_v2.ndim != 4 or opt_v2.shape[1] != len(bands.OPTICAL_BANDS):
        raise ValueError(f"opt_v2 must be (B, 4, H, W), got {tuple(opt_v2.shape)}")
    if s1.shape[0] != opt_v2.shape[0] or s1.shape[-2:] != opt_v2.shape[-2:]:
        raise ValueError(f"s1 {tuple(s1.shape)} and opt_v2 {tuple(opt_v2.shape)} do not match")
    h, w = opt_v2.shape[-2:]
    if h != w or h % bands.PATCH_SIZE:
        raise ValueError(
            f"tiles must be square with a side that is a multiple of {bands.PATCH_SIZE}, got {h}x{w}"
        )
    if seeds is not None and len(seeds) != opt_v2.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {opt_v2.shape[0]}")


def format_parameter_counts(trainable: int, total: int) -> str:
    """``Trainable parameters: N of M (p %)``."""
    return f"Trainable parameters: {trainable:,} of {total:,} ({100.0 * trainable / total:.3f} %)"


def build_stage3_model(cfg: ModelConfig, log: Callable[[str], None] | None = None) -> Stage3Model:
    """Build the Stage 3 model: weights checked first, then TerraMind, LoRA and the head.

    Args:
        cfg: model settings (size, timesteps, LoRA rank/alpha, weights source).
        log: receives one-line messages (which weights were used, warnings).

    Raises:
        WeightsError: ``cfg.pretrained`` and the files are not available.
    """
    say = log or (lambda _message: None)
    files = check_weights(cfg)
    # Random base weights come from a fixed seed, whatever the caller's RNG state: checkpoints
    # hold only the trainable weights, so evaluate and infer must rebuild the very same base.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_BASE_SEED)
        generator = build_generator(cfg.model_size, cfg.timesteps)
    if files is None:
        say(
            f"Using random TerraMind-{cfg.model_size} weights (pretrained=False, seed {RANDOM_BASE_SEED}): "
            "nothing is pretrained"
        )
    else:
        load_pretrained(generator, files, say)
        say(f"Loaded pretrained TerraMind-{cfg.model_size} and its S2L2A tokenizer from {files.source}")
    generator = inject_lora(generator, cfg.lora_rank, cfg.lora_alpha, TARGET_MODULES)
    model = Stage3Model(generator, FusionHead(), cfg, TARGET_MODULES)
    return model.train(False)
