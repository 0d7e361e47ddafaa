"""Evaluation metrics, one module per kind (`depth`: absolute error and accuracy within X mm)."""
