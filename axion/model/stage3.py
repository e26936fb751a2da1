"""The Stage 3 model: a fusion network that corrects Stage 2, grounded in SAR and (optionally) TerraMind.

Data flow (standardised with TerraMind's pretraining statistics)::

    s1 (VV, VH dB) ---------------------------------------------------------+
    opt_v2 (B2 B3 B4 B8) ---------------------------------------------------+
      |  TerraMind arm (generator "terramind"; LoRA on decoder cross-attention and UNet attention):
      |  encoder-decoder -> token logits -> one token per position (argmax or seeded top-p)
      |  -> its exact FSQ code (straight-through gradient) -> UNet, T DDIM steps from seeded noise
      |  -> generated S2L2A, slots 1 2 3 7 ---------------------------------+
      v                                                                     v
    fusion network([opt_v2, s1, generated, acquired]) -> correction (zero at init) -> [Gaussian low-pass]
      -> opt_v3 = opt_v2 + correction

With ``generator="none"`` the fusion network sees opt_v2 and SAR only: the control arm that
tells what TerraMind adds.
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
from axion.model.fusion import FusionNet, smooth_correction
from axion.model.weights import check_weights

#: Seed of the frozen base when built without pretrained weights.
RANDOM_BASE_SEED = 0
#: The TerraMind arm's token grid side must be a multiple of this (see :meth:`TerraMindArm.forward`).
GRID_MULTIPLE = 2
#: Version tag of the trainable-weights layout.
ADAPTER_FORMAT = "axion-stage3-adapters/2"


@contextmanager
def _fixed_token_order(device: torch.device) -> Iterator[None]:
    """Fix ROAR's random token order without touching the caller's RNG streams.

    terratorch shuffles the target tokens with ``torch.rand`` from the global RNG.
    All tokens are predicted in one pass and the order is undone afterwards, so
    it only changes float rounding, but it would consume (and so shift) the
    global random stream.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.random.default_generator.manual_seed(0)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(0)
        yield


class TerraMindArm(nn.Module):
    """TerraMind's generation of B2, B3, B4, B8 from S1 + opt_v2, as terratorch does it, with gradients.

    Args:
        generator: terratorch's ``TerraMindGeneration`` (LoRA already injected).
        cfg: model settings: ``s1_product``, ``token_sampling``, ``top_p``, ``timesteps``, ``grad_steps``.
    """

    def __init__(self, generator: nn.Module, cfg: ModelConfig) -> None:
        super().__init__()
        from axion.model.diffusion import DDIMUnroll
        from axion.model.terramind import S1_INPUTS, S2_TARGET

        self.generator = generator
        self.s1_input = S1_INPUTS[cfg.s1_product]
        self.token_sampling = cfg.token_sampling
        self.top_p = cfg.top_p
        self.grad_steps = cfg.grad_steps
        tokenizer = generator.tokenizer[S2_TARGET]
        self.denoise = DDIMUnroll(tokenizer.decoder, tokenizer.noise_scheduler)

    @property
    def codebook(self) -> Tensor:
        """(V, D) FSQ code of every token."""
        from axion.model.terramind import S2_TARGET

        return self.generator.tokenizer[S2_TARGET].quantize.codebook

    def token_logits(self, s1_std: Tensor, s2_std: Tensor) -> Tensor:
        """Encoder-decoder logits (B, N, V) for every S2L2A token, in raster order."""
        from terratorch.models.backbones.terramind.model.generate import (
            init_empty_target_modality,
            init_full_input_modality,
        )
        from terratorch.models.backbones.terramind.model.modality_info import MODALITY_INFO

        from axion.model.terramind import S2_INPUT, S2_TARGET

        b, _, h, w = s1_std.shape
        n = (h // bands.PATCH_SIZE) * (w // bands.PATCH_SIZE)
        device = s1_std.device
        mod_dict = {}
        for name, value in ((self.s1_input, s1_std), (S2_INPUT, s2_std)):
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

    def tokens(self, s1_std: Tensor, opt_std: Tensor, seeds: Sequence[int] | None) -> tuple[Tensor, Tensor]:
        """The decoder's logits (B, N, V) and the token chosen at each position (B, N), raster order."""
        from axion.model.tokens import choose_tokens
        from axion.seeding import Stream, stream_seed

        logits = self.token_logits(s1_std, std.optical_to_s2l2a(opt_std))
        token_seeds = None if seeds is None else [stream_seed(s, Stream.TOKENS) for s in seeds]
        return logits, choose_tokens(logits, self.token_sampling, top_p=self.top_p, seeds=token_seeds)

    def decode(
        self,
        logits: Tensor,
        tokens: Tensor,
        seeds: Sequence[int] | None,
        timesteps: int,
        size: tuple[int, int],
    ) -> Tensor:
        """The chosen tokens' exact FSQ codes -> UNet, ``timesteps`` DDIM steps -> B2, B3, B4, B8 (standardised).

        The codes carry the straight-through gradient of ``logits``; the noise comes from ``seeds``.
        """
        from axion.model.diffusion import initial_noise
        from axion.model.tokens import codes_to_latent, straight_through_codes

        h, w = size
        codes = straight_through_codes(logits, tokens, self.codebook)
        latent = codes_to_latent(codes, (h // bands.PATCH_SIZE, w // bands.PATCH_SIZE))
        noise = initial_noise((tokens.shape[0], len(bands.S2L2A_BANDS), h, w), tokens.device, seeds)
        return std.s2l2a_to_optical(self.denoise(noise, latent, timesteps, self.grad_steps))

    def forward(self, s1_std: Tensor, opt_std: Tensor, seeds: Sequence[int] | None, timesteps: int) -> Tensor:
        """Generated B2, B3, B4, B8 (B, 4, H, W), standardised, float32.

        TerraMind needs a square token grid with an even side (its diffusion UNet halves the
        latent grid once and joins it back to the skip connection: a 48 px tile, 3 x 3 tokens,
        fails inside it). Other tiles are padded at the bottom and right to the next such
        square and the generation is cropped back; tiles that fit run as they are.
        """
        h, w = opt_std.shape[-2:]
        side = generator_side(h, w)
        s1_std, opt_std = pad_to_square(s1_std, side), pad_to_square(opt_std, side)
        logits, tokens = self.tokens(s1_std, opt_std, seeds)
        return self.decode(logits, tokens, seeds, timesteps, (side, side))[..., :h, :w]


def generator_side(height: int, width: int) -> int:
    """Side of the square the TerraMind arm runs on: the next multiple of two patches (32 px)."""
    from axion.data.padding import padded_size

    return padded_size(max(height, width), GRID_MULTIPLE * bands.PATCH_SIZE)


def pad_to_square(x: Tensor, side: int) -> Tensor:
    """Pad (B, C, H, W) at the bottom and right to (B, C, side, side): mirrored where the tile is
    large enough (image statistics stay continuous), the edge repeated where it is not."""
    pad_h, pad_w = side - x.shape[-2], side - x.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class Stage3Model(nn.Module):
    """opt_v2 + SAR -> opt_v3, in tile units.

    Build it with :func:`build_stage3_model`. Only the LoRA adapters and the fusion
    network train; TerraMind's own weights stay frozen (and in eval mode).
    """

    def __init__(self, fusion: FusionNet, cfg: ModelConfig, arm: TerraMindArm | None = None) -> None:
        super().__init__()
        self.arm = arm
        self.fusion = fusion
        self.cfg = cfg

    @property
    def generator(self) -> nn.Module | None:
        """terratorch's ``TerraMindGeneration`` (None in the ``generator="none"`` arm)."""
        return None if self.arm is None else self.arm.generator

    @property
    def timesteps(self) -> int:
        return self.cfg.timesteps

    # --- modes and parameters ------------------------------------------------
    def train(self, mode: bool = True) -> Stage3Model:
        """Only the fusion network follows ``mode``; the frozen generator always runs in eval mode."""
        self.training = mode
        self.fusion.train(mode)
        if self.arm is not None:
            self.arm.eval()
        return self

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def parameter_groups(self, lora_lr: float, fusion_lr: float) -> list[dict[str, Any]]:
        """Optimizer groups: the LoRA adapters at ``lora_lr``, the fusion network at ``fusion_lr``."""
        groups = [{"name": "fusion", "params": list(self.fusion.parameters()), "lr": fusion_lr}]
        lora = [p for n, p in self.named_parameters() if p.requires_grad and "lora_" in n]
        if lora:
            groups.insert(0, {"name": "lora", "params": lora, "lr": lora_lr})
        return groups

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Copies of the trainable tensors (LoRA + fusion network), by parameter name."""
        return {name: p.detach().clone() for name, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load what :meth:`trainable_state_dict` returned; keys and shapes must match exactly."""
        own = {name: p for name, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if missing or unexpected:
            what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
            raise WeightsError(
                f"trainable weights do not fit this model ({what}; {len(missing)} missing, "
                f"{len(unexpected)} unexpected): built with another size, rank, generator or layout?"
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
        """What it takes to rebuild a model these trainable weights fit."""
        return {"format": ADAPTER_FORMAT, **self.cfg.model_dump(mode="json")}

    # --- the model -----------------------------------------------------------
    def _generated(
        self, s1: Tensor, opt_v2: Tensor, seeds: Sequence[int] | None, timesteps: int | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        _check_inputs(s1, opt_v2, seeds)
        s1_std = std.standardize_s1(s1, self.cfg.s1_product)
        opt_std = std.standardize_optical(opt_v2)
        if self.arm is None:
            return s1_std, opt_std, None
        return s1_std, opt_std, self.arm(s1_std, opt_std, seeds, timesteps or self.timesteps)

    def forward(
        self,
        s1: Tensor,
        opt_v2: Tensor,
        seeds: Sequence[int] | None = None,
        timesteps: int | None = None,
        acquired: Tensor | None = None,
    ) -> Tensor:
        """opt_v3 (B, 4, H, W) in tile units; differentiable in the LoRA and fusion weights.

        Args:
            s1: (B, 2, H, W) VV, VH in dB.
            opt_v2: (B, 4, H, W) B2, B3, B4, B8 in tile units.
            seeds: one seed per sample for the diffusion noise and the token draw (reproducible,
                independent of batch mates); None draws from torch's global RNG.
            timesteps: DDIM steps (default: the configured number).
            acquired: (B,) 1 where opt_v2 is a real acquisition, 0 where it is a Stage 2 estimate
                (None: all 0); read only with ``acquisition_input``.

        H and W must be multiples of 16. The TerraMind arm generates on a square whose side is a
        multiple of 32 (tiles are padded to it and cropped back, see :meth:`TerraMindArm.forward`).
        """
        return self.outputs(s1, opt_v2, seeds, timesteps, acquired)[0]

    def outputs(
        self,
        s1: Tensor,
        opt_v2: Tensor,
        seeds: Sequence[int] | None = None,
        timesteps: int | None = None,
        acquired: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """opt_v3 and the generator's own B2, B3, B4, B8 it was made from, both in tile units.

        One pass: the generated bands are exactly those the fusion network saw. The second
        value is None without a generator (``generator="none"``). Arguments as for :meth:`forward`.
        """
        s1_std, opt_std, generated = self._generated(s1, opt_v2, seeds, timesteps)
        features = [opt_std, s1_std] + ([] if generated is None else [generated.float()])
        condition = acquisition_values(acquired, opt_std) if self.cfg.acquisition_input else None
        if condition is not None:
            features.append(condition[:, None, None, None].expand_as(opt_std[:, :1]))
        with torch.autocast(device_type=opt_v2.device.type, enabled=False):
            correction = smooth_correction(
                self.fusion(torch.cat(features, dim=1), condition), self.cfg.correction_smoothing
            )
        base = opt_v2 if opt_v2.is_floating_point() else opt_v2.float()
        opt_v3 = base + std.optical_std_to_tile_units(correction).to(base.dtype)
        if generated is None:
            return opt_v3, None
        generated = generated.float()
        return opt_v3, std.optical_std_to_tile_units(generated) + std.optical_mean_like(generated)

    @torch.no_grad()
    def generate(
        self,
        s1: Tensor,
        opt_v2: Tensor,
        seeds: Sequence[int] | None = None,
        timesteps: int | None = None,
        acquired: Tensor | None = None,
    ) -> Tensor:
        """Inference: the same path as :meth:`forward`, without gradients.

        The tokens, their codes and the DDIM steps are exactly those of TerraMind's own
        generation for the chosen tokens (tested against terratorch), and exactly what
        training ran: the straight-through estimator changes gradients only.
        """
        return self.forward(s1, opt_v2, seeds=seeds, timesteps=timesteps, acquired=acquired)

    @torch.no_grad()
    def generated_bands(
        self,
        s1: Tensor,
        opt_v2: Tensor,
        seeds: Sequence[int] | None = None,
        timesteps: int | None = None,
    ) -> Tensor:
        """TerraMind's own generated B2, B3, B4, B8 (B, 4, H, W) in tile units: what the generator contributes.

        Raises:
            ValueError: the model has no generator (``generator="none"``).
        """
        if self.arm is None:
            raise ValueError("this model has no generator (generator='none'): nothing is generated")
        return self.outputs(s1, opt_v2, seeds, timesteps)[1]  # type: ignore[return-value]


def _check_inputs(s1: Tensor, opt_v2: Tensor, seeds: Sequence[int] | None) -> None:
    if s1.ndim != 4 or s1.shape[1] != len(bands.S1_KEYS):
        raise ValueError(f"s1 must be (B, 2, H, W), got {tuple(s1.shape)}")
    if opt_v2.ndim != 4 or opt_v2.shape[1] != len(bands.OPTICAL_BANDS):
        raise ValueError(f"opt_v2 must be (B, 4, H, W), got {tuple(opt_v2.shape)}")
    if s1.shape[0] != opt_v2.shape[0] or s1.shape[-2:] != opt_v2.shape[-2:]:
        raise ValueError(f"s1 {tuple(s1.shape)} and opt_v2 {tuple(opt_v2.shape)} do not match")
    h, w = opt_v2.shape[-2:]
    if h % bands.PATCH_SIZE or w % bands.PATCH_SIZE:
        raise ValueError(f"tiles must have sides that are a multiple of {bands.PATCH_SIZE}, got {h}x{w}")
    if seeds is not None and len(seeds) != opt_v2.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {opt_v2.shape[0]}")


def format_parameter_counts(trainable: int, total: int) -> str:
    """``Trainable parameters: N of M (p %)``."""
    return f"Trainable parameters: {trainable:,} of {total:,} ({100.0 * trainable / total:.3f} %)"


def fusion_inputs(cfg: ModelConfig) -> int:
    """Channels the fusion network sees: opt_v2 (4) + SAR (2), plus 4 generated bands with TerraMind,
    plus the acquisition plane (``acquisition_input``)."""
    return (
        len(bands.OPTICAL_BANDS)
        + len(bands.S1_KEYS)
        + (len(bands.OPTICAL_BANDS) if cfg.generator != "none" else 0)
        + (1 if cfg.acquisition_input else 0)
    )


def acquisition_values(acquired: Tensor | None, like: Tensor) -> Tensor:
    """(B,) in ``like``'s dtype and device: each sample's ``acquired`` (1: opt_v2 is a real
    acquisition, 0: a Stage 2 estimate); all 0 when ``acquired`` is None."""
    b = like.shape[0]
    if acquired is None:
        return like.new_zeros(b)
    values = acquired.reshape(-1).to(like.device, like.dtype)
    if values.numel() != b:
        raise ValueError(f"acquired has {values.numel()} values for a batch of {b}")
    return values


def build_fusion(cfg: ModelConfig) -> FusionNet:
    """The fusion network of ``cfg``: its inputs (:func:`fusion_inputs`), modulated by the acquisition
    flag when both ``acquisition_input`` and ``acquisition_modulation`` are on."""
    return FusionNet(fusion_inputs(cfg), modulated=cfg.acquisition_input and cfg.acquisition_modulation)


def build_stage3_model(cfg: ModelConfig, log: Callable[[str], None] | None = None) -> Stage3Model:
    """Build the Stage 3 model: weights checked first, then TerraMind, LoRA and the fusion network.

    Args:
        cfg: model settings (generator arm, size, timesteps, LoRA rank/alpha, weights source, ...).
        log: receives one-line messages (which weights were used, warnings).

    Raises:
        WeightsError: ``cfg.pretrained`` and the files are not available.
    """
    say = log or (lambda _message: None)
    if cfg.generator == "none":
        say("Generator: none (the fusion network alone on opt_v2 + SAR; TerraMind is not used)")
        return Stage3Model(build_fusion(cfg), cfg).train(False)

    from axion.model.lora import TARGET_MODULES, inject_lora
    from axion.model.terramind import build_generator, load_pretrained

    files = check_weights(cfg)
    # Random base weights come from a fixed seed, whatever the caller's RNG state: checkpoints
    # hold only the trainable weights, so evaluate and infer must rebuild the very same base.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_BASE_SEED)
        generator = build_generator(cfg.model_size, cfg.timesteps, cfg.s1_product)
    if files is None:
        say(
            f"Using random TerraMind-{cfg.model_size} weights (pretrained=False, seed {RANDOM_BASE_SEED}): "
            "nothing is pretrained, and the random UNet's output layer is zero, so the generator "
            "contributes nothing; only the fusion network learns"
        )
    else:
        load_pretrained(generator, files, say)
        say(f"Loaded pretrained TerraMind-{cfg.model_size} and its S2L2A tokenizer from {files.source}")
    generator = inject_lora(generator, cfg.lora_rank, cfg.lora_alpha, TARGET_MODULES)
    return Stage3Model(build_fusion(cfg), cfg, TerraMindArm(generator, cfg)).train(False)
