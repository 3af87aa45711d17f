"""Tavus app messages: audio echo as a transport (``--transport app-message``), the quickstart's
echo message, and the events Tavus sends back.

The transport runs offline through the real SDK (the messages cannot reach a room, so each one
is logged with ``--message-log`` and counted as failed); the log is compared with the frames
``render`` makes of the same files.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import cli_command, offline_env, read_events, rendered, wait_for_event

from echo_streamer.dsp.pipeline import OutputFormat
from echo_streamer.output.appmessage import MAX_MESSAGE_BYTES, audio_echo_message, chunk_bytes
from echo_streamer.output.tavus import echo_message, received_event

CONVERSATION = "c0ffee123"


def read_messages(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def echo_audio(messages: list[dict[str, Any]]) -> np.ndarray:
    return np.frombuffer(b"".join(base64.b64decode(m["properties"]["audio"]) for m in messages), dtype="<i2")


def run_play(tmp_path: Path, *args: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages, events = tmp_path / "messages.jsonl", tmp_path / "events.jsonl"
    result = subprocess.run(cli_command("play", "--transport", "app-message", "--conversation-id", CONVERSATION,
                                        "--message-log", messages, "--events", events, *args),
                            capture_output=True, text=True, env=offline_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    return read_messages(messages), read_events(events)


@pytest.mark.parametrize(("rate", "frame_ms"), [(24_000, 10), (16_000, 20)])
def test_each_segment_goes_out_whole_under_one_inference_id(rate: int, frame_ms: int, speech: Path,
                                                           stereo_music: Path, tmp_path: Path) -> None:
    messages, events = run_play(tmp_path, speech, stereo_music, "--rate", str(rate), "--frame-ms", str(frame_ms))
    output = OutputFormat(rate, frame_ms)
    for message in messages:
        assert len(json.dumps(message).encode()) <= MAX_MESSAGE_BYTES
        assert message["event_type"] == "conversation.echo" and message["conversation_id"] == CONVERSATION
        assert message["properties"]["modality"] == "audio" and message["properties"]["sample_rate"] == rate
    ids = list(dict.fromkeys(m["properties"]["inference_id"] for m in messages))
    assert len(ids) == 2, "one inference_id per file"
    for inference_id, path in zip(ids, (speech, stereo_music), strict=True):
        mine = [m for m in messages if m["properties"]["inference_id"] == inference_id]
        assert [m["properties"]["done"] for m in mine] == [False] * (len(mine) - 1) + [True]
        reference, _result = rendered(path, output)
        assert np.array_equal(echo_audio(mine), reference.ravel()), "the messages carry exactly the frames played"
    finished = [e for e in events if e["event"] == "stream_finished"][0]
    assert finished["app_messages_failed"] == len(messages) and finished["app_messages_sent"] == 0, \
        "offline, no message can be sent, and each failure is counted"


def test_the_message_log_is_appended_to(speech: Path, tmp_path: Path) -> None:
    """--message-log adds to what the file holds (as --sdk-log does): a second run's messages
    follow the first's."""
    first, _events = run_play(tmp_path, speech)
    both, _events = run_play(tmp_path, speech, "--rate", "16000")
    assert len(both) > len(first) and both[:len(first)] == first
    assert {message["properties"]["sample_rate"] for message in both[len(first):]} == {16_000}


def test_a_cut_sends_conversation_interrupt_and_no_more_audio(speech: Path, tmp_path: Path) -> None:
    messages_path, events_path = tmp_path / "messages.jsonl", tmp_path / "events.jsonl"
    process = subprocess.Popen(cli_command("play", speech, "--transport", "app-message", "--conversation-id",
                                           CONVERSATION, "--message-log", messages_path, "--events", events_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=offline_env())
    wait_for_event(events_path, "item_started", process)
    time.sleep(0.3)
    process.send_signal(signal.SIGUSR1)
    wait_for_event(events_path, "interrupt_done", process)
    assert process.wait(30) == 0
    messages = read_messages(messages_path)
    assert messages[-1] == {"message_type": "conversation", "event_type": "conversation.interrupt",
                            "conversation_id": CONVERSATION}
    audio = messages[:-1]
    assert audio and all(not m["properties"]["done"] for m in audio), "a cut segment is never marked done"
    position_ms = [e for e in read_events(events_path) if e["event"] == "interrupt_done"][0]["position_ms"]
    assert len(echo_audio(audio)) <= position_ms * 24, "nothing beyond what played before the cut is sent"


@pytest.mark.parametrize("rate", [16_000, 24_000])
@pytest.mark.parametrize("frame_ms", [10, 20])
def test_messages_are_as_large_as_fit_under_the_limit(rate: int, frame_ms: int) -> None:
    output = OutputFormat(rate, frame_ms)
    conversation = "c" * 40
    size = chunk_bytes(conversation, rate, output.frame_bytes)
    assert size % output.frame_bytes == 0

    def encoded(pcm_bytes: int) -> int:
        return len(json.dumps(audio_echo_message(conversation, b"\x7f" * pcm_bytes, rate, "x" * 30, False)))

    assert encoded(size) <= MAX_MESSAGE_BYTES < encoded(size + output.frame_bytes)


def test_echo_message_is_the_quickstarts() -> None:
    """The fields the Tavus quickstart forwards, with its defaults, in its order."""
    message = echo_message("c1", {"modality": "text", "text": "Hello there!", "done": "true", "extra": 1})
    assert message == {"message_type": "conversation", "event_type": "conversation.echo", "conversation_id": "c1",
                       "properties": {"modality": "text", "text": "Hello there!", "audio": None,
                                      "sample_rate": 16000, "inference_id": None, "done": "true"}}


@pytest.mark.parametrize(("event_type", "role", "name"), [
    ("conversation.replica.started_speaking", None, "replica_started_speaking"),
    ("conversation.replica.stopped_speaking", None, "replica_stopped_speaking"),
    ("conversation.started_speaking", "replica", "replica_started_speaking"),
    ("conversation.stopped_speaking", "replica", "replica_stopped_speaking"),
    ("conversation.started_speaking", "user", "user_started_speaking"),
    ("conversation.utterance", None, "tavus_event"),
    ("conversation.replica_interrupted", None, "tavus_event"),
])
def test_tavus_events_get_one_name_in_either_naming(event_type: str, role: str | None, name: str) -> None:
    properties: dict[str, Any] = {"inference_id": "inf-1", "duration": 1.5, "interrupted": False}
    if role:
        properties["role"] = role
    event = received_event({"message_type": "conversation", "event_type": event_type, "conversation_id": "c1",
                            "seq": 7, "timestamp": "2026-12-03T10:00:00Z", "properties": properties})
    assert event == {"event": name, "event_type": event_type, "seq": 7, "timestamp": "2026-12-03T10:00:00Z",
                     "conversation_id": "c1", "inference_id": "inf-1", "properties": properties}


@pytest.mark.parametrize("message", ["hello", {"message_type": "system"}, {"message_type": "conversation"},
                                     {"message_type": "conversation", "event_type": 5}])
def test_other_app_messages_are_not_tavus_events(message: Any) -> None:
    assert received_event(message) is None
