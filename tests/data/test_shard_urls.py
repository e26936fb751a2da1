"""Shards behind a URL: a stalled or unreachable server is a timeout and a bad sample, never a hang."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from axion.data.badsamples import UNREADABLE, BadSample
from axion.data.sharddata import ShardDataset
from axion.data.shardsource import ShardSource
from axion.errors import DataError

INDEX = {
    "format": "axion-shards",
    "version": 1,
    "splits": {"val": [{"shard": "val/val-000000.tar", "samples": 3}]},
}


class _Stalling(http.server.BaseHTTPRequestHandler):
    """Serves the index; never answers for a shard."""

    def _index(self, body: bool) -> None:
        data = json.dumps(INDEX).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._index(True) if self.path.endswith("shards.json") else time.sleep(20)

    def do_HEAD(self) -> None:  # noqa: N802
        self._index(False) if self.path.endswith("shards.json") else time.sleep(20)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stalling_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stalling)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/shards"
    server.shutdown()


def test_a_stalled_shard_times_out_into_a_bad_sample(
    stalling_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("axion.data.shardsource.READ_TIMEOUT_S", 1)
    started = time.monotonic()
    (item,) = list(ShardDataset(ShardSource(stalling_url), "val"))
    assert time.monotonic() - started < 15
    assert isinstance(item, BadSample) and item.kind == UNREADABLE
    assert item.source == f"{stalling_url}/val/val-000000.tar" and "after 0 of 3 samples" in item.reason


def test_an_unreachable_server_is_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(DataError) as caught:
        ShardSource(f"http://127.0.0.1:{port}/shards")
    assert str(caught.value).startswith(
        f"http://127.0.0.1:{port}/shards: no shards.json there, or the server"
    )
    assert "\n" not in str(caught.value)
