"""Reading a pipe, a named FIFO or standard input as the bytes arrive."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

READ_SIZE = 65536


class PipeReader:
    """Reads one open file descriptor until its writer closes it; owns (and closes) the descriptor.

    :meth:`chunks` yields whatever each read returns, as soon as any bytes are there: it never
    waits for a buffer to fill, so a writer's first bytes move on at once. Both it and
    :meth:`discard_rest` block while the writer is silent. ``ended`` is set when the writer has
    closed (end of stream reached by either).
    """

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        self.ended = threading.Event()

    @classmethod
    def open(cls, path: str) -> PipeReader:
        """Open ``path`` for reading; for a named FIFO this blocks until a writer opens it."""
        return cls(os.open(path, os.O_RDONLY), path)

    def chunks(self) -> Iterator[bytes]:
        while data := os.read(self.fd, READ_SIZE):
            yield data
        self.ended.set()

    def discard_rest(self) -> None:
        """Read and drop everything until the writer closes, so that it is never blocked on a full pipe."""
        while os.read(self.fd, READ_SIZE):
            pass
        self.ended.set()

    def close(self) -> None:
        os.close(self.fd)
