"""Learning-rate schedule: linear warm-up, then cosine decay, stepped per optimizer step."""

from __future__ import annotations

import math


class WarmupCosine:
    """Multiplier for :class:`torch.optim.lr_scheduler.LambdaLR`.

    A plain object (not a lambda) so the scheduler's ``state_dict`` holds only
    numbers and loads with ``torch.load(weights_only=True)``.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> None:
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(1, int(total_steps))
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
