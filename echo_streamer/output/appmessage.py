"""Audio (base64) echo: a segment's frames as Tavus ``conversation.echo`` app messages.

The second transport (``transport="app-message"``): the replica gets the same PCM16 frames the
microphone track would carry, base64-encoded in app messages, sent as they are handed to the
SDK, so they stay paced in real time by the same clock.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

from .tavus import interrupt_message

# Daily refuses app messages over about 4 KB; keep every encoded message at or under this.
MAX_MESSAGE_BYTES = 4000

Send = Callable[[dict[str, Any]], None]


def audio_echo_message(conversation_id: str | None, pcm: bytes, rate: int, inference_id: str,
                       done: bool) -> dict[str, Any]:
    """``conversation.echo`` carrying raw PCM16 mono (no header) as base64."""
    return {"message_type": "conversation", "event_type": "conversation.echo", "conversation_id": conversation_id,
            "properties": {"modality": "audio", "audio": base64.b64encode(pcm).decode("ascii"),
                           "sample_rate": rate, "inference_id": inference_id, "done": done}}


def chunk_bytes(conversation_id: str | None, rate: int, frame_bytes: int) -> int:
    """The most PCM (whole frames) one message can carry within ``MAX_MESSAGE_BYTES``."""
    empty = audio_echo_message(conversation_id, b"", rate, _new_inference_id(), False)
    budget = MAX_MESSAGE_BYTES - len(json.dumps(empty).encode())
    frames = (budget * 3 // 4) // frame_bytes
    if frames < 1:
        raise ValueError(f"a {frame_bytes}-byte frame does not fit in a {MAX_MESSAGE_BYTES}-byte app message")
    return frames * frame_bytes


class AppMessageEcho:
    """Turns the frames handed to the SDK into ``conversation.echo`` messages for ``send``.

    :meth:`handed` takes each frame with what it was (``Playout.handed_kind``). A segment's
    audio is collected into messages as large as fit under Daily's limit, all with one
    ``inference_id``; its end sends what is left with ``done: true``. A cut sends nothing more of
    it and sends ``conversation.interrupt`` instead. Silence between segments is not sent.
    ``send`` is called on whatever thread calls :meth:`handed` and must not block.
    """

    def __init__(self, send: Send, conversation_id: str | None, rate: int, frame_bytes: int) -> None:
        self._send = send
        self._conversation_id = conversation_id
        self._rate = rate
        self._chunk = chunk_bytes(conversation_id, rate, frame_bytes)
        self._pending = b""
        self._inference_id: str | None = None

    def handed(self, kind: str, pcm: bytes) -> None:
        if kind == "audio":
            if self._inference_id is None:
                self._inference_id = _new_inference_id()
            self._pending += pcm
            if len(self._pending) >= self._chunk:
                self._flush(done=False)
        elif kind == "end" and self._inference_id is not None:
            self._flush(done=True)
        elif kind in ("fade", "cut"):
            self._pending, self._inference_id = b"", None
            self._send(interrupt_message(self._conversation_id or ""))

    def _flush(self, done: bool) -> None:
        assert self._inference_id is not None
        self._send(audio_echo_message(self._conversation_id, self._pending, self._rate, self._inference_id, done))
        self._pending = b""
        if done:
            self._inference_id = None


def _new_inference_id() -> str:
    return f"echo-streamer-{uuid.uuid4().hex[:16]}"
