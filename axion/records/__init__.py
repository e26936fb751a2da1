"""What runs keep on disk and read back, below the code that writes and the code that draws.

- :mod:`~axion.records.monitor`: the validation scores early stopping may watch
  (:data:`~axion.records.monitor.MONITORS`: name, key, direction, label) and the rule that
  names the best validation (:class:`~axion.records.monitor.EarlyStopping`).
- :mod:`~axion.records.history`: a training run's metrics.jsonl.
- :mod:`~axion.records.results`: the evaluation results format (summary and per-tile rows).

Training, evaluation and :mod:`axion.viz` import these downward; :mod:`axion.config` takes the
monitor's choices from here.

May import: the top-level modules only (:mod:`axion.atomic`, :mod:`axion.errors`, ...).
"""
