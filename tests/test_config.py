"""Config models: defaults from the guide, bounds, precedence file < env < flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from axion.config import TrainConfig, resolve_config, write_config_json
from axion.errors import ConfigError

REQUIRED = {"data_dir": "tiles", "output_dir": "out"}


def test_guide_defaults() -> None:
    cfg = resolve_config(TrainConfig, environ={}, flags=REQUIRED)
    assert cfg.model.timesteps == 10 and cfg.model.lora_rank == 8 and cfg.model.lora_alpha == 16
    assert cfg.model.pretrained is True and cfg.model.model_size == "base"
    assert (cfg.training.batch_size, cfg.training.grad_accum, cfg.training.epochs) == (1, 8, 50)
    assert cfg.training.lr == 1e-4 and cfg.training.weight_decay == 1e-5
    assert cfg.training.max_grad_norm == 1.0 and cfg.training.precision == "auto"
    loss = cfg.loss
    assert (loss.sar_weight, loss.cycle_weight, loss.identity_weight) == (1.0, 0.5, 0.3)
    assert (loss.lpips_weight, loss.spectral_weight) == (0.1, 1.0)
    assert cfg.early_stopping.early_stop_patience == 5 and cfg.early_stopping.early_stop_delta == 1e-4
    assert cfg.other.num_workers == "auto" and cfg.other.seed == 42 and cfg.other.max_samples is None


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('[training]\nlr = 0.001\nepochs = 7\nbatch_size = 2\n[data]\ndata_dir = "from-file"\n')
    env = {"AXION_EPOCHS": "9", "AXION_BATCH_SIZE": "3"}
    cfg = resolve_config(
        TrainConfig, config_file=toml, environ=env, flags={"batch_size": 4, "output_dir": "o"}
    )
    assert cfg.training.lr == 0.001  # file
    assert cfg.training.epochs == 9  # env beats file
    assert cfg.training.batch_size == 4  # flag beats env
    assert cfg.data.data_dir == Path("from-file")


def test_yaml_flat_file(tmp_path: Path) -> None:
    yml = tmp_path / "run.yaml"
    yml.write_text("lora_rank: 4\nlora_alpha: 8\nmodel_size: tiny\n")
    cfg = resolve_config(TrainConfig, config_file=yml, environ={}, flags=REQUIRED)
    assert (cfg.model.lora_rank, cfg.model.lora_alpha, cfg.model.model_size) == (4, 8, "tiny")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"lora_rank": 0}, "lora_rank (--lora-rank"),
        ({"lr": 0}, "lr (--lr"),
        ({"sar_weight": -1}, "sar_weight"),
        ({"early_stop_patience": 0}, "early_stop_patience"),
        ({"timesteps": 0}, "timesteps"),
        ({"precision": "fp8"}, "precision"),
    ],
)
def test_bad_values_name_field_value_rule(flags: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config(TrainConfig, environ={}, flags={**REQUIRED, **flags})
    message = str(err.value)
    assert needle in message and "\n" not in message
    assert repr(next(iter(flags.values()))) in message


def test_unknown_setting_and_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        resolve_config(TrainConfig, config_file=bad, environ={}, flags=REQUIRED)
    broken = tmp_path / "broken.toml"
    broken.write_text("lr = = 1\n")
    with pytest.raises(ConfigError, match="broken.toml: cannot parse"):
        resolve_config(TrainConfig, config_file=broken, environ={}, flags=REQUIRED)
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(TrainConfig, config_file=tmp_path / "none.yaml", environ={}, flags=REQUIRED)


def test_config_json_round_trip(tmp_path: Path) -> None:
    cfg = resolve_config(TrainConfig, environ={}, flags={**REQUIRED, "lora_rank": 4})
    write_config_json(cfg, tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model"]["lora_rank"] == 4 and data["data"]["data_dir"] == "tiles"
    assert TrainConfig.model_validate(data) == cfg
    # With its provenance record the file still reads back as the same settings.
    write_config_json(cfg, tmp_path / "config.json", {"versions": {"axion": "0"}, "run": {"host": "h"}})
    again = resolve_config(TrainConfig, config_file=tmp_path / "config.json", environ={})
    assert again == cfg


def test_every_command_resolves_the_same_way(tmp_path: Path) -> None:
    from axion.config import EvaluateConfig, InferConfig, PrepareConfig

    shared = tmp_path / "run.yaml"
    # One file for the whole pipeline: train settings are ignored by evaluate, not refused.
    shared.write_text("lr: 0.001\nbatch_size: 2\nseed: 7\ncheckpoint: ckpt.pt\n")
    env = {"AXION_BATCH_SIZE": "3"}
    cfg = resolve_config(
        EvaluateConfig, config_file=shared, environ=env, flags={"data_dir": "t", "output_dir": "r"}
    )
    assert (cfg.batch_size, cfg.seed, cfg.checkpoint) == (3, 7, Path("ckpt.pt"))
    infer = resolve_config(InferConfig, config_file=shared, environ={}, flags={"seed": 9})
    assert (infer.batch_size, infer.seed) == (2, 9)
    prepare = resolve_config(PrepareConfig, environ={"AXION_TILE_SIZE": "64"}, flags={"demo": True})
    assert prepare.tile_size == 64 and prepare.demo
    typo = tmp_path / "typo.yaml"
    typo.write_text("batchsize: 2\n")
    with pytest.raises(ConfigError, match="unknown setting 'batchsize'"):
        resolve_config(EvaluateConfig, config_file=typo, environ={}, flags={})
    with pytest.raises(ConfigError, match=r"missing required setting checkpoint \(--checkpoint"):
        resolve_config(EvaluateConfig, environ={}, flags={"data_dir": "t", "output_dir": "r"})


def test_a_runs_config_json_configures_evaluate(tmp_path: Path) -> None:
    from axion.config import EvaluateConfig

    run = resolve_config(TrainConfig, environ={}, flags={**REQUIRED, "seed": 5, "batch_size": 4})
    write_config_json(run, tmp_path / "config.json")
    cfg = resolve_config(
        EvaluateConfig,
        config_file=tmp_path / "config.json",
        environ={},
        flags={"checkpoint": "c.pt", "output_dir": "r"},
    )
    assert (cfg.seed, cfg.batch_size, cfg.data_dir) == (5, 4, Path("tiles"))
