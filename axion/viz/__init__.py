"""Evaluation results on disk and the figures ``axion stage3 visualize`` draws from them.

Submodules import matplotlib (Agg backend) inside their functions only.
"""
