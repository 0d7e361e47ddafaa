"""Datasets: the `View`/`Scene` records, one reader per on-disk format, view selection and splits."""
