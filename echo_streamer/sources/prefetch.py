"""Running a blocking iterator (a decoder) in a worker thread, ahead of its consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """Yield ``items`` while a worker thread produces up to ``depth`` of them ahead.

    Decoding (libsndfile, ffmpeg pipes) releases the GIL, so it overlaps with whatever the
    consumer does. Exceptions raised by ``items`` are re-raised in the consumer. If the consumer
    stops early, the worker stops at its next item.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    abandoned = threading.Event()

    def offer(item: object) -> bool:
        while not abandoned.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            offer(_Raised(error))

    worker = threading.Thread(target=produce, name="echo-streamer-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        abandoned.set()
