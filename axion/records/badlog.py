"""``bad_samples.jsonl`` and the counts behind ``bad_samples`` in the epoch summary and metrics.jsonl.

Every process appends the bad samples it meets (:class:`~axion.data.badsamples.BadSample`)
to ``<run>/bad_samples.jsonl``, one JSON object per line with ``source``, ``sample``,
``kind``, ``reason``, ``split`` and the ``epoch`` it was first met in. A sample is listed
once per run (a resumed run reads the file back), however many epochs meet it; the counts
of an epoch count it every epoch. Lines are short single writes in append mode, so
data-parallel processes can share the file.

:func:`check_bad_fraction` stops a run whose bad share exceeds ``--max-bad-fraction``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from axion.errors import TrainingError
from axion.records.badsample import KINDS, BadSample

BAD_FILE = "bad_samples.jsonl"
#: Inside an epoch the share of bad samples is judged only once this many samples were seen
#: (a bad first sample is not 100 % of a data set); at the end of an epoch it is always judged.
MIN_SEEN: int = 100


def _recorded(path: Path) -> set[tuple[str, str]]:
    """(source, sample) of the lines already in ``path`` (a torn last line is ignored)."""
    found: set[tuple[str, str]] = set()
    if not path.is_file():
        return found
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
            found.add((str(row["source"]), str(row["sample"])))
        except (ValueError, KeyError, TypeError):
            continue
    return found


class BadSampleLog:
    """Counts the bad samples of the pass in progress and records each one once.

    Args:
        directory: the run folder (None: count only, write nothing).
        split: the split recorded with each line (``train``, ``val``, ``test``).
    """

    def __init__(self, directory: Path | None, split: str) -> None:
        self.path = Path(directory) / BAD_FILE if directory is not None else None
        self.split = split
        self.recorded = _recorded(self.path) if self.path is not None else set()
        self.counts: Counter[str] = Counter()
        self.first: BadSample | None = None

    def start(self, counts: dict[str, float] | None = None) -> None:
        """Begin a pass, from the counts of a partial epoch a checkpoint carried (``bad_<kind>``)."""
        self.counts = Counter({kind: int((counts or {}).get(f"bad_{kind}", 0)) for kind in KINDS})
        self.first = None

    def add(self, bad: Iterable[BadSample], epoch: int | None = None) -> None:
        """Count ``bad`` and append the ones not yet recorded to the file."""
        lines = []
        for sample in bad:
            self.counts[sample.kind] += 1
            self.first = self.first or sample
            key = (sample.source, sample.sample)
            if key in self.recorded:
                continue
            self.recorded.add(key)
            lines.append(json.dumps({**sample.to_json(), "split": self.split, "epoch": epoch}) + "\n")
        if lines and self.path is not None:
            with self.path.open("a") as handle:
                handle.write("".join(lines))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def stats(self) -> dict[str, int]:
        """``bad_samples`` and ``bad_<kind>`` of this pass (this process)."""
        return {"bad_samples": self.total, **{f"bad_{kind}": self.counts[kind] for kind in KINDS}}


def bad_summary(stats: dict[str, float], prefix: str) -> str | None:
    """``3 (unreadable 1, implausible 2)`` from a row's ``<prefix>bad_*`` values, or None if there are none."""
    total = int(stats.get(f"{prefix}bad_samples", 0) or 0)
    if not total:
        return None
    parts = [
        f"{kind.replace('_', '-')} {int(stats[f'{prefix}bad_{kind}'])}"
        for kind in KINDS
        if stats.get(f"{prefix}bad_{kind}")
    ]
    return f"{total} ({', '.join(parts)})"


def check_bad_fraction(
    bad: int,
    seen: int,
    limit: float,
    *,
    where: str,
    first: BadSample | None,
    path: Path | None,
    what: str = "training",
) -> None:
    """Stop when more than ``limit`` of the ``seen`` samples are bad.

    Args:
        bad: bad samples so far (all processes).
        seen: samples met so far, good and bad (all processes).
        limit: ``--max-bad-fraction``.
        where: what the message says they were met in (``epoch 3``).
        what: what the samples were for (``training``, ``evaluated``).
        first: a bad sample to name (this process's first of the pass).
        path: where they are all listed.

    Raises:
        TrainingError: one line naming the share, the limit, a bad sample and the list.
    """
    if seen == 0 or bad / seen <= limit:
        return
    named = f"; first: {first}" if first is not None else ""
    listed = f" (all in {path})" if path is not None else ""
    raise TrainingError(
        f"{bad} of {seen} {what} samples in {where} are bad ({100 * bad / seen:.1f} %), more than "
        f"--max-bad-fraction {limit:g}{named}{listed}; fix or remove them, or raise --max-bad-fraction"
    )
