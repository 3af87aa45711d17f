"""``echo-streamer daemon``: one stream kept in the room, controlled over HTTP."""

from __future__ import annotations

from typing import Any

import click

from .client import bearer_token
from .session import (HELD_SIGNALS, STOP_SIGNALS, divert_native_stderr, exit_with, fail,
                      refuse_overwriting, say, stream_options, stream_outputs, streamer_config)

EXIT_CANNOT_LISTEN = 2


@click.command()
@click.option("--listen", default="127.0.0.1:8765", show_default=True, metavar="HOST:PORT",
              help="Where the HTTP API listens (port 0: any free port, printed at start). Anything but "
                   "loopback needs a token.")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), metavar="PATH",
              help="A file holding the bearer token every request must carry (default: $ECHO_STREAMER_TOKEN).")
@click.option("--allow-dir", "allow_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              metavar="DIR", help="A directory /v1/play may read files from (repeatable; default: none, so only "
                                  "uploads to /v1/stream play).")
@click.option("--mute-ms", type=click.IntRange(1, None), metavar="MS",
              help="After an interrupt, a live input unmutes by itself after this long (default: at the next "
                   "/v1/live/start).")
@click.option("--max-upload-mb", type=click.IntRange(1, 1 << 20), default=1024, show_default=True,
              help="Largest /v1/stream body, in MB.")
@click.option("--upload-idle-s", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True,
              help="An upload that sends nothing for this long fails its segment.")
@click.option("--request-timeout", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
              help="Longest a JSON request may take, in seconds.")
@stream_options
def daemon(listen: str, token_file: str | None, allow_dirs: tuple[str, ...], mute_ms: int | None,
           max_upload_mb: int, upload_idle_s: float, request_timeout: float, **options: Any) -> None:
    """Join the room once and take commands over HTTP until SIGTERM or Ctrl-C.

    Keeps the microphone track alive with silence while idle; queues files (POST /v1/play) and
    uploads that play as they arrive (POST /v1/stream); interrupts (POST /v1/interrupt); live
    input (POST /v1/live/start, /v1/live/stop); reports state (GET /v1/status, /metrics) and
    events (GET /v1/events, server-sent). A failed join or a dropped call is retried with
    backoff. With no room it streams offline. The API is described at /openapi.json. Exit
    status: 0 once stopped (within 3 s); 2 when it cannot listen (the port is taken).

    \b
    Examples:
      echo-streamer daemon --allow-dir ~/audio                # offline, on 127.0.0.1:8765
      echo-streamer daemon --room https://tavus.daily.co/c123456 --allow-dir ~/audio
      curl -X POST localhost:8765/v1/play -d '{"path": "hello.wav"}'      # ~/audio/hello.wav
      curl -X POST -T speech.wav localhost:8765/v1/stream
      curl -X POST localhost:8765/v1/interrupt -d '{"mode": "next_pause"}'
      curl -N localhost:8765/v1/events
    """
    import asyncio

    from ..daemon.app import ApiLimits, is_loopback
    from ..daemon.server import ListenError, parse_listen, serve
    from ..daemon.service import Daemon, DaemonConfig

    try:
        host, port = parse_listen(listen)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--listen") from None
    refuse_overwriting((), stream_outputs(options))
    token = bearer_token(token_file)
    if token is None and not is_loopback(host):
        raise click.UsageError(f"--listen {listen} is not loopback: give a token (--token-file or "
                               "$ECHO_STREAMER_TOKEN) or listen on 127.0.0.1")
    config = DaemonConfig(streamer_config(options), tuple(allow_dirs), mute_ms=mute_ms,
                          conversation_id=options["conversation_id"])
    limits = ApiLimits(request_s=request_timeout, upload_bytes=max_upload_mb << 20, upload_idle_s=upload_idle_s)
    divert_native_stderr(options["sdk_log"])

    async def main() -> Daemon:
        daemon = Daemon(config)

        def listening(url: str) -> None:
            where = "offline: no room URL" if config.streamer.room_url is None else config.streamer.room_url
            say(f"echo-streamer: daemon listening on {url} ({where})")
            # Its own handlers are in place now: a SIGINT or SIGTERM held while it started stops it
            # (interrupt signals mean nothing to the daemon: they are dropped, not fatal).
            if set(STOP_SIGNALS) & set(HELD_SIGNALS.take()):
                daemon.stop()

        await serve(daemon, host, port, token, limits, listening, options["events_path"])
        return daemon

    try:
        daemon = asyncio.run(main())
    except ListenError as error:
        fail(str(error), EXIT_CANNOT_LISTEN)
    exit_with(0, skip_finalisation=daemon.device_lost or daemon.card_opening)

