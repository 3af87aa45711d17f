"""Running the daemon: the HTTP server up first, then the stream, and the shutdown order."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

from aiohttp import web

from ..output.eventlog import EventLog
from .app import ApiLimits, create_app
from .service import Daemon

SHUTDOWN_S = 1.0


class ListenError(Exception):
    """The API's address cannot be bound (in use, not ours, not an address)."""


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


async def serve(daemon: Daemon, host: str, port: int, token: str | None, limits: ApiLimits,
                on_listening: Callable[[str], None], events_path: str | None = None) -> None:
    """Serve the API on ``host:port`` and stream until SIGINT / SIGTERM.

    The API answers from the start (status shows the join in progress). On a signal the stream
    fades out and the room is left first, then open requests get ``SHUTDOWN_S`` to finish.
    Raises :class:`ListenError` when the address cannot be bound.
    """
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, daemon.stop)
    _one_line_protocol_errors()
    runner = web.AppRunner(create_app(daemon, token, limits), shutdown_timeout=SHUTDOWN_S, access_log=None)
    await runner.setup()
    log_task = None if events_path is None else asyncio.ensure_future(_log_events(daemon, events_path))
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None
        bound_host, bound_port = runner.addresses[0][:2]
        on_listening(f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}")
        await daemon.run()
    finally:
        await runner.cleanup()
        if log_task is not None:
            daemon.events.close(time.monotonic())  # run() closes it, unless it never ran or failed
            await log_task


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        error = record.exc_info[1] if record.exc_info else None
        reason = str(getattr(error, "message", error) or "").strip().splitlines()
        return f"echo-streamer: {record.getMessage()}" + (f": {reason[0].rstrip(':')}" if reason else "")


def _one_line_protocol_errors() -> None:
    """aiohttp logs every malformed request (a bad Content-Length, a bad chunk size) with a
    traceback, before any handler or token check runs: one line each instead."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    logger = logging.getLogger("aiohttp.server")
    logger.handlers[:] = [handler]
    logger.propagate = False


async def _log_events(daemon: Daemon, path: str) -> None:
    log = EventLog(path)
    try:
        async for event in daemon.events.subscribe():
            if event is not None:
                log.write(event)
    finally:
        log.close()
