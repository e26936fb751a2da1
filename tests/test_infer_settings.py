"""infer's new settings come from flags, ``--config`` and ``AXION_*`` like every other setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from axion.cli import app
from axion.config import InferConfig, resolve_config
from axion.errors import ConfigError


def test_new_settings_resolve_from_file_environment_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("samples: 4\ndtype: uint16\ndevices: 2\n")
    settings = resolve_config(
        InferConfig,
        config_file=config,
        environ={"AXION_DTYPE": "float32", "AXION_PROXY_FROM_GROUND_TRUTH": "true"},
        flags={"checkpoint": "ck.pt", "datetime": "2019-09-17T18:00:00Z", "overwrite": True},
    )
    assert (settings.samples, settings.dtype, settings.devices) == (4, "float32", 2)
    assert settings.proxy_from_ground_truth and settings.overwrite
    assert settings.datetime == "2019-09-17T18:00:00Z"


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"samples": 0}, "invalid samples (--samples, AXION_SAMPLES) = 0"),
        ({"dtype": "int8"}, "invalid dtype (--dtype, AXION_DTYPE) = 'int8'"),
        ({"devices": 0}, "invalid devices (--devices, AXION_DEVICES) = 0"),
        ({"datetime": "yesterday"}, "must be an ISO 8601 date-time"),
    ],
)
def test_bad_values_are_one_line(flags: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config(InferConfig, environ={}, flags={"checkpoint": "ck.pt", **flags})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_print_config_shows_them() -> None:
    result = CliRunner().invoke(
        app,
        ["stage3", "infer", "--checkpoint", "ck.pt", "--samples", "3", "--dtype", "uint16", "--print-config"],
    )
    assert result.exit_code == 0, result.output
    for line in (
        "samples: 3",
        "dtype: uint16",
        "devices: 1",
        "overwrite: false",
        "proxy_from_ground_truth: false",
    ):
        assert line in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--s1-scene", "a.tif", "--opt-v2-scene", "b.tif", "--output-scene", "c.tif", "--proxy-from-ground-truth"],
         "--proxy-from-ground-truth applies to tile mode only"),
        (["--input-dir", "t", "--output-dir", "o", "--datetime", "2020-01-01"], "--datetime applies to scene mode only"),
    ],
)  # fmt: skip
def test_a_flag_of_the_other_mode_is_refused_before_anything_loads(args: list[str], needle: str) -> None:
    result = CliRunner().invoke(app, ["stage3", "infer", "--checkpoint", "ck.pt", *args])
    assert result.exit_code == 2 and needle in result.output
    assert len(result.output.strip().splitlines()) == 1
