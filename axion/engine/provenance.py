"""Where an opt_v3 came from: one record, written as GeoTIFF tags and STAC properties.

The record names the axion version, the checkpoint (absolute path and the SHA-256 of
the file's bytes, so a copy elsewhere can be matched), the epoch, and how the model ran:
generator, DDIM steps, base seed, token sampling, precision, the number of samples, and
where opt_v2 came from. GeoTIFF tags are ``AXION_<NAME>``; STAC properties ``axion:<name>``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import axion
from axion.bands import S2_UNITS

if TYPE_CHECKING:
    from axion.engine.predict import Predictor

#: How a checkpoint without a ``token_sampling`` setting generates (the expected codebook vector).
DEFAULT_TOKEN_SAMPLING = "soft"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def provenance(predictor: Predictor, *, samples: int, opt_v2: str, **extra: object) -> dict[str, str]:
    """The provenance record of outputs made by ``predictor`` (name -> value, both strings).

    Args:
        predictor: the loaded model and the settings it runs with.
        samples: seeded generations averaged per pixel.
        opt_v2: where opt_v2 came from (``stage2``, ``scene``, ``proxy-from-ground-truth``).
        extra: further entries (lower-case names), e.g. the scene tiling.
    """
    model = predictor.config.get("model", {})
    checkpoint = Path(predictor.checkpoint).resolve()
    record = {
        "version": axion.__version__,
        "units": S2_UNITS,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "epoch": predictor.epoch,
        "generator": model.get("generator", "terramind"),
        "model_size": model.get("model_size", "unknown"),
        "timesteps": predictor.timesteps,
        "seed": predictor.seed,
        "token_sampling": model.get("token_sampling", DEFAULT_TOKEN_SAMPLING),
        "precision": predictor.precision.fabric,
        "samples": samples,
        "opt_v2": opt_v2,
        **extra,
    }
    return {name: str(value) for name, value in record.items()}


def geotiff_tags(record: dict[str, str], product: str) -> dict[str, str]:
    """``AXION_<NAME>`` tags of a raster holding ``product`` (``opt_v3`` or ``opt_v3_std``)."""
    return {"AXION_PRODUCT": product, **{f"AXION_{name.upper()}": value for name, value in record.items()}}


def stac_properties(record: dict[str, str]) -> dict[str, str]:
    """``axion:<name>`` properties of a STAC Item."""
    return {f"axion:{name}": value for name, value in record.items()}
