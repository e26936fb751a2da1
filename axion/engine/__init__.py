"""The training and inference engine shared by every ``axion stage3`` command.

- :mod:`~axion.engine.runtime`: device, precision and Lightning Fabric.
- :mod:`~axion.engine.checkpoint`: the one checkpoint type (keys in docs/training.md), atomic and verified.
- :mod:`~axion.engine.early_stopping`, :mod:`~axion.engine.schedule`,
  :mod:`~axion.engine.sampler`: small pieces of state (seeds: :mod:`axion.seeding`).
- :mod:`~axion.engine.reporter` and :mod:`~axion.engine.history`: what the user sees and keeps.
- :mod:`~axion.engine.trainer`: the loop; :mod:`~axion.engine.fit`: ``axion stage3 train``.
- :mod:`~axion.engine.predict`: a checkpoint's model ready for prediction;
  :mod:`~axion.engine.evaluate`, :mod:`~axion.engine.infer` and :mod:`~axion.engine.scene`:
  ``axion stage3 evaluate`` and ``infer`` as library calls.
"""
