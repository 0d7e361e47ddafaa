"""The one error type every reader raises for bad input on disk."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A dataset file is missing, corrupt or inconsistent.

    The message always starts with the offending path so that a user can open it directly.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
