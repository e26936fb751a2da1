"""Tiles: their format, checks, the training dataset and ``axion stage3 prepare``.

Submodules import torch or rasterio only where they need them, so that importing
:mod:`axion.data.check` from the command line stays light.
"""
