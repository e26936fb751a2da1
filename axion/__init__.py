"""axion: Stage 3 of the Axion-Sat pipeline, SAR-grounded optical refinement with TerraMind + LoRA.

``from axion import Stage3Pipeline`` is the Python API (:mod:`axion.pipeline.stage3`). It is
imported on first use, so ``import axion`` stays light (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from axion.pipeline.stage3 import Sampled, Stage3Pipeline

__version__ = "0.1.0"
__all__ = ["Sampled", "Stage3Pipeline", "__version__"]

#: Names exported lazily: name -> module that defines it.
_LAZY = {"Stage3Pipeline": "axion.pipeline.stage3", "Sampled": "axion.pipeline.stage3"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'axion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
