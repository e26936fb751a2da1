"""Settings of every ``axion stage3`` command, and the one way they are resolved.

- :mod:`.resolve`: defaults < config file < ``AXION_*`` environment < flags.
- :mod:`.train`: ``train``'s settings, grouped as docs/training.md lists them.
- :mod:`.commands`: ``prepare``, ``evaluate``, ``infer``, ``visualize``, ``export``.
- :mod:`.registry`: which model belongs to which command.

This package imports no torch, so ``--help`` stays fast.

May import: the top-level modules and :mod:`axion.records` (the ``--monitor`` choices).
Never :mod:`axion.data` or anything above it: they read their settings from here.
"""

from __future__ import annotations

from axion.config.base import Settings, field_default, field_help, field_required, flat_fields
from axion.config.commands import (
    EvaluateConfig,
    ExportConfig,
    InferConfig,
    PredictionSettings,
    PrepareConfig,
    VisualizeConfig,
)
from axion.config.fields import ModelSize, Precision, Workers
from axion.config.registry import ALL_SETTINGS, COMMAND_SETTINGS
from axion.config.resolve import ENV_PREFIX, read_config_file, resolve_config, settings_yaml
from axion.config.train import (
    DataConfig,
    EarlyStoppingConfig,
    LossConfig,
    ModelConfig,
    OtherConfig,
    TrainConfig,
    TrainingConfig,
    write_config_json,
)

#: ``train``'s settings by flat name -> section.
FIELD_SECTION: dict[str, str] = {k: v for k, v in flat_fields(TrainConfig).items() if v is not None}

__all__ = [
    "ALL_SETTINGS",
    "COMMAND_SETTINGS",
    "ENV_PREFIX",
    "FIELD_SECTION",
    "DataConfig",
    "EarlyStoppingConfig",
    "EvaluateConfig",
    "ExportConfig",
    "InferConfig",
    "LossConfig",
    "ModelConfig",
    "ModelSize",
    "OtherConfig",
    "Precision",
    "PredictionSettings",
    "PrepareConfig",
    "Settings",
    "TrainConfig",
    "TrainingConfig",
    "VisualizeConfig",
    "Workers",
    "field_default",
    "field_help",
    "field_required",
    "flat_fields",
    "read_config_file",
    "resolve_config",
    "settings_yaml",
    "write_config_json",
]
