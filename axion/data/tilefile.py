"""Reading and writing tile files: ``<name>.npz`` arrays and the ``<name>.json`` sidecar."""

from __future__ import annotations

import functools
import io
import json
import math
import struct
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


def load_arrays(
    npz: Path | bytes, keys: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Load ``keys`` (and those of ``optional`` present) from an NPZ file or its bytes (a shard member).

    The archive is read whole, each member through :mod:`zipfile` (its CRC checked), and each array
    is a read-only view of its member's bytes, its header parsed by numpy's own reader (once per
    distinct header). ``np.load`` gives the same arrays at two to three times the cost on tiles:
    it reads a member in chunks into a second copy and evaluates every header with
    ``ast.literal_eval``, which is most of a small tile's decoding.

    Raises:
        ValueError: unreadable (not an NPZ, truncated, a bad CRC, a member that is not an array,
            an object array) or a key missing.
    """
    try:
        data = npz if isinstance(npz, bytes) else Path(npz).read_bytes()
        if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            raise ValueError("not an NPZ archive")
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {_array_key(name): name for name in archive.namelist()}
            missing = [k for k in keys if k not in members]
            if not missing:
                wanted = keys + tuple(k for k in optional if k in members)
                return {k: _npy_array(archive.read(members[k]), k) for k in wanted}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        reason = str(exc) if str(exc) == "not an NPZ archive" else _reason(exc)
        raise ValueError(f"unreadable NPZ ({reason})") from None
    raise ValueError(f"missing key {missing[0]!r}")


def _array_key(member: str) -> str:
    """The key of an NPZ member, as ``np.load`` names it (``s1_vv.npy`` -> ``s1_vv``)."""
    return member[: -len(".npy")] if member.endswith(".npy") else member


def _npy_array(raw: bytes, key: str) -> np.ndarray:
    """The array of one ``.npy`` member's bytes: a read-only view of them."""
    if not raw.startswith(np.lib.format.MAGIC_PREFIX) or len(raw) < 12:
        raise ValueError(f"{key!r} is not a .npy array")
    length_format, start = ("<H", 10) if raw[6] == 1 else ("<I", 12)
    start += struct.unpack_from(length_format, raw, 8)[0]
    shape, fortran_order, dtype = _npy_header(raw[:start])
    count = math.prod(shape)
    if len(raw) - start < count * dtype.itemsize:
        raise ValueError(
            f"EOF: reading array data, expected {count * dtype.itemsize} bytes got {len(raw) - start}"
        )
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=start)
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


@functools.lru_cache(maxsize=256)
def _npy_header(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of a ``.npy`` header, by numpy's reader (which refuses bad ones).

    Cached: a data set's arrays share a handful of headers, and numpy parses each with
    ``ast.literal_eval``.
    """
    handle = io.BytesIO(header)
    major, _ = np.lib.format.read_magic(handle)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read(handle)
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    return tuple(shape), bool(fortran_order), dtype


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def write_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an (uncompressed) NPZ under a temporary name in the same folder, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
