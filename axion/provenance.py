"""Where a result comes from: package versions, the run's identity, file checksums.

Recorded in config.json, every checkpoint, summary.json, exports and every output's
tags, so a result can be reproduced with the same software, and compared knowingly
when it was not.
"""

from __future__ import annotations

import hashlib
import platform
import socket
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from axion.prediction.predict import Predictor

#: Distributions whose versions shape a result.
PACKAGES: tuple[str, ...] = ("axion", "torch", "terratorch", "peft")


def versions() -> dict[str, str]:
    """Installed versions of axion, torch, terratorch, peft and Python (read from metadata, no imports)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["python"] = platform.python_version()
    return found


def run_identity() -> dict[str, str]:
    """When and where a run started (UTC, ISO 8601; host name): its identity without git."""
    return {"started": datetime.now(UTC).isoformat(timespec="seconds"), "host": socket.gethostname()}


def provenance() -> dict[str, dict[str, str]]:
    """``{"versions": ..., "run": ...}``."""
    return {"versions": versions(), "run": run_identity()}


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks; of a folder (an export), its files' names and bytes."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode())
        with open(file, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def output_provenance(predictor: Predictor, *, samples: int, opt_v2: str, **extra: object) -> dict[str, str]:
    """Where an opt_v3 came from, as flat strings: GeoTIFF tags (``AXION_<NAME>``) and STAC
    properties (``axion:<name>``).

    Names the checkpoint (absolute path and the SHA-256 of its bytes, so a copy elsewhere can be
    matched), its epoch, how the model ran (generator, DDIM steps, base seed, token sampling,
    precision, samples), where opt_v2 came from, and the versions of axion, torch, terratorch and
    peft.

    Args:
        predictor: the loaded model and the settings it runs with.
        samples: seeded generations averaged per pixel.
        opt_v2: where opt_v2 came from (``stage2``, ``scene``, ``proxy-from-ground-truth``).
        extra: further entries (lower-case names), e.g. the scene tiling.
    """
    from axion.bands import S2_UNITS

    model = predictor.model.cfg
    checkpoint = Path(predictor.checkpoint).resolve()
    record: dict[str, object] = {
        "version": metadata.version("axion"),
        "units": S2_UNITS,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "epoch": predictor.epoch,
        "generator": model.generator,
        "model_size": model.model_size,
        "timesteps": predictor.timesteps,
        "seed": predictor.seed,
        "token_sampling": model.token_sampling,
        "top_p": model.top_p,
        "precision": predictor.precision.fabric,
        "samples": samples,
        "opt_v2": opt_v2,
        **{f"{name}_version": value for name, value in versions().items() if name != "axion"},
        **extra,
    }
    return {name: str(value) for name, value in record.items()}


def geotiff_tags(record: dict[str, str], product: str) -> dict[str, str]:
    """``AXION_<NAME>`` tags of a raster holding ``product`` (``opt_v3``, ``opt_v3_std``, ``generated``)."""
    return {"AXION_PRODUCT": product, **{f"AXION_{name.upper()}": value for name, value in record.items()}}


def stac_properties(record: dict[str, str]) -> dict[str, str]:
    """``axion:<name>`` properties of a STAC Item."""
    return {f"axion:{name}": value for name, value in record.items()}
