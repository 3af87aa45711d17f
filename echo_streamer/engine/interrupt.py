"""An interrupt request and what it cut."""

from __future__ import annotations

import asyncio
from typing import Any

from ..limits import MAX_WAIT_MS, checked
from .segment import Segment
from .waitable import Waitable

MODES = ("now", "next_pause")
DEFAULT_MAX_WAIT_MS = 400


class Interruption(Waitable):
    """One interrupt of a :class:`~echo_streamer.Streamer`, returned by ``streamer.interrupt()``.

    ``mode`` is ``"now"`` (fade out after the frames already handed to the SDK) or
    ``"next_pause"`` (fade out at the next interrupt point, or after ``max_wait_ms`` at the
    latest; when the frames already decoded show no interrupt point within ``max_wait_ms``, at
    once). Once done: ``cut`` says where the audio stopped (``"now"``, ``"pause"``,
    ``"dip"`` for a soft interrupt cut, for want of a pause, in the first deep dip decoded within
    ``max_wait_ms`` (between words, mostly), ``"no_pause"`` for one cut at once for want of either,
    ``"deadline"``,
    ``"underrun"`` for a segment already starved into silence, ``"end"`` when the segment ended
    first, None when nothing was playing), ``segment`` and ``position_ms`` name
    the segment cut and how much of it was played (from SDK completions), and ``dropped`` lists
    segments removed before they played. ``done_at`` is the SDK completion time of the last frame
    that carried the segment's audio (the fade frame), or the request time when nothing played.
    Times are ``time.monotonic()`` values. ``await interruption.wait()`` returns once done.
    """

    def __init__(self, interrupt_id: str, mode: str, keep_queue: bool, max_wait_ms: int, requested_at: float,
                 loop: asyncio.AbstractEventLoop) -> None:
        if mode not in MODES:
            raise ValueError(f"interrupt mode must be one of {MODES}, not {mode!r}")
        max_wait_ms = checked("max_wait_ms", max_wait_ms, MAX_WAIT_MS, "ms")
        self.id = interrupt_id
        self.mode = mode
        self.keep_queue = keep_queue
        self.max_wait_ms = max_wait_ms
        self.no_pause_ahead = False
        # With no pause ahead: the segment's handed-frame count at which to cut, in a dip.
        self.dip_at: int | None = None
        self.requested_at = requested_at
        # The latest time of the cut (a soft one cuts at the deadline for want of a pause).
        self.deadline = requested_at + (0.0 if mode == "now" else max_wait_ms / 1000)
        self.done_at: float | None = None
        self.cut: str | None = None
        self.segment: Segment | None = None
        self.position_ms: float | None = None
        self.dropped: list[Segment] = []
        super().__init__(loop)

    @property
    def noop(self) -> bool:
        """True when there was nothing to cut and nothing to drop."""
        return self.segment is None and not self.dropped

    def absorb(self, other: Interruption) -> None:
        """Merge ``other``, requested before this one is done: dropping the queue wins and, while
        the cut is still to come, so do ``"now"`` and the earlier deadline. A cut already made
        keeps its mode: it is what played."""
        self.keep_queue = self.keep_queue and other.keep_queue
        if self.cut is None:
            if other.mode == "now":
                self.mode = "now"
            self.deadline = min(self.deadline, other.deadline)

    def fields(self) -> dict[str, Any]:
        """The ``interrupt_done`` event's fields."""
        latency = None if self.done_at is None else round(1000 * (self.done_at - self.requested_at), 2)
        return {"interrupt": self.id, "mode": self.mode, "cut": self.cut, "noop": self.noop,
                "id": self.segment.id if self.segment else None,
                "item": self.segment.name if self.segment else None,
                "position_ms": None if self.position_ms is None else round(self.position_ms, 1),
                "dropped": [segment.id for segment in self.dropped], "latency_ms": latency}
