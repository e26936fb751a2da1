"""TerraMesh, read as it is published: ``{train,val}/{S1GRD|S1RTC,S2L2A}/<shard>.tar``.

Each TerraMesh shard holds one modality; a sample is the member ``<key>.zarr.zip`` (a zip of a
consolidated Zarr group: ``bands`` (time, band, y, x), the ``band`` names, and for Sentinel-2 a
``cloud_mask`` (y, x)). The S2L2A shard and the S1 shard of the same name hold the same samples
in the same order; they are read side by side as streams and joined by key (a key that differs
ends the shard as a bad sample, as the data set's own loader refuses such a divergence).

A joined sample becomes a tile: S2L2A's 12 bands give B2, B3, B4, B8 (by band name, or by
position B01..B12 when unnamed), S1 gives VV, VH in dB; the sample is centre-cropped to
:data:`TILE_SIZE` (TerraMesh samples are 264 px); pixels the cloud mask marks (any value but 0)
are invalid target pixels (``valid`` 0). A run reads one S1 product, the model's
(``--s1-product``): S1RTC (MajorTOM shards) or S1GRD (SSL4EO-S12 shards); the tiles record it as
``s1_product``. A root is a local folder or a URL (``https://``, ``hf://``, ``s3://``, through
fsspec). A shard's samples are counted from its S2L2A tar headers when the shard is first needed
(seekable reads of a block around each header: never the whole shard); shards then stream as the
project's do, with the same timeouts and bad-sample policy.
"""

from __future__ import annotations

import functools
import io
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from axion.bands import S1_KEYS, S2_KEYS
from axion.data.badsamples import UNREADABLE, BadSample
from axion.data.shardsource import (
    Deferred,
    Shard,
    join_url,
    open_shard,
    remote_errors,
    remote_options,
    source_text,
    tar_files,
)
from axion.data.tilefile import VALID_KEY
from axion.errors import DataError

if TYPE_CHECKING:
    from axion.data.dataset import TileInfo
    from axion.data.sharddata import ShardDataset

#: The optical modality read as the ground truth.
S2_MODALITY = "S2L2A"
#: The S1 modality of each product.
S1_MODALITIES: dict[str, str] = {"grd": "S1GRD", "rtc": "S1RTC"}
#: The member suffix of a TerraMesh sample.
MEMBER_SUFFIX = "zarr.zip"
#: Tiles are centre crops of this side (TerraMind's patch size divides it); smaller samples stay whole.
TILE_SIZE = 256
#: S2L2A's band order in TerraMesh, when a sample does not name its bands.
S2L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
#: Bytes read per block while counting a shard's samples (a tar header is 512 bytes).
COUNT_BLOCK = 16 * 1024
#: The bands a tile takes, in tile order (B2, B3, B4, B8).
WANTED_S2 = ("B02", "B03", "B04", "B08")
WANTED_S1 = ("VV", "VH")


def is_terramesh(spec: str | Path) -> bool:
    """Whether ``--data-dir`` is a TerraMesh root (``train/`` or ``val/`` holding ``S2L2A/``): a local
    folder, or the URL of one (``https://``, ``hf://``, ``s3://``; asked of the server, with its timeouts)."""
    text = source_text(spec)
    if "://" not in text:
        return any((Path(text) / split / S2_MODALITY).is_dir() for split in ("train", "val"))
    try:
        fs, root = _filesystem(text)
        return any(fs.isdir(join_url(root, f"{split}/{S2_MODALITY}")) for split in ("train", "val"))
    except (*remote_errors(), ImportError):
        return False  # not reachable as a TerraMesh root: read as the project's shards, which say why


def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` (a path or a URL) and the path inside it."""
    from fsspec.core import url_to_fs

    return url_to_fs(url, **remote_options(url))


def _tar_names(url: str) -> set[str]:
    """The names of the ``.tar`` files in the folder ``url`` (none when there is no such folder)."""
    fs, path = _filesystem(url)
    try:
        listed = fs.ls(path, detail=False)
    except FileNotFoundError:
        return set()
    return {name.rstrip("/").rsplit("/", 1)[-1] for name in listed if name.endswith(".tar")}


def _count(url: str) -> int:
    """Samples of a shard, from its tar headers.

    The shard is opened seekable and read in :data:`COUNT_BLOCK` blocks, so only the blocks that
    hold a member's header are read (one ranged read per sample over a URL), never the whole shard.
    """
    import fsspec

    try:
        with (
            fsspec.open(url, "rb", block_size=COUNT_BLOCK, **remote_options(url)) as handle,
            tarfile.open(fileobj=handle, mode="r:") as tar,
        ):
            return sum(1 for m in tar if m.isfile() and m.name.endswith(f".{MEMBER_SUFFIX}"))
    except (*remote_errors(), tarfile.TarError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{url}: unreadable ({detail})") from None


def _decode(data: bytes) -> tuple[np.ndarray, list[str] | None, np.ndarray | None]:
    """``bands`` (band, y, x), the band names (or None) and the cloud mask (y, x, or None) of a sample.

    The zip's members are read into a dict that zarr reads as its store (a sample's members are
    all small but the chunks, which are read anyway), rather than through fsspec's zip filesystem,
    whose file objects and path handling cost more than the small members themselves.
    """
    import zarr
    from zarr.storage import KVStore

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        store = KVStore({name: archive.read(name) for name in archive.namelist()})
    group = zarr.open_consolidated(store, mode="r")
    bands = np.asarray(group["bands"][...])
    if bands.ndim == 4:
        if bands.shape[0] != 1:
            raise ValueError(f"bands hold {bands.shape[0]} times, expected 1")
        bands = bands[0]
    if bands.ndim != 3:
        raise ValueError(f"bands have shape {bands.shape}, expected (band, y, x)")
    names = [str(n).upper() for n in group["band"][...]] if "band" in group else None
    mask = np.asarray(group["cloud_mask"][...]) if "cloud_mask" in group else None
    return bands, names, mask


def _pick(
    bands: np.ndarray, names: list[str] | None, wanted: tuple[str, ...], default: tuple[str, ...]
) -> list[np.ndarray]:
    order = names if names is not None else list(default)
    if len(order) != bands.shape[0]:
        raise ValueError(f"{bands.shape[0]} bands, expected {len(default)} ({', '.join(default)})")
    missing = [band for band in wanted if band not in order]
    if missing:
        raise ValueError(f"no band {missing[0]} (bands: {', '.join(order)})")
    return [bands[order.index(band)] for band in wanted]


def _crop(array: np.ndarray, size: int) -> np.ndarray:
    height, width = array.shape[-2:]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return array[..., top : top + size, left : left + size]


class TerraMeshSource:
    """The TerraMesh shards of a root (a local folder or a URL), one S1 product.

    Args:
        spec: the root, holding ``train/`` and ``val/``.
        s1_product: ``grd`` or ``rtc``: which S1 folder is read.

    Raises:
        DataError: no S1 shard of that product beside the S2L2A shards, or a shard that cannot be
            counted (unreachable, not a tar).
    """

    def __init__(self, spec: str | Path, s1_product: str) -> None:
        self.spec = source_text(spec).rstrip("/")
        self.product = s1_product
        self.s1_modality = S1_MODALITIES[s1_product]
        self.index: dict[str, list[str]] = {}  # the S2L2A shards of each split with an S1 partner
        self.counts: dict[str, int] = {}  # samples of each shard counted so far
        for split in ("train", "val"):
            folder = join_url(self.spec, split)
            s2 = sorted(_tar_names(join_url(folder, S2_MODALITY)))
            s1 = _tar_names(join_url(folder, self.s1_modality)) if s2 else set()
            paired = [name for name in s2 if name in s1]
            if s2 and not paired:
                others = [
                    m
                    for m in S1_MODALITIES.values()
                    if m != self.s1_modality and _tar_names(join_url(folder, m))
                ]
                raise DataError(
                    f"{folder}: no {self.s1_modality} shard beside the {S2_MODALITY} shards "
                    f"(found {', '.join(others) or 'no S1 folder'}); --s1-product picks the S1 product"
                )
            self.index[split] = [join_url(folder, f"{S2_MODALITY}/{name}") for name in paired]

    def shards(self, split: str, max_samples: int | None = None) -> list[Shard]:
        """The split's S2L2A shards that have an S1 partner, cut after ``max_samples``.

        Shards are counted when first asked for, in order, and only as far as ``max_samples``
        reaches (a first run on a remote root with ``--max-samples`` counts a few shards, not all).
        """
        listed, left = [], max_samples
        for url in self.index.get(split, []):
            if left is not None and left <= 0:
                break
            if url not in self.counts:
                self.counts[url] = _count(url)
            count = self.counts[url]
            take = count if left is None else min(count, left)
            listed.append(Shard(url, take))
            left = None if left is None else left - take
        return listed

    @staticmethod
    def import_readers() -> None:
        """Import the libraries that read a shard and its Zarr zips."""
        import webdataset.tariterators  # noqa: F401
        import zarr.storage  # noqa: F401

    def _s1_url(self, s2_url: str) -> str:
        folder, name = s2_url.rsplit("/", 1)
        return join_url(folder.rsplit("/", 1)[0], f"{self.s1_modality}/{name}")

    @contextmanager
    def members(self, shard: Shard) -> Iterator[Iterator[dict[str, Any]]]:
        """The shard's samples, S2L2A and S1 joined by key (``s2`` and ``s1``: the Zarr zips)."""
        from webdataset.tariterators import group_by_keys

        with ExitStack() as stack:
            streams = []
            for url in (shard.url, self._s1_url(shard.url)):
                handle = stack.enter_context(open_shard(url))
                streams.append(group_by_keys(tar_files(handle, url), keys=_split_member))
            yield _joined(*streams, s1_url=self._s1_url(shard.url))

    def tile(self, dataset: ShardDataset, url: str, member: dict[str, Any]) -> Deferred:
        """A joined sample, decoded into a tile when it leaves the shuffle buffer (:meth:`decoded`)."""
        return Deferred(functools.partial(self.decoded, dataset, url, member))

    def decoded(self, dataset: ShardDataset, url: str, member: dict[str, Any]) -> TileInfo | BadSample:
        """A joined sample as a tile: the bands it needs, cropped, its cloud mask as invalid pixels."""
        from axion.data.dataset import TileInfo

        name = str(member["__key__"])
        where = f"{url}:{name}"
        try:
            if MEMBER_SUFFIX not in member["s2"] or MEMBER_SUFFIX not in member["s1"]:
                raise ValueError(f"not a TerraMesh sample: needs {name}.{MEMBER_SUFFIX} in both modalities")
            s2, s2_names, cloud = _decode(member["s2"][MEMBER_SUFFIX])
            s1, s1_names, _ = _decode(member["s1"][MEMBER_SUFFIX])
            optical = _pick(s2, s2_names, WANTED_S2, S2L2A_BANDS)
            radar = _pick(s1, s1_names, WANTED_S1, WANTED_S1)
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:  # a broken zip or Zarr group
            return BadSample(where, name, UNREADABLE, f"TerraMesh sample: {str(exc).splitlines()[0]}")
        arrays = dict(zip(S2_KEYS, optical, strict=True)) | dict(zip(S1_KEYS, radar, strict=True))
        if cloud is not None:
            arrays[VALID_KEY] = (cloud == 0).astype(np.uint8)
        arrays = {key: np.ascontiguousarray(_crop(array, TILE_SIZE)) for key, array in arrays.items()}
        meta = {"split": dataset.split, "s1_product": self.product, "s2_level": "L2A", "source": "TerraMesh"}
        return TileInfo(name, Path(name), meta, 0, 0, arrays=arrays, source=where)


def _split_member(fname: str) -> tuple[str, str]:
    """``majortom_123.zarr.zip`` -> (``majortom_123``, ``zarr.zip``)."""
    if fname.endswith(f".{MEMBER_SUFFIX}"):
        return fname[: -len(MEMBER_SUFFIX) - 1], MEMBER_SUFFIX
    stem, _, suffix = fname.rpartition(".")
    return (stem, suffix) if stem else (fname, "")


def _joined(
    s2: Iterator[dict[str, Any]], s1: Iterator[dict[str, Any]], s1_url: str
) -> Iterator[dict[str, Any]]:
    """Samples of the two modalities side by side; a key that differs (or a shard that ends first) stops."""
    for optical in s2:
        radar = next(s1, None)
        if radar is None or radar["__key__"] != optical["__key__"]:
            found = "its end" if radar is None else radar["__key__"]
            raise ValueError(f"{s1_url} holds {found} where {S2_MODALITY} holds {optical['__key__']}")
        yield {"__key__": optical["__key__"], "s2": optical, "s1": radar}
