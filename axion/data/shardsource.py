"""Where shards are, and how one is opened: a shard folder, a brace pattern or an fsspec URL.

``--data-dir`` of ``train`` and ``evaluate`` names shards when it is

- a folder (or the URL of one: ``s3://``, ``gs://``, ``https://``, ``hf://``) holding the
  index ``shards.json`` that ``prepare --format shards`` writes;
- a brace pattern of shards, ``out/train/train-{000000..000099}.tar``, or one ``.tar``;
  the index is looked up in the shards' folder and the one above it, and only the shards it
  lists for the split are read.

The index gives every shard's sample count, so an epoch's length is known before it starts.
A shard is opened through fsspec and read as a stream, member by member: it is never copied
or downloaded whole, and nothing from it is written anywhere.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from axion.data.badsamples import UNREADABLE, BadSample
from axion.data.shardwrite import SHARD_INDEX, read_index
from axion.data.tilefile import is_inference_tile, split_of
from axion.errors import DataError

if TYPE_CHECKING:
    from axion.data.dataset import TileInfo
    from axion.data.sharddata import ShardDataset

#: Seconds a remote shard may keep a read waiting before it counts as unreachable.
READ_TIMEOUT_S = 60


def source_text(spec: str | Path) -> str:
    """``--data-dir`` as typed: a path setting reads ``s3://b/x`` as ``s3:/b/x`` (and ``file:///x`` as
    ``file:/x``); the URL is put back."""
    text = str(spec)
    match = re.match(r"^([a-z][a-z0-9+.-]*):/(?!/)", text)
    if match is None:
        return text
    scheme, rest = match.group(1), text[match.end() :]
    return f"{scheme}:///{rest}" if scheme == "file" else f"{scheme}://{rest}"


def is_shards(spec: str | Path) -> bool:
    """Whether ``--data-dir`` names shards rather than a tile folder."""
    text = source_text(spec)
    if "://" in text or "{" in text or text.endswith(".tar"):
        return True
    return Path(text).is_dir() and (Path(text) / SHARD_INDEX).is_file()


@dataclass(frozen=True)
class Deferred:
    """A shard member whose decoding waits until it leaves the shuffle buffer, so the buffer holds
    its bytes, not its arrays (a source whose members are costly to decode returns these)."""

    decode: Callable[[], TileInfo | BadSample]


@dataclass(frozen=True)
class Shard:
    """One shard and how many of its samples to read (all, unless ``--max-samples`` cuts it)."""

    url: str
    samples: int


def join_url(base: str, rel: str) -> str:
    return f"{base.rstrip('/')}/{rel}"


def _parent(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[0] if "/" in url.rstrip("/") else "."


def open_shard(url: str) -> IO[bytes]:
    """A binary stream of the shard at ``url`` (a path or an fsspec URL), read as it is consumed.

    A local path is opened with Python's own buffered reader: fsspec's local file object adds
    20-30 us to each of the three reads of a tar member, a tenth of a 64 px tile's reading.
    """
    if "://" not in url:
        return open(url, "rb")  # noqa: SIM115 (the caller closes it)
    import fsspec

    return fsspec.open(url, "rb", **remote_options(url)).open()


def remote_options(url: str) -> dict[str, Any]:
    """fsspec options for ``url``: an http(s) server gets :data:`READ_TIMEOUT_S` to connect and per read."""
    return {"client_kwargs": {"timeout": _http_timeout()}} if url.startswith(("http://", "https://")) else {}


def remote_errors() -> tuple[type[Exception], ...]:
    """What reading a path or URL raises when it cannot be read (aiohttp's own errors for http)."""
    try:
        from aiohttp import ClientError
    except ImportError:  # no http support installed: only OSError and friends
        return (OSError, EOFError, ValueError)
    return (OSError, EOFError, ValueError, ClientError)


def _http_timeout():  # noqa: ANN202 (aiohttp's ClientTimeout, imported only for http URLs)
    import aiohttp

    return aiohttp.ClientTimeout(sock_connect=READ_TIMEOUT_S, sock_read=READ_TIMEOUT_S)


def _read_text(url: str) -> str | None:
    """The text at ``url``, or None if there is nothing there."""
    try:
        with open_shard(url) as handle:
            return handle.read().decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{url}: unreadable ({type(exc).__name__}: {exc})") from None


class ShardSource:
    """The shards ``spec`` names, with their sample counts from the index.

    Raises:
        DataError: no index found, or a shard the pattern names that the index does not list.
    """

    def __init__(self, spec: str | Path) -> None:
        self.spec = source_text(spec)
        if "{" in self.spec or self.spec.endswith(".tar"):
            from braceexpand import braceexpand

            self.urls: list[str] | None = list(braceexpand(self.spec))
            self.base, self.index = self._find_index(_parent(self.urls[0]))
        else:
            self.urls = None
            self.base = self.spec.rstrip("/")
            text = _read_text(join_url(self.base, SHARD_INDEX))
            if text is None:
                remote = " there, or the server cannot be reached" if "://" in self.spec else ""
                raise DataError(
                    f"{self.spec}: no {SHARD_INDEX}{remote} (write shards with 'axion stage3 prepare --format shards')"
                )
            self.index = read_index(text, join_url(self.base, SHARD_INDEX))

    @staticmethod
    def import_readers() -> None:
        """Import the libraries that read a shard (see :class:`~axion.data.sharddata.ShardDataset`)."""
        import webdataset.tariterators  # noqa: F401

    def _find_index(self, folder: str) -> tuple[str, dict[str, list[tuple[str, int]]]]:
        for base in (folder, _parent(folder)):
            text = _read_text(join_url(base, SHARD_INDEX))
            if text is not None:
                return base, read_index(text, join_url(base, SHARD_INDEX))
        raise DataError(
            f"{self.spec}: no {SHARD_INDEX} in the shards' folder or the one above it "
            "(it gives every shard's sample count)"
        )

    def shards(self, split: str, max_samples: int | None = None) -> list[Shard]:
        """The split's shards in index order (those the pattern names), cut after ``max_samples``."""
        listed = [Shard(join_url(self.base, rel), count) for rel, count in self.index.get(split, [])]
        if self.urls is not None:
            known = {join_url(self.base, rel) for entries in self.index.values() for rel, _ in entries}
            unknown = [url for url in self.urls if url not in known]
            if unknown:
                raise DataError(f"{unknown[0]}: not listed in {join_url(self.base, SHARD_INDEX)}")
            wanted = set(self.urls)
            listed = [shard for shard in listed if shard.url in wanted]
        if max_samples is not None:
            cut, left = [], max_samples
            for shard in listed:
                if left <= 0:
                    break
                cut.append(Shard(shard.url, min(shard.samples, left)))
                left -= shard.samples
            listed = cut
        return listed

    @contextmanager
    def members(self, shard: Shard) -> Iterator[Iterator[dict[str, Any]]]:
        """The shard's samples as webdataset groups them (``__key__`` and one entry per suffix)."""
        from webdataset.tariterators import group_by_keys

        with open_shard(shard.url) as handle:
            yield group_by_keys(tar_files(handle, shard.url), keys=_key_and_suffix)

    def tile(self, dataset: ShardDataset, url: str, member: dict[str, Any]) -> TileInfo | BadSample | None:
        """A member as a tile, why it is bad, or None when its JSON puts it in another split."""
        name = str(member["__key__"])
        where = f"{url}:{name}"
        if "npz" not in member or "json" not in member:
            found = sorted(k for k in member if not k.startswith("__"))
            return BadSample(
                where, name, UNREADABLE, f"not a tile: needs {name}.npz and {name}.json, has {found}"
            )
        try:
            meta = json.loads(member["json"])
            if not isinstance(meta, dict):
                raise ValueError("JSON must hold an object")
            if is_inference_tile(meta):
                raise ValueError("a tile without ground truth")
            split = split_of(meta)
        except (ValueError, UnicodeDecodeError) as exc:
            return BadSample(where, name, UNREADABLE, f"sidecar JSON: {exc}")
        if split != dataset.split:
            return None
        return dataset.info(name, Path(f"{name}.npz"), meta, data=member["npz"], source=where)


#: Member names webdataset's own tar iterator passes over (its ``skip_meta``): ``__x__`` entries.
_META_MEMBER = re.compile(r"__[^/]*__($|/)")


def tar_files(handle: IO[bytes], url: str) -> Iterator[dict[str, Any]]:
    """The regular files of a tar stream in order, as webdataset's ``tar_file_iterator`` yields them
    (``fname``, ``data``, ``__url__``, for its ``group_by_keys``), each read with one read of its size.

    webdataset opens the stream in tarfile's stream mode (``r|*``), which re-chunks it into 10 KB
    blocks and copies a member's bytes several times over. The plain reading mode (``r:``) parses
    each header from one 512-byte read; the data and its padding are read here, so tarfile never
    needs to seek: a stream that only reads forward (an http response) is read the same way.

    Raises:
        tarfile.ReadError: the stream ends inside a member (a truncated shard).
    """
    tar = tarfile.open(fileobj=handle, mode="r:")
    while (info := tar.next()) is not None:
        tar.members = []  # tarfile keeps every header it has read; a shard's stream needs none of them
        if not info.isreg() or _META_MEMBER.match(info.name):
            continue
        data = handle.read(info.size)
        padding = -info.size % tarfile.BLOCKSIZE
        if len(data) < info.size or (padding and len(handle.read(padding)) < padding):
            raise tarfile.ReadError("unexpected end of data")
        yield {"fname": info.name, "data": data, "__url__": url}


def _key_and_suffix(fname: str) -> tuple[str, str]:
    """``a.b_r0.npz`` -> (``a.b_r0``, ``npz``): tile names may hold dots, suffixes do not."""
    stem, _, suffix = fname.rpartition(".")
    return (stem, suffix) if stem else (fname, "")
