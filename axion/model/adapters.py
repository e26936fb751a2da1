"""Adapter files: the trainable weights only (LoRA + fusion head), as safetensors.

The frozen TerraMind base (over a gigabyte) always comes from its original
files; an adapter file holds a few hundred thousand numbers plus the settings
needed to rebuild a model they fit (size, LoRA rank and alpha, target modules,
timesteps), stored as JSON in the safetensors header.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from axion.atomic import atomic_path
from axion.engine.checkpoint import ARCHITECTURE_FIELDS
from axion.errors import WeightsError
from axion.model.lora import merge_lora, unmerge_lora
from axion.model.stage3 import ADAPTER_FORMAT, Stage3Model

_META_KEY = "axion"
#: Settings that must agree between an adapter file and the model it is loaded into.
MUST_MATCH = ARCHITECTURE_FIELDS


def save_adapters(model: Stage3Model, path: str | Path) -> Path:
    """Write the trainable weights and their metadata to ``path`` (safetensors, atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {name: t.contiguous().cpu() for name, t in model.trainable_state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(model.adapter_metadata())})
    return path


def read_adapter_metadata(path: str | Path) -> dict[str, Any]:
    """The settings stored in an adapter file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: adapter file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise WeightsError(f"{path}: not a safetensors adapter file ({type(exc).__name__})") from None
    try:
        meta = json.loads(header[_META_KEY])
    except (KeyError, json.JSONDecodeError):
        raise WeightsError(f"{path}: safetensors file without axion adapter metadata") from None
    if meta.get("format") != ADAPTER_FORMAT:
        raise WeightsError(f"{path}: adapter format {meta.get('format')!r}, expected {ADAPTER_FORMAT!r}")
    return meta


def load_adapters(model: Stage3Model, path: str | Path) -> dict[str, Any]:
    """Load adapters saved by :func:`save_adapters` into ``model``; returns their metadata.

    Raises:
        WeightsError: the file is missing or damaged, or it was made for another
            model size, LoRA rank, alpha or set of target modules.
    """
    from safetensors.torch import load_file

    meta = read_adapter_metadata(path)
    ours = model.adapter_metadata()
    differ = [key for key in MUST_MATCH if meta.get(key) != ours[key]]
    if differ:
        theirs = ", ".join(f"{k}={meta.get(k)}" for k in differ)
        mine = ", ".join(f"{k}={ours[k]}" for k in differ)
        raise WeightsError(f"{path}: adapters were trained with {theirs}, but this model has {mine}")
    model.load_trainable_state_dict(load_file(str(path)))
    return meta


def merge_adapters(model: Stage3Model) -> int:
    """Fold the LoRA weights into the base weights for faster inference; returns the layer count.

    After merging, train no further (the adapters would count twice); undo with
    :func:`unmerge_adapters`.
    """
    return merge_lora(model.generator)


def unmerge_adapters(model: Stage3Model) -> int:
    """Undo :func:`merge_adapters`; returns the layer count."""
    return unmerge_lora(model.generator)
