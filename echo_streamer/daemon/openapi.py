"""The API's description, served at ``/openapi.json`` (OpenAPI 3.1)."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..engine.interrupt import DEFAULT_MAX_WAIT_MS, MODES
from ..limits import MAX_WAIT_MS
from ..sources.formats import AUTO, RAW_FORMATS

_ERROR = {"description": "Refused, with the reason", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}}}}}
_NUMBER, _STRING, _BOOL = {"type": "number"}, {"type": "string"}, {"type": "boolean"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
_INTERRUPTION = {"interrupt": _STRING, "mode": {"enum": list(MODES)},
                 "cut": {"enum": ["now", "pause", "dip", "no_pause", "deadline", "underrun", "end", None]},
                 "noop": _BOOL, "id": _NULLABLE_STRING, "item": _NULLABLE_STRING, "position_ms": _NULLABLE_NUMBER,
                 "dropped": {"type": "array", "items": _STRING}, "latency_ms": _NULLABLE_NUMBER}
_STATUS = {"call": {"type": "object", "properties": {"participants": {"type": "array"}}},
           "current": {"type": ["object", "null"]},
           "queue": {"type": "array"}, "live": {"type": ["object", "null"]}, "counters": {"type": "object"},
           "uptime_s": _NUMBER}
_DRIFT = {"measured": _BOOL, "ppm": _NUMBER, "ppm_error": _NUMBER, "samples_dropped": _NUMBER,
          "samples_inserted": _NUMBER, "placement_samples": _NUMBER, "overflows": _NUMBER, "device_overflows": _NUMBER,
          "underruns": _NUMBER}


def _answer(properties: dict[str, Any] | None = None, description: str = "OK") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    if properties:
        schema["properties"] = properties
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _json_body(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_WAIT = _query("wait", {"type": "boolean", "default": False}, "answer only once the segment has played")
# A segment, with (once it is over) how much of it played and how it ended.
_PLAYED = {"id": _STRING, "state": _STRING, "position_ms": _NUMBER, "interrupted": _BOOL, "error": _NULLABLE_STRING}


def _operation(summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    """Every route may answer 503 (over the request limit, not streaming yet, or stopping); one
    that reads a JSON body also 400 (malformed, or a field out of range) and 413 (over 1 MB).
    (:func:`openapi_spec` adds the refusal every route may answer, by whether a token is asked for.)"""
    body_types = more.get("requestBody", {}).get("content", {})
    refusals = {"400": _ERROR, "413": _ERROR} if "application/json" in body_types else {}
    return {"summary": summary, "responses": {**responses, **refusals, "503": _ERROR}, **more}


def openapi_spec(token: bool) -> dict[str, Any]:
    """The API's description; ``token``: whether this daemon asks for a bearer token. Every route
    may then answer 401 (the token is missing or wrong); else 403 (the request comes from a web
    page or names another host)."""
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "echo-streamer daemon", "version": __version__,
                 "description": "Queue audio, interrupt it and watch it play on a Daily microphone track "
                                "(Tavus microphone echo)."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}] if token else [],
        "paths": {
            "/v1/play": {"post": _operation(
                "Queue a file inside the allowed directories; segments play in order.",
                {"202": _answer({"id": _STRING, "state": _STRING}, "Queued"), "200": _answer(_PLAYED, "Played"),
                 "403": _ERROR, "404": _ERROR, "409": _ERROR, "503": _ERROR},
                parameters=[_WAIT],
                requestBody=_json_body({"path": {"type": "string"}, "id": {"type": "string"}}, ["path"]))},
            "/v1/stream": {"post": _operation(
                "One segment that plays while its (chunked) body uploads; answers when the upload ends.",
                {"200": _answer({**_PLAYED, "bytes": _NUMBER}),
                 "400": _ERROR, "408": _ERROR, "409": _ERROR, "413": _ERROR, "503": _ERROR},
                parameters=[
                    _query("format", {"enum": [AUTO, *RAW_FORMATS], "default": AUTO},
                           "auto: a WAV header, else ffmpeg (MP3, Ogg, ...); or raw samples"),
                    _query("rate", {"type": "integer", "minimum": 8000, "maximum": 192000}, "raw input rate, Hz"),
                    _query("channels", {"type": "integer", "minimum": 1, "maximum": 64}, "raw input channels"),
                    _query("id", {"type": "string"}, "segment id (default: seg-N)"),
                    _WAIT,
                ],
                requestBody={"required": True, "content": {"application/octet-stream": {"schema": {
                    "type": "string", "format": "binary"}}}})},
            "/v1/interrupt": {"post": _operation(
                "Cut the segment playing (a 4 ms fade, then the gap); answers once the cut has played.",
                {"200": _answer(_INTERRUPTION), "503": _ERROR},
                requestBody=_json_body({"mode": {"enum": list(MODES), "default": "now"},
                                        "clear_queue": {"type": "boolean", "default": True},
                                        "max_wait_ms": {"type": "integer", "default": DEFAULT_MAX_WAIT_MS,
                                                        "minimum": MAX_WAIT_MS[0], "maximum": MAX_WAIT_MS[1]}}))},
            "/v1/live/start": {"post": _operation(
                "Stream a sound card (or unmute the one muted by an interrupt).",
                {"200": _answer({"device": _STRING, "state": _STRING}), "409": _ERROR, "503": _ERROR},
                requestBody=_json_body({"device": {"type": ["string", "integer", "null"]},
                                        "input_rate": {"type": "integer", "minimum": 8000, "maximum": 192000},
                                        "channels": {"type": "integer", "minimum": 1, "maximum": 64}}))},
            "/v1/live/stop": {"post": _operation("Stop the sound card (its audio fades out).",
                                                 {"200": _answer({"stopped": _BOOL, "device": _STRING, **_DRIFT})})},
            "/v1/status": {"get": _operation("Call, participants, current segment, queue, live input, counters.",
                                             {"200": _answer(_STATUS)})},
            "/v1/events": {"get": _operation(
                "Server-sent events: segments, interrupts, underruns, call state, participants, Tavus events.",
                {"200": {"description": "An endless text/event-stream", "content": {"text/event-stream": {}}}})},
            "/metrics": {"get": _operation("Prometheus text format.",
                                           {"200": {"description": "OK", "content": {"text/plain": {}}}})},
            "/send_text_message": {"post": _operation(
                "The Tavus echo quickstart's endpoint: forwards conversation.echo as an app message.",
                {"200": _answer({"status": _STRING}), "500": _ERROR},
                requestBody=_json_body({"conversation_id": {"type": "string"},
                                        "properties": {"type": "object"}}))},
            "/openapi.json": {"get": _operation("This document.", {"200": _answer()})},
        },
    }
    for operations in spec["paths"].values():
        for operation in operations.values():
            operation["responses"].setdefault("401" if token else "403", _ERROR)
    return spec
