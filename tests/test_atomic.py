"""Atomic writes: all or nothing, and leftovers of dead writers are recognised and removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from axion.atomic import atomic_path, remove_stale_temporaries, stale_temporaries, write_json_atomic


def test_success_replaces_and_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_temporary_is_hidden_and_keeps_the_suffix_only_on_request(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "checkpoint_epoch_1.pt") as tmp:
        assert tmp.name.startswith(".checkpoint_epoch_1.pt.") and tmp.suffix == ".tmp"
        tmp.write_bytes(b"pt")
        assert [p.name for p in tmp_path.glob("checkpoint_epoch_*.pt")] == []  # never a half-written match
    with atomic_path(tmp_path / "figure.png", keep_suffix=True) as tmp:
        assert tmp.suffix == ".png" and tmp.name.startswith(".figure.png.")
        tmp.write_bytes(b"png")


def test_non_finite_numbers_are_refused_not_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "x.json", {"loss": float("nan")})
    assert not list(tmp_path.iterdir())


def test_only_temporaries_of_dead_processes_are_stale(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    (tmp_path / f".best_model.pt.{dead_pid}.tmp").write_bytes(b"torn")
    (tmp_path / f".curves.png.{dead_pid}.tmp.png").write_bytes(b"torn")
    (tmp_path / f".best_model.pt.{os.getpid()}.tmp").write_bytes(b"mine, still writing")
    (tmp_path / "best_model.pt").write_bytes(b"kept")
    (tmp_path / ".hidden").write_bytes(b"not ours")
    assert [p.name for p in stale_temporaries(tmp_path)] == [
        f".best_model.pt.{dead_pid}.tmp",
        f".curves.png.{dead_pid}.tmp.png",
    ]
    removed = remove_stale_temporaries(tmp_path)
    assert len(removed) == 2 and not any(p.exists() for p in removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".best_model.pt.{os.getpid()}.tmp", "best_model.pt", ".hidden"]
    )
