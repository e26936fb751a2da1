"""axion: Stage 3 of the Axion-Sat pipeline, SAR-grounded optical refinement with TerraMind + LoRA."""

__version__ = "0.1.0"
