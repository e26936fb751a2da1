"""Real 64 px tiles for the engine tests, cut once per session by ``axion stage3 prepare``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from axion.cli import app

#: Fast training flags: tiny model, random weights, one DDIM step, no LPIPS.
FAST = [
    "--model-size", "tiny", "--no-pretrained", "--lpips-weight", "0", "--timesteps", "1",
    "--num-workers", "0", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="session")
def tiles_64(tmp_path_factory: pytest.TempPathFactory, terramind_examples: Path) -> Path:
    """Tiles of 64 px from two real co-registered S1RTC/S2L2A scenes."""
    out = tmp_path_factory.mktemp("engine") / "tiles"
    scenes = sorted(p.stem for p in (terramind_examples / "S1RTC").glob("*.tif"))[:2]
    args = ["stage3", "prepare", "--output-dir", str(out), "--tile-size", "64", "--block-size", "1"]
    for scene in scenes:
        args += ["--s1", str(terramind_examples / "S1RTC" / f"{scene}.tif")]
        args += ["--s2", str(terramind_examples / "S2L2A" / f"{scene}.tif")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for split in ("train", "val"):
        assert list((out / split).glob("*.npz")), f"no {split} tiles in {out}"
    return out
