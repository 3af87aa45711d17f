"""``echo-streamer daemon`` over real HTTP on loopback, streaming offline through the real SDK.

Each test starts the daemon as users do (a subprocess, ``--listen 127.0.0.1:0``) and talks to it
with the standard library's HTTP client; the client commands are run as subprocesses too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (arun, cli_command, frames_of, locate, offline_env, read_events, read_pcm, rendered, run, tone,
                      unused_port, wait_for_event, wav_header)

from echo_streamer import StreamerConfig
from echo_streamer.daemon import service
from echo_streamer.dsp.pipeline import OutputFormat
from echo_streamer.renderer import render

RATE = 24_000
FRAME = RATE // 100


class Daemon:
    """A running ``echo-streamer daemon`` subprocess and an HTTP client for it."""

    def __init__(self, tmp_path: Path, *args: str | Path, env: dict[str, str] | None = None,
                 token: str | None = None) -> None:
        self.events_path, self.capture = tmp_path / "events.jsonl", tmp_path / "capture.wav"
        self.token = token
        self.process = subprocess.Popen(
            cli_command("daemon", "--listen", "127.0.0.1:0", "--events", self.events_path,
                        "--capture", self.capture, *args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or offline_env())
        assert self.process.stderr is not None
        line = self.process.stderr.readline()
        found = re.search(r"listening on (http://\S+)", line)
        assert found, f"no address announced: {line!r} {self.process.stderr.read() if self.process.poll() else ''}"
        self.url = found.group(1)
        self.stderr_lines = [line]

    def request(self, method: str, path: str, body: Any = None, *, data: bytes | Any = None,
                headers: dict[str, str] | None = None, timeout: float = 20) -> tuple[int, Any]:
        """(status, parsed JSON or text) of one request; HTTP errors are returned, not raised."""
        headers = dict(headers or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        if body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, text = response.status, response.read().decode()
                content_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, text, content_type = error.code, error.read().decode(), error.headers.get("Content-Type", "")
        return status, json.loads(text) if content_type.startswith("application/json") else text

    def events(self) -> list[dict[str, Any]]:
        return read_events(self.events_path)

    def wait_for(self, name: str, count: int = 1, timeout: float = 20) -> None:
        wait_for_event(self.events_path, name, self.process, count, timeout)

    def stop(self, timeout: float = 10) -> tuple[int, float, str]:
        """SIGTERM; (exit status, seconds it took, the rest of stderr)."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        _stdout, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, time.monotonic() - began, stderr


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    """An allowed directory holding a 1 s tone, a 0.6 s one and a FIFO."""
    import soundfile

    directory = tmp_path / "audio"
    directory.mkdir()
    soundfile.write(directory / "one.wav", tone(48_000, 1.0, 440), 48_000, subtype="PCM_16")
    soundfile.write(directory / "short.wav", tone(16_000, 0.6, 660), 16_000, subtype="PCM_16")
    os.mkfifo(directory / "tts.fifo")  # no writer: playing it by path would hold the decoder
    return directory


@pytest.fixture
def daemon(tmp_path: Path, audio_dir: Path) -> Iterator[Daemon]:
    running = Daemon(tmp_path, "--allow-dir", audio_dir)
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def audible_frames(capture: Path) -> int:
    return int((np.abs(frames_of(read_pcm(capture, RATE), FRAME)).max(axis=1) > 0).sum())


# -- play, status, events ------------------------------------------------------------------

def test_play_queues_in_order_and_plays_in_real_time(daemon: Daemon) -> None:
    began = time.monotonic()
    first = daemon.request("POST", "/v1/play", {"path": "one.wav"})
    second = daemon.request("POST", "/v1/play", {"path": "short.wav", "id": "mine"})
    assert first == (202, {"id": "seg-1", "state": "queued"})
    assert second == (202, {"id": "mine", "state": "queued"})
    status = daemon.request("GET", "/v1/status")[1]
    assert [entry["id"] for entry in [status["current"], *status["queue"]] if entry] == ["seg-1", "mine"]
    daemon.wait_for("item_finished", 2)
    elapsed = time.monotonic() - began
    assert 1.6 + 0.3 <= elapsed < 1.6 + 0.3 + 1.5, f"1.6 s of audio and a 0.3 s gap took {elapsed:.2f} s"
    finished = [event for event in daemon.events() if event["event"] == "item_finished"]
    assert [(event["id"], event["position_ms"], event["interrupted"]) for event in finished] == [
        ("seg-1", 1000.0, False), ("mine", 600.0, False)]
    code, took, _stderr = daemon.stop()
    assert code == 0
    assert audible_frames(daemon.capture) == 160


def test_automatic_ids_skip_those_clients_chose(daemon: Daemon) -> None:
    ids = [daemon.request("POST", "/v1/play", body)[1]["id"] for body in (
        {"path": "one.wav", "id": "seg-2"}, {"path": "short.wav"}, {"path": "short.wav"})]
    assert ids == ["seg-2", "seg-1", "seg-3"]


def test_automatic_ids_skip_those_clients_chose_also_once_played(daemon: Daemon) -> None:
    """Event history never holds two segments under one automatic id."""
    assert daemon.request("POST", "/v1/play", {"path": "short.wav", "id": "seg-3"})[0] == 202
    daemon.wait_for("item_finished")
    ids = [daemon.request("POST", "/v1/play", {"path": "short.wav"})[1]["id"] for _ in range(3)]
    assert ids == ["seg-1", "seg-2", "seg-4"]


def test_status_reports_call_queue_and_counters(daemon: Daemon) -> None:
    status = daemon.request("GET", "/v1/status")[1]
    assert status["call"] == {"state": "offline", "room": None, "offline": True, "join_attempts": 1, "error": None,
                              "participants": []}
    assert status["current"] is None and status["queue"] == [] and status["live"] is None
    time.sleep(0.5)
    counters = daemon.request("GET", "/v1/status")[1]["counters"]
    # Idle, nothing is handed to the SDK: its custom audio source sends silence by itself.
    assert counters["frames_sent"] == 0 and counters["resting"] is True
    assert counters["underruns"] == 0 and counters["lead_frames"] == 1 and counters["last_error"] is None
    assert "echo_streamer_resting 1\n" in daemon.request("GET", "/metrics")[1]


def test_events_stream_as_server_sent_events(daemon: Daemon) -> None:
    received: list[str] = []
    request = urllib.request.Request(daemon.url + "/v1/events")
    response = urllib.request.urlopen(request, timeout=20)
    assert response.headers["Content-Type"] == "text/event-stream"

    def read() -> None:
        for line in response:
            received.append(line.decode().rstrip("\n"))
            if line.startswith(b"data: ") and b'"event": "item_finished"' in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    daemon.request("POST", "/v1/play", {"path": "short.wav"})
    reader.join(10)
    response.close()
    names = [line.split(": ", 1)[1] for line in received if line.startswith("event: ")]
    assert names[:2] == ["item_started", "item_finished"], received
    data = [json.loads(line[len("data: "):]) for line in received if line.startswith("data: ")]
    assert [event["event"] for event in data[:2]] == names[:2]
    assert data[1]["id"] == "seg-1" and data[1]["position_ms"] == 600.0 and data[1]["interrupted"] is False


def test_an_event_stream_whose_client_went_away_is_let_go_of_within_seconds(daemon: Daemon) -> None:
    """Its subscription ends within GONE_CHECK_S of the client's going, while nothing is sent to
    it (not at the next keepalive, 15 s on): status counts the subscribers there are."""
    import socket

    from echo_streamer.daemon.app import GONE_CHECK_S

    def subscribers() -> int:
        return int(daemon.request("GET", "/v1/status")[1]["counters"]["event_subscribers"])

    before = subscribers()
    host, port = daemon.url[len("http://"):].split(":")
    clients = [socket.create_connection((host, int(port))) for _ in range(3)]
    for client in clients:
        client.sendall(b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert client.recv(200).startswith(b"HTTP/1.1 200"), "no event stream"
    assert subscribers() == before + 3
    for client in clients:
        client.close()
    deadline = time.monotonic() + 3 * GONE_CHECK_S
    while subscribers() != before:
        assert time.monotonic() < deadline, f"{subscribers() - before} gone clients still counted"
        time.sleep(0.1)


def test_metrics_are_prometheus_text(daemon: Daemon) -> None:
    daemon.request("POST", "/v1/play", {"path": "short.wav"})
    daemon.wait_for("item_finished")
    status, text = daemon.request("GET", "/metrics")
    assert status == 200
    samples = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples["echo_streamer_segments_finished_total"] == 1
    assert samples["echo_streamer_frames_played_total"] >= 60
    assert samples['echo_streamer_call_state{state="offline"}'] == 1
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert helped == {name.split("{")[0] for name in samples}, "every sample has HELP and TYPE lines"


def test_openapi_documents_every_route(daemon: Daemon) -> None:
    from echo_streamer.daemon.app import create_app
    from echo_streamer.daemon.service import Daemon as Service
    from echo_streamer.daemon.service import DaemonConfig
    from echo_streamer.engine.streamer import StreamerConfig

    status, spec = daemon.request("GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    assert spec["security"] == [], "this daemon asks for no token"
    assert not [path for path, operations in spec["paths"].items() for operation in operations.values()
                if "401" in operation["responses"]], "no route answers 401 without a token"
    app = create_app(Service(DaemonConfig(StreamerConfig())))
    routes = {(route.resource.canonical, route.method.lower()) for route in app.router.routes()
              if route.method != "HEAD"}
    documented = {(path, method) for path, operations in spec["paths"].items() for method in operations}
    assert routes == documented


def test_openapi_documents_the_answers_the_server_gives(daemon: Daemon) -> None:
    """Requests that draw each kind of answer from each route: every status is documented for
    its route, and a JSON answer has exactly the fields its schema names (where it names them)."""
    spec = daemon.request("GET", "/openapi.json")[1]
    raw = "/v1/stream?format=s16le&rate=24000&channels=1"
    asked = [
        ("POST", "/v1/play", {"path": "short.wav", "id": "a"}), ("POST", "/v1/play", {"path": "short.wav", "id": "a"}),
        ("POST", "/v1/play", {"path": "nope.wav"}), ("POST", "/v1/play", {"path": "/etc/passwd"}),
        ("POST", "/v1/play", {"path": 5}), ("POST", "/v1/play", b"x" * (2 << 20)),
        ("POST", raw + "&id=a", b"\1\0" * 2400), ("POST", raw + "&id=b&wait=1", b"\1\0" * 2400),
        ("POST", "/v1/stream?format=mp9", b"\0"), ("POST", "/v1/stream?wait=maybe", b"\0"),
        ("POST", "/v1/stream?rate=24000", b"\0"), ("POST", "/v1/interrupt", {"mode": "now"}),
        ("POST", "/v1/interrupt", {"mode": "later"}), ("POST", "/v1/live/start", {"device": True}),
        ("POST", "/v1/live/stop", None), ("GET", "/v1/status", None), ("GET", "/metrics", None),
        ("POST", "/send_text_message", {"properties": {"text": "hi"}}), ("GET", "/openapi.json", None),
        ("POST", "/v1/play?wait=1", {"path": "short.wav"}),  # last: it waits for the queue to play out
    ]
    seen = set()
    for method, path, body in asked:
        if isinstance(body, bytes):
            status, answer = daemon.request(method, path, data=body, headers={"Content-Type": "application/json"}
                                            if path == "/v1/play" else {})
        else:
            status, answer = daemon.request(method, path, body, data=b"" if body is None and method == "POST" else None)
        route = path.split("?")[0]
        documented = spec["paths"][route][method.lower()]["responses"]
        assert str(status) in documented, (method, path, status, answer)
        schema = documented[str(status)].get("content", {}).get("application/json", {}).get("schema", {})
        if "properties" in schema:
            assert set(answer) <= set(schema["properties"]), (route, status, set(answer) - set(schema["properties"]))
        seen.add((route, status))
    assert {("/v1/play", 202), ("/v1/play", 200), ("/v1/play", 409), ("/v1/play", 404), ("/v1/play", 403),
            ("/v1/play", 400), ("/v1/play", 413), ("/v1/stream", 200), ("/v1/stream", 409),
            ("/v1/stream", 400)} <= seen, seen


# -- bad requests ----------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "status", "says"), [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"id": "x"}', 400, "'path' is required"),
    (b'{"path": 5}', 400, "'path' must be a string, not a whole number"),
    (b'{"path": "../../../etc/passwd"}', 403, "outside the allowed directories"),
    (b'{"path": "/etc/passwd"}', 403, "outside the allowed directories"),
    (b'{"path": "missing.wav"}', 404, "no such file"),
    (b'{"path": "one.wav", "id": ""}', 400, "id must be"),
    (b'{"path": "\xff\xfe"}', 400, "malformed JSON"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "malformed JSON"),
    (b'{"path": "\\ud800"}', 400, "cannot be resolved"),
    (b'{"path": "' + b"a" * 5000 + b'"}', 400, "cannot be resolved: File name too long"),
    (b'{"path": ""}', 400, "is not a valid path"),
    (b'{"path": "a\\u0000b"}', 400, "is not a valid path"),
    (b'{"path": "."}', 400, "is a directory"),
    (b'{"path": "tts.fifo"}', 400, "is not a regular file"),
], ids=["not-json", "array", "no-path", "path-number", "traversal", "absolute-outside", "missing", "empty-id",
        "not-utf-8", "nested-too-deep", "lone-surrogate", "name-too-long", "empty-path", "nul", "directory", "fifo"])
def test_play_refuses_bad_requests_with_a_message(daemon: Daemon, body: bytes, status: int, says: str) -> None:
    answer = daemon.request("POST", "/v1/play", data=body, headers={"Content-Type": "application/json"})
    assert answer[0] == status and says in answer[1]["error"], answer


@pytest.mark.parametrize("body", [{"device": True}, {"device": 1.5}, {"device": ["system"]},
                                  {"device": "system", "channels": True}, {"channels": 0},
                                  {"input_rate": 0}, {"input_rate": 400_000}])
def test_live_start_refuses_a_device_or_field_of_the_wrong_type(daemon: Daemon, body: dict[str, object]) -> None:
    """JSON true is not device index 1 (bool is an int in Python), nor a channel count; 0 is not
    "the device's default"."""
    status, answer = daemon.request("POST", "/v1/live/start", body)
    assert status == 400 and "must be" in answer["error"], answer


@pytest.mark.parametrize("path", ["/v1/play", "/v1/interrupt", "/send_text_message",
                                  "/v1/stream?format=s16le&rate=24000&channels=1"])
def test_a_body_its_content_encoding_does_not_decode_is_a_bad_request(daemon: Daemon, path: str) -> None:
    """A body declared gzip that is not: 400 with the reason (not a 500), on JSON routes and
    uploads alike; an upload's segment fails with it in an error event."""
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    status, answer = daemon.request("POST", path, data=b'{"path": "short.wav"}', headers=headers)
    assert status == 400 and "the body cannot be read" in answer["error"], answer
    if path.startswith("/v1/stream"):
        daemon.wait_for("item_finished")
        (error,) = [event for event in daemon.events() if event["event"] == "error"]
        assert "the body cannot be read" in error["message"], error
    _code, _took, stderr = daemon.stop()
    assert "Unhandled exception" not in stderr, stderr


def test_odd_charsets_and_symlink_loops_are_bad_requests(daemon: Daemon, audio_dir: Path) -> None:
    headers = {"Content-Type": "application/json; charset=bogus"}
    status, answer = daemon.request("POST", "/v1/play", data=b'{"path": "short.wav"}', headers=headers)
    assert status == 400 and "malformed JSON" in answer["error"], answer
    (audio_dir / "loop1").symlink_to(audio_dir / "loop2")
    (audio_dir / "loop2").symlink_to(audio_dir / "loop1")
    status, answer = daemon.request("POST", "/v1/play", {"path": "loop1"})
    assert status == 400 and "cannot be resolved" in answer["error"], answer
    status, answer = daemon.request("POST", "/v1/interrupt", {"mode": "next_pause", "max_wait_ms": 10 ** 400})
    assert status == 400 and "max_wait_ms must be from 0 to 60000" in answer["error"], answer
    body = b'{"properties": {"text": "' + b"x" * (2 << 20) + b'"}}'
    status, answer = daemon.request("POST", "/send_text_message", data=body)
    assert status == 413 and "too large" in answer["error"], answer
    assert daemon.request("GET", "/v1/status")[0] == 200


def test_a_soft_interrupt_may_wait_longer_than_the_request_limit(tmp_path: Path, audio_dir: Path) -> None:
    """/v1/interrupt answers once its cut has played: a next_pause on a tone (no pause in it) with
    max_wait_ms beyond --request-timeout answers with the deadline cut, not a 503."""
    import soundfile

    soundfile.write(audio_dir / "long.wav", tone(16_000, 5.0, 440), 16_000, subtype="PCM_16")
    daemon = Daemon(tmp_path, "--allow-dir", audio_dir, "--request-timeout", "0.5")
    try:
        daemon.request("POST", "/v1/play", {"path": "long.wav"})
        daemon.wait_for("item_started")
        status, answer = daemon.request("POST", "/v1/interrupt", {"mode": "next_pause", "max_wait_ms": 1500})
        assert status == 200 and answer["cut"] == "deadline" and answer["latency_ms"] >= 1500, answer
    finally:
        assert daemon.stop()[0] == 0


def test_symlink_out_of_the_allowed_dir_is_refused(daemon: Daemon, audio_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.wav"
    outside.write_bytes((audio_dir / "short.wav").read_bytes())
    (audio_dir / "link.wav").symlink_to(outside)
    status, answer = daemon.request("POST", "/v1/play", {"path": "link.wav"})
    assert status == 403 and "outside" in answer["error"]


def test_without_allow_dir_paths_are_refused_and_uploads_play(tmp_path: Path, audio_dir: Path) -> None:
    daemon = Daemon(tmp_path)
    try:
        status, answer = daemon.request("POST", "/v1/play", {"path": str(audio_dir / "short.wav")})
        assert status == 403 and "--allow-dir" in answer["error"]
        status, answer = daemon.request("POST", "/v1/stream?wait=true", data=(audio_dir / "short.wav").read_bytes())
        assert status == 200 and answer["state"] == "finished" and answer["position_ms"] == 600.0
    finally:
        assert daemon.stop()[0] == 0


def test_a_bad_file_fails_its_segment_and_streaming_goes_on(daemon: Daemon, audio_dir: Path) -> None:
    (audio_dir / "text.wav").write_text("this is not audio\n")
    assert daemon.request("POST", "/v1/play", {"path": "text.wav"})[0] == 202
    assert daemon.request("POST", "/v1/play", {"path": "short.wav"})[0] == 202
    daemon.wait_for("item_finished", 2)
    errors = [event for event in daemon.events() if event["event"] == "error"]
    assert len(errors) == 1 and "text.wav" in errors[0]["message"] and "\n" not in errors[0]["message"]
    status = daemon.request("GET", "/v1/status")[1]
    assert status["counters"]["segments_failed"] == 1 and status["counters"]["segments_finished"] == 1
    assert status["counters"]["last_error"] == errors[0]["message"]


def test_interrupt_validates_its_body(daemon: Daemon) -> None:
    status, answer = daemon.request("POST", "/v1/interrupt", {"mode": "later"})
    assert status == 400 and "mode must be one of" in answer["error"]
    status, answer = daemon.request("POST", "/v1/interrupt", {"max_wait_ms": True})
    assert (status, answer["error"]) == (400, "'max_wait_ms' must be a whole number, not true or false")


# -- interrupts --------------------------------------------------------------------------------

def test_interrupt_cuts_the_segment_and_reports_where(daemon: Daemon) -> None:
    daemon.request("POST", "/v1/play", {"path": "one.wav"})
    daemon.request("POST", "/v1/play", {"path": "short.wav"})
    daemon.wait_for("item_started")
    time.sleep(0.3)
    status, answer = daemon.request("POST", "/v1/interrupt", {"mode": "now"})
    assert status == 200
    assert answer["id"] == "seg-1" and answer["cut"] == "now" and answer["dropped"] == ["seg-2"]
    assert 250 <= answer["position_ms"] <= 600, answer
    daemon.wait_for("idle")
    finished = [event for event in daemon.events() if event["event"] == "item_finished"]
    assert finished[0]["position_ms"] == answer["position_ms"] and finished[0]["interrupted"] is True
    assert daemon.request("POST", "/v1/interrupt", {})[1]["noop"] is True, "nothing left to cut"


def test_interrupt_keeps_the_queue_when_asked(daemon: Daemon) -> None:
    daemon.request("POST", "/v1/play", {"path": "one.wav"})
    daemon.request("POST", "/v1/play", {"path": "short.wav"})
    daemon.wait_for("item_started")
    answer = daemon.request("POST", "/v1/interrupt", {"clear_queue": False})[1]
    assert answer["id"] == "seg-1" and answer["dropped"] == []
    daemon.wait_for("item_finished", 2)
    assert [e["id"] for e in daemon.events() if e["event"] == "item_finished"] == ["seg-1", "seg-2"]


# -- uploads -----------------------------------------------------------------------------------

def slow_body(data: bytes, chunk: int, pause_s: float) -> Iterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start:start + chunk]
        time.sleep(pause_s)


def test_upload_plays_while_it_uploads(daemon: Daemon, tmp_path: Path) -> None:
    """espeak-ng's streaming WAV, sent in 50 ms pieces in real time: the first audio is handed to the
    SDK long before the body ends, and all of it plays."""
    wav = run("espeak-ng", "--stdout", "Streaming over HTTP, as it is synthesised.")
    rate_bytes = 22_050 * 2
    sent_at: list[float] = []

    def body() -> Iterator[bytes]:
        yield from slow_body(wav, rate_bytes // 20, 0.05)
        sent_at.append(time.monotonic())

    status, answer = daemon.request("POST", "/v1/stream?id=tts", data=body())
    assert status == 200 and answer["id"] == "tts" and answer["bytes"] == len(wav)
    started = [event for event in daemon.events() if event["event"] == "item_started"]
    assert started and started[0]["id"] == "tts"
    assert sent_at[0] - started[0]["t"] > 1.0, "the segment started playing only after the upload ended"
    daemon.wait_for("item_finished")
    finished = [event for event in daemon.events() if event["event"] == "item_finished"][0]
    samples = (len(wav) - 44) // 2
    assert finished["interrupted"] is False
    assert abs(finished["position_ms"] - 1000 * samples / 22_050) <= 10 + 1000 * 200 / 22_050


def test_raw_upload_needs_rate_and_channels(daemon: Daemon) -> None:
    """Each refused at once, taking no segment id: the next upload has the next one."""
    pcm = (tone(22_050, 0.5) * 32767).astype("<i2").tobytes()
    status, before = daemon.request("POST", "/v1/stream?format=s16le&rate=22050&channels=1&wait=1", data=pcm)
    assert status == 200, before
    status, answer = daemon.request("POST", "/v1/stream?format=s16le", data=b"\0" * 100)
    assert status == 400 and "rate" in answer["error"]
    status, answer = daemon.request("POST", "/v1/stream?format=wav", data=b"\0" * 100)
    assert status == 400 and "format must be" in answer["error"]
    status, answer = daemon.request("POST", "/v1/stream?rate=22050", data=b"\0" * 100)
    assert status == 400 and "with 'auto' they come from the stream" in answer["error"]
    status, answer = daemon.request("POST", "/v1/stream?format=s16le&rate=%C2%B2&channels=1", data=b"\0" * 100)
    assert (status, answer["error"]) == (400, "rate must be a whole number from 8000 to 192000, not '\xb2'"), answer
    status, answer = daemon.request("POST", "/v1/stream?wait=maybe", data=b"\0" * 100)
    assert (status, answer["error"]) == (400, "wait must be true or false, not 'maybe'")
    status, answer = daemon.request("POST", "/v1/stream?format=s16le&rate=22050&channels=1&wait=1", data=pcm)
    assert status == 200 and answer["state"] == "finished" and answer["position_ms"] == 500.0
    assert int(answer["id"].removeprefix("seg-")) == int(before["id"].removeprefix("seg-")) + 1, (before, answer)


def test_wavs_uploaded_back_to_back_play_as_one_segment(daemon: Daemon) -> None:
    """One WAV per sentence, sent on as a TTS writes them (placeholder sizes): one segment, as long as all of them."""
    sentence = wav_header(rate=24_000, data_bytes=0x7FFFF000) + (tone(24_000, 0.3) * 32767).astype("<i2").tobytes()
    status, answer = daemon.request("POST", "/v1/stream?wait=1", data=sentence * 3)
    assert status == 200 and answer["state"] == "finished", answer
    assert answer["position_ms"] == 900.0


def test_an_upload_that_is_not_audio_fails_its_segment_by_id(daemon: Daemon) -> None:
    """Text uploaded as audio: ffmpeg cannot decode it, and the error names the upload's segment."""
    status, answer = daemon.request("POST", "/v1/stream?wait=1", data=b"not audio, just words from a broken TTS " * 40)
    assert status == 200 and answer["state"] == "failed", answer
    assert answer["error"].startswith(f"upload {answer['id']}: cannot decode"), answer
    daemon.wait_for("error")
    (error,) = [event for event in daemon.events() if event["event"] == "error"]
    assert error["item"] == f"upload {answer['id']}" and error["message"] == answer["error"]


def test_hard_interrupt_discards_the_rest_of_an_upload(daemon: Daemon) -> None:
    """The upload keeps coming after the cut: it is read and thrown away, and the next segment plays."""
    pcm = (tone(24_000, 4.0, 440) * 32767).astype("<i2").tobytes()
    result: list[tuple[int, Any]] = []
    uploader = threading.Thread(target=lambda: result.append(daemon.request(
        "POST", "/v1/stream?format=s16le&rate=24000&channels=1", data=slow_body(pcm, 4800, 0.1))))
    uploader.start()
    daemon.wait_for("item_started")
    time.sleep(0.5)
    answer = daemon.request("POST", "/v1/interrupt", {})[1]
    assert answer["id"] == "seg-1"
    daemon.request("POST", "/v1/play", {"path": "short.wav"})
    daemon.wait_for("item_finished", 2)
    uploader.join(10)
    assert result and result[0][0] == 200 and result[0][1]["state"] == "interrupted"
    assert result[0][1]["bytes"] == len(pcm)
    daemon.stop()
    played = audible_frames(daemon.capture)
    assert abs(played - (answer["position_ms"] / 10 + 60)) <= 2, "after the cut, only the next file played"


def test_a_stalled_upload_fails_its_segment(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, "--upload-idle-s", "0.5")
    try:
        def stalls() -> Iterator[bytes]:
            yield b"\0" * 4800
            time.sleep(2)
            yield b"\0" * 4800

        status, answer = daemon.request("POST", "/v1/stream?format=s16le&rate=24000&channels=1", data=stalls())
        assert status == 408 and answer["error"] == "upload seg-1: no bytes for 0.5 s", answer
        daemon.wait_for("item_finished")
        (finished,) = [event for event in daemon.events() if event["event"] == "item_finished"]
        assert finished["error"] == answer["error"] and finished["interrupted"] is False, finished
        errors = [event["message"] for event in daemon.events() if event["event"] == "error"]
        assert errors == [answer["error"]], "one error event, from the segment itself"
        counters = daemon.request("GET", "/v1/status")[1]["counters"]
        assert (counters["segments_failed"], counters["interrupts"]) == (1, 0), counters
        assert daemon.request("POST", "/v1/stream?wait=1&format=s16le&rate=24000&channels=1",
                              data=b"\1\0" * 2400)[1]["state"] == "finished", "the daemon streams on"
    finally:
        assert daemon.stop()[0] == 0


# -- security ----------------------------------------------------------------------------------

def test_a_token_is_required_on_every_request(tmp_path: Path) -> None:
    env = offline_env() | {"ECHO_STREAMER_TOKEN": "s3cret"}
    daemon = Daemon(tmp_path, env=env)
    try:
        for path in ("/v1/status", "/metrics", "/openapi.json", "/v1/events"):
            assert daemon.request("GET", path, headers={"Authorization": "Bearer nope"})[0] == 401
            assert daemon.request("GET", path, headers={"Authorization": ""})[0] == 401
        assert daemon.request("POST", "/v1/interrupt", {}, headers={"Authorization": "Bearer s3cre"})[0] == 401
        assert daemon.request("GET", "/v1/status", headers={"Authorization": "Bearer s3cret"})[0] == 200
        spec = daemon.request("GET", "/openapi.json", headers={"Authorization": "Bearer s3cret"})[1]
        assert spec["security"] == [{"bearer": []}]
        answers = {path: operation["responses"] for path, operations in spec["paths"].items()
                   for operation in operations.values()}
        assert all("401" in responses for responses in answers.values())
        # With a token, no web page or host check refuses (403): only /v1/play's own (outside --allow-dir).
        assert [path for path, responses in answers.items() if "403" in responses] == ["/v1/play"]
        # The scheme's name in any case; anything but Bearer is refused.
        assert daemon.request("GET", "/v1/status", headers={"Authorization": "bearer s3cret"})[0] == 200
        assert daemon.request("GET", "/v1/status", headers={"Authorization": "Basic s3cret"})[0] == 401
        assert daemon.request("GET", "/v1/status", headers={"Authorization": "Bearers3cret"})[0] == 401
    finally:
        daemon.stop()


def test_two_output_options_naming_one_file_is_a_usage_error(tmp_path: Path) -> None:
    """As for the streaming commands: each would corrupt the other."""
    same = tmp_path / "same.log"
    result = subprocess.run(cli_command("daemon", "--listen", "127.0.0.1:0", "--events", same, "--message-log", same),
                            capture_output=True, text=True, env=offline_env(), timeout=30)
    assert result.returncode == 2 and "--events and --message-log name the same file" in result.stderr, result.stderr
    assert not same.exists()


@pytest.mark.parametrize("token", [None, " \t"], ids=["none", "blank"])
def test_listening_beyond_loopback_needs_a_token(token: str | None, tmp_path: Path) -> None:
    env = offline_env() | ({} if token is None else {"ECHO_STREAMER_TOKEN": token})
    result = subprocess.run(cli_command("daemon", "--listen", "0.0.0.0:0"), capture_output=True, text=True,
                            env=env, timeout=30)
    assert result.returncode == 2
    assert "not loopback" in result.stderr and "token" in result.stderr


@pytest.mark.parametrize(("headers", "says"), [
    ({"Origin": "http://evil.example"}, "web page of http://evil.example"),
    ({"Origin": "null"}, "web page of null"),
    ({"Host": "rebind.evil.example:8765"}, "Host rebind.evil.example:8765 is not this machine's"),
], ids=["cross-site", "opaque-origin", "dns-rebinding"])
def test_without_a_token_requests_from_web_pages_are_refused(daemon: Daemon, headers: dict[str, str],
                                                             says: str) -> None:
    """A page in a local browser could otherwise make the replica speak (a form post needs no
    preflight) or, through DNS rebinding, read the status and events."""
    for method, path, body in (("POST", "/v1/play", b'{"path": "short.wav"}'), ("GET", "/v1/status", None)):
        status, answer = daemon.request(method, path, data=body, headers={"Content-Type": "text/plain", **headers})
        assert status == 403 and says in answer["error"], answer
    status = daemon.request("GET", "/v1/status")[1]
    assert status["current"] is None and status["queue"] == []
    local = {"Origin": daemon.url, "Host": daemon.url.removeprefix("http://")}
    assert daemon.request("GET", "/v1/status", headers=local)[0] == 200
    assert daemon.request("GET", "/v1/status", headers={"Host": "localhost"})[0] == 200


def test_the_events_client_tells_a_stopped_daemon_from_a_dead_one(tmp_path: Path) -> None:
    """The event stream's last event says the daemon stopped: the client exits 0; a stream that
    just ends (the daemon killed) is one line and status 2; Ctrl-C, how a watcher is stopped,
    exits 0 quietly."""
    for ending in ("stopped", "killed", "ctrl-c"):
        (tmp_path / ending).mkdir()
        daemon = Daemon(tmp_path / ending)
        watcher = subprocess.Popen(cli_command("events", "--daemon", daemon.url), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=offline_env())
        time.sleep(1.0)
        if ending == "stopped":
            daemon.stop()
        elif ending == "killed":
            daemon.process.kill()
            daemon.process.wait()
        else:
            watcher.send_signal(signal.SIGINT)
        _stdout, stderr = watcher.communicate(timeout=10)
        if ending == "ctrl-c":
            daemon.stop()
        if ending != "killed":
            assert watcher.returncode == 0 and stderr == "", (ending, stderr)
        else:
            assert watcher.returncode == 2 and "ended without the daemon saying it stopped" in stderr, stderr


def test_malformed_http_is_one_line_on_stderr(daemon: Daemon) -> None:
    """aiohttp answers 400 before any handler runs (or any token check); its log of each is one
    line, not a traceback a peer could fill the journal with."""
    import socket

    host, port = daemon.url.removeprefix("http://").split(":")
    for raw in (b"POST /v1/play HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
                b"POST /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(raw)
            assert connection.recv(100).startswith(b"HTTP/1.0 400 Bad Request")
    code, _took, stderr = daemon.stop()
    assert code == 0 and "Traceback" not in stderr, stderr
    assert [line for line in stderr.splitlines() if "Error handling request" in line] == [
        "echo-streamer: Error handling request from 127.0.0.1: Invalid character in Content-Length",
        "echo-streamer: Error handling request from 127.0.0.1: Invalid character in chunk size"], stderr


def test_a_path_swapped_for_a_symlink_after_it_was_queued_is_not_followed(daemon: Daemon, audio_dir: Path,
                                                                          tmp_path: Path) -> None:
    """Checked when it is accepted and again just before it is opened: a directory on its way
    replaced meanwhile by a symlink leading outside the allowed directories fails the segment."""
    import soundfile

    (audio_dir / "sub").mkdir()
    (audio_dir / "sub" / "x.wav").write_bytes((audio_dir / "short.wav").read_bytes())
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.wav").write_bytes((audio_dir / "one.wav").read_bytes())
    # Longer than the decoder runs ahead (1 s): it opens the next file only ~2 s from now.
    soundfile.write(audio_dir / "long.wav", tone(48_000, 3.0, 440), 48_000, subtype="PCM_16")
    daemon.request("POST", "/v1/play", {"path": "long.wav"})
    status, answer = daemon.request("POST", "/v1/play", {"path": "sub/x.wav", "id": "swapped"})
    assert status == 202, answer
    (audio_dir / "sub").rename(audio_dir / "sub.old")
    (audio_dir / "sub").symlink_to(tmp_path / "outside")
    daemon.wait_for("item_finished", 2)
    (finished,) = [e for e in daemon.events() if e["event"] == "item_finished" and e["id"] == "swapped"]
    assert finished["samples"] == 0 and "changed since it was queued" in finished["error"], finished


@pytest.mark.parametrize("events", [False, True], ids=["plain", "with-events-log"])
def test_a_busy_port_is_one_line_and_status_2(events: bool, daemon: Daemon, tmp_path: Path) -> None:
    """Also with ``--events``, whose writer waits for the event feed to end (it hung here once)."""
    port = daemon.url.rsplit(":", 1)[1]
    log = ["--events", tmp_path / "events.jsonl"] if events else []
    result = subprocess.run(cli_command("daemon", "--listen", f"127.0.0.1:{port}", *log), capture_output=True,
                            text=True, env=offline_env(), timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"echo-streamer: cannot listen on 127.0.0.1:{port}: "
                                                  "Address already in use"], result.stderr


# -- the Tavus quickstart's endpoint -------------------------------------------------------------

def test_send_text_message_answers_like_the_quickstart_when_offline(daemon: Daemon) -> None:
    body = {"message_type": "conversation", "event_type": "conversation.echo", "conversation_id": "c1",
            "properties": {"modality": "text", "text": "Hello there!", "done": "true"}}
    assert daemon.request("POST", "/send_text_message", body) == (400, {"error": "Not connected to a room"})


# -- shutdown and the call -----------------------------------------------------------------------

def test_sigterm_while_playing_uploading_and_watched_exits_0_within_3_s(daemon: Daemon) -> None:
    pcm = (tone(24_000, 5.0) * 32767).astype("<i2").tobytes()

    def upload() -> None:
        try:
            daemon.request("POST", "/v1/stream?format=s16le&rate=24000&channels=1", data=slow_body(pcm, 4800, 0.1))
        except urllib.error.URLError:
            pass  # the daemon went away mid-upload, as it should

    threading.Thread(target=upload, daemon=True).start()
    watcher = urllib.request.urlopen(daemon.url + "/v1/events", timeout=20)
    daemon.wait_for("item_started")
    code, took, stderr = daemon.stop()
    assert code == 0, stderr
    assert took < 3.0, f"took {took:.2f} s to exit"
    assert "Traceback" not in stderr and "panicked" not in stderr
    assert watcher.read().count(b"event: ") >= 1, "the event stream ended cleanly"
    events = daemon.events()
    assert [event["event"] for event in events][-2:] == ["stream_finished", "call_state"]
    assert events[-1]["state"] == "stopped"


def test_counters_never_go_back_while_the_daemon_stops(daemon: Daemon) -> None:
    """Status polled without pause through a SIGTERM while a file plays: the streamer's fade,
    drain and leave take a while, and its frames stay counted all along (Prometheus reads a
    counter that drops as a reset)."""
    assert daemon.request("POST", "/v1/play", {"path": "one.wav"})[0] == 202
    daemon.wait_for("item_started")
    seen: list[int] = []

    def poll() -> None:
        while True:
            try:
                seen.append(daemon.request("GET", "/v1/status", timeout=5)[1]["counters"]["frames_sent"])
            except (OSError, TypeError):  # the daemon is gone (or answers no more JSON)
                return

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.2)
    code, _took, stderr = daemon.stop()
    poller.join(10)
    assert code == 0, stderr
    assert len(seen) > 20 and seen == sorted(seen), seen


@pytest.mark.parametrize("delay_s", [0.15, 0.4])
def test_sigterm_while_the_daemon_starts_exits_0(delay_s: float) -> None:
    """Held until its handlers are in place (not fatal by default action), then acted on."""
    process = subprocess.Popen(cli_command("daemon", "--listen", "127.0.0.1:0"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=offline_env())
    time.sleep(delay_s)
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0 and "Traceback" not in stderr, (process.returncode, stderr)


def test_sigterm_with_a_stalled_upload_answers_it_and_exits_at_once(daemon: Daemon) -> None:
    """An uploader that sent a little and went quiet gets a 503 saying the daemon is stopping,
    and does not hold up the exit (it used to wait out the server's shutdown timeout)."""
    import socket

    host, port = daemon.url[len("http://"):].split(":")
    chunk = b"\1\0" * 16_000
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(b"POST /v1/stream?format=s16le&rate=24000&channels=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(chunk), chunk))
        daemon.wait_for("item_started")
        code, took, stderr = daemon.stop()
        connection.settimeout(5)
        answer = connection.recv(4096)
    assert code == 0, stderr
    from echo_streamer.daemon.server import SHUTDOWN_S

    assert took < SHUTDOWN_S, f"took {took:.2f} s to exit"
    assert answer.startswith(b"HTTP/1.1 503") and b"the daemon is stopping" in answer, answer


def test_an_unreachable_room_is_retried_and_reported(tmp_path: Path) -> None:
    env = offline_env() | {"ECHO_STREAMER_ROOM_URL": "https://nonexistent.invalid/room"}
    daemon = Daemon(tmp_path, "--join-timeout", "1", env=env)
    try:
        daemon.wait_for("call_state", 4, timeout=15)  # joining, retrying, joining, retrying
        states = [event for event in daemon.events() if event["event"] == "call_state"]
        assert [event["state"] for event in states[:4]] == ["joining", "retrying", "joining", "retrying"]
        assert states[1]["retry_in_s"] == 1.0 and states[3]["retry_in_s"] == 2.0, "the wait doubles"
        assert "nonexistent.invalid" in states[1]["error"]
        status = daemon.request("GET", "/v1/status")[1]
        assert status["call"]["join_attempts"] >= 2 and "nonexistent.invalid" in status["call"]["error"]
        code, answer = daemon.request("POST", "/v1/stream?format=s16le&rate=24000&channels=1", data=b"\0\0")
        assert code == 503 and "not streaming yet" in answer["error"]
    finally:
        code, took, stderr = daemon.stop()
    assert code == 0 and took < 3.0, (code, took, stderr)
    assert "panicked" not in stderr


def test_a_rejoin_goes_on_with_the_capture(tmp_path: Path, audio_dir: Path) -> None:
    """A call that drops is rejoined by a new stream whose capture goes on after the first's (one
    WAV, in order); an output that cannot be opened at a rejoin is retried as a failed join is.
    The drop is the SDK's unasked "left", which only a remote room sends: handed to the daemon
    as the streamer forwards it."""
    import asyncio

    capture, kept = tmp_path / "capture.wav", tmp_path / "kept.wav"
    retried: list[dict[str, Any]] = []

    async def scenario() -> None:
        daemon = service.Daemon(service.DaemonConfig(StreamerConfig(capture_path=str(capture)), (str(audio_dir),),
                                                     retry_s=(0.2, 0.2)))
        events = daemon.events.subscribe()
        running = asyncio.ensure_future(daemon.run())

        async def until(wanted: Any) -> dict[str, Any]:
            async for event in events:
                if event is not None and wanted(event):
                    return event
            raise AssertionError("the event feed closed")

        async def streaming(before: object = None) -> None:
            while daemon.streamer is None or daemon.streamer is before:
                await asyncio.sleep(0.01)

        async def played(name: str) -> None:
            segment_id = daemon.play(name).id
            await until(lambda event: event["event"] == "item_finished" and event["id"] == segment_id)

        def drop() -> object:
            dropped = daemon.streamer
            daemon._on_streamer_event({"t": time.monotonic(), "event": "call_state", "state": "left"})
            return dropped

        await streaming()
        await played("one.wav")
        await streaming(drop())
        await played("short.wav")
        capture.rename(kept)  # the stream writes on into it; a directory is in the way of the next one
        capture.mkdir()
        dropped = drop()
        retried.append(await until(lambda event: event["event"] == "call_state" and event["state"] == "retrying"))
        capture.rmdir()
        await streaming(dropped)
        await played("one.wav")
        daemon.stop()
        await running

    arun(scenario(), timeout=60)
    output = OutputFormat(RATE, 10)
    one, short = (rendered(audio_dir / name, output)[0].ravel() for name in ("one.wav", "short.wav"))
    locate(read_pcm(kept, RATE), [one, short], FRAME)
    locate(read_pcm(capture, RATE), [one], FRAME)
    assert retried[0]["error"] == f"{capture}: cannot open it: Is a directory", retried


# -- client commands -----------------------------------------------------------------------------

def client(daemon: Daemon, *args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = offline_env() | {"ECHO_STREAMER_DAEMON": daemon.url}
    return subprocess.run(cli_command(*args), input=stdin.decode("latin-1") if stdin else None, capture_output=True,
                          text=True, env=env, timeout=30, encoding="latin-1")


def test_client_commands(daemon: Daemon, audio_dir: Path) -> None:
    said = client(daemon, "say", audio_dir / "short.wav", "--wait")
    assert said.returncode == 0 and said.stdout == "seg-1\n", said.stderr
    by_path = client(daemon, "say", "--by-path", audio_dir / "one.wav", "--id", "p1")
    assert by_path.returncode == 0 and by_path.stdout == "p1\n", by_path.stderr
    daemon.wait_for("item_started", 2)
    status = json.loads(client(daemon, "status").stdout)
    assert status["current"]["id"] == "p1"
    cut = client(daemon, "interrupt")
    assert cut.returncode == 0 and cut.stdout.startswith("p1 cut at "), cut.stdout
    assert client(daemon, "interrupt").stdout == "nothing was playing\n"
    piped = client(daemon, "say", "-", stdin=run("espeak-ng", "--stdout", "Hi."))
    assert piped.returncode == 0 and piped.stdout == "seg-2\n", piped.stderr
    events = client(daemon, "events", "--count", "1")
    assert events.returncode == 0
    assert json.loads(events.stdout)["event"] in ("item_started", "item_finished", "idle"), events.stdout


def test_play_by_path_may_answer_once_it_has_played(daemon: Daemon, audio_dir: Path) -> None:
    """``POST /v1/play?wait=true`` (and ``say --by-path --wait``) answers 200 after the segment
    played, with how much of it played, like an upload with ``wait=true``."""
    began = time.monotonic()
    status, answer = daemon.request("POST", "/v1/play?wait=true", {"path": "short.wav"})
    assert time.monotonic() - began >= 0.6
    assert (status, answer) == (200, {"id": "seg-1", "state": "finished", "position_ms": 600.0,
                                      "interrupted": False, "error": None})
    waited = client(daemon, "say", "--by-path", "--wait", audio_dir / "short.wav")
    assert (waited.returncode, waited.stdout, waited.stderr) == (0, "seg-2\n", "")
    assert [event["id"] for event in daemon.events() if event["event"] == "item_finished"] == ["seg-1", "seg-2"]
    assert daemon.request("POST", "/v1/play?wait=maybe", {"path": "short.wav"}) == (
        400, {"error": "wait must be true or false, not 'maybe'"})


def test_client_errors_are_one_line(daemon: Daemon, audio_dir: Path) -> None:
    refused = client(daemon, "say", "--by-path", "/etc/hostname")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "echo-streamer: POST /v1/play: /etc/hostname is outside the allowed directories (HTTP 403)"]
    gone = subprocess.run(cli_command("status", "--daemon", "http://127.0.0.1:9"), capture_output=True, text=True,
                          timeout=30)
    assert gone.returncode == 2 and len(gone.stderr.splitlines()) == 1
    assert gone.stderr.startswith("echo-streamer: no daemon at http://127.0.0.1:9")


def test_say_sees_the_daemon_give_up_on_a_stalled_pipe_at_once(tmp_path: Path, audio_dir: Path) -> None:
    """A TTS pipe into ``say -`` goes quiet past --upload-idle-s: the daemon answers 408, and say
    reports it (status 1) at once, not when the pipe next delivers (nor as "no daemon")."""
    daemon = Daemon(tmp_path, "--upload-idle-s", "0.5")
    try:
        wav = (audio_dir / "one.wav").read_bytes()
        writer = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdout.buffer.write(sys.stdin.buffer"
                                   ".read(20000)); sys.stdout.flush(); time.sleep(8)"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert writer.stdin is not None
        writer.stdin.write(wav[:20000])
        writer.stdin.close()
        began = time.monotonic()
        said = subprocess.run(cli_command("say", "--daemon", daemon.url, "-"), stdin=writer.stdout,
                              capture_output=True, text=True, timeout=30)
        took = time.monotonic() - began
        writer.kill()
        assert said.returncode == 1 and took < 4, (said, took)
        assert said.stderr.strip() == "echo-streamer: POST /v1/stream: upload seg-1: no bytes for 0.5 s (HTTP 408)"
    finally:
        assert daemon.stop()[0] == 0


def test_a_client_waits_for_a_daemon_still_starting(tmp_path: Path, audio_dir: Path) -> None:
    """``say --connect-timeout`` started before the daemon: its upload plays once the daemon listens,
    and in full (the refused attempts sent nothing). Without the option, or past it, status 2."""
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    env = offline_env() | {"ECHO_STREAMER_DAEMON": url}
    refused = subprocess.run(cli_command("say", audio_dir / "short.wav"), capture_output=True, text=True, env=env,
                             timeout=30)
    assert refused.returncode == 2 and refused.stderr.startswith(f"echo-streamer: no daemon at {url}"), refused
    began = time.monotonic()
    gave_up = subprocess.run(cli_command("status", "--connect-timeout", "0.5"), capture_output=True, text=True,
                             env=env, timeout=30)
    assert gave_up.returncode == 2 and 0.5 <= time.monotonic() - began < 5, gave_up

    waiting = subprocess.Popen(cli_command("say", "--connect-timeout", "20", "--wait", audio_dir / "short.wav"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.0)
    assert waiting.poll() is None, waiting.communicate()
    daemon = Daemon(tmp_path, "--listen", f"127.0.0.1:{port}")
    try:
        stdout, stderr = waiting.communicate(timeout=30)
        assert (waiting.returncode, stdout) == (0, "seg-1\n"), stderr
        (finished,) = [e for e in daemon.events() if e["event"] == "item_finished"]
        expected = render(str(audio_dir / "short.wav"), str(tmp_path / "short-ref.wav"), OutputFormat())
        assert finished["samples"] == expected.samples and not finished["interrupted"], finished
    finally:
        daemon.stop()


# -- many clients at once ------------------------------------------------------------------------

def process_footprint(pid: int) -> tuple[int, int, int]:
    """(RSS in kB, threads, open file descriptors) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss, threads, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_fifty_clients_for_thirty_seconds(daemon: Daemon) -> None:
    """50 clients hitting status, play, interrupt, events and metrics at random for 30 s: every
    answer is one the API documents, the audio keeps real time, and nothing is left behind."""
    import asyncio
    import random

    import aiohttp

    daemon.request("POST", "/v1/play", {"path": "short.wav"})
    daemon.wait_for("idle")
    before = process_footprint(daemon.process.pid)
    counters_before = daemon.request("GET", "/v1/status")[1]["counters"]
    answers: dict[tuple[str, int], int] = {}

    async def client(session: aiohttp.ClientSession, seed: int, ends: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < ends:
            choice = rng.choice(["status", "status", "play", "interrupt", "events", "metrics"])
            if choice == "status":
                async with session.get(daemon.url + "/v1/status") as response:
                    await response.json()
            elif choice == "metrics":
                async with session.get(daemon.url + "/metrics") as response:
                    await response.text()
            elif choice == "play":
                async with session.post(daemon.url + "/v1/play",
                                        json={"path": rng.choice(["one.wav", "short.wav"])}) as response:
                    await response.json()
            elif choice == "interrupt":
                mode = rng.choice(["now", "next_pause"])
                async with session.post(daemon.url + "/v1/interrupt",
                                        json={"mode": mode, "clear_queue": rng.random() < 0.5}) as response:
                    await response.json()
            else:
                async with session.get(daemon.url + "/v1/events") as response:
                    await asyncio.wait_for(response.content.readline(), 5)
            answers[(choice, response.status)] = answers.get((choice, response.status), 0) + 1
            await asyncio.sleep(rng.uniform(0, 0.05))

    async def main() -> None:
        ends = time.monotonic() + 30
        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=20)) as session:
            await asyncio.gather(*(client(session, seed, ends) for seed in range(50)))

    began = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - began
    assert elapsed < 40, f"the clients took {elapsed:.1f} s: something waited too long"
    expected = {"status": 200, "metrics": 200, "play": 202, "interrupt": 200, "events": 200}
    unexpected = {key: count for key, count in answers.items() if expected[key[0]] != key[1]}
    assert not unexpected, unexpected
    assert sum(answers.values()) > 5000, answers
    daemon.request("POST", "/v1/interrupt", {"mode": "now"})  # answers once the cut has played
    status = daemon.request("GET", "/v1/status")[1]
    counters = status["counters"]
    # Frames the SDK consumed from us, and those of its own silence while the stream rested.
    played = sum(counters[name] - counters_before[name] for name in ("frames_played", "frames_rested"))
    assert counters["underruns"] == 0
    # A stall of the whole VM (up to a few hundred ms here) delays every clock alike; a stream
    # that cannot keep up falls behind by seconds.
    lag_growth = counters["lag_ms"] - counters_before["lag_ms"]
    assert lag_growth < 100, f"playout fell {lag_growth} ms further behind the wall clock"
    assert played >= 0.97 * 100 * elapsed, f"{played} frames in {elapsed:.1f} s: the stream fell behind"
    assert status["current"] is None and status["queue"] == [] and counters["event_subscribers"] == 1
    time.sleep(1)
    after = process_footprint(daemon.process.pid)
    assert after[1] == before[1], f"threads {before[1]} -> {after[1]}"
    assert after[2] <= before[2] + 2, f"file descriptors {before[2]} -> {after[2]}"
    assert after[0] - before[0] < 20_000, f"RSS {before[0]} -> {after[0]} kB"


def test_app_message_transport_through_the_daemon(tmp_path: Path, audio_dir: Path) -> None:
    """``--transport app-message``: an upload goes out as conversation.echo messages under one
    inference_id, the last marked done; offline each one fails to send and is counted."""
    import base64

    messages = tmp_path / "messages.jsonl"
    daemon = Daemon(tmp_path, "--transport", "app-message", "--conversation-id", "c-daemon", "--message-log",
                    messages)
    try:
        pcm = (tone(24_000, 0.5) * 32767).astype("<i2").tobytes()
        answer = daemon.request("POST", "/v1/stream?format=s16le&rate=24000&channels=1&wait=1", data=pcm)[1]
        assert answer["state"] == "finished"
        sent = [json.loads(line) for line in messages.read_text().splitlines()]
        assert {m["properties"]["inference_id"] for m in sent} == {sent[0]["properties"]["inference_id"]}
        assert [m["properties"]["done"] for m in sent][-2:] == [False, True]
        audio = b"".join(base64.b64decode(m["properties"]["audio"]) for m in sent)
        assert audio == pcm, "exactly the uploaded samples (24 kHz in, 24 kHz out)"
        counters = daemon.request("GET", "/v1/status")[1]["counters"]
        assert counters["app_messages_failed"] == len(sent) and counters["app_messages_sent"] == 0
    finally:
        assert daemon.stop()[0] == 0


def test_an_upload_cut_off_plays_what_arrived_and_says_so(daemon: Daemon) -> None:
    """The client goes away mid-body: no traceback, the audio that arrived plays, then the segment
    fails (one error event; counted as failed)."""
    import socket

    host, port = daemon.url[len("http://"):].split(":")
    chunk = (tone(24_000, 0.1) * 32767).astype("<i2").tobytes()
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(b"POST /v1/stream?format=s16le&rate=24000&channels=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            time.sleep(0.05)
    daemon.wait_for("item_finished")
    events = daemon.events()
    (error,) = [event for event in events if event["event"] == "error"]
    assert error["message"] == (f"upload seg-1: the connection was lost after {5 * len(chunk)} bytes; "
                                "what arrived played")
    (finished,) = [event for event in events if event["event"] == "item_finished"]
    assert finished["position_ms"] == 500.0 and finished["interrupted"] is False
    assert finished["error"] == error["message"]
    assert daemon.request("GET", "/v1/status")[1]["counters"]["segments_failed"] == 1
    _code, _took, stderr = daemon.stop()
    assert "Traceback" not in stderr and "Error handling request" not in stderr, stderr


def test_unknown_paths_and_methods_are_answered_in_json(daemon: Daemon) -> None:
    """aiohttp's own refusals come in the API's error shape, 405 with the methods allowed."""
    assert daemon.request("GET", "/v1/nothing") == (404, {"error": "GET /v1/nothing: Not Found"})
    assert daemon.request("GET", "/v1/play") == (405, {"error": "GET /v1/play: Method Not Allowed"})
    request = urllib.request.Request(daemon.url + "/v1/play", method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405 and refused.value.headers["Allow"] == "POST"


def test_send_text_message_names_the_conversation_given_else_the_rooms() -> None:
    """--conversation-id reaches the daemon's /send_text_message without --tavus-interrupt; without
    it the room URL's last path segment is the conversation, and offline (or for a URL without
    a path: a 500 once) there is none."""
    room = StreamerConfig(room_url="https://tavus.daily.co/c123")
    assert service.Daemon(service.DaemonConfig(room)).conversation_id == "c123"
    assert service.Daemon(service.DaemonConfig(room, conversation_id="c9")).conversation_id == "c9"
    assert service.Daemon(service.DaemonConfig(StreamerConfig())).conversation_id is None
    pathless = StreamerConfig(room_url="https://tavus.daily.co/")
    assert service.Daemon(service.DaemonConfig(pathless)).conversation_id is None


def test_metrics_print_counters_in_full() -> None:
    """A counter past a million (frames_sent after 2.8 h) is printed whole, not as 1.23457e+06,
    which would make Prometheus' rate() wrong."""
    from echo_streamer.daemon import metrics

    daemon = service.Daemon(service.DaemonConfig(StreamerConfig()))
    status = daemon.status()
    status["counters"]["frames_sent"] = 1_234_567
    daemon.status = lambda: status  # type: ignore[method-assign]
    text = metrics.render(daemon)
    assert "\necho_streamer_frames_sent_total 1234567\n" in text, text


def test_an_upload_faster_than_real_time_is_held_back_in_bytes() -> None:
    """A client sending as fast as it can has taken in only what plays, what the decoder reads
    ahead (1 s) and WAITING_BYTES: the rest waits on the client's side (TCP flow control)."""
    import asyncio
    from collections.abc import AsyncIterator

    from echo_streamer import Streamer
    from echo_streamer.daemon.uploads import WAITING_BYTES, Upload

    chunk = bytes(16 << 10)

    async def fast_client() -> AsyncIterator[bytes]:
        while True:
            yield chunk
            await asyncio.sleep(0)

    async def session() -> int:
        async with Streamer(StreamerConfig(gap_ms=10)) as streamer:
            upload = Upload(asyncio.get_running_loop())
            segment = streamer.stream_bytes(upload.chunks(), sample_format="s16le", rate=24_000, channels=1)
            pump = asyncio.create_task(upload.pump(fast_client(), segment, max_bytes=1 << 30, idle_s=30))
            await asyncio.sleep(1.0)
            received = upload.received
            pump.cancel()
            await streamer.cancel(segment)
            return received

    real_time = 48_000  # bytes per second
    received = arun(session())
    assert received <= 2 * real_time + WAITING_BYTES + 2 * len(chunk), f"{received} bytes taken in within 1 s"
