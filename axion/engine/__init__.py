"""The training and inference engine shared by every ``axion stage3`` command.

- :mod:`~axion.engine.runtime`: device, precision and Lightning Fabric.
- :mod:`~axion.engine.checkpoint`: atomic checkpoint files with the guide's keys.
- :mod:`~axion.engine.early_stopping`, :mod:`~axion.engine.schedule`,
  :mod:`~axion.engine.sampler`, :mod:`~axion.engine.seeding`: small pieces of state
  (per-purpose seeds: :func:`axion.seeding.stable_seed`).
- :mod:`~axion.engine.reporter` and :mod:`~axion.engine.history`: what the user sees and keeps.
- :mod:`~axion.engine.trainer`: the loop; :mod:`~axion.engine.fit`: ``axion stage3 train``.
"""
