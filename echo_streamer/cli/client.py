"""Client commands for a running daemon: ``say``, ``interrupt``, ``status``, ``events``.

Plain standard-library HTTP, so they start fast and need nothing but a daemon to talk to;
``http.client`` (which loads ``email`` and ``ssl``) only when a request is made, so that every
other command starts without it.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

import click

from .session import MAX_WAIT_RANGE, fail

if TYPE_CHECKING:
    import http.client

EXIT_REFUSED = 1
EXIT_NO_DAEMON = 2
# The daemon's last server-sent event as it stops (engine.events.CLOSED; a test holds them equal:
# importing it would put asyncio into every --help).
CLOSED_EVENT = "closed"
_UPLOAD_CHUNK = 8192

# How long a request may take to be answered (None: a wait for a segment to play).
CALL_S = 30.0
# How often a client with --connect-timeout tries again while nothing listens at the address.
_CONNECT_RETRY_S = 0.1

_CLIENT_OPTIONS = [
    click.option("--daemon", "daemon_url", envvar="ECHO_STREAMER_DAEMON", default="http://127.0.0.1:8765",
                 show_default=True, metavar="URL", help="The daemon's address (default: $ECHO_STREAMER_DAEMON)."),
    click.option("--token-file", type=click.Path(dir_okay=False, exists=True), metavar="PATH",
                 help="Bearer token for a daemon that needs one (default: $ECHO_STREAMER_TOKEN)."),
    click.option("--connect-timeout", type=click.FloatRange(0, None), default=0, metavar="S",
                 help="While nothing listens at the address (a daemon still starting), keep trying for up to "
                      "S seconds (default: fail at once)."),
]


# Every client command's --help ends with this.
CLIENT_EXITS = ("Exit status: 0; 1 when the daemon refuses the request (its reason on one line); 2 when there "
                "is no daemon at --daemon.")


def client_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options that say which daemon to talk to; ``command`` gets it as ``daemon``."""
    @functools.wraps(command)
    def with_daemon(*args: Any, daemon_url: str, token_file: str | None, connect_timeout: float,
                    **kwargs: Any) -> Any:
        return command(*args, daemon=_Daemon(daemon_url, token_file, connect_timeout), **kwargs)

    for option in reversed(_CLIENT_OPTIONS):
        with_daemon = option(with_daemon)
    return with_daemon


def bearer_token(token_file: str | None) -> str | None:
    """The daemon's token: the contents of ``token_file`` (``--token-file``), else
    ``$ECHO_STREAMER_TOKEN``, else None. An empty file is a usage error."""
    if token_file is None:
        return os.environ.get("ECHO_STREAMER_TOKEN", "").strip() or None
    with open(token_file, encoding="utf-8") as file:
        token = file.read().strip()
    if not token:
        raise click.BadParameter(f"{token_file} is empty", param_hint="--token-file")
    return token


class _Daemon:
    """One daemon's API; every failure becomes a one-line message and an exit status. A refused
    connection is tried again for up to ``connect_timeout`` seconds."""

    def __init__(self, url: str, token_file: str | None, connect_timeout: float = 0) -> None:
        if not url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{url!r} is not an http(s) URL (e.g. http://127.0.0.1:8765)",
                                     param_hint="--daemon")
        self.url = url.rstrip("/")
        self.connect_timeout = connect_timeout
        token = bearer_token(token_file)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, body: Any = None, *, upload: BinaryIO | None = None,
             timeout: float | None = CALL_S) -> Any:
        """The JSON answer to a request with JSON ``body``, or with ``upload`` as its (chunked)
        body; exits with a message on an HTTP error or when the daemon is unreachable."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        response = self._open(method, path, headers, timeout, data if upload is None else upload)
        with response:
            return json.load(response)

    def lines(self, path: str) -> Iterator[str]:
        """The answer's lines as they come, until the daemon ends it (or the connection breaks)."""
        import http.client

        with self._open("GET", path, self._headers, None) as response:
            try:
                for line in response:
                    yield line.decode().rstrip("\r\n")
            except (http.client.HTTPException, OSError):
                return

    def _open(self, method: str, path: str, headers: dict[str, str], timeout: float | None,
              body: bytes | BinaryIO | None = None) -> http.client.HTTPResponse:
        import http.client

        url = urllib.parse.urlsplit(self.url + path)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        # A refused connection sent nothing (an upload's body is read only once connected), so
        # trying again is safe.
        gives_up = time.monotonic() + self.connect_timeout
        while True:
            connection = kind(url.hostname or "", url.port, timeout=timeout)
            try:
                connection.connect()
                break
            except ConnectionRefusedError as error:
                if time.monotonic() >= gives_up:
                    self._unreachable(error)
                time.sleep(_CONNECT_RETRY_S)
            except OSError as error:
                self._unreachable(error)
        target = url.path + (f"?{url.query}" if url.query else "")
        try:
            if body is None or isinstance(body, bytes):
                connection.request(method, target, body=body, headers=headers)
            else:
                connection.putrequest(method, target)
                for name, value in {**headers, "Transfer-Encoding": "chunked"}.items():
                    connection.putheader(name, value)
                connection.endheaders()
                _send_chunked(connection, body)
            response = connection.getresponse()
        except (http.client.HTTPException, OSError) as error:
            self._unreachable(error)
        if response.status >= 400:
            try:
                message = json.load(response).get("error", response.reason)
            except ValueError:
                message = response.reason
            fail(f"{method} {target}: {message} (HTTP {response.status})", EXIT_REFUSED)
        return response

    def _unreachable(self, error: Exception) -> NoReturn:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        fail(f"no daemon at {self.url} ({reason})", EXIT_NO_DAEMON)


def _send_chunked(connection: http.client.HTTPConnection, stream: BinaryIO) -> None:
    """Send what ``stream`` holds as a chunked body, each chunk as soon as it can be read. An
    answer the daemon gives before the body ends (408 for an upload that stalled, 413) ends the
    sending at once, rather than when the stream next delivers (a TTS pipe may be quiet for long)."""
    import select

    assert connection.sock is not None
    source, answer = stream.fileno(), connection.sock
    try:
        while True:
            readable, _, _ = select.select([source, answer], [], [])
            if answer in readable:
                return
            chunk = os.read(source, _UPLOAD_CHUNK)
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if not chunk:  # that was the last, empty, chunk
                return
    except (BrokenPipeError, ConnectionResetError):
        return  # the daemon stopped reading: its answer says why


@click.command("say", epilog=CLIENT_EXITS)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--by-path", is_flag=True,
              help="Ask the daemon to read FILE itself (it must be inside one of its --allow-dir roots) "
                   "instead of uploading it.")
@click.option("--id", "segment_id", metavar="ID", help="The segment's id (default: the daemon's seg-N).")
@click.option("--wait", is_flag=True, help="Return only once the segment has played (or was cut).")
@client_options
def say_command(file: str, by_path: bool, segment_id: str | None, wait: bool, daemon: _Daemon) -> None:
    """Play FILE through a running daemon (`echo-streamer daemon`); prints the segment id.

    By default the file is uploaded and plays while it uploads (POST /v1/stream), so the daemon
    needs no access to it; any format the daemon decodes (WAV, MP3, Ogg, FLAC, ...). FILE may be
    `-` for stdin, e.g. a TTS engine's output. Returns once the upload has ended (for -, once
    the writer closes), with --wait once the segment has played.

    \b
    Examples:
      echo-streamer say hello.wav
      espeak-ng --stdout "Hello there" | echo-streamer say -
      echo-streamer say --by-path /srv/audio/intro.mp3 --wait
    """
    if by_path:
        answer = daemon.call("POST", "/v1/play?wait=true" if wait else "/v1/play",
                             {"path": os.path.abspath(file), "id": segment_id}, timeout=None if wait else CALL_S)
    else:
        query = urllib.parse.urlencode({key: value for key, value in (("id", segment_id), ("wait", wait and "true"))
                                        if value})
        try:
            stream = sys.stdin.buffer if file == "-" else open(file, "rb")
        except OSError as error:
            fail(f"{file}: {error.strerror}", EXIT_REFUSED)
        with stream:
            answer = daemon.call("POST", "/v1/stream" + (f"?{query}" if query else ""), upload=stream, timeout=None)
    click.echo(answer["id"])
    if answer.get("error"):
        fail(str(answer['error']), EXIT_REFUSED)


@click.command(epilog=CLIENT_EXITS)
@click.option("--soft", is_flag=True, help="Cut at the next pause in the speech (within --max-wait-ms).")
@click.option("--keep-queue", is_flag=True, help="Skip only the current segment; keep the ones queued after it.")
@click.option("--max-wait-ms", type=MAX_WAIT_RANGE, default=400, show_default=True,
              help="How long --soft waits for a pause before it cuts anyway.")
@client_options
def interrupt(soft: bool, keep_queue: bool, max_wait_ms: int, daemon: _Daemon) -> None:
    """Cut what a running daemon is playing; prints what was cut and where once the cut has
    played (with --soft, up to --max-wait-ms later).

    \b
    Examples:
      echo-streamer interrupt
      echo-streamer interrupt --soft --keep-queue
    """
    answer = daemon.call("POST", "/v1/interrupt", {
        "mode": "next_pause" if soft else "now", "clear_queue": not keep_queue, "max_wait_ms": max_wait_ms},
        timeout=CALL_S + max_wait_ms / 1000)  # the daemon answers once the cut has played
    if answer["noop"]:
        click.echo("nothing was playing")
        return
    cut = "" if answer["id"] is None else f"{answer['id']} cut at {answer['position_ms']} ms ({answer['cut']})"
    dropped = f"{len(answer['dropped'])} queued dropped" if answer["dropped"] else ""
    click.echo("; ".join(part for part in (cut, dropped) if part))


@click.command(epilog=CLIENT_EXITS)
@client_options
def status(daemon: _Daemon) -> None:
    """Print a running daemon's status as JSON (call, participants, segment, queue, counters).

    \b
    Examples:
      echo-streamer status
      echo-streamer status | jq .counters
    """
    click.echo(json.dumps(daemon.call("GET", "/v1/status"), indent=2))


@click.command(epilog=CLIENT_EXITS)
@click.option("--count", type=click.IntRange(1, None), help="Stop after this many events.")
@client_options
def events(count: int | None, daemon: _Daemon) -> None:
    """Print a running daemon's events as JSON lines as they happen, until Ctrl-C (status 0),
    --count, or the daemon stops (0; 2 when the stream ends without its saying so: it died).

    \b
    Examples:
      echo-streamer events
      echo-streamer events | grep item_finished
    """
    seen = 0
    try:
        for line in daemon.lines("/v1/events"):
            if line == f"event: {CLOSED_EVENT}":
                return  # the daemon stopped
            if line.startswith("data: "):
                click.echo(line[len("data: "):])
                seen += 1
                if count is not None and seen >= count:
                    return
    except KeyboardInterrupt:  # how a watcher is stopped: not click's "Aborted!" and status 1
        return
    fail(f"the events from {daemon.url} ended without the daemon saying it stopped (did it die?)", EXIT_NO_DAEMON)
