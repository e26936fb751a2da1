"""The project's shards: written from real tiles, read back sample for sample, judged like tiles."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from axion.data.badsamples import IMPLAUSIBLE, UNREADABLE, BadSample
from axion.data.dataset import TileDataset, collate_tiles
from axion.data.sharddata import ShardDataset, ShardLoader
from axion.data.shardsource import ShardSource, is_shards
from axion.data.shardwrite import SHARD_INDEX, write_shards


@pytest.fixture(scope="module")
def demo_tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BigEarthNet demo cut into 64 px windows: 54 real tiles in three splits."""
    from tests.data.conftest import Cli

    out = tmp_path_factory.mktemp("shards") / "tiles"
    result = Cli()("--demo", "--tile-size", 64, "--stride", 28, "-o", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def demo_shards(demo_tiles: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Those tiles as shards of 4 samples, by the CLI."""
    from tests.data.conftest import Cli

    out = tmp_path_factory.mktemp("shards") / "shards"
    result = Cli()("--from-tiles", demo_tiles, "--format", "shards", "--shard-size", 4, "-o", out)
    assert result.exit_code == 0, result.output
    return out


def _members(shard: Path) -> dict[str, bytes]:
    with tarfile.open(shard) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_shards_hold_the_tiles_unchanged_by_split(demo_tiles: Path, demo_shards: Path) -> None:
    index = json.loads((demo_shards / SHARD_INDEX).read_text())
    for split in ("train", "val", "test"):
        tiles = sorted((demo_tiles / split).glob("*.npz"))
        entries = index["splits"][split]
        assert sum(e["samples"] for e in entries) == len(tiles)
        assert all(e["samples"] <= 4 for e in entries)
        members: dict[str, bytes] = {}
        for entry in entries:
            members |= _members(demo_shards / entry["shard"])
        assert sorted(members) == sorted(
            name for t in tiles for name in (t.name, t.with_suffix(".json").name)
        )
        for tile in tiles:
            assert members[tile.name] == tile.read_bytes()
            assert members[tile.with_suffix(".json").name] == tile.with_suffix(".json").read_bytes()


def test_shards_are_reproducible_and_prepare_writes_them_directly(
    demo_tiles: Path, demo_shards: Path, tmp_path: Path
) -> None:
    from tests.data.conftest import Cli

    again = tmp_path / "again"
    write_shards(demo_tiles, again, shard_size=4)
    direct = tmp_path / "direct"
    result = Cli()(
        "--demo", "--tile-size", 64, "--stride", 28, "--format", "shards", "--shard-size", 4, "-o", direct
    )
    assert result.exit_code == 0, result.output
    assert (direct / "prepare.json").is_file() and not list(direct.glob(".tiles-*"))
    for shard in sorted(demo_shards.rglob("*.tar")):
        rel = shard.relative_to(demo_shards)
        assert (again / rel).read_bytes() == shard.read_bytes()
        assert _members(direct / rel) == _members(shard)


def test_samples_from_shards_equal_samples_from_the_folder(demo_tiles: Path, demo_shards: Path) -> None:
    tiles = TileDataset(demo_tiles, "val", skip_bad=True)
    shards = ShardDataset(ShardSource(demo_shards), "val")
    assert len(shards) == len(tiles)
    from_shards = {s["name"]: s for s in shards}
    for i, name in enumerate(tiles.names):
        expected, got = tiles[i], from_shards[name]
        for key in ("s1", "opt_v2", "target", "mask", "opt_v2_mask"):
            assert np.array_equal(expected[key].numpy(), got[key].numpy()), key


def test_a_brace_pattern_and_a_url_name_the_same_shards(demo_tiles: Path, demo_shards: Path) -> None:
    pattern = f"{demo_shards}/train/train-{{000000..000002}}.tar"
    assert is_shards(pattern) and is_shards(demo_shards) and not is_shards(demo_shards / "train")
    picked = ShardDataset(ShardSource(pattern), "train")
    assert [s.url.rsplit("/", 1)[-1] for s in picked.shards] == [f"train-00000{i}.tar" for i in range(3)]
    assert len(picked) == 12
    url = ShardSource(Path(f"file://{demo_shards}"))  # as --data-dir reads it
    assert url.spec == f"file://{demo_shards}"
    names = sorted(s["name"] for s in ShardDataset(url, "test"))
    assert names == sorted(p.stem for p in (demo_tiles / "test").glob("*.npz"))


def test_every_sample_once_across_workers_and_resume_skips_what_was_seen(demo_shards: Path) -> None:
    dataset = ShardDataset(ShardSource(demo_shards), "train", shuffle=True, seed=3)
    everything = sorted(s["name"] for s in dataset)
    assert len(everything) == len(set(everything)) == len(dataset)
    loader = ShardLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_tiles)
    loader.set_epoch(2)
    order = [name for batch in loader for name in batch["name"]]
    assert sorted(order) == everything and len(loader) == loader.batches
    loader.set_epoch(3)
    other = [name for batch in loader for name in batch["name"]]
    assert other != order and sorted(other) == everything  # a fresh order each epoch
    loader.set_epoch(2, skip=3 * 4)  # four batches already trained on
    assert len(loader) == loader.batches - 4
    rest = [name for batch in loader for name in batch["name"]]
    first = [n for b in _first_batches(dataset, 2, 4) for n in b]
    assert sorted(first + rest) == everything and rest == order[len(first) :]


def _first_batches(dataset: ShardDataset, epoch: int, count: int) -> list[list[str]]:
    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_tiles)
    batches = []
    for batch in loader:
        batches.append(batch["name"])
        if len(batches) == count:
            break
    return batches


def _rewrite(shard: Path, change) -> None:  # noqa: ANN001
    members = _members(shard)
    change(members)
    with tarfile.open(shard, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_bad_members_and_a_truncated_shard_are_bad_samples(demo_shards: Path, tmp_path: Path) -> None:
    import shutil

    from tests.data.conftest import Cli

    bad = tmp_path / "bad"
    shutil.copytree(demo_shards, bad)
    first = bad / "train" / "train-000000.tar"
    names = sorted({Path(n).stem for n in _members(first)})

    def constant_b8(members: dict[str, bytes]) -> None:
        with np.load(io.BytesIO(members[f"{names[0]}.npz"])) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["s2_b8"] = np.ones_like(arrays["s2_b8"])
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        members[f"{names[0]}.npz"] = buffer.getvalue()
        del members[f"{names[1]}.json"]  # a member that is not a whole tile

    _rewrite(first, constant_b8)
    second = bad / "train" / "train-000001.tar"
    second.write_bytes(second.read_bytes()[:5000])  # truncated mid-stream
    items = list(ShardDataset(ShardSource(bad), "train"))
    found = [i for i in items if isinstance(i, BadSample)]
    assert [(b.sample, b.kind) for b in found[:2]] == [(names[0], IMPLAUSIBLE), (names[1], UNREADABLE)]
    assert "S2 B8 is constant" in found[0].reason and "not a tile" in found[1].reason
    assert found[2].source == str(second) and found[2].kind == UNREADABLE
    assert "shard unreadable after" in found[2].reason and "\n" not in found[2].reason
    result = Cli()("--check", bad)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{first}:{names[0]}: S2 B8 is constant" in result.output
    assert f"{second}: shard unreadable after" in result.output


def test_shard_members_carry_no_pax_header(tmp_path: Path) -> None:
    """A float member time would give each member an extra PAX header to write and parse."""
    from axion.data.shardwrite import _write_shard

    tiles = tmp_path / "tiles"
    tiles.mkdir()
    (tiles / "a.npz").write_bytes(b"npz")
    (tiles / "a.json").write_text("{}")
    _write_shard(tmp_path / "s.tar", [tiles / "a.npz"])
    with tarfile.open(tmp_path / "s.tar") as tar:
        members = tar.getmembers()
    assert sorted(m.name for m in members) == ["a.json", "a.npz"]
    assert all(m.pax_headers == {} and m.mtime == 0 for m in members)
