"""TerraMesh-layout shards built from the five terramind-examples scenes (TerraMesh validation samples).

The layout follows the data set's card and its published loader: ``<split>/<modality>/<shard>.tar``,
one member ``<key>.zarr.zip`` per sample, a zip of a consolidated Zarr group with ``bands``
(time, band, y, x), the ``band`` names, centre coordinates, the time, and for Sentinel-2 a
``cloud_mask`` (0 clear). The examples are 224 px crops; real samples are 264 px.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

import numpy as np

S2L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


def zarr_zip(bands: np.ndarray, names: list[str], cloud_mask: np.ndarray | None = None) -> bytes:
    """One modality of one sample: ``bands`` (band, y, x) as TerraMesh stores it."""
    import zarr

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.zarr.zip"
        store = zarr.ZipStore(str(path), mode="w")
        group = zarr.group(store=store)
        data = group.create_dataset("bands", data=bands[None], chunks=(1, *bands.shape))
        data.attrs["_ARRAY_DIMENSIONS"] = ["time", "band", "y", "x"]
        group.create_dataset("band", data=np.array(names)).attrs["_ARRAY_DIMENSIONS"] = ["band"]
        for key, value in (("center_lat", 45.0), ("center_lon", 7.0)):
            group.create_dataset(key, data=np.array(value)).attrs["_ARRAY_DIMENSIONS"] = []
        group.create_dataset("time", data=np.array([1.6e18], dtype=np.int64)).attrs["_ARRAY_DIMENSIONS"] = [
            "time"
        ]
        if cloud_mask is not None:
            group.create_dataset("cloud_mask", data=cloud_mask).attrs["_ARRAY_DIMENSIONS"] = ["y", "x"]
        zarr.consolidate_metadata(store)
        store.close()
        return path.read_bytes()


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def cloud_block(height: int, width: int) -> np.ndarray:
    """A cloud mask with one cloudy block (value 1) in the top-left corner."""
    mask = np.zeros((height, width), np.uint8)
    mask[:32, :32] = 1
    return mask


def write_terramesh(
    examples: Path, root: Path, splits: dict[str, list[str]], copies: int = 1, shards: int = 1
) -> Path:
    """TerraMesh-layout shards of the named scenes: ``shards`` S2L2A and S1RTC shards per split
    (``copies`` > 1 repeats each scene under new keys, for throughput measurements; the samples
    are dealt to the shards in turn)."""
    import rasterio

    for split, scenes in splits.items():
        s2_members, s1_members = {}, {}
        for scene in scenes:
            with rasterio.open(examples / "S2L2A" / f"{scene}.tif") as src:
                s2 = zarr_zip(src.read(), list(S2L2A_BANDS), cloud_block(src.height, src.width))
            with rasterio.open(examples / "S1RTC" / f"{scene}.tif") as src:
                s1 = zarr_zip(src.read().astype(np.float32), ["vv", "vh"])
            for copy in range(copies):
                key = f"majortom_{scene}" + (f"_{copy}" if copies > 1 else "")
                s2_members[f"{key}.zarr.zip"], s1_members[f"{key}.zarr.zip"] = s2, s1
        for shard in range(shards):
            name = f"majortom_shard_{shard + 1:06d}.tar"
            for modality, members in (("S2L2A", s2_members), ("S1RTC", s1_members)):
                dealt = dict(list(members.items())[shard::shards])
                write_tar(root / split / modality / name, dealt)
    return root
