"""Every command's --help answers fast, without heavy imports, and shows defaults and units."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from axion.cli import app


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "evaluate",
            ["--checkpoint", "--split", "default: test", "--lpips-weight", "--save-arrays", "checkpoint's"],
        ),
        ("infer", ["--input-dir", "--s1-scene", "--tile-size", "default: 224", "--overlap", "pixels", "dB"]),
        ("visualize", ["--results", "--max-tiles", "default: 16", "--dpi", "dots per inch"]),
    ],
)
def test_help_shows_defaults_and_units(command: str, expected: list[str]) -> None:
    result = CliRunner().invoke(app, ["stage3", command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for needle in expected:
        assert needle in text, f"{needle!r} missing from 'axion stage3 {command} --help'"


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); from axion.cli import app; "
        "print(time.perf_counter() - t, [m for m in ('torch', 'terratorch', 'rasterio', 'matplotlib') if m in sys.modules])"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split(" ", 1)
    assert out[1].strip() == "[]", f"heavy modules imported by the CLI: {out[1]}"
    assert time.perf_counter() - started < 2.0
