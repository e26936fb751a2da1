"""``axion stage3 export``: a checkpoint's trained weights as a shareable folder in peft's layout.

::

    DIR/
      adapter_config.json           peft's LoraConfig (the TerraMind arm only)
      adapter_model.safetensors     the LoRA tensors under peft's names; load onto terratorch's
                                    generator with ``PeftModel.from_pretrained(generator, DIR)``
      fusion.safetensors            the fusion network (``FusionNet`` state dict)
      axion.json                    model settings, seed, epoch, source checkpoint and its SHA-256,
                                    versions
      merged_generator.safetensors  with --merge: the adapted layers' weights with LoRA folded in,
                                    under terratorch's own names (load with strict=False; no peft needed)

No optimizer state, no frozen base: a few MB. ``evaluate`` and ``infer`` accept the folder
wherever they accept a checkpoint (:func:`axion.training.trained.read_trained`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axion.atomic import atomic_path, write_json_atomic
from axion.errors import DataError
from axion.training.checkpoint import Checkpoint
from axion.training.trained import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    FORMAT,
    FUSION_WEIGHTS,
    MERGED_WEIGHTS,
    METADATA,
    is_export,
    to_peft_name,
)


@dataclass
class Exported:
    """The files an export wrote."""

    directory: Path
    files: list[Path]


def _save(tensors: dict[str, Any], path: Path, files: list[Path]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    files.append(path)


def export(checkpoint: Path, output_dir: Path, *, merge: bool = False, overwrite: bool = False) -> Exported:
    """Write a checkpoint's trainable weights into ``output_dir`` (see the module docstring).

    Raises:
        DataError: an unreadable checkpoint, or an output folder that already holds an export
            (without ``overwrite``) or is a file.
    """
    from axion.config import ModelConfig
    from axion.model.lora import TARGET_MODULES
    from axion.provenance import file_sha256, versions

    ckpt = Checkpoint.read(checkpoint)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: output directory is a file")
    if is_export(output_dir) and not overwrite:
        raise DataError(
            f"{output_dir}: already holds an export ({METADATA}); use --overwrite or another --output-dir"
        )
    model = ModelConfig.model_validate(ckpt.model_settings)
    output_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    lora = {to_peft_name(k): v for k, v in ckpt.model_state_dict.items() if "lora_" in k}
    fusion = {
        k.removeprefix("fusion."): v for k, v in ckpt.model_state_dict.items() if k.startswith("fusion.")
    }
    if lora:
        from peft import LoraConfig

        config = LoraConfig(
            r=model.lora_rank,
            lora_alpha=model.lora_alpha,
            lora_dropout=0.0,
            bias="none",
            target_modules=TARGET_MODULES,
        )
        write_json_atomic(output_dir / ADAPTER_CONFIG, config.to_dict() | {"peft_type": "LORA"})
        files.append(output_dir / ADAPTER_CONFIG)
        _save(lora, output_dir / ADAPTER_WEIGHTS, files)
    _save(fusion, output_dir / FUSION_WEIGHTS, files)
    if merge and lora:
        _save(merged_generator_weights(ckpt, model), output_dir / MERGED_WEIGHTS, files)
    write_json_atomic(
        output_dir / METADATA,
        {
            "format": FORMAT,
            "model": model.model_dump(mode="json"),
            "seed": int(ckpt.config.get("other", {}).get("seed", 0)),
            "epoch": int(ckpt.epoch),
            "source": {
                "checkpoint": str(Path(checkpoint).resolve()),
                "sha256": file_sha256(Path(checkpoint)),
            },
            "versions": versions(),
        },
    )
    files.append(output_dir / METADATA)
    return Exported(directory=output_dir, files=files)


def merged_generator_weights(ckpt: Checkpoint, model: Any) -> dict[str, Any]:
    """The adapted layers' base weights with their LoRA update folded in, by terratorch's module names."""
    from axion.model import build_stage3_model
    from axion.model.lora import lora_layers, merge_lora

    stage3 = build_stage3_model(model)
    stage3.load_trainable_state_dict(ckpt.model_state_dict)
    merge_lora(stage3.generator)
    merged = {}
    for name, layer in lora_layers(stage3.generator).items():
        for param, value in layer.base_layer.named_parameters():
            merged[f"{name}.{param}"] = value
    return merged
