"""Field types that several commands' settings share."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

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
