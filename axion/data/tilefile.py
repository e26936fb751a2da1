"""Reading and writing tile files: ``<name>.npz`` arrays and the ``<name>.json`` sidecar."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from axion.atomic import atomic_path

#: The splits a tile's JSON may name.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Optional NPZ key: uint8 (H, W), 1 where the source pixel was valid (prepare fills the others).
VALID_KEY = "valid"
#: The key of a Stage 2 output file ``<stage2_dir>/<name>.npz``.
OPT_V2_KEY = "opt_v2"
#: Optional key of a Stage 2 output file: uint8 (H, W), 1 where opt_v2 can be trusted (clear),
#: 0 where it cannot (clouds, shadows). Training does not pull opt_v3 towards opt_v2 there.
OPT_V2_MASK_KEY = "opt_v2_mask"


def sidecar(npz: Path) -> Path:
    """The JSON sidecar of a tile."""
    return npz.with_suffix(".json")


def find_npz(data_dir: Path) -> list[Path]:
    """Every ``*.npz`` below ``data_dir`` (recursively), sorted, hidden folders skipped."""
    found = []
    for path in data_dir.rglob("*.npz"):
        rel = path.relative_to(data_dir).parts
        if not any(part.startswith(".") for part in rel):
            found.append(path)
    return sorted(found)


def read_meta(path: Path) -> dict[str, Any]:
    """A tile's JSON object; ``ValueError`` (without the path) if missing, unparseable or not an object."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError("sidecar JSON is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"sidecar JSON is unreadable ({type(exc).__name__})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(meta, dict):
        raise ValueError('JSON must hold an object like {"split": "train"}')
    return meta


def split_of(meta: Mapping[str, Any]) -> str:
    """The split a tile's JSON declares; ``ValueError`` if absent or not one of :data:`SPLITS`."""
    if "split" not in meta:
        raise ValueError("JSON has no 'split' (expected train, val or test)")
    split = meta["split"]
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (expected train, val or test)")
    return split


#: JSON field of a tile without ground truth (``"ground_truth": false``): S1 only, no split.
GROUND_TRUTH_KEY = "ground_truth"


def is_inference_tile(meta: Mapping[str, Any]) -> bool:
    """Whether a tile's JSON marks it as having no ground truth (written for inference only)."""
    return meta.get(GROUND_TRUTH_KEY) is False


def npz_header(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an NPZ, read from the headers only (cheap).

    Raises:
        ValueError: the file is not a readable NPZ (for example truncated).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            info: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as fh:
                    major, _ = np.lib.format.read_magic(fh)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if major == 1
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(fh)
                info[member[: -len(".npy")]] = (tuple(shape), np.dtype(dtype))
            return info
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"unreadable NPZ ({_reason(exc)})") from None


def load_arrays(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load ``keys`` (and those of ``optional`` present) from an NPZ; ``ValueError`` if unreadable or missing."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("not an NPZ archive")
        with loaded as npz:
            files = npz.files
            missing = [k for k in keys if k not in files]
            if not missing:
                return {k: npz[k] for k in keys + tuple(k for k in optional if k in files)}
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError) as exc:
        # np.load reads a file that is neither NPZ nor NPY as a pickle, which it refuses
        reason = "not an NPZ archive" if "pickled" in str(exc) else _reason(exc)
        raise ValueError(f"unreadable NPZ ({reason})") from None
    raise ValueError(f"missing key {missing[0]!r}")


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def write_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an (uncompressed) NPZ under a temporary name in the same folder, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
