"""Tiles: their format, checks, the training dataset and ``axion stage3 prepare``.

Submodules import torch or rasterio only where they need them, so that importing
:mod:`axion.data.check` from the command line stays light. Scene rasters (:mod:`axion.data.raster`,
:mod:`axion.data.grid`) serve both ``prepare`` and scene inference.

May import: the top-level modules and :mod:`axion.config`. Never :mod:`axion.model`,
:mod:`axion.training`, :mod:`axion.prediction` or :mod:`axion.cli`.
"""
