"""Bad samples: what a dataset hands over instead of a sample it cannot use, and how batches drop them.

A training (or evaluation) dataset built with ``skip_bad=True`` validates every sample as it
loads it. A sample whose file is unreadable, whose arrays hold NaN/inf or whose values no
Sentinel product can hold (:mod:`axion.data.plausible`) comes back as a :class:`BadSample`;
:func:`split_bad` takes these out of a batch before it is stacked, so a bad sample is never
used, and the caller counts and records them (:mod:`axion.records.badlog`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from axion.records.badsample import IMPLAUSIBLE, KINDS, NON_FINITE, UNREADABLE, BadSample

__all__ = ["IMPLAUSIBLE", "KINDS", "NON_FINITE", "UNREADABLE", "BadSample", "split_bad"]


def split_bad(samples: Sequence[Any]) -> tuple[list[dict[str, Any]], list[BadSample]]:
    """The good samples of a batch and the bad ones, each in batch order."""
    good = [sample for sample in samples if not isinstance(sample, BadSample)]
    bad = [sample for sample in samples if isinstance(sample, BadSample)]
    return good, bad
