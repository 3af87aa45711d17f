"""Running a blocking iterator (a decoder) in a worker thread, ahead of its consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_DONE = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetched(Generic[T]):
    """Iterates ``items`` while a worker thread produces up to ``depth`` of them ahead.

    Decoding (libsndfile, ffmpeg pipes) releases the GIL, so it overlaps with whatever the
    consumer does. Exceptions raised by ``items`` are re-raised in the consumer. A consumer that
    stops early calls :meth:`stop` before it closes what ``items`` reads: the worker may be in
    the middle of a read.
    """

    def __init__(self, items: Iterator[T], depth: int = 4) -> None:
        self._items = items
        self._handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._abandoned = threading.Event()
        self._worker = threading.Thread(target=self._produce, name="echo-streamer-decode", daemon=True)
        self._worker.start()

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item  # type: ignore[misc]

    def stop(self, timeout: float) -> bool:
        """Ask the worker to stop at its next item and wait up to ``timeout`` seconds for it;
        whether it has stopped (False: it is still blocked in ``items``, a read from a pipe, say)."""
        self._abandoned.set()
        self._worker.join(timeout)
        return not self._worker.is_alive()

    def _offer(self, item: object) -> bool:
        while not self._abandoned.is_set():
            try:
                self._handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._offer(item):
                    return
            self._offer(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._offer(_Raised(error))
