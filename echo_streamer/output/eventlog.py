"""Events as JSON lines, one object per line, for scripts and tests to read."""

from __future__ import annotations

import json
from typing import Any


class EventLog:
    """Writes each event to ``path`` as one JSON object per line, flushed line by line: a new
    file, or with ``append`` after what the file holds already."""

    def __init__(self, path: str, append: bool = False) -> None:
        self._file = open(path, "a" if append else "w", buffering=1, encoding="utf-8")

    def write(self, event: dict[str, Any]) -> None:
        self._file.write(json.dumps(event, default=str) + "\n")

    def close(self) -> None:
        self._file.close()
