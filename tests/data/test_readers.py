"""The NPZ and tar readers give what numpy's and webdataset's readers give, and refuse what they refuse."""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from axion.data.shardsource import tar_files
from axion.data.tilefile import load_arrays


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_arrays_equal_np_load_from_a_file_and_from_bytes(tmp_path: Path) -> None:
    arrays = {
        "plain": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "empty": np.zeros((0, 5), np.uint8),
        "scalar": np.array(2.5),
    }
    path = tmp_path / "t.npz"
    path.write_bytes(_npz(**arrays))
    with np.load(path) as expected:
        for source in (path, path.read_bytes()):
            loaded = load_arrays(
                source, ("plain", "fortran", "big_endian"), optional=("empty", "scalar", "no")
            )
            assert sorted(loaded) == ["big_endian", "empty", "fortran", "plain", "scalar"]
            for key, array in loaded.items():
                assert array.dtype == expected[key].dtype and array.shape == expected[key].shape
                np.testing.assert_array_equal(array, expected[key])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: b"not a zip at all", "unreadable NPZ (not an NPZ archive)"),
        (lambda data: data[: len(data) // 2], "unreadable NPZ (BadZipFile"),
        (
            lambda data: data.replace(b"\x01\x02\x03\x04", b"\x01\x02\x03\x05"),
            "unreadable NPZ (BadZipFile: Bad CRC-32",
        ),
    ],
)
def test_a_damaged_npz_is_unreadable(damage, reason: str) -> None:  # noqa: ANN001
    data = damage(_npz(a=np.arange(1, 5, dtype=np.uint8)))
    with pytest.raises(ValueError, match="^" + re.escape(reason)):
        load_arrays(data, ("a",))


def test_object_arrays_members_that_are_not_arrays_and_missing_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="Object arrays cannot be loaded"):
        load_arrays(_npz(a=np.array([None, 1], dtype=object)), ("a",))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.npy", b"plain text")
    with pytest.raises(ValueError, match="'a' is not a .npy array"):
        load_arrays(buffer.getvalue(), ("a",))
    with pytest.raises(ValueError, match="^missing key 'b'$"):
        load_arrays(_npz(a=np.zeros(2)), ("a", "b"))


def _tar(members: dict[str, bytes], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("a_folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_files_are_webdatasets_members(fmt: int) -> None:
    from webdataset.tariterators import tar_file_iterator

    members = {
        "a.npz": b"x" * 1000,
        "a.json": b"{}",
        "__meta__": b"skipped",
        # (ustar holds names up to 100 characters, the others any name)
        f"{'long' * (20 if fmt == tarfile.USTAR_FORMAT else 40)}.npz": b"y" * 512,
        "empty.json": b"",
    }
    data = _tar(members, fmt)
    ours = list(tar_files(io.BytesIO(data), "u"))
    theirs = [{**f, "__url__": "u"} for f in tar_file_iterator(io.BytesIO(data))]
    assert ours == theirs and [f["fname"] for f in ours] == [n for n in members if n != "__meta__"]


def test_a_shard_cut_inside_a_member_raises() -> None:
    data = _tar({"a.npz": b"x" * 3000, "b.npz": b"y" * 10})
    with pytest.raises(tarfile.ReadError, match="unexpected end of data"):
        list(tar_files(io.BytesIO(data[: 512 + 1000]), "u"))
