"""The one error type of the data pipeline: always names the file and, where there is one, the line."""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A dataset problem the user must fix: ``<file>:<line>: <message>``."""

    def __init__(self, file: str | Path, line: int | None, message: str):
        self.file = str(file)
        self.line = line
        self.message = message
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {message}")
