"""Run ``axion`` killed (SIGKILL) at an exact moment of training.

A test harness for tests/engine/test_crash_recovery.py, not part of axion: it patches one
function of the engine in this process only, then runs the real command line. Usage::

    AXION_TEST_MOMENT=before-best:1 python tests/engine/crash_harness.py stage3 train ...

Moments:
    before-first-checkpoint   killed as epoch 1's checkpoint is about to be written
    before-best:N             killed after checkpoint_epoch_N.pt, before best_model.pt
    during-checkpoint:N       killed half-way through writing checkpoint_epoch_N.pt
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path
from typing import Any


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _patch(moment: str) -> None:
    import torch

    from axion.training import checkpoint as ckpt_module

    name, _, arg = moment.partition(":")
    saver = ckpt_module.CheckpointSaver
    if name == "before-first-checkpoint":
        original_epoch = saver.save_epoch

        def save_epoch(self: Any, checkpoint: Any) -> Path:
            if checkpoint.epoch == 1:
                _die()
            return original_epoch(self, checkpoint)

        saver.save_epoch = save_epoch  # type: ignore[method-assign]
    elif name == "before-best":
        original_best = saver.save_best

        def save_best(self: Any, checkpoint: Any) -> Path:
            if checkpoint.epoch == int(arg):
                _die()
            return original_best(self, checkpoint)

        saver.save_best = save_best  # type: ignore[method-assign]
    elif name == "during-checkpoint":
        original_save = torch.save
        target = f"checkpoint_epoch_{int(arg)}.pt"

        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            if isinstance(f, str | os.PathLike) and target in Path(f).name:
                buffer = io.BytesIO()
                original_save(obj, buffer, *args, **kwargs)
                with open(f, "wb") as handle:
                    handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                _die()
            original_save(obj, f, *args, **kwargs)

        ckpt_module.torch.save = save  # type: ignore[attr-defined]
    else:
        raise SystemExit(f"unknown AXION_TEST_MOMENT {moment!r}")


if __name__ == "__main__":
    _patch(os.environ["AXION_TEST_MOMENT"])
    from axion.cli import main

    sys.argv = ["axion", *sys.argv[1:]]
    main()
