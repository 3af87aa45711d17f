"""The Daily side: a microphone track fed with PCM16 frames, optionally joined to a room.

Every SDK call here returns at once; completions and events arrive on SDK threads and are
handed to the caller's callbacks, which must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import JoinError

TRANSPORTS = ("custom-track", "virtual-mic", "app-message")
DEFAULT_BITRATE = 96_000
_VIRTUAL_MIC_NAME = "echo-streamer-mic"
_PROCESSING_OFF = {name: {"exact": False} for name in ("autoGainControl", "echoCancellation", "noiseSuppression")}

_daily_users = 0


def _daily_init() -> None:
    global _daily_users
    from daily import Daily, LogLevel

    if _daily_users == 0:
        Daily.init()
        Daily.set_log_level(LogLevel.Off)
    _daily_users += 1


def _daily_deinit() -> None:
    global _daily_users
    from daily import Daily

    _daily_users -= 1
    if _daily_users == 0:
        Daily.deinit()


class DailyMicrophone:
    """A mono PCM16 microphone at ``rate`` Hz, published to a Daily room once :meth:`join` succeeds.

    ``transport="custom-track"`` writes into a ``daily.CustomAudioSource`` wrapped in a
    ``CustomAudioTrack`` and used as the microphone; it paces itself in real time even when no
    room is joined. ``"virtual-mic"`` uses ``Daily.create_microphone_device`` (one per process),
    which drops audio until a join completes, so it needs a room. ``"app-message"`` paces the
    frames through a custom audio source like ``"custom-track"`` but publishes no microphone: the
    audio goes to the room as app messages (:mod:`.appmessage`), sent by the caller.

    ``on_event(name, fields)`` receives call state, participant and app-message events; it is
    called on SDK threads and must not block.
    """

    def __init__(self, rate: int, transport: str = "custom-track", bitrate: int = DEFAULT_BITRATE,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        from daily import CustomAudioSource, CustomAudioTrack, Daily

        _daily_init()
        self.transport = transport
        self._bitrate = bitrate
        self._on_event = on_event or (lambda name, fields: None)
        self._client: Any = None
        self._joined = False
        self._join_over = False  # the SDK has answered the join (whether or not we still waited)
        self._track: Any = None
        if transport != "virtual-mic":
            # While nothing is written, the source sends silence by itself (auto_silence, the
            # default since daily-python 0.27, asked for explicitly here): the track stays alive
            # without a wakeup of ours every 10 ms.
            self._source: Any = CustomAudioSource(rate, 1, auto_silence=True)
            self._track = CustomAudioTrack(self._source)
            # daily-python 0.36 rejects customConstraints beside customTrack ("unknown keys"),
            # so processing can only be switched off for the virtual microphone.
            self._mic_settings: dict[str, Any] = {"customTrack": {"id": self._track.id}}
        else:
            self._source = Daily.create_microphone_device(_VIRTUAL_MIC_NAME, sample_rate=rate, channels=1,
                                                          non_blocking=True)
            self._mic_settings = {"deviceId": _VIRTUAL_MIC_NAME, "customConstraints": _PROCESSING_OFF}

    def _forward_event(self, name: str, fields: dict[str, Any]) -> None:
        # A client abandoned mid-join (see close) reports its join's end up to ~20 s later
        # ("left" among it), which is no news of this microphone's call any more.
        if self._source is not None:
            self._on_event(name, fields)

    @property
    def sends_silence_when_idle(self) -> bool:
        """Whether the SDK keeps the microphone alive with silence while nothing is written
        (a custom audio source does; a virtual microphone is fed silence by the caller)."""
        return self.transport != "virtual-mic"

    def write(self, frame: bytes, completion: Callable[[int], None]) -> None:
        """Hand one frame to the SDK without blocking; ``completion`` fires when it is consumed."""
        self._source.write_frames(frame, completion=completion)

    async def join(self, url: str, timeout: float, meeting_token: str | None = None) -> None:
        """Join ``url`` with our track as the microphone; raise :class:`JoinError` on failure or timeout."""
        from daily import CallClient

        joined, answered = sdk_answer(asyncio.get_running_loop())

        def on_join(_data: Any, error: str | None) -> None:
            self._join_over = True
            answered(error)

        self._client = CallClient(event_handler=_make_event_handler(self._forward_event))
        self._client.join(url, meeting_token=meeting_token, client_settings=self.client_settings(), completion=on_join)
        try:
            error = await asyncio.wait_for(joined, timeout)
        except TimeoutError:
            raise JoinError(f"could not join {url}: no answer within {timeout:g} s") from None
        if error:
            raise JoinError(f"could not join {url}: {join_failure_reason(error)}")
        self._joined = True

    async def close(self) -> None:
        """Leave, release and shut the SDK down, in the order that neither hangs nor aborts.

        The caller must have waited for every pending write's completion first.
        """
        if self._client is not None:
            if self._joined:
                left, answered = sdk_answer(asyncio.get_running_loop())
                self._client.leave(completion=answered)
                await left
                self._client.release()
            elif self._join_over:  # a join that failed: it left by itself
                self._client.release()
            else:
                _park(self._client)
            self._client = None
        self._track = None
        self._source = None
        _daily_deinit()

    def send_app_message(self, message: Any, on_sent: Callable[[str | None], None]) -> None:
        """Broadcast ``message`` to the room without blocking.

        ``on_sent(error)`` fires once, with None on success; on an SDK thread when the message
        went to the SDK, at once when no room is joined.
        """
        if self._client is None or not self._joined:
            on_sent("not joined to a room")
            return
        self._client.send_app_message(message, None, completion=on_sent)

    def client_settings(self) -> dict[str, Any]:
        """What :meth:`join` hands the SDK: camera off; our track (or the virtual microphone, with
        echo cancellation, noise suppression and auto gain off) published as the microphone,
        mono at the Opus bitrate; nothing published for the app-message transport."""
        if self.transport == "app-message":
            return {"inputs": {"camera": False, "microphone": False},
                    "publishing": {"camera": {"isPublishing": False}, "microphone": {"isPublishing": False}}}
        return {
            "inputs": {"camera": False, "microphone": {"isEnabled": True, "settings": self._mic_settings}},
            "publishing": {
                "camera": {"isPublishing": False},
                "microphone": {"isPublishing": True,
                               "sendSettings": {"channelConfig": "mono", "bitrate": self._bitrate}},
            },
        }


def _park(client: Any) -> None:
    """Keep ``client``, whose join we gave up on, alive for good. Its join still runs: leave(),
    release() and even its destructor would wait for it (~20 s for an unreachable room), and once
    ``Daily.deinit()`` has run, destroying it aborts the process (a Rust panic, seen at exit).
    Nothing was written through it, so it is never destroyed, and the process may exit."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(client))


def sdk_answer(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future[str | None], Callable[[str | None], None]]:
    """A future for an SDK call's answer, and the completion to hand the SDK: called on any
    thread with the error (None: done), it resolves the future on ``loop``, once."""
    answer: asyncio.Future[str | None] = loop.create_future()

    def resolve(error: str | None) -> None:
        if not answer.done():
            answer.set_result(error)

    def complete(error: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits any more
            loop.call_soon_threadsafe(resolve, error)

    return answer, complete


def _make_event_handler(on_event: Callable[[str, dict[str, Any]], None]) -> Any:
    from daily import EventHandler

    class Handler(EventHandler):  # type: ignore[misc]
        def on_call_state_updated(self, state: str) -> None:
            on_event("call_state", {"state": state})

        def on_participant_joined(self, participant: Mapping[str, Any]) -> None:
            on_event("participant_joined", {"participant": _participant_summary(participant)})

        def on_participant_left(self, participant: Mapping[str, Any], reason: str) -> None:
            on_event("participant_left", {"participant": _participant_summary(participant), "reason": reason})

        def on_app_message(self, message: Any, sender: str) -> None:
            on_event("app_message", {"message": message, "sender": sender})

        def on_error(self, message: str) -> None:
            on_event("sdk_error", {"message": message})

    return Handler()


def _participant_summary(participant: Mapping[str, Any]) -> dict[str, Any]:
    info = participant.get("info", {})
    return {"id": participant.get("id"), "user_name": info.get("userName"), "is_local": info.get("isLocal")}


def join_failure_reason(error: str) -> str:
    """The SDK's join error in words. It is a Rust debug dump such as
    ``Connection(Api(RoomLookup(RoomInfoFetchFailed(Get(...Custom { kind: Uncategorized, error:
    "failed to lookup address information: ..." })))))``: its innermost quoted message, else its
    innermost call (``RoomLookup(RoomNotFound)`` -> "room not found", ``Status(404)`` -> "status
    404"); a plain message as it is."""
    quoted = re.findall(r'error: "((?:[^"\\]|\\.)*)"', error)
    if quoted:
        return quoted[-1].replace('\\"', '"')
    calls = re.findall(r"(\w+)\(([^()]*)\)", error)
    if not calls:
        return error
    name, argument = calls[-1]
    if re.fullmatch(r"[A-Z][A-Za-z]+", argument):
        return _words(argument)
    return f"{_words(name)} {argument}".strip()


def _words(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()
