"""The command-line shell: version, help, fast start, one-line config errors."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from axion import __version__
from axion.cli import app

runner = CliRunner()
COMMANDS = ("prepare", "train", "evaluate", "infer", "visualize", "export")


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_stage3_help_lists_commands() -> None:
    result = runner.invoke(app, ["stage3", "--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_shows_defaults(command: str) -> None:
    result = runner.invoke(app, ["stage3", command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "default" in result.output


@pytest.mark.parametrize("args", [[], ["stage3"], *(["stage3", c] for c in COMMANDS)])
def test_help_shows_flags_as_flags_and_values_by_kind(args: list[str]) -> None:
    """No Python type names in help: flags stand alone, values read INT, PATH, [a|b]."""
    result = runner.invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert not re.search(r"<(bool|path|int|float|str|list)", result.output, re.IGNORECASE), result.output


def test_help_imports_no_torch() -> None:
    """What keeps --help quick is what it does not import (tests/commands/test_help.py checks the
    whole list); a time limit would fail on a loaded machine and pass a slow import on a fast one."""
    code = "import sys; from axion.cli import app; print('torch' in sys.modules, 'terratorch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    shown = subprocess.run(
        [sys.executable, "-m", "axion", "stage3", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "--loss-warmup" in shown.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--lr", "-1"], "invalid lr (--lr"),
        (["--lora-rank", "0"], "invalid lora_rank"),
        (["--model-size", "huge"], "invalid model_size"),
        (["--precision", "fp8"], "invalid precision"),
    ],
)
def test_train_bad_flag_is_one_line_exit_2(tmp_path, args: list[str], needle: str) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["stage3", "train", "--data-dir", str(tmp_path), "--output-dir", str(out), *args]
    )
    assert result.exit_code == 2
    assert needle in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_bare_command_shows_its_help(command: str) -> None:
    result = runner.invoke(app, ["stage3", command])
    assert "Usage:" in result.output and "--help" in result.output
    assert "error" not in result.output.lower()


def test_print_config_shows_resolved_settings(tmp_path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('checkpoint = "best_model.pt"\nbatch_size = 4\n')
    result = runner.invoke(
        app,
        [
            "stage3",
            "evaluate",
            "--config",
            str(config),
            "--data-dir",
            "t",
            "--output-dir",
            "r",
            "--print-config",
        ],
        env={"AXION_SEED": "11"},
    )
    assert result.exit_code == 0, result.output
    import yaml

    printed = yaml.safe_load(result.output)
    assert printed["checkpoint"] == "best_model.pt" and printed["batch_size"] == 4 and printed["seed"] == 11
    assert printed["data_dir"] == "t" and printed["split"] == "test"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--batch-size", "abc"], "Invalid value for '--batch-size'"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_click_usage_errors_are_one_line_exit_2(tmp_path, args: list[str], needle: str) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["stage3", "train", "--data-dir", str(tmp_path), "--output-dir", str(out), *args]
    )
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: ") and needle in line and "axion stage3 train --help" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/data/out/x.npz"), 2),
        (OSError(errno.EROFS, "Read-only file system", "/data/out/x.npz"), 2),
        (OSError(errno.ENOSPC, "No space left on device", "/data/out/x.npz"), 1),
    ],
)
def test_unwritable_location_met_mid_run_is_one_line(error: OSError, code: int) -> None:
    import typer

    from axion.cli._common import user_errors

    demo = typer.Typer()

    @demo.command()
    @user_errors
    def write() -> None:
        raise error

    result = CliRunner().invoke(demo, [])
    assert result.exit_code == code
    assert result.output.strip() == f"error: /data/out/x.npz: cannot write: {error.strerror}"


def test_other_os_errors_are_not_disguised() -> None:
    import typer

    from axion.cli._common import user_errors

    demo = typer.Typer()

    @demo.command()
    @user_errors
    def read() -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")

    result = CliRunner().invoke(demo, [])
    assert isinstance(result.exception, FileNotFoundError)
