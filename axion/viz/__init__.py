"""The figures ``axion stage3 visualize`` draws from evaluation results and a run's history.

The formats it reads live in :mod:`axion.records`. Submodules import matplotlib (Agg
backend) inside their functions only.

May import: the top-level modules, :mod:`axion.records`, :mod:`axion.config` and
:mod:`axion.data`. Never :mod:`axion.training` or :mod:`axion.prediction` (training draws its
TensorBoard panels with :mod:`axion.viz.panels`).
"""
