"""Every command's settings model, and the names a shared config file may hold."""

from __future__ import annotations

from axion.config.base import Settings, flat_fields, sections
from axion.config.commands import EvaluateConfig, ExportConfig, InferConfig, PrepareConfig, VisualizeConfig
from axion.config.train import TrainConfig

#: Each command's settings model.
COMMAND_SETTINGS: dict[str, type[Settings]] = {
    "prepare": PrepareConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "infer": InferConfig,
    "visualize": VisualizeConfig,
    "export": ExportConfig,
}
#: Every setting name of any command: what a shared config file may hold.
ALL_SETTINGS: frozenset[str] = frozenset(
    name for model in COMMAND_SETTINGS.values() for name in flat_fields(model)
)
#: Names of the sections a grouped config file may use (``config.json`` of a run).
SECTION_NAMES: frozenset[str] = frozenset(
    name for model in COMMAND_SETTINGS.values() for name in sections(model)
)
