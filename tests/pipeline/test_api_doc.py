"""Every Python block of docs/api.md runs, in order, in a folder laid out as the page says."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.scenes import write_raster

pytestmark = pytest.mark.slow  # about 40 s on a CPU: the page uses infer's 224 px tiles
PAGE = REPO / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_the_api_page_runs(
    run_dir: Path, window: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    shutil.copytree(run_dir, tmp_path / "checkpoints" / "stage3")
    write_raster(tmp_path / "S1.tif", window["s1"], window["crs"], window["transform"])
    write_raster(tmp_path / "OPTV2.tif", window["opt_v2"], window["crs"], window["transform"])
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) >= 6
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102 - the page's own examples
    printed = capsys.readouterr().out
    assert "opt_v2: opt_v2 looks like reflectance 0-1, not reflectance x 10000" in printed
    assert "opt_v3 ['B2', 'B3', 'B4', 'B8']" in printed
    assert "['opt_v3.tif', 'opt_v3_std.tif', 'opt_v3.json']" in printed
    assert (tmp_path / "outputs" / "opt_v3.json").is_file()
