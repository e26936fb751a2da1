"""Field types that several commands' settings share."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

ModelSize = Literal["tiny", "small", "base", "large"]
Precision = Literal["auto", "fp16-mixed", "bf16-mixed", "32"]


def _workers(value: Any) -> Any:
    if isinstance(value, str) and value != "auto":
        try:
            value = int(value)
        except ValueError:
            raise ValueError("must be 'auto' or an integer >= 0") from None
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ValueError("must be 'auto' or an integer >= 0")
    return value


#: DataLoader workers: ``auto`` or a count.
Workers = Annotated[int | Literal["auto"], BeforeValidator(_workers)]


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` to three non-negative numbers summing to 1; ``ValueError`` otherwise."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3:
        raise ValueError(f"needs 3 numbers (train,val,test), got {len(parts)}")
    try:
        ratios = tuple(float(part) for part in parts)
    except ValueError:
        raise ValueError("needs 3 numbers (train,val,test)") from None
    if any(not math.isfinite(r) or r < 0 for r in ratios):
        raise ValueError("ratios must be non-negative")
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(f"ratios must sum to 1 (they sum to {sum(ratios):g})")
    return ratios  # type: ignore[return-value]


#: Default of ``--max-bad-fraction``: a run goes on past a few bad samples in a hundred, not past more.
MAX_BAD_FRACTION = 0.05


def max_bad_fraction_field(what: str) -> Any:
    """The ``--max-bad-fraction`` setting of a command that skips bad samples (``what`` it stops)."""
    return Field(
        MAX_BAD_FRACTION,
        ge=0.0,
        le=1.0,
        description=f"Bad samples (unreadable, NaN/inf, implausible) are skipped, counted and listed; {what} "
        "once more than this share of the samples seen is bad (0: none may be bad).",
    )
