"""Build TerraMind's S1 (GRD or RTC) + S2L2A -> S2L2A generator through terratorch, and load its weights.

terratorch is imported inside the functions only: importing it takes seconds and
starts network checks, which a command's ``--help`` must not pay for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from axion.bands import S1_MODALITY
from axion.errors import WeightsError, load_weights_only
from axion.model.weights import WeightFiles

if TYPE_CHECKING:
    from torch import nn

#: terratorch's names of our modalities inside the generator (S1 by product).
S1_INPUTS: dict[str, str] = {"grd": "untok_sen1grd@224", "rtc": "untok_sen1rtc@224"}
S1_INPUT = S1_INPUTS["grd"]
S2_INPUT = "untok_sen2l2a@224"
S2_TARGET = "tok_sen2l2a@224"
#: Prefix of the encoder-decoder's keys inside the generator's state dict.
ENCDEC_PREFIX = "sampler.model."


def import_terratorch_registry():  # noqa: ANN201 - terratorch's registry type
    """terratorch's full-model registry (imports terratorch, silencing lightly's version check)."""
    os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")
    from terratorch.registry import FULL_MODEL_REGISTRY

    return FULL_MODEL_REGISTRY


def build_generator(model_size: str, timesteps: int, s1_product: str = "grd") -> nn.Module:
    """A ``TerraMindGeneration`` with random weights, built offline.

    ``s1_product`` picks TerraMind's S1GRD or S1RTC input modality. Pretrained weights
    are loaded afterwards by :func:`load_pretrained`, from files that
    :func:`axion.model.weights.check_weights` has already found.
    """
    registry = import_terratorch_registry()
    return registry.build(
        f"terramind_v1_{model_size}_generate",
        modalities=[S1_MODALITY[s1_product], "S2L2A"],
        output_modalities=["S2L2A"],
        pretrained=False,
        timesteps=timesteps,
        standardize=True,
    )


def _read_state_dict(path: os.PathLike[str]) -> dict:
    state = load_weights_only(path, WeightsError, "cannot read TerraMind weights", mmap=True)
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a TerraMind state dict")
    return state


def load_encoder_decoder(generator: nn.Module, path: os.PathLike[str]) -> list[str]:
    """Copy the pretrained encoder-decoder (hub file format) into the generator.

    The hub file holds TerraMind's whole encoder-decoder (every modality), keyed
    without the generator's ``sampler.model.`` prefix; the keys of our modalities
    are taken from it.

    Returns:
        Generator keys the file lacks (left at their initial values).

    Raises:
        WeightsError: unreadable file, a shape that does not match (a file of
            another size), or no matching key at all.
    """
    import torch

    state = _read_state_dict(path)
    own = generator.state_dict()
    wanted = {k for k in own if k.startswith(ENCDEC_PREFIX)}
    picked: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        full = ENCDEC_PREFIX + key
        if full not in wanted:
            continue
        if tuple(value.shape) != tuple(own[full].shape):
            raise WeightsError(
                f"{path}: {key} has shape {list(value.shape)}, the model needs {list(own[full].shape)} "
                "(a file of another TerraMind size?)"
            )
        picked[full] = value
    if not picked:
        raise WeightsError(f"{path}: holds no TerraMind encoder-decoder weights")
    generator.load_state_dict(picked, strict=False)
    return sorted(wanted - picked.keys())


def load_tokenizer(generator: nn.Module, path: os.PathLike[str]) -> None:
    """Load the S2L2A tokenizer file (hub format) into the generator, strictly."""
    state = _read_state_dict(path)
    try:
        generator.tokenizer[S2_TARGET].load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"{path}: not the TerraMind S2L2A tokenizer ({first})") from None


def load_pretrained(generator: nn.Module, files: WeightFiles, log: Callable[[str], None]) -> None:
    """Load both pretrained files; report (never hide) keys the encoder-decoder file lacks."""
    missing = load_encoder_decoder(generator, files.generator)
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        log(f"warning: {files.generator.name} lacks {len(missing)} weights, left at random init: {shown}")
    load_tokenizer(generator, files.tokenizer)
