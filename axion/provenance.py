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
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
