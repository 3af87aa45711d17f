"""A deadline on a thread of its own: run a callback at a given time."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

_CLOSE = -1.0


class Deadline:
    """At most one pending deadline; ``on_due()`` runs on this object's own daemon thread.

    :meth:`arm` only puts the time into a queue, so it may be called from an SDK callback; it is
    armed up to 100 times a second for live input, so the thread waits in C (a
    ``queue.SimpleQueue``) rather than on a Python ``Condition``. ``on_due`` must not block for
    long: the next deadline waits for it.
    """

    def __init__(self, on_due: Callable[[], None], name: str = "echo-streamer-deadline") -> None:
        self._on_due = on_due
        self._times: queue.SimpleQueue[float] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def arm(self, at: float) -> None:
        """Call ``on_due()`` at ``time.monotonic()`` time ``at`` (replacing any pending deadline)."""
        self._times.put(at)

    def close(self) -> None:
        self._times.put(_CLOSE)
        self._thread.join(1.0)

    def _run(self) -> None:
        at = self._times.get()
        while at != _CLOSE:
            try:
                at = self._times.get(timeout=max(0.0, at - time.monotonic()))
            except queue.Empty:
                self._on_due()
                at = self._times.get()
