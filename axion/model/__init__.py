"""The Stage 3 model: TerraMind's conditional generator with LoRA, grounded in SAR.

Names are loaded on first use (PEP 562), so ``from axion.model import check_weights``
stays cheap: torch and terratorch are imported only when a model is built.

May import: the top-level modules, :mod:`axion.config` and :mod:`axion.data`. Never
:mod:`axion.training`, :mod:`axion.prediction`, :mod:`axion.writers` or :mod:`axion.cli`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from axion.model.fusion import FusionNet
    from axion.model.stage3 import Stage3Model, build_stage3_model, format_parameter_counts
    from axion.model.weights import WeightFiles, check_weights

_WHERE = {
    "build_stage3_model": "axion.model.stage3",
    "Stage3Model": "axion.model.stage3",
    "FusionNet": "axion.model.fusion",
    "format_parameter_counts": "axion.model.stage3",
    "check_weights": "axion.model.weights",
    "WeightFiles": "axion.model.weights",
}

__all__ = [
    "FusionNet",
    "Stage3Model",
    "WeightFiles",
    "build_stage3_model",
    "check_weights",
    "format_parameter_counts",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'axion.model' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
