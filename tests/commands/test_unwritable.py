"""Output folders the user may not write: one line and exit 2 from every command, before any slow work.

The folder is read-only by its permissions (0o555), as on a shared machine. Root writes
anywhere because it holds the capability to override file permissions (CAP_DAC_OVERRIDE),
so as root each command runs in a separate process that has given that capability up
(``prctl(PR_CAPBSET_DROP)`` before ``exec``): the permission bits then apply to it as to
any user. As another user the commands simply run as that user.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
FAST_TRAIN = "--model-size tiny --no-pretrained --lpips-weight 0 --timesteps 1 --epochs 1".split()
#: From linux/prctl.h and linux/capability.h.
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2
PROBE = "import sys, tempfile\ntry:\n    tempfile.TemporaryFile(dir=sys.argv[1]); print('written')\nexcept OSError:\n    print('refused')"


def _drop_permission_override() -> None:
    """In the child, before exec: give up root's power to write where the permissions say no."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run(*args: str) -> subprocess.CompletedProcess:
    """Run a Python command line as a user the folder's permissions apply to."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LIGHTLY_DID_VERSION_CHECK": "True"}
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_drop_permission_override if os.geteuid() == 0 else None,
    )


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """An output path below a folder no one may write into (0o555)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = _run("-c", PROBE, str(folder))
        if probe.stdout.strip() != "refused":
            pytest.skip(f"a 0o555 folder is writable here ({probe.stdout.strip() or probe.stderr.strip()})")
        yield folder / "out"
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("command", ["prepare", "train", "evaluate", "infer", "visualize"])
def test_read_only_output_folder_is_one_line(
    command: str, locked: Path, tiles_dir: Path, checkpoint: Path, evaluation
) -> None:
    args = {
        "prepare": ["prepare", "--demo", "--output-dir", locked],
        "train": ["train", "--data-dir", tiles_dir, "--output-dir", locked, *FAST_TRAIN],
        "evaluate": [
            "evaluate",
            "--checkpoint",
            checkpoint,
            "--data-dir",
            tiles_dir,
            "--output-dir",
            locked,
            "--lpips-weight",
            "0",
        ],  # fmt: skip
        "infer": [
            "infer",
            "--checkpoint",
            checkpoint,
            "--input-dir",
            tiles_dir / "test",
            "--output-dir",
            locked,
            "--proxy-from-ground-truth",
        ],
        "visualize": ["visualize", "--results", evaluation[0], "--output-dir", locked],
    }[command]
    done = _run("-m", "axion", "stage3", *map(str, args))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.strip() == "" and "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert str(locked) in line and "not writable" in line and "Permission denied" in line, line
    assert not locked.exists()
