"""What the commands write for other tools: rasters, catalogue items, tiles and exported models.

- :mod:`~axion.writers.cog`: Cloud-Optimized GeoTIFFs, whole or written window by window.
- :mod:`~axion.writers.stac`: a STAC item for a predicted scene.
- :mod:`~axion.writers.tiles`: one predicted tile as an NPZ, a COG or both.
- :mod:`~axion.writers.export`: ``axion stage3 export``, a checkpoint as a standalone model.

May import: the top-level modules, :mod:`axion.config`, :mod:`axion.data`, :mod:`axion.model`
and :mod:`axion.training` (the checkpoint). Never :mod:`axion.prediction` or :mod:`axion.cli`.
"""
