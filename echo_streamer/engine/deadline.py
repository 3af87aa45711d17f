"""A deadline on a thread of its own: run a callback at a given time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Deadline:
    """At most one pending deadline; ``on_due()`` runs on this object's own daemon thread.

    :meth:`arm` only takes a short lock, so it may be called from an SDK callback. ``on_due``
    must not block for long: the next deadline waits for it.
    """

    def __init__(self, on_due: Callable[[], None], name: str = "echo-streamer-deadline") -> None:
        self._on_due = on_due
        self._condition = threading.Condition()
        self._at: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def arm(self, at: float) -> None:
        """Call ``on_due()`` at ``time.monotonic()`` time ``at`` (replacing any pending deadline)."""
        with self._condition:
            self._at = at
            self._condition.notify()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join(1.0)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._closed and (self._at is None or self._at > time.monotonic()):
                    self._condition.wait(None if self._at is None else self._at - time.monotonic())
                if self._closed:
                    return
                self._at = None
            self._on_due()
