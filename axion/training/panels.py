"""The TensorBoard panels of a validation: SAR, opt_v2, opt_v3 and the target of its first tiles.

Drawn from the opt_v3 the validation computes anyway (``--log-images-every``); the figures
themselves come from :mod:`axion.viz.panels`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


class ValidationPanels:
    """Panels of the first :data:`~axion.viz.panels.PANEL_TILES` validation tiles, by tile name.

    The validation order is fixed (sorted names, no shuffling), so the same tiles come
    first every time; each tile's colour stretch is computed once, from its target, and
    kept for the whole run so that panels of different epochs compare.
    """

    def __init__(self) -> None:
        #: The panels of the current (or last) validation that drew them, by tile name.
        self.drawn: dict[str, Any] = {}
        self.stretches: dict[str, Any] = {}

    def start(self) -> None:
        """Forget the last validation's panels (the stretches stay)."""
        self.drawn = {}

    def add(self, batch: dict[str, Any], opt_v3: Tensor) -> None:
        """Panels of a batch's tiles until :data:`~axion.viz.panels.PANEL_TILES` are drawn."""
        from axion.viz.panels import PANEL_TILES, Stretch, validation_panel

        def numpy(tensor: Tensor, i: int) -> Any:
            return tensor[i].detach().float().cpu().numpy()

        for i, name in enumerate(batch["name"]):
            if len(self.drawn) >= PANEL_TILES:
                return
            s1, target = numpy(batch["s1"], i), numpy(batch["target"], i)
            if name not in self.stretches:
                self.stretches[name] = Stretch.of(s1, target, numpy(batch["mask"], i)[0] > 0)
            self.drawn[name] = validation_panel(
                s1, numpy(batch["opt_v2"], i), numpy(opt_v3, i), target, self.stretches[name]
            )
