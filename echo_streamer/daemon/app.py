"""The daemon's HTTP API (aiohttp): JSON requests, a streamed upload, server-sent events.

Every handler runs on the event loop and only queues work or waits on the stream; audio never
passes through here except an upload's bytes, which :class:`~.uploads.Upload` hands on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from ..engine.events import CLOSED
from ..engine.interrupt import DEFAULT_MAX_WAIT_MS, MODES
from ..engine.segment import Segment
from ..engine.waiting import unless
from ..limits import MAX_WAIT_MS
from ..output.tavus import echo_message
from ..sources.formats import AUTO, RAW_FORMATS
from . import metrics
from .openapi import openapi_spec
from .service import ApiError, Daemon
from .uploads import Upload, UploadError, UploadLost

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KEEPALIVE_S = 15.0
GONE_CHECK_S = 1.0  # how often a quiet event stream looks whether its client has gone
# Routes that keep their own time: an event feed and an upload last as long as they last, a play
# may wait for its segment to play, and an interrupt waits for its cut, up to max_wait_ms beyond
# the request limit.
_OPEN_ENDED = {"/v1/events", "/v1/stream", "/v1/play", "/v1/interrupt"}


@dataclass(frozen=True)
class ApiLimits:
    """``json_bytes``: largest JSON body. ``request_s``: longest a JSON request may take.
    ``upload_bytes``: largest ``/v1/stream`` body. ``upload_idle_s``: longest an upload may send nothing."""

    json_bytes: int = 1 << 20
    request_s: float = 10.0
    upload_bytes: int = 1 << 30
    upload_idle_s: float = 30.0


def create_app(daemon: Daemon, token: str | None = None, limits: ApiLimits | None = None) -> web.Application:
    """The API for ``daemon``. With ``token``, every request needs ``Authorization: Bearer <token>``."""
    api = _Api(daemon, limits or ApiLimits(), openapi_spec(token=token is not None))
    app = web.Application(middlewares=[_guard(token, api.limits.request_s)], client_max_size=api.limits.json_bytes)
    app.add_routes([
        web.get("/openapi.json", api.openapi),
        web.get("/v1/status", api.status),
        web.get("/v1/events", api.events),
        web.get("/metrics", api.metrics),
        web.post("/v1/play", api.play),
        web.post("/v1/stream", api.stream),
        web.post("/v1/interrupt", api.interrupt),
        web.post("/v1/live/start", api.live_start),
        web.post("/v1/live/stop", api.live_stop),
        web.post("/send_text_message", api.send_text_message),
    ])
    return app


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _from_elsewhere(request: web.Request) -> str | None:
    """Why a request to a daemon without a token did not come from this machine's own clients,
    or None. Such a daemon listens on loopback only, but a web page in a local browser can still
    send it requests (cross-site: its ``Origin`` names the page's site) or, through DNS
    rebinding, read its answers (its ``Host`` is the page's name, resolved to 127.0.0.1)."""
    origin = request.headers.get("Origin")
    if origin is not None and not is_loopback(_host_of(origin)):
        return f"a request from the web page of {origin} is refused: without a token only local clients are answered"
    host = request.headers.get("Host")  # an HTTP/1.0 client may send none (a browser always does)
    if host is not None and not is_loopback(_host_of(f"http://{host}")):
        return f"Host {host} is not this machine's loopback address: without a token only local clients are answered"
    return None


def _host_of(url: str) -> str | None:
    """The host part of ``url``; None for none (an opaque origin, "null") or a malformed one."""
    try:
        return URL(url).host
    except ValueError:
        return None


def _guard(token: str | None, request_s: float) -> Any:
    expected = None if token is None else token.encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await answer(request, handler)
        if isinstance(request.content.exception(), web.RequestPayloadError) and isinstance(response, web.Response):
            # A body that cannot be read on (its Content-Encoding does not decode it): aiohttp's
            # own drain of the rest would fail too, and log it.
            return await _answer_and_close(request, response)
        return response

    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if expected is not None:
                # The scheme's name is case-insensitive (RFC 9110); the token is compared in constant time.
                scheme, _, given = request.headers.get("Authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
                    return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
            elif (refusal := _from_elsewhere(request)) is not None:
                return _error(403, refusal)
            if request.path in _OPEN_ENDED:
                return await handler(request)
            return await asyncio.wait_for(handler(request), request_s)
        except ApiError as error:
            return _error(error.status, error.message)
        except TimeoutError:
            return _error(503, f"the request took longer than {request_s:g} s")
        except web.HTTPException as error:  # aiohttp's own answers (404 for an unknown path, 405), as JSON
            if error.status < 400:
                raise
            allow = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
            return _error(error.status, f"{request.method} {request.path}: {error.reason}", allow)
        except Exception as error:  # a bug fails one request, in one line, and the daemon streams on
            message = f"{request.method} {request.path}: unexpected {type(error).__name__}: {error}"
            print(f"echo-streamer: {message}", file=sys.stderr)
            return _error(500, message)

    return guard


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send ``response``, then close the connection rather than let aiohttp read the rest of the
    request's body (for up to its 10 s lingering time)."""
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


def _server_sent(event: dict[str, Any]) -> bytes:
    return f"event: {event['event']}\ndata: {json.dumps(event, default=str)}\n\n".encode()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class _Api:
    def __init__(self, daemon: Daemon, limits: ApiLimits, spec: dict[str, Any]) -> None:
        self.daemon = daemon
        self.limits = limits
        self.spec = spec

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(self.spec)

    async def status(self, _request: web.Request) -> web.Response:
        return web.json_response(self.daemon.status())

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(self.daemon).encode(), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        written_at = loop.time()
        try:
            async with contextlib.aclosing(self.daemon.events.subscribe(GONE_CHECK_S)) as events:
                async for event in events:
                    if request.transport is None or request.transport.is_closing():
                        return response  # the client went away: seen now, not at the next write
                    if event is not None or loop.time() - written_at >= KEEPALIVE_S:
                        await response.write(b": keepalive\n\n" if event is None else _server_sent(event))
                        written_at = loop.time()
            # The daemon is stopping: said in so many words, since a connection that merely ends
            # could also be a daemon that died.
            await response.write(_server_sent({"t": time.monotonic(), "event": CLOSED}))
        except ConnectionResetError:
            pass  # the client went away
        return response

    async def play(self, request: web.Request) -> web.Response:
        """Queue a file: 202 at once, or with ``wait=true`` 200 once it has played. Reading the
        body is held to the request limit; the wait is as long as the segment."""
        wait = _bool_param(request.query, "wait")
        body = await asyncio.wait_for(_json_object(request), self.limits.request_s)
        path = _field(body, "path", str)
        segment = self.daemon.play(path, _field(body, "id", str, required=False))
        if not wait:
            return web.json_response({"id": segment.id, "state": segment.state}, status=202)
        await segment.wait()
        return web.json_response(_segment_answer(segment))

    async def stream(self, request: web.Request) -> web.Response:
        query = request.query
        sample_format = query.get("format", AUTO)
        if sample_format != AUTO and sample_format not in RAW_FORMATS:
            raise ApiError(400, f"format must be {AUTO} or one of {', '.join(RAW_FORMATS)}, not {sample_format!r}")
        rate = _int_param(query, "rate", 8_000, 192_000)
        channels = _int_param(query, "channels", 1, 64)
        wait = _bool_param(query, "wait")
        upload = Upload(asyncio.get_running_loop())
        segment = self.daemon.stream(upload.chunks(), sample_format, rate, channels, query.get("id"))
        try:
            pumping = upload.pump(request.content.iter_any(), segment, self.limits.upload_bytes,
                                  self.limits.upload_idle_s)
            pumped = await unless(self.daemon.stopping, pumping)
        except UploadError as error:  # the segment fails with it (an error event): what arrived plays
            raise ApiError(error.status, f"upload {segment.id}: {error}") from None
        except UploadLost as error:  # no one is left to answer; the segment's error event tells
            raise ApiError(400, str(error)) from None
        if not pumped:  # a stalled uploader must not hold up the exit
            message = f"upload {segment.id}: the daemon is stopping"
            self.daemon.report_error(segment, message)
            return await _answer_and_close(request, _error(503, message))
        if wait:
            await segment.wait()
        return web.json_response({**_segment_answer(segment), "bytes": upload.received})

    async def interrupt(self, request: web.Request) -> web.Response:
        """Its own time limit: the request limit for reading the body and carrying out the cut,
        plus the cut's max_wait_ms."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.request_s
        body = await asyncio.wait_for(_json_object(request, optional=True), self.limits.request_s)
        mode = _field(body, "mode", str, required=False) or "now"
        if mode not in MODES:
            raise ApiError(400, f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        clear_queue = _field(body, "clear_queue", bool, required=False)
        max_wait_ms = _field(body, "max_wait_ms", int, required=False)
        max_wait_ms = DEFAULT_MAX_WAIT_MS if max_wait_ms is None else max_wait_ms
        least, most = MAX_WAIT_MS
        if not least <= max_wait_ms <= most:
            raise ApiError(400, f"max_wait_ms must be from {least} to {most}, not {max_wait_ms}")
        limit_s = self.limits.request_s + max_wait_ms / 1000
        # Asked for before the clock is looked at: a body that took all the time still cuts.
        interruption = self.daemon.interrupt(mode, True if clear_queue is None else clear_queue, max_wait_ms)
        try:
            await asyncio.wait_for(interruption.wait(), deadline + max_wait_ms / 1000 - loop.time())
        except TimeoutError:
            raise ApiError(503, f"the interrupt took longer than {limit_s:g} s") from None
        return web.json_response(interruption.fields())

    async def live_start(self, request: web.Request) -> web.Response:
        body = await _json_object(request, optional=True)
        device = body.get("device")
        if device is not None and (not isinstance(device, str | int) or isinstance(device, bool)):
            raise ApiError(400, "device must be a name, an index or null")
        session = await self.daemon.live_start(device, _ranged(body, "input_rate", 8_000, 192_000),
                                               _ranged(body, "channels", 1, 64))
        return web.json_response({"device": session.live_input.name, "state": session.state})

    async def live_stop(self, _request: web.Request) -> web.Response:
        session = await self.daemon.live_stop()
        if session is None:
            return web.json_response({"stopped": False})
        return web.json_response({"stopped": True, "device": session.live_input.name, **session.drift_report()})

    async def send_text_message(self, request: web.Request) -> web.Response:
        """The Tavus echo quickstart's endpoint: the same body in, the same answers out."""
        try:
            body = await _json_object(request)
            properties = body.get("properties") or {}
            if not isinstance(properties, dict):
                raise ApiError(400, "properties must be an object")
            message = echo_message(body.get("conversation_id") or self.daemon.conversation_id, properties)
            await self.daemon.send_app_message(message)
        except ApiError as error:
            status = error.status if error.status in (400, 413) else 500
            return web.json_response({"error": error.message}, status=status)
        return web.json_response({"status": "Message sent successfully"})


async def _json_object(request: web.Request, optional: bool = False) -> dict[str, Any]:
    if optional and not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "the JSON body is too large") from None
    except web.RequestPayloadError as error:  # a body its Content-Encoding does not decode, say
        raise ApiError(400, f"the body cannot be read: {error}") from None
    # Not JSON, not text in its charset (or an unknown charset), or nested too deep to parse.
    except (ValueError, LookupError, RecursionError) as error:
        raise ApiError(400, f"malformed JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


_YES, _NO = ("1", "true", "yes"), ("0", "false", "no")
_JSON_KINDS: dict[type, str] = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
                                list: "an array", dict: "an object"}


def _json_kind(kind: type) -> str:
    return _JSON_KINDS.get(kind, kind.__name__)


def _field(body: dict[str, Any], name: str, kind: type, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"{name!r} is required")
        return None
    # bool is an int in Python; a JSON true is not a number of milliseconds.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(400, f"{name!r} must be {_json_kind(kind)}, not {_json_kind(type(value))}")
    return value


def _ranged(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    """An optional whole-number field from ``low`` to ``high``."""
    value = _field(body, name, int, required=False)
    if value is not None and not low <= value <= high:
        raise ApiError(400, f"{name!r} must be from {low} to {high}, not {value}")
    return value  # type: ignore[no-any-return]


def _bool_param(query: Any, name: str) -> bool:
    text = query.get(name, "false").lower()
    if text not in _YES + _NO:
        raise ApiError(400, f"{name} must be true or false, not {text!r}")
    return text in _YES


def _segment_answer(segment: Segment) -> dict[str, Any]:
    """A segment's id and state; once it is over, how much of it played and how it ended."""
    answer: dict[str, Any] = {"id": segment.id, "state": segment.state}
    if segment.done():
        answer.update(position_ms=round(segment.position_ms, 1), interrupted=segment.interrupted,
                      error=segment.error)
    return answer


def _int_param(query: Any, name: str, low: int, high: int) -> int | None:
    text = query.get(name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)
