"""A sound card in software, in the shape of a ``LiveInput``, for the tests and the live benchmark."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

BLOCK_MS = 5


class SoftwareCard:
    """Hands ``BLOCK_MS`` blocks to the consumer ``deliver()`` set, from a thread of its own and on
    absolute deadlines ``ppm`` fast (or slow) against the wall clock, as PortAudio's thread does
    for a ``LiveInput``: ``Streamer.live`` takes it for one. Subclasses say what each block holds
    (:meth:`block`, float32 ``(frames, channels)``, or None: nothing this time) and set their own
    fields before this ``__init__`` starts the thread. ``late_ms``: how late each block came (the
    sleep's jitter)."""

    rate, lost, closed, device_overflows = 48_000, False, False, 0

    def __init__(self, name: str, channels: int = 1, ppm: float = 0.0) -> None:
        self.name = name
        self.channels = channels
        self.ppm = ppm
        self.callbacks = 0
        self.late_ms: list[float] = []
        self._consumer: Callable[[np.ndarray], None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def block(self, index: int) -> np.ndarray | None:
        raise NotImplementedError

    def deliver(self, consumer: Callable[[np.ndarray], None] | None) -> None:
        self._consumer = consumer

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.closed = True

    def _run(self) -> None:
        period = BLOCK_MS / 1000 / (1 + self.ppm * 1e-6)
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due + period - time.monotonic())):
            due += period
            self.late_ms.append(1000 * (time.monotonic() - due))
            block = self.block(self.callbacks)
            self.callbacks += 1
            if block is not None and (consumer := self._consumer) is not None:
                consumer(block)
