"""The Python API: :class:`~axion.pipeline.stage3.Stage3Pipeline` (``from axion import Stage3Pipeline``).

- :mod:`~axion.pipeline.stage3`: a trained model loaded once, called on arrays or scene files.
- :mod:`~axion.pipeline.convert`: numpy arrays, torch tensors and xarray DataArrays in and out.

May import: everything below it, :mod:`axion.prediction` first. Only :mod:`axion` itself
(lazily) and no other package imports it.
"""
