"""TerraMesh behind a URL: listed and counted through the server, streamed, never fetched whole."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from axion.data.badsamples import UNREADABLE, BadSample
from axion.data.sharddata import ShardDataset, is_streamed, open_source
from axion.data.terramesh import is_terramesh
from tests.data.test_terramesh import SCENES
from tests.terramesh import write_terramesh


class _Ranged(http.server.SimpleHTTPRequestHandler):
    """A static server with directory listings and byte ranges; counts the bytes it sends."""

    sent: list[int]

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        wanted = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if wanted is None or not path.is_file():
            super().do_GET()  # a listing, or a whole file
            self.sent.append(path.stat().st_size if path.is_file() else 0)
            return
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        data = path.read_bytes()
        start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start : end + 1])
        self.sent.append(end - start + 1)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(
    terramind_examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, list[int]]]:
    """A TerraMesh-layout root on disk and the URL a local http server gives it."""
    root = write_terramesh(
        terramind_examples, tmp_path_factory.mktemp("served") / "TerraMesh", {"val": list(SCENES[:2])}
    )
    sent: list[int] = []
    handler = type("Handler", (_Ranged,), {"sent": sent})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root.parent))
    )
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/TerraMesh", root, sent
    server.shutdown()


def test_a_terramesh_url_gives_the_samples_of_the_local_root(served: tuple[str, Path, list[int]]) -> None:
    url, root, sent = served
    assert is_terramesh(url) and is_streamed(url)
    assert not is_terramesh(f"{url}/val")  # a folder below the root is not one
    sent.clear()
    source = open_source(url, "rtc")
    shard = root / "val" / "S2L2A" / "majortom_shard_000001.tar"
    assert [s.samples for s in source.shards("val")] == [2]
    assert 0 < sum(sent) < shard.stat().st_size / 4  # counted from the tar headers, not read whole
    remote = list(ShardDataset(source, "val", s1_product="rtc"))
    local = list(ShardDataset(open_source(root, "rtc"), "val", s1_product="rtc"))
    assert [s["name"] for s in remote] == [s["name"] for s in local] == [f"majortom_{n}" for n in SCENES[:2]]
    for got, expected in zip(remote, local, strict=True):
        for key in ("s1", "opt_v2", "target", "mask"):
            np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())


def test_a_shard_that_vanishes_behind_the_url_is_a_bad_sample(served: tuple[str, Path, list[int]]) -> None:
    url, root, _ = served
    source = open_source(url, "rtc")
    s1 = root / "val" / "S1RTC" / "majortom_shard_000001.tar"
    kept = s1.read_bytes()
    s1.unlink()
    try:
        (item,) = list(ShardDataset(source, "val", s1_product="rtc"))
    finally:
        s1.write_bytes(kept)
    assert isinstance(item, BadSample) and item.kind == UNREADABLE
    assert item.source.endswith("/val/S2L2A/majortom_shard_000001.tar") and "after 0 of 2" in item.reason


def test_only_the_shards_max_samples_needs_are_counted(terramind_examples: Path, tmp_path: Path) -> None:
    root = write_terramesh(terramind_examples, tmp_path / "TerraMesh", {"train": list(SCENES[:4])}, shards=2)
    source = open_source(root, "rtc")
    assert [s.samples for s in source.shards("train", max_samples=1)] == [1]
    assert list(source.counts) == [str(root / "train" / "S2L2A" / "majortom_shard_000001.tar")]
    assert [s.samples for s in source.shards("train")] == [2, 2] and len(source.counts) == 2
