"""Frame-by-frame playout: what the SDK gets next, and what it has consumed.

Runs on SDK completion threads, under the streamer's lock. Nothing here blocks: a segment
whose decoder is behind gets silence (an underrun), never a wait.
"""

from __future__ import annotations

import math
import queue
from collections import deque
from typing import Any
from collections.abc import Callable

from ..dsp.pipeline import OutputFormat
from .segment import Segment, SegmentEnd

Emit = Callable[[str, float, dict[str, Any], "Segment | None"], None]

# What a frame handed to the SDK was, so its completion can be accounted.
_IDLE, _GAP, _AUDIO, _END, _STARVED = range(5)


class Playout:
    """Chooses each frame (segment audio, gap silence, idle silence) and accounts completions.

    Between segments that played audio it inserts ``gap_ms`` of digital silence, rounded up to
    whole frames. ``emit(name, t, fields, segment)`` reports ``item_started``,
    ``item_finished``, ``underrun`` and ``idle``; it must not block.
    """

    def __init__(self, output: OutputFormat, gap_ms: int, emit: Emit) -> None:
        self.frame_samples = output.frame_samples
        self.frame_seconds = output.frame_ms / 1000
        self._gap_frames = max(1, math.ceil(gap_ms / output.frame_ms))
        self._silence = bytes(output.frame_bytes)
        self._emit = emit
        self._waiting: deque[Segment] = deque()
        self._current: Segment | None = None
        self._gap_left = 0
        self._starving = False
        self._in_flight: deque[tuple[int, Segment | None]] = deque()
        self._was_idle = True
        self.frames_sent = 0
        self.frames_consumed = 0
        self.underruns = 0
        self.underrun_frames = 0
        self.first_completion: float | None = None
        self.max_lag_ms = 0.0
        self.late_completions = 0

    def enqueue(self, segment: Segment) -> None:
        self._waiting.append(segment)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def idle(self) -> bool:
        return self._current is None and not self._waiting and self._gap_left == 0

    @property
    def current(self) -> Segment | None:
        return self._current

    def waiting(self) -> list[Segment]:
        return list(self._waiting)

    def next_frame(self, now: float) -> bytes:
        """The frame to hand to the SDK now; never blocks."""
        kind, segment, frame = self._choose(now)
        self._in_flight.append((kind, segment))
        self.frames_sent += 1
        return frame

    def consumed(self, now: float) -> None:
        """Account the oldest frame in flight, whose completion just fired at ``now``."""
        kind, segment = self._in_flight.popleft()
        self._track_clock(now)
        if kind == _AUDIO and segment is not None:
            if segment.started_at is None:
                segment.started_at = now
                self._emit("item_started", now, {"id": segment.id, "item": segment.name}, segment)
            segment.played_samples += self.frame_samples
            if segment.total_samples is not None:
                segment.played_samples = min(segment.played_samples, segment.total_samples)
        elif kind == _END and segment is not None:
            self._finish(segment, now, interrupted=False)
        if kind == _IDLE and not self._was_idle:
            self._emit("idle", now, {}, None)
        self._was_idle = kind == _IDLE

    def cut_current(self, now: float) -> None:
        """End the segment now playing where the SDK stopped consuming it (used at shutdown)."""
        segment, self._current = self._current, None
        if segment is not None and segment.started_at is not None:
            self._finish(segment, now, interrupted=True)

    def _finish(self, segment: Segment, now: float, interrupted: bool) -> None:
        segment.finished_at = now
        segment.interrupted = interrupted
        fields: dict[str, Any] = {"id": segment.id, "item": segment.name, "samples": segment.played_samples,
                                  "position_ms": round(segment.position_ms, 1), "interrupted": interrupted}
        if segment.error:
            fields["error"] = segment.error
        self._emit("item_finished", now, fields, segment)

    def _choose(self, now: float) -> tuple[int, Segment | None, bytes]:
        if self._gap_left:
            self._gap_left -= 1
            return _GAP, None, self._silence
        if self._current is None:
            if not self._waiting:
                return _IDLE, None, self._silence
            self._current = self._waiting.popleft()
        segment = self._current
        try:
            item = segment.frames.get_nowait()
        except queue.Empty:
            return _STARVED, segment, self._starved(segment, now)
        self._starving = False
        if isinstance(item, SegmentEnd):
            self._current = None
            self._gap_left = self._gap_frames - 1 if segment.handed_frames else 0
            return _END, segment, self._silence
        segment.handed_frames += 1
        return _AUDIO, segment, item

    def _starved(self, segment: Segment, now: float) -> bytes:
        # Before its first frame a segment is still starting (decoder start-up), not starving.
        if segment.handed_frames:
            self.underrun_frames += 1
            if not self._starving:
                self._starving = True
                self.underruns += 1
                self._emit("underrun", now, {"id": segment.id, "item": segment.name}, segment)
        return self._silence

    def _track_clock(self, now: float) -> None:
        """How far the SDK's consumption lags the wall clock since the first completion.

        A completion more than one frame late means the next write was late too: the SDK may
        have had nothing to send for a moment (it catches up by consuming faster afterwards).
        """
        if self.first_completion is None:
            self.first_completion = now
        expected = self.first_completion + self.frames_consumed * self.frame_seconds
        self.frames_consumed += 1
        lag_ms = 1000 * (now - expected)
        self.max_lag_ms = max(self.max_lag_ms, lag_ms)
        if lag_ms > 1000 * self.frame_seconds:
            self.late_completions += 1
