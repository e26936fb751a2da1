"""What a running command shares, whether it trains or predicts: the device and the console.

- :mod:`~axion.runtime.device`: device, precision, DataLoader workers and Lightning Fabric.
- :mod:`~axion.runtime.reporter`: what the user sees (progress, tables, JSON Lines).

May import: the top-level modules and :mod:`axion.config`. Never :mod:`axion.training`,
:mod:`axion.prediction` or :mod:`axion.cli`: they build on this package.
"""
