"""``axion stage3 evaluate`` and ``infer``: a trained checkpoint's model applied to tiles and scenes.

- :mod:`~axion.prediction.predict`: a checkpoint's model ready for prediction.
- :mod:`~axion.prediction.evaluate`: ``axion stage3 evaluate`` as a library call.
- :mod:`~axion.prediction.infer`: ``axion stage3 infer`` as a library call (tiles, a scene or a list).
- :mod:`~axion.prediction.scene`: a whole scene predicted window by window and blended.
- :mod:`~axion.prediction.scenes`: the scene list of ``--scenes`` and when a scene's outputs are complete.
- :mod:`~axion.prediction.parallel`: the work shared between devices (``--devices``, ``--num-nodes``).

May import: everything below it, :mod:`axion.training` (the checkpoint), :mod:`axion.writers`,
:mod:`axion.runtime`, :mod:`axion.records`, :mod:`axion.model`, :mod:`axion.data`,
:mod:`axion.config` and the top-level modules. Never :mod:`axion.cli`.
"""
