"""Frame-by-frame playout: what the SDK gets next, and what it has consumed.

Runs on SDK completion threads (and, for interrupt requests, the event loop), always under the
streamer's lock. Nothing here blocks: a segment whose decoder is behind gets silence (an
underrun), never a wait.
"""

from __future__ import annotations

import itertools
import math
import queue
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ..dsp.fade import FADE_MS, fade_out
from ..dsp.pauses import first_dip
from ..dsp.pipeline import OutputFormat
from .interrupt import Interruption
from .segment import Frame, Segment, SegmentEnd

# emit(name, t, fields, resolves): ``resolves`` is the segment or interruption the event completes.
Emit = Callable[[str, float, dict[str, Any], "Segment | Interruption | None"], None]

# How long after the completion that asked for it a live frame may still be handed to the SDK:
# the SDK takes the next frame at its next 10 ms tick, so this leaves a few ms to spare.
LATE_MS = 5.0

# What a frame handed to the SDK was, so its completion can be accounted. _FADE is the faded
# frame that ends a cut segment, _CUT a silent one (nothing audible to fade).
_IDLE, _GAP, _AUDIO, _END, _STARVED, _FADE, _CUT = range(7)
KINDS = ("idle", "gap", "audio", "end", "starved", "fade", "cut")


class Playout:
    """Chooses each frame (segment audio, gap silence, idle silence), cuts segments on interrupt,
    and accounts completions.

    Between segments that played audio it inserts ``gap_ms`` of digital silence, rounded up to
    whole frames; after a cut, the fade frame and then the full gap. ``emit(name, t, fields,
    resolves)`` reports ``item_started``, ``item_finished``, ``item_dropped``, ``underrun``,
    ``idle``, ``interrupt_requested`` and ``interrupt_done``; it must not block.
    """

    def __init__(self, output: OutputFormat, gap_ms: int, emit: Emit, stream_start_ms: int = 0) -> None:
        self.frame_samples = output.frame_samples
        self._stream_start_frames = max(1, math.ceil(stream_start_ms / output.frame_ms))
        self.frame_seconds = output.frame_ms / 1000
        self._gap_frames = max(1, math.ceil(gap_ms / output.frame_ms))
        self._fade_samples = output.rate * FADE_MS // 1000
        self._silence = bytes(output.frame_bytes)
        self._emit = emit
        self._waiting: deque[Segment] = deque()
        self._current: Segment | None = None
        self._gap_left = 0
        self._starving = False
        # Frames of silence since the last audio frame (reset by each; counted only once a
        # segment has played, so it is the current segment's own by the time its end reads it).
        self._silent_run = 0
        self._last_kind = _IDLE
        self._in_flight: deque[tuple[int, Segment | None]] = deque()
        self._idle_reported = True
        self.resting = False
        self._rested_since: float | None = None  # when the SDK consumed our last frame before the rest
        # An interrupt waiting for its cut, and those whose cut frame the SDK has not consumed yet
        # (more than one when a lead of several frames lets the next segment start meanwhile).
        self._pending: Interruption | None = None
        self._cutting: list[Interruption] = []
        self.frames_sent = 0
        self.frames_consumed = 0
        self.frames_rested = 0
        self.underruns = 0
        self.underrun_frames = 0
        self.interrupts = 0
        self._clock_start: float | None = None  # the completion the playout clock counts from
        self._clock_frames = 0
        self.lag_ms = 0.0
        self.max_lag_ms = 0.0
        self.late_completions = 0

    def enqueue(self, segment: Segment, now: float) -> None:
        """Queue ``segment``; while resting, its turn is now: it is current before its first frame."""
        self._idle_reported = False
        self._waiting.append(segment)
        self._promote(now)

    def _promote(self, now: float) -> None:
        """While resting nothing asks for frames: the next segment's turn comes as it is queued, or
        as the one before it is dropped (a live input passes no audio before its turn)."""
        if self.resting and self._current is None and self._gap_left == 0 and self._waiting:
            self._next_turn(now)

    def _next_turn(self, now: float) -> Segment:
        """The first waiting segment becomes current: its turn is ``now``."""
        self._current = self._waiting.popleft()
        self._current.turn_at = now
        return self._current

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def idle(self) -> bool:
        return self._current is None and not self._waiting and self._gap_left == 0

    @property
    def busy(self) -> bool:
        """Something is playing, queued or being cut."""
        return bool(self._current or self._waiting or self._pending or self._cutting)

    @property
    def current(self) -> Segment | None:
        return self._current

    def waiting(self) -> list[Segment]:
        return list(self._waiting)

    @property
    def handed_kind(self) -> str:
        """What the frame last handed out was: one of ``KINDS`` ("audio" of a segment, its "end",
        the "fade" or silent "cut" that ends an interrupted one, "gap", "idle" or "starved" silence)."""
        return KINDS[self._last_kind]

    def next_frame(self, now: float, *, due: float | None = None) -> bytes | None:
        """The frame to hand to the SDK now; never blocks.

        Asked at a completion (``due`` None), a live segment (one with drift control) whose next
        frame is not complete yet gets None instead of silence: the caller asks again, with
        ``due`` = that completion's time, as soon as the frame is complete or it is too late for
        it (``LATE_MS`` after ``due``, or a card's next block), and then gets the frame or
        silence (an underrun). A frame written that late still makes the SDK's next 10 ms tick.
        """
        if self.resting:  # writing resumes: the completions of this frame on count afresh
            self.resting = False
            self._clock_start = None
        choice = self._choose(now, now if due is None else due, may_wait=due is None)
        if choice is None:
            return None
        kind, segment, frame = choice
        self._in_flight.append((kind, segment))
        self._last_kind = kind
        self.frames_sent += 1
        return frame

    def consumed(self, now: float) -> None:
        """Account the oldest frame in flight, whose completion just fired at ``now``."""
        kind, segment = self._in_flight.popleft()
        self._track_clock(now)
        if self.resting and not self._in_flight:
            self._rested_since = now
        if kind == _AUDIO and segment is not None:
            if segment.started_at is None:
                segment.started_at = now
                self._emit("item_started", now, {"id": segment.id, "item": segment.name,
                                                 "handed_at": segment.first_handed_at}, None)
            self._count_played(segment, self.frame_samples)
        elif kind in (_END, _FADE, _CUT) and segment is not None:
            if kind == _FADE:
                self._count_played(segment, self._fade_samples)
            self._finish(segment, now, interrupted=kind != _END)
            for cut in [cut for cut in self._cutting if cut.segment is segment]:
                self._resolve(cut, now)
        self._report_idle(now)

    def rest(self, now: float) -> None:
        """Idle, the caller writes nothing until the next segment can start (the SDK sends its own
        silence meanwhile): that segment becomes current as it is queued, and the first
        completion once writing resumes starts the playout clock afresh."""
        self.resting = True
        self._rested_since = None if self._in_flight else now

    def end_rest(self, now: float) -> int:
        """The frames of silence the SDK has sent by itself since it consumed our last frame, to
        the nearest whole frame, as a rest ends (0 when not resting); counted in ``frames_rested``."""
        if not self.resting or self._rested_since is None:
            return 0
        frames = round((now - self._rested_since) / self.frame_seconds)
        self._rested_since = None
        self.frames_rested += frames
        return frames

    def filled_by_sdk(self, frames: int, now: float) -> None:
        """The SDK sent ``frames`` of its own silence while a write of ours was late (a card that
        stalled): counted in ``frames_rested`` (the SDK's silence) and on the playout clock, which
        they kept going, and as an underrun of the current segment once it has played (before
        its first frame it is starting, not starving: nothing is counted)."""
        self.frames_rested += frames
        if self._clock_start is not None:
            self._clock_frames += frames
        if self._current is not None:
            self._underrun(self._current, now, frames)

    def ready_to_wake(self) -> bool:
        """Whether the stream, resting, should wake for the current segment: a file's once the
        next completion's frame is there too (a frame written while resting may be consumed at
        once), a stream's once it may start (``stream_start_ms``), any once its end is queued;
        live input's at once, before its first frame: its frames are handed just in time at
        completions, so the completions must be running when they come (a first frame written
        off their beat can leave every later one waiting a whole frame for its completion)."""
        segment = self._current
        if not self.resting or segment is None or segment.discarded:
            return False
        if segment.drift is not None:
            return True
        if segment.frames.empty():
            return False
        if segment.decoded:
            return True
        return not self._held_back(segment) if segment.low_latency else segment.frames.qsize() >= 2

    def frame_ready(self) -> bool:
        """Whether the next frame is there already (gap silence, or the current segment's), so
        that writing it now cannot starve the segment."""
        return bool(self._gap_left) or (self._current is not None and not self._current.frames.empty())

    def cancel_waiting(self, segment: Segment, now: float) -> bool:
        """Drop ``segment`` if it is still waiting its turn; False when it is playing or gone."""
        if segment not in self._waiting:
            return False
        self._waiting.remove(segment)
        self._drop(segment, now)
        self._report_idle(now)
        return True

    def interrupt(self, request: Interruption, now: float) -> Interruption:
        """Register an interrupt; return the interruption that carries it out.

        The cut happens in the next frame chosen (``"now"``) or at the next interrupt point
        before ``request.deadline`` (``"next_pause"``); unless ``request.keep_queue``, the
        segments queued behind the current one are dropped at once, and those queued later are
        kept. A request made while another is still in progress (waiting for its cut, or cut with
        its fade frame still in flight) joins it (:meth:`Interruption.absorb`) and the earlier one
        is returned.
        """
        # A cut is joined until its fade frame has played (it is resolved then); later, in the gap,
        # a request finds nothing playing.
        joinable = self._cutting[-1] if self._cutting and self._current is None else None
        active = self._pending or joinable or request
        current = self._current
        if current is not None:
            current.interrupt_requested = True
        self._emit("interrupt_requested", now, {
            "interrupt": active.id, "mode": request.mode, "keep_queue": request.keep_queue,
            "max_wait_ms": request.max_wait_ms, "id": current.id if current else None,
            "position_ms": round(current.position_ms, 1) if current else None}, None)
        if active is not request:
            tighter = active is self._pending and request.deadline < active.deadline
            active.absorb(request)
            if tighter and active.mode == "next_pause" and current is not None:
                self._plan_soft_cut(active, current, request.max_wait_ms)
            if not request.keep_queue:
                active.dropped += self._drop_waiting(now)
            return active
        self.interrupts += 1
        if current is not None and current.handed_frames == 0:
            # Not a sample of it has gone out (its decoder is starting): drop it like a queued one.
            self._current = None
            self._drop(current, now)
            request.dropped.append(current)
        # What is queued now goes now, not at the cut: a reply queued right after the request
        # (barge-in: interrupt, then speak) plays after it.
        if not request.keep_queue:
            request.dropped += self._drop_waiting(now)
        if self._current is None:
            self._resolve(request, now)
            self._promote(now)
            self._report_idle(now)
        else:
            if request.mode == "next_pause":
                self._plan_soft_cut(request, self._current, request.max_wait_ms)
            self._pending = request
        return request

    def _plan_soft_cut(self, request: Interruption, segment: Segment, max_wait_ms: int) -> None:
        """When the frames already decoded show no interrupt point within ``max_wait_ms`` from now,
        waiting would only cut mid-word at the deadline: cut in the first deep dip among them
        (:func:`~echo_streamer.dsp.pauses.first_dip`), else at once. A request joining with an
        earlier deadline plans again over its own, shorter, wait, unless the dip already planned
        comes within it."""
        horizon = math.ceil(max_wait_ms / (1000 * self.frame_seconds))
        if request.dip_at is not None and request.dip_at < segment.handed_frames + horizon:
            return
        with segment.frames.mutex:  # a look at the decoded frames without taking any
            ahead = list(itertools.islice(segment.frames.queue, horizon))
        if len(ahead) < horizon or any(isinstance(item, SegmentEnd) or item.pause for item in ahead):
            return
        if not ahead:  # max_wait_ms 0: nothing to wait for
            request.no_pause_ahead = True
            return
        frames = np.frombuffer(b"".join(item.pcm for item in ahead if isinstance(item, Frame)), np.int16)
        dip = first_dip(frames.reshape(len(ahead), -1))
        if dip is None:
            request.no_pause_ahead = True
        else:
            request.dip_at = segment.handed_frames + dip

    def _report_idle(self, now: float) -> None:
        """Emit "idle" once nothing is queued, playing, in its gap or in flight but idle silence."""
        if not self._idle_reported and self.idle and all(kind == _IDLE for kind, _segment in self._in_flight):
            self._idle_reported = True
            self._emit("idle", now, {}, None)

    def _resolve(self, request: Interruption, now: float) -> None:
        if request.segment is not None:
            request.position_ms = request.segment.position_ms
        request.done_at = now
        if request in self._cutting:
            self._cutting.remove(request)
        self._emit("interrupt_done", now, request.fields(), request)

    def _count_played(self, segment: Segment, samples: int) -> None:
        segment.played_samples += samples
        if segment.total_samples is not None:
            segment.played_samples = min(segment.played_samples, segment.total_samples)

    def _finish(self, segment: Segment, now: float, interrupted: bool) -> None:
        segment.finished_at = now
        segment.interrupted = interrupted
        fields: dict[str, Any] = {"id": segment.id, "item": segment.name, "samples": segment.played_samples,
                                  "position_ms": round(segment.position_ms, 1), "interrupted": interrupted}
        if segment.error:
            fields["error"] = segment.error
        if segment.drift is not None:
            fields["live"] = segment.drift.fields()
        self._emit("item_finished", now, fields, segment)

    def _drop(self, segment: Segment, now: float) -> None:
        segment.cancelled = True
        segment.discard()
        self._emit("item_dropped", now, {"id": segment.id, "item": segment.name}, segment)

    def _drop_waiting(self, now: float) -> list[Segment]:
        dropped = list(self._waiting)
        self._waiting.clear()
        for segment in dropped:
            self._drop(segment, now)
        return dropped

    def _choose(self, now: float, due: float, may_wait: bool) -> tuple[int, Segment | None, bytes] | None:
        if self._gap_left:
            self._gap_left -= 1
            return _GAP, None, self._silence
        if self._current is None and not self._waiting:
            return _IDLE, None, self._silence
        segment = self._current or self._next_turn(now)
        try:
            item: Frame | SegmentEnd | None = None if self._held_back(segment) else segment.frames.get_nowait()
        except queue.Empty:
            item = None
        if item is None and may_wait and segment.drift is not None and segment.handed_frames:
            return None  # a live frame on its way: a cut waits for it too, so that it can fade it
        if self._pending is not None and (cut := self._cut_reason(self._pending, item, now, segment.handed_frames)):
            return self._cut(segment, item, cut, now)
        if item is None:
            return _STARVED, segment, self._starved(segment, now)
        self._starving = False
        if isinstance(item, SegmentEnd):
            return self._end(segment)
        self._silent_run = 0
        if not segment.handed_frames:
            segment.first_handed_at = now
        segment.handed_frames += 1
        if segment.drift is not None:
            segment.drift.handed(due, item.ready_at)
        return _AUDIO, segment, item.pcm

    def _end(self, segment: Segment) -> tuple[int, Segment | None, bytes]:
        """The silent frame after a segment's last one; with it, the gap begins (if it played).
        Silence the segment already ended with (a writer that went quiet before it closed: an
        underrun) counts toward the gap, which would otherwise only hold up the next segment."""
        self._current = None
        self._gap_left = max(0, self._gap_frames - 1 - self._silent_run) if segment.handed_frames else 0
        return _END, segment, self._silence

    def _held_back(self, segment: Segment) -> bool:
        """A streamed segment waits to start until ``stream_start_ms`` of it is ready (or all of it)."""
        return (segment.low_latency and not segment.handed_frames and not segment.decoded
                and segment.frames.qsize() < self._stream_start_frames)

    @staticmethod
    def _cut_reason(request: Interruption, item: Frame | SegmentEnd | None, now: float,
                    handed_frames: int) -> str | None:
        if isinstance(item, SegmentEnd):
            return "end"
        if request.mode == "now":
            return "now"
        if request.no_pause_ahead:
            return "no_pause"
        if request.dip_at is not None and handed_frames >= request.dip_at and item is not None:
            return "dip"
        if item is None:
            return "underrun"
        if item.pause:
            return "pause"
        return "deadline" if now >= request.deadline else None

    def _cut(self, segment: Segment, item: Frame | SegmentEnd | None, cut: str,
             now: float) -> tuple[int, Segment | None, bytes]:
        """End ``segment`` at this frame: fade it if the last one carried its audio, then the gap."""
        request, self._pending = self._pending, None
        assert request is not None
        request.cut = cut
        request.segment = segment
        self._cutting.append(request)
        self._current = None
        self._starving = False
        if isinstance(item, SegmentEnd):
            return self._end(segment)
        segment.discard()
        self._gap_left = self._gap_frames
        if item is not None and self._last_kind == _AUDIO:
            return _FADE, segment, fade_out(item.pcm, self._fade_samples)
        return _CUT, segment, self._silence

    def _starved(self, segment: Segment, now: float) -> bytes:
        self._underrun(segment, now, 1)
        return self._silence

    def _underrun(self, segment: Segment, now: float, frames: int) -> None:
        """``segment`` had nothing for ``frames`` frames: one underrun until it has a frame again."""
        # Before its first frame a segment is still starting (decoder start-up), not starving.
        if segment.handed_frames:
            self.underrun_frames += frames
            self._silent_run += frames
            if not self._starving:
                self._starving = True
                self.underruns += 1
                if segment.drift is not None:
                    segment.drift.underruns += 1
                self._emit("underrun", now, {"id": segment.id, "item": segment.name}, None)

    def _track_clock(self, now: float) -> None:
        """How far the SDK's consumption lags the wall clock since the first completion after the
        last rest (``lag_ms`` now, ``max_lag_ms`` at worst); a lag that stays is time the stream
        lost for good.

        A completion more than one frame late means the next write was late too: the SDK may
        have had nothing to send for a moment (it catches up by consuming faster afterwards).
        """
        if self._clock_start is None:
            self._clock_start, self._clock_frames = now, 0
        expected = self._clock_start + self._clock_frames * self.frame_seconds
        self._clock_frames += 1
        self.frames_consumed += 1
        lag_ms = 1000 * (now - expected)
        self.lag_ms = lag_ms
        self.max_lag_ms = max(self.max_lag_ms, lag_ms)
        if lag_ms > 1000 * self.frame_seconds:
            self.late_completions += 1
