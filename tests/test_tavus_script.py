"""scripts/tavus, run as users run it, against a stand-in Tavus API on loopback that records every request."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import unused_port

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "tavus"
KEY = "tvs-test-key-0123456789abcdef"
MICROPHONE_ON = {"transport": {"input_settings": {"microphone": {"isEnabled": True}}}}
CONVERSATION = {"conversation_id": "c123456", "conversation_url": "https://tavus.daily.co/c123456",
                "status": "active"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class StandInTavus:
    """A loopback HTTP server: answers a request for ``path`` as told by ``answer``, records every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answers: dict[str, Answer] = {}
        self.released = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                stand_in.requests.append(Request(self.command, self.path, headers, body))
                answer = stand_in.answers.get(self.path, Answer(404, b'{"message": "no such endpoint"}'))
                if answer.delay:
                    stand_in.released.wait(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the client gave up (the timeout test)
                    pass

            do_GET = do_POST  # a followed redirect would arrive as a GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, path: str, status: int, body: Any, **options: Any) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers[path] = Answer(status, raw, **options)

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tavus_api() -> Iterator[StandInTavus]:
    server = StandInTavus()
    yield server
    server.close()


def clean_env(api_url: str, **extra: str) -> dict[str, str]:
    """The environment without proxies (they would carry loopback calls away) or Tavus settings, plus ``extra``."""
    env = {name: value for name, value in os.environ.items()
           if not name.lower().endswith("_proxy") and not name.startswith("TAVUS_")}
    env.update(TAVUS_API_URL=api_url, **extra)
    return env


def tavus(api_url: str, *args: str, key: str | None = KEY, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/tavus ARGS`` (as an executable, through its shebang) with ``key`` in TAVUS_API_KEY."""
    env = clean_env(api_url, **extra_env)
    if key is not None:
        env["TAVUS_API_KEY"] = key
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30)


def assert_one_line_error(result: subprocess.CompletedProcess[str], command: str, *fragments: str) -> str:
    """Exit status 1, nothing on stdout, one ``tavus: COMMAND: ...`` line on stderr holding every fragment,
    no traceback, and the API key nowhere."""
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"tavus: {command}: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert KEY not in result.stdout + result.stderr
    return result.stderr


def test_create_persona_is_an_echo_persona_with_the_microphone_on(tavus_api: StandInTavus) -> None:
    tavus_api.answer("/v2/personas", 200, {"persona_id": "p5a1b2c3", "persona_name": "Echo test"})
    result = tavus(tavus_api.url, "create-persona", "--name", "Echo test")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "persona_id=p5a1b2c3\n"
    assert result.stderr == ""
    [request] = tavus_api.requests
    assert (request.method, request.path) == ("POST", "/v2/personas")
    assert request.headers["x-api-key"] == KEY
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"persona_name": "Echo test", "pipeline_mode": "echo", "layers": MICROPHONE_ON}


def test_create_pal_uses_the_pals_endpoint_and_a_default_replica(tavus_api: StandInTavus) -> None:
    tavus_api.answer("/v2/pals", 200, {"pal_id": "pal9", "pal_name": "echo-streamer"})
    result = tavus(tavus_api.url, "create-persona", "--pal", "--replica", "r90bbd427f71")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pal_id=pal9\n"
    [request] = tavus_api.requests
    assert request.path == "/v2/pals"
    assert request.json() == {"pal_name": "echo-streamer", "pipeline_mode": "echo", "layers": MICROPHONE_ON,
                              "default_replica_id": "r90bbd427f71"}


def test_create_conversation_prints_url_and_id(tavus_api: StandInTavus) -> None:
    tavus_api.answer("/v2/conversations", 200, CONVERSATION)
    result = tavus(tavus_api.url, "create-conversation", "--persona", "p5a1b2c3", "--name", "Echo test")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "conversation_url=https://tavus.daily.co/c123456\nconversation_id=c123456\n"
    [request] = tavus_api.requests
    assert (request.method, request.path, request.headers["x-api-key"]) == ("POST", "/v2/conversations", KEY)
    assert request.json() == {"persona_id": "p5a1b2c3", "conversation_name": "Echo test"}


def test_create_conversation_with_a_pal_and_replica_as_json(tavus_api: StandInTavus) -> None:
    tavus_api.answer("/v2/conversations", 200, CONVERSATION)
    result = tavus(tavus_api.url, "create-conversation", "--persona", "pal9", "--pal", "--replica", "r1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == CONVERSATION
    assert tavus_api.requests[0].json() == {"pal_id": "pal9", "replica_id": "r1"}


def test_output_is_safe_to_eval(tavus_api: StandInTavus, tmp_path: Path) -> None:
    """The help's ``eval "$(scripts/tavus create-conversation ...)"`` sets the variables and runs nothing,
    whatever the answer holds."""
    hostile = "c1; touch pwned $(touch pwned2) 'q'"
    tavus_api.answer("/v2/conversations", 200, {**CONVERSATION, "conversation_id": hostile})
    script = f'eval "$({SCRIPT} create-conversation --persona p1)"; printf "%s\\n%s\\n" "$conversation_url" ' \
             '"$conversation_id"'
    env = clean_env(tavus_api.url, TAVUS_API_KEY=KEY)
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"https://tavus.daily.co/c123456\n{hostile}\n"
    assert list(tmp_path.iterdir()) == []


def test_end_conversation(tavus_api: StandInTavus) -> None:
    tavus_api.answer("/v2/conversations/c123456/end", 200, b"")
    result = tavus(tavus_api.url, "end-conversation", "c123456")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    [request] = tavus_api.requests
    assert (request.method, request.path, request.headers["x-api-key"]) == ("POST", "/v2/conversations/c123456/end",
                                                                            KEY)
    assert request.body == b""


def test_api_key_file_is_used_instead_of_the_environment(tavus_api: StandInTavus, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("file-key-42\n")
    tavus_api.answer("/v2/conversations/c1/end", 200, b"")
    result = tavus(tavus_api.url, "end-conversation", "--api-key-file", str(key_file), "c1")
    assert result.returncode == 0, result.stderr
    assert tavus_api.requests[0].headers["x-api-key"] == "file-key-42"


def test_bad_key_gives_tavus_message(tavus_api: StandInTavus) -> None:
    tavus_api.answer("/v2/conversations", 401, {"message": "Invalid access token"})
    result = tavus(tavus_api.url, "create-conversation", "--persona", "p1")
    assert_one_line_error(result, "create-conversation", "POST /v2/conversations: HTTP 401", "Invalid access token")


def test_ending_an_unknown_conversation(tavus_api: StandInTavus) -> None:
    tavus_api.answer("/v2/conversations/nope/end", 400, {"error": "Invalid conversation_id"})
    result = tavus(tavus_api.url, "end-conversation", "nope")
    assert_one_line_error(result, "end-conversation", "POST /v2/conversations/nope/end: HTTP 400",
                          "Invalid conversation_id")


def test_server_error_with_an_html_page_stays_one_line(tavus_api: StandInTavus) -> None:
    page = b"<html>\n<body>\n<h1>502 Bad Gateway</h1>\n" + b"x" * 5000 + b"\n</body>\n</html>\n"
    tavus_api.answer("/v2/personas", 502, page, headers={"Content-Type": "text/html"})
    line = assert_one_line_error(tavus(tavus_api.url, "create-persona"), "create-persona", "HTTP 502",
                                 "<h1>502 Bad Gateway</h1>")
    assert len(line) < 400


@pytest.mark.parametrize(
    ("body", "complaint"),
    [(b"<html>maintenance</html>", "the answer is not JSON: '<html>maintenance</html>'"),
     (b'["c123456"]', "the answer is not a JSON object"),
     (json.dumps({"conversation_id": "c123456", "status": "active"}).encode(), "the answer has no conversation_url")],
    ids=["not-json", "not-an-object", "no-url"],
)
def test_unusable_answer(tavus_api: StandInTavus, body: bytes, complaint: str) -> None:
    tavus_api.answer("/v2/conversations", 200, body)
    result = tavus(tavus_api.url, "create-conversation", "--persona", "p1")
    assert_one_line_error(result, "create-conversation", f"POST /v2/conversations: {complaint}")


def test_server_down() -> None:
    port = unused_port()
    result = tavus(f"http://127.0.0.1:{port}", "end-conversation", "c1")
    assert_one_line_error(result, "end-conversation", f"cannot reach http://127.0.0.1:{port}: Connection refused")


def test_timeout(tavus_api: StandInTavus) -> None:
    tavus_api.answer("/v2/conversations", 200, CONVERSATION, delay=20)
    started = time.monotonic()
    result = tavus(tavus_api.url, "create-conversation", "--persona", "p1", "--timeout", "0.5")
    assert time.monotonic() - started < 10
    assert_one_line_error(result, "create-conversation", f"no answer from {tavus_api.url} within 0.5 s")


def test_missing_key_sends_nothing(tavus_api: StandInTavus) -> None:
    result = tavus(tavus_api.url, "create-persona", key=None)
    assert_one_line_error(result, "create-persona", "no API key: set TAVUS_API_KEY or pass --api-key-file")
    assert tavus_api.requests == []


def test_key_the_header_cannot_carry_is_not_printed(tavus_api: StandInTavus) -> None:
    result = tavus(tavus_api.url, "create-persona", key=f"{KEY}\nsecond-line")
    assert_one_line_error(result, "create-persona", "the API key in TAVUS_API_KEY has characters a header cannot carry")
    assert "second-line" not in result.stderr
    assert tavus_api.requests == []


def test_key_echoed_by_the_server_is_masked(tavus_api: StandInTavus) -> None:
    tavus_api.answer("/v2/conversations", 403, {"message": f"key {KEY} has no access to persona p1"})
    result = tavus(tavus_api.url, "create-conversation", "--persona", "p1")
    assert_one_line_error(result, "create-conversation", "HTTP 403", "key <api key> has no access to persona p1")


def test_redirect_is_not_followed(tavus_api: StandInTavus) -> None:
    """A redirect would carry the x-api-key header wherever it points; it is an error instead."""
    tavus_api.answer("/v2/conversations/c1/end", 302, b"", headers={"Location": f"{tavus_api.url}/elsewhere"})
    result = tavus(tavus_api.url, "end-conversation", "c1")
    assert_one_line_error(result, "end-conversation", "HTTP 302")
    assert [request.path for request in tavus_api.requests] == ["/v2/conversations/c1/end"]


def test_api_url_must_be_http() -> None:
    result = tavus("file:///etc/passwd", "create-persona")
    assert_one_line_error(result, "create-persona", "TAVUS_API_URL 'file:///etc/passwd' is not an http(s) URL")


@pytest.mark.parametrize("args", [["create-conversation"], ["create-persona", "--timeout", "0"],
                                  ["create-persona", "--timeout", "inf"], ["no-such-command"]])
def test_usage_error_exits_2_and_sends_nothing(tavus_api: StandInTavus, args: list[str]) -> None:
    result = tavus(tavus_api.url, *args)
    assert result.returncode == 2, result
    assert result.stderr.startswith("usage: tavus"), result.stderr
    assert "Traceback" not in result.stderr
    assert tavus_api.requests == []
