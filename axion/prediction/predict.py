"""Loading a trained checkpoint for prediction, shared by ``evaluate`` and ``infer``.

A checkpoint holds only the trainable weights (LoRA adapters and fusion network) and
the run's configuration. The model is rebuilt from ``config["model"]`` (where the
frozen TerraMind base comes from may be overridden), the trainable weights are
loaded, and batches run without gradients under the chosen autocast precision.

Noise per tile is seeded from ``(seed, "test", name)`` so a tile's output does not
depend on its batch mates, the batch size or the order of the tiles. Further samples of
the same tile (``infer --samples N``) add the sample number to that seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from axion.config import ModelConfig, PredictionSettings, resolve_config
from axion.errors import ConfigError
from axion.runtime.device import PrecisionChoice, accelerator_name, resolve_precision
from axion.seeding import Stream, stream_seed
from axion.training.checkpoint import Checkpoint

if TYPE_CHECKING:
    import numpy as np

    from axion.model.stage3 import Stage3Model
    from axion.prediction.scene import PredictFn

#: Settings of the frozen base a user may change at prediction time (the rest must match the adapters).
BASE_OVERRIDES = ("pretrained", "weights_dir")
_AUTOCAST_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


class Samples(NamedTuple):
    """What :meth:`Predictor.samples` returns, each (B, 4, H, W) float32 in tile units.

    Attributes:
        mean: opt_v3, the mean of the seeded generations (each clipped at 0).
        std: their per-pixel sample standard deviation (None for a single generation).
        generated: the generator's own bands of the first generation, the one evaluate scores
            (None unless asked for, or without a generator).
    """

    mean: Tensor
    std: Tensor | None
    generated: Tensor | None = None


@dataclass
class Predictor:
    """A model ready for prediction and the settings it runs with.

    Attributes:
        model: the Stage 3 model with the checkpoint's trainable weights, in eval mode.
        checkpoint: the checkpoint file it came from.
        config: the checkpoint's training configuration (JSON dict).
        epoch: the epoch the checkpoint was written after.
        timesteps: DDIM steps used for prediction.
        seed: base seed of the per-tile noise.
        precision: the autocast precision prediction runs under.
        device: where the model runs.
    """

    model: Stage3Model
    checkpoint: Path
    config: dict[str, Any]
    epoch: int
    timesteps: int
    seed: int
    precision: PrecisionChoice
    device: torch.device

    def seeds(self, names: Sequence[str], sample: int = 0) -> list[int]:
        """One noise seed per tile name (for the given sample number)."""
        return tile_seeds(self.seed, names, sample)

    def __call__(
        self,
        s1: Tensor,
        opt_v2: Tensor,
        names: Sequence[str],
        sample: int = 0,
        acquired: Tensor | None = None,
    ) -> Tensor:
        """opt_v3 (B, 4, H, W) float32 on the CPU for a batch of tiles; see :func:`predict`."""
        return self.outputs(s1, opt_v2, names, sample, acquired)[0]

    def outputs(
        self,
        s1: Tensor,
        opt_v2: Tensor,
        names: Sequence[str],
        sample: int = 0,
        acquired: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """opt_v3 and the generated bands it was made from; see :func:`predict_outputs`."""
        return predict_outputs(
            self.model,
            {"s1": s1, "opt_v2": opt_v2, "opt_v2_acquired": acquired},
            self.seeds(names, sample),
            self.timesteps,
            precision=self.precision,
            device=self.device,
        )

    def samples(
        self,
        s1: Tensor,
        opt_v2: Tensor,
        names: Sequence[str],
        count: int,
        *,
        generated: bool = False,
        acquired: Tensor | None = None,
    ) -> Samples:
        """Mean and per-pixel standard deviation of ``count`` seeded generations (B, 4, H, W) each.

        Each generation is clipped at 0 first (reflectance is not negative). The standard
        deviation is the sample one (divisor ``count - 1``); None for a single generation.
        With ``generated``, also the generator's bands of the first generation. ``acquired``:
        (B,) 1 where opt_v2 is a real acquisition (None: none is).
        """
        first, bands = self.outputs(s1, opt_v2, names, sample=0, acquired=acquired)
        rest = [self(s1, opt_v2, names, sample=k, acquired=acquired) for k in range(1, count)]
        draws = torch.stack([d.clamp_min(0.0) for d in (first, *rest)])
        kept = bands if generated else None
        if count == 1:
            return Samples(draws[0], None, kept)
        return Samples(draws.mean(dim=0), draws.std(dim=0, correction=1), kept)

    def tiles_fn(self, count: int, acquired: bool = False) -> PredictFn:
        """The model as scene tiling calls it: numpy tiles in, the mean (and spread) of ``count`` samples out.

        Scene mode, each scene of ``--scenes`` and in-memory scenes (:mod:`axion.prediction.arrays`)
        predict through it; ``acquired``: the scene's opt_v2 is a real acquisition (it has a mask).
        """
        from axion.prediction.scene import Prediction

        def predict_fn(s1: np.ndarray, opt_v2: np.ndarray, names: list[str]) -> Prediction:
            flags = torch.full((len(names),), float(acquired))
            mean, std, _ = self.samples(
                torch.from_numpy(s1), torch.from_numpy(opt_v2), names, count, acquired=flags
            )
            return Prediction(mean.numpy(), None if std is None else std.numpy())

        return predict_fn


def tile_seeds(seed: int, names: Sequence[str], sample: int = 0) -> list[int]:
    """The prediction noise seed of each tile name; sample 0 is the seed evaluate uses."""
    if sample == 0:
        return [stream_seed(seed, Stream.PREDICT_NOISE, name) for name in names]
    return [stream_seed(seed, Stream.PREDICT_NOISE, name, f"sample-{sample}") for name in names]


def autocast_dtype(precision: PrecisionChoice) -> torch.dtype | None:
    """The autocast dtype of a precision choice (None: full fp32)."""
    return _AUTOCAST_DTYPES.get(precision.fabric)


def _square(x: Tensor, side: int) -> Tensor:
    """Pad (B, C, H, W) at the bottom and right to (B, C, side, side) by edge replication."""
    pad_h, pad_w = side - x.shape[-2], side - x.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return x
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def predict(
    model: Stage3Model, batch: dict[str, Any], seeds: Sequence[int], timesteps: int, **options: Any
) -> Tensor:
    """opt_v3 for a batch, without gradients: :func:`predict_outputs`' first value (same arguments,
    ``precision`` and ``device`` as keywords)."""
    return predict_outputs(model, batch, seeds, timesteps, **options)[0]


@torch.no_grad()
def predict_outputs(
    model: Stage3Model,
    batch: dict[str, Any],
    seeds: Sequence[int],
    timesteps: int,
    *,
    precision: PrecisionChoice | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor | None]:
    """Run the model on a batch without gradients.

    Args:
        model: a built Stage 3 model.
        batch: at least ``s1`` (B, 2, H, W) dB and ``opt_v2`` (B, 4, H, W) tile units;
            H and W multiples of 16. A non-square batch is padded to a square (the
            token grid must be square) and cropped back. ``opt_v2_acquired`` (B,), when
            present and not None: which opt_v2 are real acquisitions.
        seeds: one noise seed per sample.
        timesteps: DDIM steps.
        precision: autocast precision (None: fp32).
        device: where to run.

    Returns:
        opt_v3 and TerraMind's generated B2, B3, B4, B8 (None with ``generator="none"``), each
        (B, 4, H, W) float32 on the CPU, tile units.
    """
    device = torch.device(device)
    s1, opt_v2 = batch["s1"].to(device).float(), batch["opt_v2"].to(device).float()
    height, width = opt_v2.shape[-2:]
    side = max(height, width)
    dtype = autocast_dtype(precision) if precision is not None else None
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
        opt_v3, generated = model.outputs(
            _square(s1, side),
            _square(opt_v2, side),
            seeds=list(seeds),
            timesteps=timesteps,
            acquired=batch.get("opt_v2_acquired"),
        )
    crop = (..., slice(None, height), slice(None, width))
    return opt_v3[crop].float().cpu(), None if generated is None else generated[crop].float().cpu()


def model_config_from(checkpoint: Checkpoint, overrides: dict[str, Any]) -> ModelConfig:
    """The checkpoint's model settings, with where-the-base-comes-from overrides applied.

    Args:
        checkpoint: the checkpoint whose adapters will be loaded.
        overrides: ``pretrained`` / ``weights_dir`` / ``timesteps`` values given by the user (None: keep).
    """
    unknown = sorted(set(overrides) - {*BASE_OVERRIDES, "timesteps"})
    if unknown:
        raise ConfigError(f"cannot override {unknown[0]} of a trained checkpoint")
    settings = {**checkpoint.model_settings, **{k: v for k, v in overrides.items() if v is not None}}
    return resolve_config(ModelConfig, environ={}, flags=settings)


def check_prediction(settings: PredictionSettings, checkpoint: Checkpoint) -> None:
    """Everything :func:`predictor_for` would refuse, without building the model (fast).

    Raises:
        ConfigError: a setting the checkpoint cannot run with, or a bad precision.
        WeightsError: the frozen base's pretrained files are missing.
    """
    cfg = model_config_from(
        checkpoint,
        {
            "pretrained": settings.pretrained,
            "weights_dir": settings.weights_dir,
            "timesteps": settings.timesteps,
        },
    )
    resolve_precision(settings.precision, accelerator_name())
    from axion.model import check_weights

    check_weights(cfg)


def load_predictor(
    checkpoint: Checkpoint,
    *,
    timesteps: int | None = None,
    seed: int | None = None,
    precision: str = "auto",
    pretrained: bool | None = None,
    weights_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
    device: str | torch.device | None = None,
) -> Predictor:
    """Rebuild a checkpoint's model, ready for :func:`predict`.

    Args:
        checkpoint: read with :meth:`Checkpoint.read` (``best_model.pt`` or ``checkpoint_epoch_N.pt``).
        timesteps: DDIM steps (default: the checkpoint's).
        seed: base seed of the per-tile noise (default: the checkpoint's ``seed``).
        precision: ``auto`` (fp16 on CUDA, bf16 on a CPU with native bf16, else fp32), ``fp16-mixed``, ``bf16-mixed`` or ``32``.
        pretrained: override whether the frozen base is pretrained (default: as trained).
        weights_dir: where the pretrained TerraMind files are (default: as trained).
        log: receives one-line messages.
        device: where the model runs (default: the GPU when one is visible, else the CPU).

    Raises:
        WeightsError: base weights missing or adapters that do not fit. ConfigError: bad
        precision, timesteps or device.
    """
    say = log or (lambda _message: None)
    cfg = model_config_from(
        checkpoint, {"pretrained": pretrained, "weights_dir": weights_dir, "timesteps": timesteps}
    )
    target = resolve_device(device)
    choice = resolve_precision(precision, target.type)
    from axion.model import build_stage3_model, check_weights

    check_weights(cfg)
    # Without pretrained files the frozen base is rebuilt from the model's fixed seed, so it is
    # the base the adapters were trained on.
    model = build_stage3_model(cfg, log=say)
    model.load_trainable_state_dict(checkpoint.model_state_dict)
    model = model.to(target).train(False)
    return Predictor(
        model=model,
        checkpoint=Path(checkpoint.path) if checkpoint.path else Path("."),
        config=checkpoint.config,
        epoch=int(checkpoint.epoch),
        timesteps=cfg.timesteps,
        seed=noise_seed(checkpoint, seed),
        precision=choice,
        device=target,
    )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``: the GPU when one is visible, else the CPU; otherwise the device named, checked.

    Raises:
        ConfigError: not a device name torch knows, or a CUDA device on a machine without one.
    """
    if device is None:
        return torch.device(accelerator_name())
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"invalid device = {device!r}: expected cpu, cuda or cuda:N") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"invalid device = {device!r}: no CUDA GPU is visible")
    if target.type not in ("cpu", "cuda"):
        raise ConfigError(f"invalid device = {device!r}: expected cpu, cuda or cuda:N")
    return target


def noise_seed(checkpoint: Checkpoint, seed: int | None) -> int:
    """The base seed of the per-tile noise: ``seed``, else the run's training seed."""
    return int(checkpoint.config.get("other", {}).get("seed", 0)) if seed is None else int(seed)


def run_identity(settings: PredictionSettings, checkpoint: Checkpoint) -> dict[str, str]:
    """What :func:`predictor_for` would run with, as recorded in the outputs' provenance, without
    building the model: DDIM steps, base seed and precision (strings)."""
    cfg = model_config_from(
        checkpoint,
        {
            "pretrained": settings.pretrained,
            "weights_dir": settings.weights_dir,
            "timesteps": settings.timesteps,
        },
    )
    return {
        "timesteps": str(cfg.timesteps),
        "seed": str(noise_seed(checkpoint, settings.seed)),
        "precision": resolve_precision(settings.precision, accelerator_name()).fabric,
    }


def predictor_for(
    settings: PredictionSettings, checkpoint: Checkpoint, log: Callable[[str], None] | None = None
) -> Predictor:
    """:func:`load_predictor` with the prediction settings of a command (evaluate, infer)."""
    return load_predictor(
        checkpoint,
        timesteps=settings.timesteps,
        seed=settings.seed,
        precision=settings.precision,
        pretrained=settings.pretrained,
        weights_dir=settings.weights_dir,
        log=log,
    )


def size_batches(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices batched so that every batch holds tiles of one padded size, in input order.

    TerraMind attends over the whole token grid, so padding a tile to a larger batch
    mate would change its output; batching equal sizes keeps each tile's result
    independent of what it is batched with.
    """
    from axion.data.padding import padded_size

    groups: dict[tuple[int, int], list[int]] = {}
    for index, (height, width) in enumerate(sizes):
        groups.setdefault((padded_size(height), padded_size(width)), []).append(index)
    batches = []
    for members in groups.values():
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    return sorted(batches, key=lambda batch: batch[0])
