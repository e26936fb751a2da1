"""``axion stage3 train``: the loop, its checkpoints and the small pieces of state it keeps.

- :mod:`~axion.training.fit`: ``axion stage3 train`` as a library call (:func:`run_training`).
- :mod:`~axion.training.trainer`: the loop and its two hooks (shaped like torchgeo's ``BaseTask``);
  :mod:`~axion.training.epoch` (the epoch's sums, partial-epoch resume) and
  :mod:`~axion.training.panels` (TensorBoard panels) beside it.
- :mod:`~axion.training.resume`: ``--resume`` resolved once (which checkpoint, its settings).
- :mod:`~axion.training.checkpoint`: the one checkpoint type (keys in docs/training.md), atomic
  and verified.
- :mod:`~axion.training.trained`: :func:`~axion.training.trained.read_trained`, what evaluate
  and infer load (a checkpoint file or an export folder), and the export folder's layout.
- :mod:`~axion.training.recovery`: a run folder after a crash, resume and best-model restore.
- :mod:`~axion.training.schedule` and :mod:`~axion.training.sampler`: the learning rate and the
  epoch's tile order (seeds: :mod:`axion.seeding`).

May import: the top-level modules (:mod:`axion.losses`, :mod:`axion.metrics`, ...),
:mod:`axion.records`, :mod:`axion.config`, :mod:`axion.data`, :mod:`axion.model`,
:mod:`axion.viz` (the TensorBoard panels) and :mod:`axion.runtime`. Never
:mod:`axion.prediction`, :mod:`axion.writers` or :mod:`axion.cli`: they build on this package.
"""
