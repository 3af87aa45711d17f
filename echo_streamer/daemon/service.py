"""The daemon's state: one Streamer kept in the room (rejoined when the call drops), its
segments, the live input, and the events and counters the API reports."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from ..engine.events import Event, EventFeed
from ..engine.interrupt import Interruption
from ..engine.live import LiveSession
from ..engine.segment import Segment, SegmentIds
from ..engine.streamer import Streamer, StreamerConfig
from ..engine.waiting import in_daemon_thread, unless
from ..errors import InputError, JoinError
from ..output.tavus import conversation_id_from_url, received_event
from ..sources.formats import check_stream_format
from ..sources.live import LiveInput, input_device_index
from .paths import AllowedPaths, PathInvalid, PathRefused

# Counters carried across rejoins (a new Streamer starts from zero).
_STREAMER_COUNTERS = ("frames_sent", "frames_played", "frames_rested", "underruns", "underrun_frames", "interrupts",
                      "late_completions", "app_messages_sent", "app_messages_failed")


class ApiError(Exception):
    """A request the daemon refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class DaemonConfig:
    """``allow_dirs``: the roots ``play`` may read files from (none: no paths at all).
    ``retry_s``: the first and the longest wait between join attempts (doubling in between).
    ``mute_ms``: how long an interrupted live input stays muted (None: until resumed).
    ``conversation_id``: the Tavus conversation ``/send_text_message`` names (None: the
    streamer's, else the room URL's last path segment)."""

    streamer: StreamerConfig
    allow_dirs: tuple[str, ...] = ()
    retry_s: tuple[float, float] = (1.0, 30.0)
    mute_ms: int | None = None
    conversation_id: str | None = None


class Daemon:
    """Keeps a :class:`Streamer` running for as long as :meth:`run` runs, and carries out requests.

    With a room, a join that fails is retried with backoff and a call that drops (the SDK reports
    it left without being asked) is rejoined; requests that need the stream answer 503 meanwhile.
    Everything here runs on the event loop and returns at once, except where it waits for the
    stream (an interrupt carried out, a live device opened in a worker thread).
    """

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.events = EventFeed()
        self.paths = AllowedPaths(config.allow_dirs)
        self.streamer: Streamer | None = None
        self._retiring: Streamer | None = None  # one closing: its counters are not in totals yet
        self.call_state = "starting"
        self.call_error: str | None = None
        self.join_attempts = 0
        self.participants: dict[str, dict[str, Any]] = {}
        self.live: LiveSession | None = None
        # A live input's device went away: PortAudio would abort in the interpreter's shutdown.
        self.device_lost = False
        self.totals: Counter[str] = Counter()
        self.last_error: str | None = None
        self.started_at = time.monotonic()
        self._active_ids: set[str] = set()  # segments queued or playing, whose ids are taken
        self._segment_ids = SegmentIds()  # the daemon's own: they run on across its streamers
        self._live_task: asyncio.Task[None] | None = None
        self._live_starting = asyncio.Lock()  # two starts at once must not open the card twice
        self._opening: asyncio.Future[LiveInput] | None = None  # the card's latest open, in its thread
        self._abandoned_card: asyncio.Future[None] | None = None  # opened for a request that gave up: closing
        self._stop = asyncio.Event()
        self._dropped = asyncio.Event()

    @property
    def offline(self) -> bool:
        return self.config.streamer.room_url is None

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Stream until :meth:`stop`: join (retrying), stream, rejoin when the call drops."""
        first, longest = self.config.retry_s
        delay = first
        started = False  # once one has, the next streamer continues its capture
        while not self._stop.is_set():
            streamer = Streamer(replace(self.config.streamer, capture_append=self.config.streamer.capture_append
                                        or started))
            streamer.add_listener(self._on_streamer_event)
            self.join_attempts += 1
            self._set_call_state("offline" if self.offline else "joining")
            try:
                if not await unless(self._stop, streamer.start()):
                    await streamer.close()
                    break
            except (JoinError, OSError) as error:  # OSError: an output file cannot be opened now
                self.call_error = (f"{error.filename}: cannot open it: {error.strerror}"
                                   if isinstance(error, OSError) and error.filename else str(error))
                self._set_call_state("retrying", error=self.call_error, attempt=self.join_attempts,
                                     retry_in_s=delay)
                await unless(self._stop, asyncio.sleep(delay))
                delay = min(longest, delay * 2)
                continue
            delay, started = first, True
            self.call_error = None
            self.streamer = streamer
            if not self.offline:
                self._set_call_state("joined")
            self._dropped.clear()
            await unless(self._stop, self._dropped.wait())
            await self._close_streamer(streamer)
            if self._dropped.is_set() and not self._stop.is_set():
                self._set_call_state("dropped", error="the call dropped: rejoining")
        self._set_call_state("stopped")
        self.events.close(time.monotonic())

    def stop(self) -> None:
        """Ask :meth:`run` to fade out, leave the room and return."""
        self._stop.set()

    @property
    def stopping(self) -> asyncio.Event:
        """Set once :meth:`stop` has been called: what still waits on a client gives up."""
        return self._stop

    async def _close_streamer(self, streamer: Streamer) -> None:
        self.streamer, self._retiring = None, streamer
        self.participants.clear()
        await self._end_live()  # a start under way sees the streamer gone and closes its card
        await streamer.close()
        stats = streamer.stats()
        self.totals.update({name: stats[name] for name in _STREAMER_COUNTERS})
        self._retiring = None

    # -- requests --------------------------------------------------------------------------

    def play(self, path: str, segment_id: str | None = None) -> Segment:
        """Queue the file at ``path`` (inside the allowed directories)."""
        try:
            real = self.paths.resolve(path)
        except PathRefused as error:
            raise ApiError(403, str(error)) from None
        except PathInvalid as error:
            raise ApiError(400, str(error)) from None
        except FileNotFoundError as error:
            raise ApiError(404, str(error)) from None
        streamer = self._running()
        return self._track(streamer.play(str(real), segment_id=self._new_id(segment_id),
                                         check=lambda: self.paths.check_unchanged(real)))

    def stream(self, chunks: Any, sample_format: str, rate: int | None, channels: int | None,
               segment_id: str | None = None) -> Segment:
        """Queue a byte stream (see :meth:`Streamer.stream_bytes`)."""
        streamer = self._running()
        try:
            check_stream_format(sample_format, rate, channels)
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        segment_id = self._new_id(segment_id)  # taken once the upload is sure to be queued
        segment = streamer.stream_bytes(chunks, sample_format=sample_format, rate=rate, channels=channels,
                                        name=f"upload {segment_id}", segment_id=segment_id)
        return self._track(segment)

    def interrupt(self, mode: str, clear_queue: bool, max_wait_ms: int) -> Interruption:
        """Ask for the cut at once; ``await interruption.wait()`` for it to be carried out."""
        streamer = self._running()
        try:
            return streamer.interrupt(mode, keep_queue=not clear_queue, max_wait_ms=max_wait_ms)
        except ValueError as error:
            raise ApiError(400, str(error)) from None

    async def live_start(self, device: int | str | None, rate: int | None, channels: int | None) -> LiveSession:
        """Start streaming a sound card, or unmute the one already open after an interrupt (when
        the request names nothing but that card)."""
        async with self._live_starting:
            streamer = self._running()
            if self.live is not None and self.live.state == "ended" and self._live_task is not None:
                await asyncio.shield(self._live_task)  # its card failed and is being closed: open it anew
            if self.live is not None:
                if not await self._is_open_card(device, rate, channels):
                    raise ApiError(409, f"{self.live.live_input.name} is open: stop it (POST /v1/live/stop) to "
                                        "start another device, rate or channel count")
                if not self.live.resume():
                    raise ApiError(409, f"{self.live.live_input.name} is already streaming")
                return self.live
            try:
                live_input = await self._open_card(device, rate, channels)
            except InputError as error:
                raise ApiError(400, str(error)) from None
            if self.streamer is not streamer:
                await self._close_card(live_input)
                raise ApiError(503, "the stream stopped while the card was being opened")
            session = self.live = LiveSession(streamer, live_input, self.config.mute_ms, new_id=self._live_id)
            self._live_task = asyncio.ensure_future(self._run_live(session))
            return session

    async def _is_open_card(self, device: int | str | None, rate: int | None, channels: int | None) -> bool:
        """Whether the device, rate and channel count a start names (those it names) are the open card's."""
        assert self.live is not None
        card = self.live.live_input
        if rate not in (None, card.rate) or channels not in (None, card.channels):
            return False
        try:
            return device is None or await in_daemon_thread(input_device_index, device) == card.device_index
        except InputError:
            return False

    async def _open_card(self, device: int | str | None, rate: int | None, channels: int | None) -> LiveInput:
        """Open the card in a thread of its own. A request that gives up first (its time limit) leaves
        the opening to finish and the card to be closed then, not held by no one; the next start
        waits for that close, so two openings never hold the card at once."""
        if (closing := self._abandoned_card) is not None:
            await asyncio.wait({closing})
            self._abandoned_card = None
            closing.result()  # a close that failed fails this start, once (500, said on stderr)
        opening = self._opening = in_daemon_thread(LiveInput, device, rate, channels)
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            self._abandoned_card = asyncio.ensure_future(self._close_when_open(opening))
            raise

    async def _close_when_open(self, opening: asyncio.Future[LiveInput]) -> None:
        try:
            live_input = await asyncio.shield(opening)  # cancelled at exit, the open is still watched
        except Exception:  # nothing was opened (why is for the request that gave up)
            return
        await self._close_card(live_input)

    async def _close_card(self, live_input: LiveInput) -> None:
        await asyncio.to_thread(live_input.close)
        self.device_lost = self.device_lost or live_input.lost

    @property
    def card_opening(self) -> bool:
        """A card is still being opened (by a sound server that hangs, perhaps): PortAudio must
        not be shut down under it at exit."""
        return self._opening is not None and not self._opening.done()

    async def live_stop(self) -> LiveSession | None:
        """Stop the live input (its segment fades out), also one a start under way is opening;
        None when there was none. A request that gives up meanwhile leaves the stop to finish."""
        async with self._live_starting:
            return await self._end_live()

    async def _end_live(self) -> LiveSession | None:
        session, task = self.live, self._live_task
        if session is None or task is None:
            return None
        session.stop()
        await asyncio.shield(task)
        return session

    async def _run_live(self, session: LiveSession) -> None:
        try:
            await session.run()
        except InputError as error:  # the card went away while muted (a segment's failure has its own event)
            self.last_error = str(error)
            self._emit("error", {"id": None, "item": session.live_input.name, "message": self.last_error})
        finally:
            await self._close_card(session.live_input)
            self.live = self._live_task = None
            self._emit("live_stopped", {"device": session.live_input.name, "error": session.error,
                                        **session.drift_report()})

    async def send_app_message(self, message: Any) -> None:
        """Broadcast an app message; raises :class:`ApiError` 400 when not in a room, 502 when refused."""
        if self.offline or self.streamer is None or self.call_state != "joined":
            raise ApiError(400, "Not connected to a room")
        try:
            await self.streamer.send_app_message(message)
        except RuntimeError as error:
            raise ApiError(502, f"Failed to send message: {error}") from None

    def report_error(self, segment: Segment, message: str) -> None:
        """An ``error`` event for ``segment`` (a failure the streamer did not see, such as an upload's)."""
        self.last_error = message
        self._emit("error", {"id": segment.id, "item": segment.name, "message": message})

    @property
    def conversation_id(self) -> str | None:
        """The Tavus conversation: as configured, else the room URL's last path segment (None
        offline, or for a room URL without a path)."""
        config = self.config.streamer
        configured = self.config.conversation_id or config.tavus_conversation_id
        if configured or config.room_url is None:
            return configured
        try:
            return conversation_id_from_url(config.room_url)
        except ValueError:
            return None

    def status(self) -> dict[str, Any]:
        streamer = self.streamer
        current = streamer.current if streamer else None
        return {
            "call": {"state": self.call_state, "room": self.config.streamer.room_url, "offline": self.offline,
                     "join_attempts": self.join_attempts, "error": self.call_error,
                     "participants": list(self.participants.values())},
            "current": _segment_summary(current) if current else None,
            "queue": [_segment_summary(segment) for segment in streamer.queued()] if streamer else [],
            "live": None if self.live is None else {"device": self.live.live_input.name, "state": self.live.state},
            "counters": self.counters(),
            "uptime_s": round(time.monotonic() - self.started_at, 1),
        }

    def counters(self) -> dict[str, Any]:
        """Totals since the daemon started (across rejoins), the current lead and lag, the last error."""
        stats = self.streamer.stats() if self.streamer else {}
        retiring = self._retiring.stats() if self._retiring else {}  # counters never go back while it closes
        totals = {name: self.totals[name] + stats.get(name, 0) + retiring.get(name, 0) for name in _STREAMER_COUNTERS}
        return {**totals, "segments_finished": self.totals["segments_finished"],
                "segments_interrupted": self.totals["segments_interrupted"],
                "segments_failed": self.totals["segments_failed"], "segments_dropped": self.totals["segments_dropped"],
                "lead_frames": self.config.streamer.lead_frames, "lag_ms": stats.get("lag_ms", 0.0),
                "resting": stats.get("resting", False),
                "event_subscribers": self.events.subscribers, "last_error": self.last_error}

    # -- helpers ---------------------------------------------------------------------------

    def _running(self) -> Streamer:
        if self.streamer is None or not self.streamer.running:
            reason = self.call_error or f"the call is {self.call_state}"
            raise ApiError(503, f"not streaming yet ({reason})")
        return self.streamer

    def _new_id(self, requested: str | None) -> str:
        if requested is not None and not 1 <= len(requested) <= 128:
            raise ApiError(400, "id must be 1 to 128 characters")
        try:
            return self._segment_ids.new(requested, self._active_ids)
        except ValueError:
            raise ApiError(409, f"segment {requested!r} is still queued or playing") from None

    def _live_id(self) -> str:
        """The next automatic id, held (as :meth:`_track` holds a file's) for a live segment."""
        segment_id = self._new_id(None)
        self._active_ids.add(segment_id)
        return segment_id

    def _track(self, segment: Segment) -> Segment:
        self._active_ids.add(segment.id)
        return segment

    def _set_call_state(self, state: str, **fields: Any) -> None:
        self.call_state = state
        self._emit("call_state", {"state": state, **fields})

    def _emit(self, name: str, fields: dict[str, Any]) -> None:
        self.events.publish({"t": time.monotonic(), "event": name, **fields})

    def _on_streamer_event(self, event: Event) -> None:
        """Every streamer event goes out as is; some also update the call's picture."""
        name = event["event"]
        if name == "call_state":
            if event["state"] == "left" and self.streamer is not None and self.streamer.running:
                self._dropped.set()
            return  # reported as our own call_state events
        self.events.publish(event)
        if name == "participant_joined" and not event["participant"].get("is_local"):
            self.participants[event["participant"]["id"]] = event["participant"]
        elif name == "participant_left" and self.participants.pop(event["participant"]["id"], None):
            if not self.participants:
                self._emit("last_participant_left", {"participant": event["participant"], "reason": event["reason"]})
        elif name == "app_message" and (tavus := received_event(event["message"])) is not None:
            self.events.publish({"t": event["t"], **tavus, "sender": event["sender"]})
        elif name in ("item_finished", "item_dropped"):
            self._active_ids.discard(event["id"])
            outcome = ("dropped" if name == "item_dropped" else "failed" if event.get("error")
                       else "interrupted" if event["interrupted"] else "finished")
            self.totals[f"segments_{outcome}"] += 1
        elif name == "error":
            self.last_error = event["message"]


def _segment_summary(segment: Segment) -> dict[str, Any]:
    return {"id": segment.id, "item": segment.name, "state": segment.state,
            "position_ms": round(segment.position_ms, 1), "duration_s": segment.duration}
