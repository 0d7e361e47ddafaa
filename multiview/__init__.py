"""Shared, model-agnostic multi-view code: geometry, rendering, datasets, metrics, I/O, training engine."""
