"""An exponential moving average of the trainable weights (``--ema-decay``).

A single training step moves the fusion network and the LoRA adapters by a noisy amount, so the
weights of one epoch can score half a decibel better or worse than the next on places never
trained on. The average of the recent weights is steadier and usually better than any one of
them, which is why diffusers' training scripts (``--use_ema``) and timm (``ModelEmaV3``) keep one.
Validation, ``best_model.pt`` and every checkpoint's ``model_state_dict`` use the average; the
optimizer keeps stepping the raw weights, saved beside it as ``training_state_dict`` so a resumed
run continues exactly.

Only parameters that require gradients are shadowed: the frozen TerraMind base never changes, so
averaging it (as ``torch.optim.swa_utils.AveragedModel`` or timm would, by copying the whole
model) would only double its memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from axion.errors import WeightsError


class WeightAverage:
    """Shadow copies of a module's trainable parameters, updated after each optimizer step.

    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` at update ``t``, so early updates
    are not averaged with the untrained start.

    Args:
        module: the model whose ``requires_grad`` parameters are averaged.
        decay: weight of the old average per update, in [0, 1); 0 keeps the raw weights.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.params: dict[str, nn.Parameter] = {
            name: p for name, p in module.named_parameters() if p.requires_grad
        }
        self.shadow: dict[str, Tensor] = {}
        self.updates = 0
        self.reset()

    @property
    def enabled(self) -> bool:
        return self.decay > 0.0

    def reset(self) -> None:
        """Start the average again at the current weights."""
        self.shadow = {name: p.detach().clone() for name, p in self.params.items()}
        self.updates = 0

    def decay_at(self, updates: int) -> float:
        """The decay used for update number ``updates`` (warm-up towards :attr:`decay`)."""
        return min(self.decay, (1.0 + updates) / (10.0 + updates))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (call after each optimizer step)."""
        if not self.enabled:
            return
        keep = self.decay_at(self.updates)
        names = list(self.params)
        shadows = [self.shadow[n] for n in names]
        current = [self.params[n].detach().to(self.shadow[n].dtype) for n in names]
        torch._foreach_lerp_(shadows, current, 1.0 - keep)
        self.updates += 1

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the module holds the average; the raw weights come back after it."""
        if not self.enabled:
            yield
            return
        raw = {name: p.detach().clone() for name, p in self.params.items()}
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(raw[name])

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights, by parameter name, on the CPU."""
        return {name: t.detach().cpu().clone() for name, t in self.shadow.items()}

    def load_state_dict(self, state: dict[str, Tensor], updates: int) -> None:
        """Continue an average saved by :meth:`state_dict` after ``updates`` updates.

        Raises:
            WeightsError: the saved average does not hold exactly this module's trainable weights.
        """
        missing = sorted(set(self.params) - set(state))
        unexpected = sorted(set(state) - set(self.params))
        if missing or unexpected:
            raise WeightsError(
                "checkpoint's weight average does not fit this model "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        for name, p in self.params.items():
            if tuple(state[name].shape) != tuple(p.shape):
                raise WeightsError(
                    f"checkpoint's weight average has {name} of shape {tuple(state[name].shape)}, "
                    f"the model {tuple(p.shape)}"
                )
            self.shadow[name] = state[name].to(device=p.device, dtype=p.dtype).clone()
        self.updates = updates
