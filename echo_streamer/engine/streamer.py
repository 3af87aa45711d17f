"""The public engine: a microphone you queue audio on, paced by the SDK's own completions."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import math
import numbers
import os
import queue
import sys
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ..dsp.pipeline import Conditioner, OutputFormat, condition
from ..dsp.resample import LIVE_QUALITY, QUALITY, STREAM_QUALITY
from ..errors import InputError, JoinError
from ..limits import BITRATE, BUFFER_MS, GAP_MS, JOIN_TIMEOUT_S, LEAD_MS, STREAM_START_MS, checked
from ..output.appmessage import AppMessageEcho
from ..output.capture import WavCapture
from ..output.daily import DEFAULT_BITRATE, TRANSPORTS, DailyMicrophone, sdk_answer
from ..output.eventlog import EventLog
from ..output.tavus import interrupt_message
from ..sources.arrays import ArraySource
from ..sources.awaited import AwaitedIterator
from ..sources.base import AudioSource
from ..sources.bytestream import open_byte_stream
from ..sources.files import open_audio
from ..sources.formats import check_stream_format
from ..sources.live import SILENT_POLL_S, LiveInput, SilenceWatch
from .deadline import Deadline
from .drift import DriftControl
from .events import Event, EventFeed
from .interrupt import DEFAULT_MAX_WAIT_MS, Interruption
from .livefeed import LiveFeed
from .playout import LATE_MS, Playout
from .segment import Frame, Segment, SegmentEnd, SegmentIds

Listener = Callable[[Event], None]

# How far a live segment (a sound card) may run ahead of playout before its audio is dropped.
LIVE_BUFFER_MS = 40
# end_live() waits this long for a card's last frame (made within a block, played a frame or two
# later) before it cuts the segment instead.
END_LIVE_WAIT_S = 0.2
# A decoder still on a segment this long after it was cut or dropped is blocked in its source (a
# caller's generator, a writer that sends nothing): a new decoder takes over the queue.
STUCK_AFTER_S = 0.2
# How long close() waits for the decoder to notice the stop (within a block) before leaving it
# behind, blocked in a read (a pipe whose writer stalls).
FEEDER_JOIN_S = 0.25
# While a streamer runs, a thread holding the GIL gives it up after at most this long (Python's
# default is 5 ms), so that SDK completions find it quickly even while a decoder runs Python code.
SWITCH_INTERVAL_S = 0.001
# StreamerConfig's numeric fields after rate and frame_ms: (name, range, unit).
_NUMERIC_FIELDS = (("gap_ms", GAP_MS, "ms"), ("lead_ms", LEAD_MS, "ms"), ("buffer_ms", BUFFER_MS, "ms"),
                   ("stream_start_ms", STREAM_START_MS, "ms"), ("bitrate", BITRATE, "bit/s"),
                   ("join_timeout", JOIN_TIMEOUT_S, "s"))


@dataclass(frozen=True)
class StreamerConfig:
    """How a :class:`Streamer` publishes audio.

    ``room_url`` None streams through a Daily audio source that is not joined to any call (the SDK
    still paces it in real time). ``lead_ms`` is how much audio is handed to the SDK ahead of
    playout (rounded up to whole frames); everything else waits in our own queue, where it can
    still be changed. ``buffer_ms`` is how far each segment's decoder may run ahead.
    ``stream_start_ms`` holds back the start of a streamed segment (``stream()``,
    ``stream_bytes()``) until that much audio is ready or the stream has ended: 0 starts with the
    first frame (least latency); 20 rides out a writer that delivers 20 ms at a time barely faster
    than real time, which would otherwise starve once right after the start. With
    ``tavus_conversation_id`` set, every interrupt also sends Tavus's ``conversation.interrupt``
    app message for that conversation once its cut has played out.

    ``transport="app-message"`` publishes no microphone: each segment's frames go to the room as
    Tavus ``conversation.echo`` audio messages (for ``tavus_conversation_id``) as they are
    handed to the SDK, which still paces them, and a cut sends ``conversation.interrupt`` at once.
    ``message_log`` appends every app message sent (or tried) to that file as JSON lines.
    ``capture_path`` is written anew, or with ``capture_append`` continued where a streamer
    before left it (one capture across the daemon's rejoins).
    """

    room_url: str | None = None
    meeting_token: str | None = None
    rate: int = 24_000
    frame_ms: int = 10
    gap_ms: int = 300
    lead_ms: int = 10
    buffer_ms: int = 1000
    transport: str = "custom-track"
    bitrate: int = DEFAULT_BITRATE
    join_timeout: float = 20.0
    capture_path: str | None = None
    capture_append: bool = False
    tavus_conversation_id: str | None = None
    stream_start_ms: int = 0
    message_log: str | None = None

    def __post_init__(self) -> None:
        """Raises :class:`ValueError` naming the first field out of its range."""
        for name in ("rate", "frame_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name} must be an int, not {value!r}")
            object.__setattr__(self, name, int(value))  # a numpy int too, made a plain one
        OutputFormat(self.rate, self.frame_ms)  # an unsupported rate or frame length
        for name, limits, unit in _NUMERIC_FIELDS:
            object.__setattr__(self, name, checked(name, getattr(self, name), limits, unit,
                                                   whole=name != "join_timeout"))
        if self.room_url is not None and not self.room_url.startswith(("https://", "http://")):
            raise ValueError(f"room_url must be an http(s) URL, not {self.room_url!r}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        if self.transport == "virtual-mic" and self.room_url is None:
            raise ValueError("the virtual-mic transport drops audio until a room is joined: give a room URL")
        if self.transport == "app-message" and not self.tavus_conversation_id:
            raise ValueError("the app-message transport needs tavus_conversation_id (whom the messages are for)")

    @property
    def output(self) -> OutputFormat:
        return OutputFormat(self.rate, self.frame_ms)

    @property
    def lead_frames(self) -> int:
        return max(1, math.ceil(self.lead_ms / self.frame_ms))


class Streamer:
    """Streams queued audio into a Daily microphone track in real time.

    Use it as an async context manager from an asyncio program::

        async with Streamer(StreamerConfig(room_url=url)) as streamer:
            segment = streamer.play("hello.wav")
            await segment.wait()

    :meth:`start` joins the room (raising :class:`~echo_streamer.JoinError`) and starts the
    microphone, silent while idle; :meth:`play` and :meth:`stream` queue segments that play one after another with
    ``gap_ms`` of silence between them. Decoding runs in a worker thread, bounded by
    ``buffer_ms``; the SDK is kept ``lead_ms`` ahead from its completion callbacks, so pacing
    does not depend on the event loop. Events (dicts with ``t`` = ``time.monotonic()`` and
    ``event``) reach listeners on the event loop and :meth:`events` subscribers.

    Call its methods from the event loop's thread. While any streamer runs, the process's
    ``sys.setswitchinterval`` is at most ``SWITCH_INTERVAL_S`` (restored after the last closes).
    """

    def __init__(self, config: StreamerConfig | None = None) -> None:
        self.config = config or StreamerConfig()
        self._format = self.config.output
        self._listeners: list[Listener] = []
        self._event_feed = EventFeed()
        self._segment_ids = SegmentIds()
        self._interrupt_ids = itertools.count(1)
        self._segments: list[Segment] = []
        self._lock = threading.RLock()
        self._stopping = False
        self._started = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._output: DailyMicrophone | None = None
        self._capture: WavCapture | None = None
        self._feed_queue: queue.Queue[Segment | None] = queue.Queue()
        self._feeder: threading.Thread | None = None
        self._feeding: Segment | None = None  # the segment the decoder is on
        self._closing: asyncio.Task[None] | None = None
        self._playout = Playout(self._format, self.config.gap_ms, self._emit_threadsafe, self.config.stream_start_ms)
        self._drained: asyncio.Event | None = None
        # A completion whose write waits for a live frame about to be complete (see _write_next).
        self._late_since: float | None = None
        self._deadline: Deadline | None = None
        self._idle: asyncio.Event | None = None
        self._echo: AppMessageEcho | None = None
        self._message_log: EventLog | None = None
        self._messages = {"sent": 0, "failed": 0}
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the microphone, join the room if one is configured, and start it (silent while idle).

        A streamer starts once: after :meth:`close` (or a failed start), make a new one.
        """
        if self._loop is not None:
            raise RuntimeError("this Streamer has been started before: make a new one")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._drained = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        config = self.config
        try:
            # The files first: one that cannot be opened fails the start before the room sees us.
            if config.capture_path is not None:
                self._capture = WavCapture(config.capture_path, self._format.rate, self._capture_failed,
                                           append=config.capture_append)
            if config.message_log is not None:
                self._message_log = EventLog(config.message_log, append=True)
            self._output = DailyMicrophone(self._format.rate, config.transport, config.bitrate, self._sdk_event)
            if config.room_url is not None:
                await self._output.join(config.room_url, config.join_timeout, config.meeting_token)
        except BaseException as error:
            await self._close_outputs()
            if isinstance(error, JoinError):
                self._emit("error", time.monotonic(), {"id": None, "item": config.room_url, "message": str(error)})
            raise
        if config.transport == "app-message":
            self._echo = AppMessageEcho(self._send_soon, config.tavus_conversation_id, self._format.rate,
                                        self._format.frame_bytes)
        self._deadline = Deadline(self._write_late)
        self._start_feeder()
        _FAST_SWITCHING.hold()
        self._started = True
        self._emit("stream_started", time.monotonic(), {
            "room": config.room_url, "offline": config.room_url is None, "transport": config.transport,
            "rate": self._format.rate, "frame_ms": self._format.frame_ms, "lead_frames": config.lead_frames})
        with self._lock:
            for _ in range(config.lead_frames):
                self._write_next(time.monotonic())

    async def _close_outputs(self) -> None:
        """Leave the room (if joined) and shut the SDK down, then finish the capture and the
        message log. Also what undoes a start that failed (a join, an output file): ``async
        with`` does not close a streamer whose start failed."""
        if self._output is not None:
            await self._output.close()
            self._output = None
        if self._capture is not None:
            await asyncio.to_thread(self._capture.close)  # its writer thread finishes the file
        if self._message_log is not None:
            self._message_log.close()
        self._capture = self._message_log = None

    async def close(self) -> None:
        """Fade out what is playing, drop the queue, wait for the SDK to consume what it holds,
        then leave and shut down.

        Safe to call more than once and from several tasks: each waits for the one shutdown, which
        runs to its end even when a caller task is cancelled meanwhile (the caller's cancellation
        is raised once it is done). Under ``asyncio.run``, a KeyboardInterrupt (a second Ctrl-C
        without a signal handler of your own) cancels every task, the shutdown's too: install
        handlers for SIGINT/SIGTERM that call ``close()``, as the CLI does.
        """
        if self._loop is None:
            return
        self._closed = True
        if self._closing is None:
            self._closing = self._loop.create_task(self._shut_down())
        cancelled = False
        while not self._closing.done():
            try:
                await asyncio.shield(self._closing)
            except asyncio.CancelledError:
                if self._closing.done():  # the shutdown itself was cancelled: the loop is going away
                    raise
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        self._closing.result()

    async def _shut_down(self) -> None:
        try:
            if self._started:
                assert self._drained is not None
                with self._lock:
                    busy = self._playout.busy
                if busy:
                    await self._interrupt("now", False, DEFAULT_MAX_WAIT_MS).wait()
                with self._lock:
                    self._stopping = True
                    if self._playout.in_flight == 0:
                        self._drained.set()
                await self._drained.wait()
                with self._lock:
                    self._end_rest(time.monotonic())
                self._feed_queue.put(None)
                # The decoder notices the stop within one block; give up on one stuck in a read.
                assert self._feeder is not None
                await asyncio.to_thread(self._feeder.join, FEEDER_JOIN_S)
                if self._feeder.is_alive():
                    await asyncio.to_thread(self._release_unfed)  # callers' close() may block
            if self._deadline is not None:
                await asyncio.to_thread(self._deadline.close)
            await self._close_outputs()
            if self._started:
                self._emit("stream_finished", time.monotonic(), self.stats())
        finally:
            self._event_feed.close(time.monotonic())  # even when an output failed to close: no subscriber waits on
            if self._idle is not None:  # a drain() meanwhile: a cut's gap is never written once stopping
                self._idle.set()
            if self._started:
                _FAST_SWITCHING.release()

    async def __aenter__(self) -> Streamer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- queueing audio --------------------------------------------------------------------

    def play(self, path: str | os.PathLike[str], *, segment_id: str | None = None,
             check: Callable[[], None] | None = None) -> Segment:
        """Queue a file (any format libsndfile or ffmpeg decodes) and return its segment at once.

        A file that cannot be decoded fails its segment with an ``error`` event; the stream goes
        on. ``check``, when given, is called in the decode worker just before the file is opened
        (which may be long after this call); an :class:`InputError` it raises fails the segment.
        """
        self._require_running()
        name = os.fspath(path)

        def open_checked() -> AudioSource:
            if check is not None:
                check()
            return open_audio(name)

        return self._enqueue(name, open_checked, segment_id)

    def stream(self, chunks: Iterable[np.ndarray] | AsyncIterable[np.ndarray] | np.ndarray, rate: int, *,
               channels: int = 1, name: str = "stream", segment_id: str | None = None,
               buffer_ms: int | None = None, live: bool = False) -> Segment:
        """Queue audio you produce: ``chunks`` yields int16 or float arrays at ``rate`` Hz (1-D
        for mono, else ``(frames, channels)``); a single array is one chunk.

        The iterable is consumed in the decode worker as the segment plays, so a generator that
        synthesises speech can be passed directly, and so can an async iterable (an async
        generator), whose items are awaited on the event loop one at a time. If it falls behind,
        the stream carries silence and reports an ``underrun``; an exception it raises fails the
        segment (what came before plays out), unless the segment was cut or dropped by then. A
        segment cut or dropped closes its iterable (``close()`` or ``aclose()``). An async one
        waiting for its next item (a TTS waiting for text) stops waiting at once: the wait is
        cancelled (``CancelledError`` where it awaits, so its ``finally`` runs) and it is closed. A
        blocking one cannot be stopped mid-wait: it is closed once its item comes, and the
        segments after it go on meanwhile. ``buffer_ms`` (default: the config's) bounds how far it may run ahead of
        playout. Raises :class:`ValueError` for a ``rate`` or ``channels`` the pipeline does not take.

        ``live=True`` is for audio that arrives in real time on a clock of its own (a sound card):
        its frames are handed to the SDK just in time (up to 5 ms after they were asked for), the
        clocks' drift is taken up by dropping or repeating single samples in quiet moments, audio
        beyond ``buffer_ms`` (default 40) is dropped as an overflow, and the counters are in
        ``segment.drift`` and its ``item_finished`` event (see
        :class:`~echo_streamer.engine.drift.DriftControl`). For a sound card, :meth:`live` does the
        same with less CPU.
        """
        self._require_running()
        if buffer_ms is not None:
            buffer_ms = checked("buffer_ms", buffer_ms, BUFFER_MS, "ms")
        if isinstance(chunks, (bytes, bytearray, memoryview, str)):
            raise TypeError("stream() takes sample arrays: for bytes (raw PCM, a WAV, MP3...) use stream_bytes()")
        if isinstance(chunks, np.ndarray):
            chunks = [chunks]
        items = self._blocking(chunks, "stream()")
        try:
            source = ArraySource(items, rate, channels, name)
        except InputError as error:
            raise ValueError(error.reason) from None
        drift = None
        if live:
            drift, buffer_ms = self._drift_control(rate, buffer_ms)
        return self._enqueue(name, lambda: source, segment_id, low_latency=True, buffer_ms=buffer_ms, drift=drift,
                             release=source.close, stop_source=_stopper(items))

    def live(self, live_input: LiveInput, *, segment_id: str | None = None, buffer_ms: int | None = None) -> Segment:
        """Queue a sound card's input: one segment that streams what ``live_input`` captures until
        it is cut (:meth:`interrupt`, :meth:`cancel`), the device stops delivering (for
        ``SILENT_DEVICE_S``: the segment fails) or ``live_input`` is closed.

        As ``stream(..., live=True)``, but each block is conditioned in PortAudio's own thread as
        it arrives (:class:`~echo_streamer.engine.livefeed.LiveFeed`) and the next block settles a
        frame handed just in time, so no thread of ours wakes per block or per frame. Until the
        segment's turn only the newest audio is kept; the caller owns ``live_input`` and closes it.
        """
        self._require_running()
        if buffer_ms is not None:
            buffer_ms = checked("buffer_ms", buffer_ms, BUFFER_MS, "ms")
        drift, buffer_ms = self._drift_control(live_input.rate, buffer_ms)
        return self._enqueue(live_input.name, None, segment_id, low_latency=True, buffer_ms=buffer_ms,
                             drift=drift, capture=live_input)

    def _drift_control(self, rate: int, buffer_ms: int | None) -> tuple[DriftControl, int]:
        """A live segment's drift control for input at ``rate`` Hz, and its frame queue's length in ms."""
        buffer_ms = LIVE_BUFFER_MS if buffer_ms is None else buffer_ms
        drift = DriftControl(rate, self._format.rate, self._format.frame_samples, buffer_ms, LATE_MS,
                             start_ms=self.config.stream_start_ms)
        # Room for a few frames over the limit, so the drift control drops audio before the queue fills.
        return drift, buffer_ms + 3 * self._format.frame_ms

    def interrupt(self, mode: str = "now", *, keep_queue: bool = False,
                  max_wait_ms: int = DEFAULT_MAX_WAIT_MS) -> Interruption:
        """Cut the segment now playing, and unless ``keep_queue`` drop everything queued behind it.

        ``mode="now"``: the next frame handed to the SDK fades the audio to zero over 4 ms (the
        frames already handed to it, ``lead_ms``, still play). ``mode="next_pause"``: the same
        fade at the next interrupt point (a pause in the speech, or the segment's end), or after
        ``max_wait_ms`` at the latest. At least ``gap_ms`` of silence follows either way. Returns
        at once, never blocks; ``await interruption.wait()`` for what was cut and where. A
        segment whose first frame has not gone out yet (its decoder, or its writer, has not
        delivered) is dropped rather than cut, ``keep_queue`` or not. With nothing playing and
        nothing to drop it is a no-op, reported as such (``interruption.noop``). Segments queued
        after the call are kept: interrupt, then queue the reply.
        """
        self._require_running()
        return self._interrupt(mode, keep_queue, max_wait_ms)

    def _interrupt(self, mode: str, keep_queue: bool, max_wait_ms: int) -> Interruption:
        assert self._loop is not None
        now = time.monotonic()
        request = Interruption(f"int-{next(self._interrupt_ids)}", mode, keep_queue, max_wait_ms, now, self._loop)
        with self._lock:
            interruption = self._playout.interrupt(request, now)
            self._wake_if_ready()  # the segment after a dropped one may be ready already
            return interruption

    async def cancel(self, segment: Segment) -> None:
        """End ``segment`` alone: dropped if it is still queued, faded out (``interrupt("now",
        keep_queue=True)``) if it is playing; returns once it is done. :class:`ValueError` for a
        segment of another streamer that has not ended."""
        if not segment.done() and segment not in self._segments:
            raise ValueError(f"segment {segment.id!r} is not this streamer's")
        with self._lock:  # held from the check to the cut: the segment after it must not be cut instead
            dropped = self._playout.cancel_waiting(segment, time.monotonic())
            cut = (self._interrupt("now", True, DEFAULT_MAX_WAIT_MS)
                   if not dropped and self._playout.current is segment and not self._closed else None)
        if dropped:
            await asyncio.sleep(0)  # listeners hear of it first (its events are delivered next round)
            return
        if cut is not None:
            await cut.wait()
        await segment.wait()

    async def end_live(self, segment: Segment) -> None:
        """End a sound card's segment (:meth:`live`) where its input is now, as if the card's input
        ended there: the next frame made from it fades out (as a cut's would) and is its last;
        returns once it has played. The segment finishes, not interrupted: no interrupt events,
        no Tavus interrupt, and over app messages its last message says ``done``. A segment that
        makes no frame within ``END_LIVE_WAIT_S`` (the card stalls; it is not playing yet) is
        cancelled instead (:meth:`cancel`). A second call waits for the first's end."""
        if not segment.ending:
            finish = segment.finish_capture
            if finish is None or segment.started_at is None:
                if not segment.done():
                    await self.cancel(segment)
                return
            segment.ending = True
            finish()
        ends = time.monotonic() + END_LIVE_WAIT_S
        while not segment.decoded and time.monotonic() < ends:  # its last frame made, or not
            await asyncio.sleep(0.005)
        if not segment.decoded and not segment.done():
            await self.cancel(segment)
        await segment.wait()

    def stream_bytes(self, chunks: Iterable[bytes] | AsyncIterable[bytes] | bytes, *, sample_format: str = "auto",
                     rate: int | None = None, channels: int | None = None, name: str = "stream",
                     segment_id: str | None = None) -> Segment:
        """Queue audio that arrives as bytes (a pipe, a socket, an HTTP upload), decoded as it comes.

        ``chunks`` yields ``bytes`` of any length as they arrive and is read in the decode worker
        (it may block; an async iterable is awaited on the event loop, and a single ``bytes`` is
        one chunk); it is closed as in :meth:`stream`. ``sample_format="auto"`` reads a WAV header
        if the stream starts with one (size fields are not trusted; WAVs of the same format may
        follow, their headers skipped) and otherwise decodes with ffmpeg (MP3, Ogg, ...); a raw
        format from ``RAW_FORMATS`` (``"s16le"``, ``"f32le"``, ``"mulaw"``, ...) needs ``rate``
        and ``channels`` (which "auto" refuses: the stream says them). A stream that stalls plays
        silence (an ``underrun``) until bytes come; its end ends the segment. Bad data fails the
        segment with an ``error`` event.
        """
        check_stream_format(sample_format, rate, channels)
        if isinstance(chunks, str | np.ndarray):
            raise TypeError(f"stream_bytes() takes bytes, not {type(chunks).__name__}"
                            + (": for sample arrays use stream()" if isinstance(chunks, np.ndarray) else ""))
        self._require_running()
        pieces = self._blocking([bytes(chunks)] if isinstance(chunks, (bytes, bytearray, memoryview)) else chunks,
                                "stream_bytes()")
        return self._enqueue(name, lambda: open_byte_stream(pieces, name, sample_format, rate, channels), segment_id,
                             low_latency=True, release=getattr(pieces, "close", None), stop_source=_stopper(pieces))

    def _blocking(self, items: Iterable[Any] | AsyncIterable[Any], method: str) -> Iterable[Any]:
        """``items`` as the decode worker reads it: an async iterable is awaited on the event loop."""
        assert self._loop is not None
        if not isinstance(items, Iterable | AsyncIterable):
            raise TypeError(f"{method} takes an iterable or async iterable of chunks, not {type(items).__name__}")
        return AwaitedIterator(items, self._loop) if isinstance(items, AsyncIterable) else items

    async def drain(self) -> None:
        """Wait until every queued segment has played and the trailing gap has gone out, or the
        streamer is closed (what played is in the segments' states; after close, at once)."""
        if self._closed:
            return
        self._require_running()
        assert self._idle is not None
        for segment in list(self._segments):
            await segment.wait()
        await self._idle.wait()

    # -- observing -------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` on the event loop for every event; it must not block. An
        exception it raises goes to the loop's exception handler (logged), not to the streamer.
        It may call the streamer: an event raised during an operation (an interrupt dropping the
        queue) is delivered once that operation is over. For a coroutine, use :meth:`events`."""
        if inspect.iscoroutinefunction(listener):
            raise TypeError("a listener is called, not awaited: iterate streamer.events() in a task instead")
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def events(self) -> AsyncIterator[Event]:
        """Events from the moment of this call (not of the first iteration), until the streamer
        closes; after it has closed, none.

        A subscriber that falls more than 1000 events behind loses the oldest ones.
        """
        return cast(AsyncIterator[Event], self._event_feed.subscribe())  # no keepalive asked for: no None

    @property
    def running(self) -> bool:
        """Started and not closing: segments can be queued and interrupts requested."""
        return self._started and not self._closed

    def _require_running(self) -> None:
        if self._closed:
            raise RuntimeError("the streamer is closed: a streamer runs once, make a new one")
        if not self._started:
            raise RuntimeError("the streamer is not running: use 'async with Streamer(...)' or await start()")

    @property
    def current(self) -> Segment | None:
        return self._playout.current

    def queued(self) -> list[Segment]:
        return self._playout.waiting()

    def stats(self) -> dict[str, Any]:
        playout = self._playout
        return {"frames_sent": playout.frames_sent, "frames_played": playout.frames_consumed,
                "frames_rested": playout.frames_rested,
                "underruns": playout.underruns, "underrun_frames": playout.underrun_frames,
                "interrupts": playout.interrupts,
                "lag_ms": round(playout.lag_ms, 2), "max_lag_ms": round(playout.max_lag_ms, 2),
                "late_completions": playout.late_completions,
                "lead_frames": self.config.lead_frames, "resting": playout.resting,
                "app_messages_sent": self._messages["sent"], "app_messages_failed": self._messages["failed"],
                "last_error": self.last_error}

    # -- real-time path (SDK threads) ------------------------------------------------------

    def _on_completion(self, _frames: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._playout.consumed(now)
            if self._stopping:
                if self._playout.in_flight == 0:
                    assert self._loop is not None and self._drained is not None
                    self._loop.call_soon_threadsafe(self._drained.set)
                return
            self._write_next(now)
            self._top_up(now)

    def _write_next(self, now: float, due: float | None = None) -> None:
        """Hand the SDK its next frame. A live frame that is not complete yet is handed later
        (``Playout.next_frame``): by whichever thread completes it, or as silence by the deadline
        thread (for a card, armed only once a block has come without it: :meth:`_settle_late`);
        ``due`` is set for that late write: the completion that asked for it.

        With nothing to play, and a microphone whose SDK source sends silence by itself, nothing
        is written: the stream rests, with no wakeup of ours every frame, until the next
        segment can start (:meth:`_wake_if_ready`)."""
        assert self._output is not None and self._deadline is not None
        if self._playout.idle and self._output.sends_silence_when_idle:
            if not self._playout.resting:
                self._playout.rest(now)
            return
        frame = self._playout.next_frame(now, due=due)
        if frame is None:
            self._late_since = now
            current = self._playout.current
            if current is None or current.capture is None:  # a card's next block settles it (_settle_late)
                self._deadline.arm(now + LATE_MS / 1000)
            return
        if self._capture is not None:
            self._capture.write(frame)
        self._output.write(frame, self._on_completion)
        if self._echo is not None:
            self._echo.handed(self._playout.handed_kind, frame)

    def _wake_if_ready(self) -> None:
        """End a rest once the current segment can start (``Playout.ready_to_wake``): hand the SDK
        its first frame, and as many more as are ready, up to the lead. Called with the lock held."""
        if self._playout.ready_to_wake() and not self._stopping:
            now = time.monotonic()
            self._end_rest(now)
            self._write_next(now)
            self._top_up(now)

    def _top_up(self, now: float) -> None:
        """Hand the SDK more frames while it holds less than the lead (after a rest) and the next
        one is ready: one not ready yet would have to go out as silence, an underrun."""
        while (self._playout.in_flight < self.config.lead_frames and self._late_since is None
               and self._playout.frame_ready()):
            self._write_next(now)

    def _end_rest(self, now: float) -> None:
        """Count the SDK's own silence of a rest, and put it into the capture, which is what the
        microphone sent."""
        frames = self._playout.end_rest(now)
        if self._capture is not None and frames:
            self._capture.write_silence(frames * self._format.frame_bytes)

    def _write_late(self) -> None:
        """The deadline's: the write a completion left for later, with whatever the live frame's
        queue holds now (silence if nothing: an underrun). A deadline armed for an earlier wait
        (one a card's block armed, and a block then settled) is moved to this wait's own."""
        with self._lock:
            since = self._late_since
            if since is None or self._stopping:
                return
            assert self._deadline is not None
            if time.monotonic() < since + LATE_MS / 1000:
                self._deadline.arm(since + LATE_MS / 1000)
                return
            self._hand_late(since)

    def _settle_late(self, segment: Segment, block_at: float | None = None) -> None:
        """Hand over the write a completion left waiting for ``segment``'s next frame: the frame,
        once it has come; silence in its place (an underrun) ``LATE_MS`` after the completion.
        A card's blocks settle it as they come (``block_at``: the block's arrival). Once a block
        that arrived after the completion has not completed the frame, the deadline thread is
        armed for ``LATE_MS``: the next block may still come in time (this one was late, as a
        block now and then is) or not (the card stalls). A card that delivers nothing at all
        after the completion is settled by its next block or the decode worker's next look
        (``SILENT_POLL_S``), whichever comes first."""
        if self._late_since is None or self._playout.current is not segment:  # the usual case, unlocked
            return
        with self._lock:
            since = self._late_since
            if since is None or self._playout.current is not segment or self._stopping:
                return
            if segment.frames.empty() and time.monotonic() - since < LATE_MS / 1000:
                if block_at is not None and block_at >= since:
                    assert self._deadline is not None
                    self._deadline.arm(since + LATE_MS / 1000)
                return
            self._hand_late(since)

    def _hand_late(self, due: float) -> None:
        """Write the frame the completion at ``due`` left for later (the lock held)."""
        self._late_since = None
        now = time.monotonic()
        # Written a frame or more late (a card that stalled): at each tick since, the SDK sent
        # silence of its own (it ticks at the completions' times, a frame apart).
        missed = math.floor((now - due) / self._playout.frame_seconds)
        assert self._output is not None
        if missed and self._output.sends_silence_when_idle:
            self._playout.filled_by_sdk(missed, now)
            if self._capture is not None:
                self._capture.write_silence(missed * self._format.frame_bytes)
        self._write_next(now, due)

    # -- decode worker ---------------------------------------------------------------------

    def _enqueue(self, name: str, open_source: Callable[[], AudioSource] | None, segment_id: str | None,
                 low_latency: bool = False, buffer_ms: int | None = None, drift: DriftControl | None = None,
                 release: Callable[[], None] | None = None, capture: LiveInput | None = None,
                 stop_source: Callable[[], None] | None = None) -> Segment:
        assert self._loop is not None and self._idle is not None
        segment_id = self._segment_ids.new(segment_id, {segment.id for segment in self._segments})
        buffer_frames = max(2, (self.config.buffer_ms if buffer_ms is None else buffer_ms) // self._format.frame_ms)
        segment = Segment(segment_id, name, open_source, self._format.rate,
                          buffer_frames, self._loop, low_latency, drift, release, capture, stop_source)
        self._segments.append(segment)
        self._idle.clear()
        with self._lock:
            self._playout.enqueue(segment, time.monotonic())
            self._wake_if_ready()  # live input wakes the stream at once
        self._feed_queue.put(segment)
        return segment

    def _start_feeder(self) -> None:
        self._feeding = None
        self._feeder = threading.Thread(target=self._feed_all, name="echo-streamer-feeder", daemon=True)
        self._feeder.start()

    def _feed_all(self) -> None:
        me = threading.current_thread()
        while (segment := self._feed_queue.get()) is not None:
            self._feeding = segment
            self._feed(segment)
            with self._lock:
                if self._feeder is not me:
                    return  # a new decoder took over while this one was blocked in the segment's source
                self._feeding = None

    def _unstick_feeder(self, segment: Segment) -> None:
        """If the decoder is still on ``segment``, cut or dropped ``STUCK_AFTER_S`` ago, it is blocked
        in the source: a new one takes over the queue, and this one ends (closing the source in its
        own thread) once the source returns."""
        with self._lock:
            # Not for a sound card (live()): it never blocks past SILENT_DEVICE_S, and a second
            # reader of the same card would take blocks meant for the segment after the cut.
            if self._feeding is segment and segment.capture is None and not self._stopping:
                self._start_feeder()

    def _release_unfed(self) -> None:
        """Close what the segments the stuck decoder never reached were made from; it finds the stop
        alone in the queue if its source ever returns."""
        while True:
            try:
                segment = self._feed_queue.get_nowait()
            except queue.Empty:
                break
            if segment is not None and segment.release is not None:
                _close_quietly(segment.release)
        self._feed_queue.put(None)

    def _feed(self, segment: Segment) -> None:
        if segment.discarded:  # dropped before its turn to decode: close what it was made from
            if segment.release is not None:
                _close_quietly(segment.release)
            return
        end = SegmentEnd()
        source: AudioSource | None = None
        conditioner: Conditioner | None = None
        try:
            if segment.capture is not None:
                conditioner = Conditioner(segment.capture.name, segment.capture.rate, segment.capture.channels,
                                          self._format, quality=LIVE_QUALITY)
                self._feed_capture(segment, segment.capture, conditioner)
            else:
                assert segment.open_source is not None
                source = segment.open_source()
                segment.duration = source.duration
                quality = (LIVE_QUALITY if segment.drift is not None else STREAM_QUALITY if segment.low_latency
                           else QUALITY)
                conditioner = Conditioner(source.name, source.rate, source.channels, self._format, quality=quality)
                if not self._feed_blocks(segment, source, conditioner):
                    return
            if conditioner.clipped:
                self._emit_threadsafe("clipped", time.monotonic(),
                                      {"id": segment.id, "item": segment.name, "samples": conditioner.clipped}, None)
        except Exception as error:
            # A segment cut or dropped before its source failed (a pipe's writer that sent nothing
            # once the cut had taken what it did send, a generator cancelled with it): nothing of
            # it was to play any more.
            if not segment.discarded:
                # A bug must fail one segment, not the stream.
                reason = str(error) if isinstance(error, InputError) else (
                    f"{segment.name}: unexpected {type(error).__name__}: {error}")
                end = self._fail(segment, reason)
        finally:
            if source is not None:
                _close_quietly(source.close)
            if conditioner is not None:  # a damaged input's count too: it plays up to the damage
                segment.total_samples = conditioner.samples
        segment.decoded = True
        self._offer(segment, end)

    def _feed_blocks(self, segment: Segment, source: AudioSource, conditioner: Conditioner) -> bool:
        """Decode ``source`` into the segment's queue; False if stopped or discarded on the way."""
        # Stop pulling the source (a caller's generator, a pipe) as soon as the segment is cut.
        blocks: Iterable[np.ndarray] = itertools.takewhile(lambda _block: not segment.discarded, source.blocks())
        if segment.drift is not None:
            blocks = segment.drift.hold(blocks, lambda: conditioner.samples, lambda: segment.handed_frames,
                                        lambda: segment.turn_at is not None)
        for frames, pauses in condition(blocks, conditioner):
            for pcm, pause in zip(frames, pauses.tolist(), strict=True):
                if not self._offer(segment, Frame(pcm.tobytes(), pause, time.monotonic())):
                    return False
        return True

    def _feed_capture(self, segment: Segment, capture: LiveInput, conditioner: Conditioner) -> None:
        """Watch a sound card's segment while PortAudio's thread conditions it (:class:`LiveFeed`),
        until it is cut, the streamer stops, or the card is closed; raises :class:`InputError`
        once the card has delivered nothing for ``SILENT_DEVICE_S``."""
        feed = LiveFeed(segment, conditioner, lambda block_at: self._settle_late(segment, block_at))
        watch = SilenceWatch(capture)
        capture.deliver(feed.push)
        segment.finish_capture = feed.finish
        try:
            while not (self._stopping or segment.discarded or capture.closed):
                if feed.wait(SILENT_POLL_S):
                    if feed.error is not None:
                        raise feed.error
                    return  # its last frame was made (end_live), or it was cut or dropped
                watch.check()
                # A card that stalls leaves its frame's write waiting: silence goes out in its place.
                self._settle_late(segment)
        finally:
            segment.finish_capture = None
            capture.deliver(None)

    def _fail(self, segment: Segment, message: str) -> SegmentEnd:
        segment.error = message
        self._emit_threadsafe("error", time.monotonic(), {"id": segment.id, "item": segment.name, "message": message},
                              None)
        return SegmentEnd(message)

    def _offer(self, segment: Segment, item: Frame | SegmentEnd) -> bool:
        """Put into the segment's bounded queue, waiting while it is full, and hand it over at once
        if a write waits for it; False once stopping or once the segment is discarded."""
        while not self._stopping and not segment.discarded:
            try:
                segment.frames.put(item, timeout=0.05)
            except queue.Full:
                continue
            if self._playout.resting:
                with self._lock:
                    self._wake_if_ready()
            self._settle_late(segment)
            return True
        return False

    # -- events ----------------------------------------------------------------------------

    def _emit_threadsafe(self, name: str, t: float, fields: dict[str, Any],
                         resolves: Segment | Interruption | None) -> None:
        """Emit from any thread: directly on the loop's own thread (delivered to listeners once the
        operation under way is over: see :meth:`_emit`), else scheduled onto it (unless the loop
        has closed: a streamer never closed, or a decoder left behind at close)."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            self._emit(name, t, fields, resolves, deliver_later=True)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._emit, name, t, fields, resolves)

    def _capture_failed(self, message: str) -> None:
        assert self._capture is not None
        self._emit_threadsafe("error", time.monotonic(), {"id": None, "item": self._capture.path, "message": message},
                              None)

    def _sdk_event(self, name: str, fields: dict[str, Any]) -> None:
        if self._loop is not None:
            self._emit_threadsafe(name, time.monotonic(), fields, None)

    def _emit(self, name: str, t: float, fields: dict[str, Any],
              resolves: Segment | Interruption | None = None, *, deliver_later: bool = False) -> None:
        """Record an event and deliver it; ``resolves`` is the segment or interruption whose wait()
        it completes. ``deliver_later`` hands it to listeners and subscribers from the loop's next
        round instead, for an event emitted in the middle of an operation (an interrupt dropping the
        queue): a listener that calls the streamer then finds that operation complete. Either way
        they have it before a task waiting for ``resolves`` resumes."""
        event: Event = {"t": t, "event": name, **fields}
        assert self._loop is not None
        if deliver_later:
            self._loop.call_soon(self._deliver, event)
        if resolves is not None:
            resolves.mark_done()
            if isinstance(resolves, Segment):
                self._segments.remove(resolves)
                if resolves.discarded:
                    if resolves.stop_source is not None:
                        resolves.stop_source()
                    self._loop.call_later(STUCK_AFTER_S, self._unstick_feeder, resolves)
        if name == "error":
            self.last_error = fields.get("message")
        elif name == "idle" and self._playout.idle:
            assert self._idle is not None
            self._idle.set()
        if not deliver_later:
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        assert self._loop is not None
        name = event["event"]
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as error:
                self._loop.call_exception_handler({"message": f"echo-streamer: a listener failed on {name!r}",
                                                   "exception": error})
        self._event_feed.publish(event)
        if (name == "interrupt_done" and self.config.tavus_conversation_id is not None
                and self.config.transport != "app-message"):  # that transport sent it at the cut
            self._send_tavus_interrupt(self.config.tavus_conversation_id)

    async def send_app_message(self, message: Any) -> None:
        """Broadcast a Daily app message (any JSON value) to the room.

        Raises :class:`RuntimeError` with the reason when it was not sent (no room joined, or
        the SDK refused it); waits only for the SDK's answer, never blocks the loop.
        """
        if self._output is None:
            raise RuntimeError("the streamer is not running")
        assert self._loop is not None
        sent, on_sent = sdk_answer(self._loop)
        self._send_message(message, on_sent)
        if (error := await sent) is not None:
            raise RuntimeError(error)

    def _send_tavus_interrupt(self, conversation_id: str) -> None:
        def on_sent(error: str | None) -> None:
            self._emit_threadsafe("tavus_interrupt", time.monotonic(),
                                  {"conversation_id": conversation_id, "error": error}, None)

        self._send_message(interrupt_message(conversation_id), on_sent)

    def _send_soon(self, message: dict[str, Any]) -> None:
        """Send from the event loop (called on SDK threads, where the SDK is not called again)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._send_message, message, None)

    def _send_message(self, message: Any, on_sent: Callable[[str | None], None] | None) -> None:
        """Log, send and count an app message (on the event loop); ``on_sent(error)`` follows."""
        if self._message_log is not None:
            self._message_log.write(message)
        assert self._loop is not None
        loop = self._loop

        def count(outcome: str) -> None:
            self._messages[outcome] += 1

        def sent(error: str | None) -> None:
            loop.call_soon_threadsafe(count, "failed" if error else "sent")
            if on_sent is not None:
                on_sent(error)

        if self._output is not None:
            self._output.send_app_message(message, sent)


def _stopper(items: Iterable[Any]) -> Callable[[], None] | None:
    """What stops ``items`` at once, from the event loop, when its segment is cut or dropped: an
    async iterable's wait for its next item (a blocking iterable is left to return)."""
    return items.close if isinstance(items, AwaitedIterator) else None


def _close_quietly(close: Callable[[], None]) -> None:
    """Close an input the stream is done with; what its close raises (a caller's generator's
    ``finally``) is no longer the stream's concern, and must not end the decoder."""
    with contextlib.suppress(Exception):
        close()


class _SwitchInterval:
    """``sys.setswitchinterval`` at most ``SWITCH_INTERVAL_S`` while any streamer runs, and as it
    was once the last one has closed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._before = 0.0

    def hold(self) -> None:
        with self._lock:
            if not self._holders:
                self._before = sys.getswitchinterval()
                sys.setswitchinterval(min(self._before, SWITCH_INTERVAL_S))
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if not self._holders:
                sys.setswitchinterval(self._before)


_FAST_SWITCHING = _SwitchInterval()
