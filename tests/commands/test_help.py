"""Every command's --help answers fast, without heavy imports, and shows defaults and units."""

from __future__ import annotations

import subprocess
import sys

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
    """The CLI answers --help without importing the libraries the commands need: that is what keeps
    it quick (checked by what is imported, not by a time, which a loaded machine would break)."""
    heavy = ("torch", "terratorch", "rasterio", "matplotlib", "numpy")
    code = f"import sys; from axion.cli import app; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"heavy modules imported by the CLI: {out}"
