"""A segment: one item (file or stream) on its way to the microphone."""

from __future__ import annotations

import asyncio
import itertools
import queue
import re
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ..sources.base import AudioSource
from .drift import DriftControl
from .waitable import Waitable

if TYPE_CHECKING:
    from ..sources.live import LiveInput


class SegmentIds:
    """Hands out segment ids: the caller's own, refused (:class:`ValueError`) while a segment with
    it is active; otherwise seg-1, seg-2, ..., skipping the active ones and any of that form a
    caller chose for itself, now or before. So events never name two segments alike."""

    AUTOMATIC = re.compile(r"seg-[0-9]+")

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self._chosen: set[str] = set()

    def new(self, requested: str | None, active: Container[str]) -> str:
        if requested is None:
            while (automatic := f"seg-{next(self._numbers)}") in active or automatic in self._chosen:
                pass
            return automatic
        if requested in active:
            raise ValueError(f"segment id {requested!r} is queued or playing already")
        if self.AUTOMATIC.fullmatch(requested):
            self._chosen.add(requested)
        return requested


class Frame(NamedTuple):
    """One frame of PCM16 on its way to the SDK; ``pause`` marks an interrupt point at its start;
    ``ready_at`` is when it was complete (``time.monotonic()``)."""

    pcm: bytes
    pause: bool
    ready_at: float = 0.0


@dataclass(frozen=True)
class SegmentEnd:
    """Put in a segment's frame queue after its last frame; ``error`` says why it ended early."""

    error: str | None = None


class Segment(Waitable):
    """One item queued on a :class:`~echo_streamer.Streamer`.

    Counters are updated from SDK completions, so ``position_ms`` is audio actually consumed by
    the SDK, never an estimate. ``started_at`` / ``finished_at`` (first frame consumed, end),
    ``first_handed_at`` (first frame written to the SDK) and ``turn_at`` (playout first asked it
    for a frame: the segments and gap before it are done) are ``time.monotonic()`` values.
    ``await segment.wait()`` returns it once it has finished, failed or been dropped.
    """

    def __init__(self, segment_id: str, name: str, open_source: Callable[[], AudioSource] | None, rate: int,
                 buffer_frames: int, loop: asyncio.AbstractEventLoop, low_latency: bool = False,
                 drift: DriftControl | None = None, release: Callable[[], None] | None = None,
                 capture: LiveInput | None = None, stop_source: Callable[[], None] | None = None) -> None:
        self.id = segment_id
        self.name = name
        self.rate = rate
        self.duration: float | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.played_samples = 0
        self.error: str | None = None
        self.open_source = open_source  # None for a capture
        # Closes what the source would be made from (a caller's iterable), if it never is.
        self.release = release
        # Called on the loop once it is cut or dropped: ends an async source's wait for its next item.
        self.stop_source = stop_source
        # Audio produced as it plays (a pipe, a generator): resample with the low-latency filter.
        self.low_latency = low_latency
        # Live input on a clock of its own (a sound card): its backlog is held steady.
        self.drift = drift
        # A sound card whose blocks are conditioned in its own thread (engine.livefeed), not decoded.
        self.capture = capture
        # While they are: ends it at its next frame, faded out (LiveFeed.finish); ``ending`` once asked.
        self.finish_capture: Callable[[], None] | None = None
        self.ending = False
        # Decoded frames waiting for the SDK; bounded so a fast decoder stays only this far ahead.
        self.frames: queue.Queue[Frame | SegmentEnd] = queue.Queue(maxsize=buffer_frames)
        self.total_samples: int | None = None
        self.handed_frames = 0
        self.first_handed_at: float | None = None
        self.turn_at: float | None = None
        self.cancelled = False
        self.interrupt_requested = False  # an interrupt is on its way to cut (or drop) it
        self.interrupted = False
        self.discarded = False
        self.decoded = False  # the decoder has produced its last frame
        super().__init__(loop)

    @property
    def position_ms(self) -> float:
        return 1000.0 * self.played_samples / self.rate

    @property
    def state(self) -> str:
        if self.done():
            if self.error:
                return "failed"
            return "cancelled" if self.cancelled else "interrupted" if self.interrupted else "finished"
        return "queued" if self.started_at is None else "playing"

    def discard(self) -> None:
        """Stop its decoder and free its buffered frames (it was cut or dropped); never blocks."""
        self.discarded = True
        while True:
            try:
                self.frames.get_nowait()
            except queue.Empty:
                return
