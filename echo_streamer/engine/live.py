"""A sound card through the streamer: one live segment per unmuted stretch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..sources.live import LiveInput
from .drift import drift_ppm
from .segment import Segment
from .streamer import Streamer
from .waiting import unless


class LiveSession:
    """Streams ``live_input`` through ``streamer`` until :meth:`stop`, the device fails, or
    ``duration`` seconds have passed (:meth:`run`).

    An interrupt cuts the live segment (a fade, then the gap) and mutes the input: nothing is
    streamed until :meth:`resume`, or until ``mute_ms`` has passed when it is given; then a new
    segment starts. ``state`` is ``"streaming"``, ``"muted"`` or ``"ended"``; ``error`` says why
    the device failed. The caller owns ``live_input`` and closes it. ``new_id``, when given, names
    each segment (the daemon's numbering, shared with its files and uploads); else the streamer does.
    """

    def __init__(self, streamer: Streamer, live_input: LiveInput, mute_ms: int | None = None,
                 new_id: Callable[[], str] | None = None) -> None:
        self.streamer = streamer
        self.new_id = new_id
        self.live_input = live_input
        self.mute_ms = mute_ms
        self.segments: list[Segment] = []
        self.state = "streaming"
        self.error: str | None = None
        self._unmute = asyncio.Event()
        self._stop = asyncio.Event()

    def resume(self) -> None:
        """Unmute after an interrupt (no effect while streaming); ``state`` is ``"streaming"`` from here on."""
        if self.state == "muted":
            self.state = "streaming"
            self._unmute.set()

    def stop(self) -> None:
        """End the session; a segment still streaming fades out first."""
        self._stop.set()

    async def run(self, duration: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        ends = None if duration is None else loop.time() + duration
        try:
            while not self._stop.is_set():
                self.state = "streaming"
                segment = self.streamer.stream(self.live_input.blocks(), self.live_input.rate,
                                               channels=self.live_input.channels, name=self.live_input.name,
                                               live=True, wake_after=self.live_input.wake_after,
                                               segment_id=None if self.new_id is None else self.new_id())
                self.segments.append(segment)
                if not await unless(self._stop, segment.wait(), _left(loop, ends)):
                    await self.streamer.cancel(segment)
                    return
                if segment.error:
                    self.error = segment.error
                    return
                self.state = "muted"
                self._unmute.clear()
                mute_ends = None if self.mute_ms is None else loop.time() + self.mute_ms / 1000
                await unless(self._stop, self._unmute.wait(), _left(loop, _earliest(ends, mute_ends)))
                if ends is not None and loop.time() >= ends:
                    return
        finally:
            self.state = "ended"

    def drift_report(self) -> dict[str, float]:
        """How the card's clock compared with playout, over every segment, and what it cost."""
        controls = [segment.drift for segment in self.segments if segment.drift is not None]
        dropped, inserted = sum(c.dropped for c in controls), sum(c.inserted for c in controls)
        placed = sum(c.placed for c in controls)
        return {"ppm": drift_ppm(dropped - inserted - placed, sum(c.samples_in for c in controls)),
                "samples_dropped": dropped, "samples_inserted": inserted, "placement_samples": placed,
                "overflows": self.live_input.overflows + sum(c.overflows for c in controls),
                "device_overflows": self.live_input.device_overflows,
                "underruns": sum(c.underruns for c in controls)}


def _earliest(*times: float | None) -> float | None:
    return min((t for t in times if t is not None), default=None)


def _left(loop: asyncio.AbstractEventLoop, ends: float | None) -> float | None:
    return None if ends is None else max(0.0, ends - loop.time())
