"""A sound card through the streamer: one live segment per unmuted stretch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ..errors import InputError
from ..sources.live import SILENT_POLL_S, LiveInput, SilenceWatch
from .drift import drift_ppm, drift_ppm_error
from .segment import Segment
from .streamer import Streamer
from .waiting import unless


class LiveSession:
    """Streams ``live_input`` through ``streamer`` until :meth:`stop`, the device fails, or
    ``duration`` seconds have passed (:meth:`run`); either way, and when :meth:`run` is cancelled,
    a segment still streaming fades out first. It also ends when its owner closes ``live_input``
    or the streamer is closed.

    An interrupt cuts the live segment (a fade, then the gap) and mutes the input: nothing is
    streamed until :meth:`resume`, or until ``mute_ms`` has passed when it is given; then a new
    segment starts. ``state`` is ``"streaming"``, ``"muted"`` or ``"ended"``; ``error`` says why
    the device failed: while streaming, the segment fails with it (an ``error`` event); while
    muted (nothing reads the card, yet it is watched), :meth:`run` raises it as an
    :class:`~echo_streamer.errors.InputError`. The caller owns ``live_input`` and closes it.
    ``new_id``, when given, names each segment (the daemon's numbering, shared with its files and
    uploads); else the streamer does.
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

    def resume(self) -> bool:
        """Unmute after an interrupt, also one still fading out; False (no effect) while streaming
        with no interrupt asked for, or once ended. ``state`` is ``"streaming"`` from here on."""
        segment = self.segments[-1] if self.segments else None
        cutting = self.state == "streaming" and segment is not None and segment.interrupt_requested
        if self.state != "muted" and not cutting:
            return False
        self.state = "streaming"
        self._unmute.set()
        return True

    def stop(self) -> None:
        """End the session; a segment still streaming fades out first."""
        self._stop.set()

    async def run(self, duration: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        ends = None if duration is None else loop.time() + duration
        try:
            while not self._stop.is_set():
                self.state = "streaming"
                self._unmute.clear()
                segment = self.streamer.live(self.live_input,
                                             segment_id=None if self.new_id is None else self.new_id())
                self.segments.append(segment)
                if not await unless(self._stop, segment.wait(), _left(loop, ends)):
                    await self._fade_out(segment)
                    return
                if segment.error:
                    self.error = segment.error
                    return
                if self._closed() or not (segment.interrupted or segment.cancelled):
                    return
                if self._unmute.is_set():  # resumed while its cut was still fading out
                    continue
                self.state = "muted"
                mute_ends = None if self.mute_ms is None else loop.time() + self.mute_ms / 1000
                await unless(self._stop, self._muted(), _left(loop, _earliest(ends, mute_ends)))
                if self._closed() or (ends is not None and loop.time() >= ends):
                    return
        except asyncio.CancelledError:  # (Ctrl-C in the CLI) the segment still fades out first
            await self._fade_out(self.segments[-1])
            raise
        finally:
            self.state = "ended"

    async def _fade_out(self, segment: Segment) -> None:
        """End with ``segment`` faded out while the card still delivers its audio (it finishes, as
        if the input ended there: no interrupt); no :meth:`resume` from here on."""
        self.state = "ended"
        if not segment.done() and self.streamer.running:
            await self.streamer.end_live(segment)

    def _closed(self) -> bool:
        """Whether the card or the streamer was closed (by its owner): the session is over."""
        return self.live_input.closed or not self.streamer.running

    async def _muted(self) -> None:
        """Wait for :meth:`resume`, or for the card or the streamer to be closed, watching the card
        meanwhile, which nothing reads: one that stops delivering for ``SILENT_DEVICE_S`` (a stall
        of the whole process not counted) sets ``error`` and raises it as an :class:`InputError`."""
        watch = SilenceWatch(self.live_input)
        while not self._unmute.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._unmute.wait(), SILENT_POLL_S)
                return
            if self._closed():
                return
            try:
                watch.check(muted=True)
            except InputError as gone:
                self.error = str(gone)
                raise

    def drift_report(self) -> dict[str, float]:
        """How the card's clock compared with playout, over every segment, and what it cost."""
        controls = [segment.drift for segment in self.segments if segment.drift is not None]
        dropped, inserted = sum(c.dropped for c in controls), sum(c.inserted for c in controls)
        placed, samples_in = sum(c.placed for c in controls), sum(c.samples_in for c in controls)
        return {"measured": samples_in > 0, "ppm": drift_ppm(dropped - inserted - placed, samples_in),
                "ppm_error": drift_ppm_error(sum(c.band_ms for c in controls), samples_in, self.live_input.rate),
                "samples_dropped": dropped, "samples_inserted": inserted, "placement_samples": placed,
                "overflows": sum(c.overflows for c in controls),
                "device_overflows": self.live_input.device_overflows,
                "underruns": sum(c.underruns for c in controls)}


def _earliest(*times: float | None) -> float | None:
    return min((t for t in times if t is not None), default=None)


def _left(loop: asyncio.AbstractEventLoop, ends: float | None) -> float | None:
    return None if ends is None else max(0.0, ends - loop.time())
