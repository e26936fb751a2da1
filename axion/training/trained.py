"""What evaluate and infer load: a checkpoint file or a folder written by ``axion stage3 export``.

The export folder's layout (file names, peft's tensor names) is read here and written by
:mod:`axion.writers.export`; both take it from this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from axion.errors import DataError
from axion.training.checkpoint import BEST_FILE, Checkpoint

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
FUSION_WEIGHTS = "fusion.safetensors"
METADATA = "axion.json"
MERGED_WEIGHTS = "merged_generator.safetensors"
FORMAT = "axion-stage3-export/1"
#: Prefix of the generator inside the Stage 3 model, and of the base model inside a PeftModel.
_OURS, _PEFT = "arm.generator.", "base_model.model."
_ADAPTER = "default"


def is_export(path: Path) -> bool:
    """Whether ``path`` is a folder written by :func:`axion.writers.export.export`."""
    return Path(path).is_dir() and (Path(path) / METADATA).is_file()


def to_peft_name(name: str) -> str:
    """``arm.generator.<module>.lora_A.default.weight`` -> ``base_model.model.<module>.lora_A.weight``."""
    return _PEFT + name.removeprefix(_OURS).replace(f".{_ADAPTER}.", ".")


def from_peft_name(name: str) -> str:
    """The inverse of :func:`to_peft_name`."""
    body = name.removeprefix(_PEFT)
    for part in ("lora_A", "lora_B"):
        body = body.replace(f".{part}.", f".{part}.{_ADAPTER}.")
    return _OURS + body


def read_export(directory: Path) -> Checkpoint:
    """A :class:`Checkpoint` (weights and settings, no optimizer) from an export folder.

    Raises:
        DataError: a missing or unreadable file of the folder.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    try:
        meta = json.loads((directory / METADATA).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{directory / METADATA}: unreadable export metadata ({type(exc).__name__})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("model"), dict):
        raise DataError(f"{directory / METADATA}: not an axion export (format {FORMAT} expected)")
    state: dict[str, Any] = {}
    weights = [(FUSION_WEIGHTS, lambda k: f"fusion.{k}")]
    if meta["model"].get("generator", "terramind") != "none":
        weights.append((ADAPTER_WEIGHTS, from_peft_name))
    for file, rename in weights:
        path = directory / file
        if not path.is_file():
            raise DataError(f"{path}: missing from the export folder")
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own types for damaged files
            raise DataError(f"{path}: not a readable safetensors file ({type(exc).__name__})") from None
        state.update({rename(k): v for k, v in tensors.items()})
    return Checkpoint(
        epoch=int(meta.get("epoch", 0)),
        model_state_dict=state,
        config={"model": meta["model"], "other": {"seed": int(meta.get("seed", 0))}},
        path=directory,
    )


def read_trained(path: Path) -> Checkpoint:
    """What evaluate and infer load: a checkpoint file or an export folder."""
    return read_export(path) if is_export(path) else Checkpoint.read(path)


def find_trained(path: Path) -> Path:
    """What :func:`read_trained` reads for ``path``: a checkpoint file, an export folder, or a
    training run's folder (its ``best_model.pt``).

    Raises:
        DataError: nothing at ``path``, or a folder that is neither a run nor an export.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: checkpoint not found")
    if not path.is_dir() or is_export(path):
        return path
    if (path / BEST_FILE).is_file():
        return path / BEST_FILE
    raise DataError(
        f"{path}: neither a training run (no {BEST_FILE}) nor a folder written by "
        f"'axion stage3 export' (no {METADATA})"
    )
