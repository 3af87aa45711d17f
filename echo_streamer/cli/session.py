"""Running a Streamer from the command line: options, signals, events file, progress line, exit status.

Commands that stream (``play``, ``pipe``) share :func:`streaming_options` and hand
:func:`run_streaming` the work to do once the stream is up.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..limits import BITRATE, GAP_MS, JOIN_TIMEOUT_S, LEAD_MS, MAX_WAIT_MS

if TYPE_CHECKING:
    import asyncio

    from ..engine.segment import Segment
    from ..engine.streamer import Streamer, StreamerConfig

EXIT_BAD_INPUT = 1
EXIT_JOIN_FAILED = 2
EXIT_INTERRUPTED = 130  # as a shell reports a process SIGINT ended

# work(streamer, segments): queue audio, append each segment queued to ``segments``, return when done.
Work = Callable[["Streamer", "list[Segment]"], Awaitable[None]]


class OutputPath(click.Path):
    """A file to write: refused as a usage error, before anything streams, when its directory is
    missing or not writable or the path is a directory (rather than a traceback on opening it).
    A ``wav`` output is written in place, its header last, so it must be a regular file (or not
    exist yet): not ``-``, a terminal, a pipe or ``/dev/stdout``."""

    def __init__(self, wav: bool = False) -> None:
        super().__init__(dir_okay=False, writable=True)
        self.wav = wav

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = os.fsdecode(super().convert(value, param, ctx))
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            self.fail(f"{path}: no such directory {folder}", param, ctx)
        if not os.access(folder, os.W_OK | os.X_OK):
            self.fail(f"{path}: cannot write in {folder}", param, ctx)
        if self.wav and (path == "-" or (os.path.exists(path) and not os.path.isfile(path))):
            self.fail(f"{path}: not a regular file (a WAV file is written in place, its header last)", param, ctx)
        return path


def refuse_overwriting(inputs: tuple[str, ...], outputs: dict[str, str | None]) -> None:
    """A usage error when an output option (``{"--capture": path, ...}``) names one of the input
    files (opening it for writing would destroy the input before it is read), or the same file
    as another output option (each would corrupt the other). Outputs that are not regular files
    (``/dev/stdout``) may be shared."""
    named = [(option, output) for option, output in outputs.items() if output is not None]
    for option, output in named:
        if not os.path.exists(output):
            continue
        for name in inputs:
            if name != "-" and os.path.exists(name) and os.path.samefile(name, output):
                raise click.BadParameter(f"{output} is the input {name}: writing it would destroy it",
                                         param_hint=option)
    for index, (option, output) in enumerate(named):
        for other_option, other in named[:index]:
            shared = (os.path.samefile(output, other) if os.path.exists(output) and os.path.exists(other)
                      else os.path.realpath(output) == os.path.realpath(other))
            if shared and (os.path.isfile(output) or not os.path.exists(output)):
                raise click.UsageError(f"{other_option} and {option} name the same file {output}: "
                                       "each would corrupt the other")


def stream_outputs(options: dict[str, Any]) -> dict[str, str | None]:
    """The files :func:`stream_options` write, by option, for :func:`refuse_overwriting`."""
    return {"--capture": options["capture"], "--events": options["events_path"], "--sdk-log": options["sdk_log"],
            "--message-log": options["message_log"]}


MAX_WAIT_RANGE = click.IntRange(*MAX_WAIT_MS)
rate_option = click.option("--rate", type=click.Choice(["16000", "24000"]), default="24000", show_default=True,
                           help="Output sample rate in Hz.")
frame_option = click.option("--frame-ms", type=click.Choice(["10", "20"]), default="10", show_default=True,
                            help="Frame length handed to the SDK, in ms.")

_STREAM_OPTIONS = [
    click.option("--room", envvar="ECHO_STREAMER_ROOM_URL", metavar="URL",
                 help="Daily room URL (a Tavus conversation_url). Default: $ECHO_STREAMER_ROOM_URL; "
                      "with neither, stream offline."),
    click.option("--meeting-token", envvar="ECHO_STREAMER_MEETING_TOKEN",
                 help="Daily meeting token, if the room needs one."),
    rate_option,
    frame_option,
    click.option("--gap-ms", type=click.IntRange(*GAP_MS), default=300, show_default=True,
                 help="Digital silence between segments, in ms (rounded up to whole frames, at least one)."),
    click.option("--lead-ms", type=click.IntRange(*LEAD_MS), default=10, show_default=True,
                 help="Audio handed to the SDK ahead of playout, in ms (rounded up to whole frames)."),
    click.option("--transport", type=click.Choice(["custom-track", "virtual-mic", "app-message"]),
                 default="custom-track", show_default=True,
                 help="How audio reaches the call: a custom track used as the microphone, a virtual microphone "
                      "device (needs a room), or Tavus conversation.echo app messages (audio echo mode; needs "
                      "a conversation id: the room URL's or --conversation-id)."),
    click.option("--bitrate", type=click.IntRange(*BITRATE), default=96_000, show_default=True,
                 help="Opus send bitrate in bit/s."),
    click.option("--join-timeout", type=click.FloatRange(*JOIN_TIMEOUT_S), default=20.0, show_default=True,
                 help="Seconds to wait for the room join."),
    click.option("--capture", type=OutputPath(wav=True), metavar="PATH",
                 help="Write exactly the PCM the microphone sent (handed to the SDK, and the SDK's own "
                      "silence while resting) to this WAV file."),
    click.option("--events", "events_path", type=OutputPath(), metavar="PATH",
                 help="Write events as JSON lines to this file."),
    click.option("--sdk-log", type=OutputPath(), metavar="PATH",
                 help="Append the Daily SDK's own log lines here (default: discarded)."),
    click.option("--tavus-interrupt", is_flag=True,
                 help="Also send Tavus's conversation.interrupt app message at every interrupt."),
    click.option("--conversation-id", metavar="ID",
                 help="Tavus conversation id for --tavus-interrupt, the app-message transport and the daemon's "
                      "/send_text_message (default: the room URL's last path segment)."),
    click.option("--message-log", type=OutputPath(), metavar="PATH",
                 help="Append every app message sent to the room (echo audio, interrupts) here as JSON lines."),
]


# For commands run in a terminal, interrupted by signals.
_SIGNAL_OPTIONS = [
    click.option("--progress/--no-progress", default=None,
                 help="Show a progress line per segment (default: when stderr is a terminal)."),
    click.option("--keep-queue", is_flag=True,
                 help="An interrupt (SIGUSR1/SIGUSR2) skips only the current segment instead of also "
                      "dropping the ones queued after it."),
    click.option("--max-wait-ms", type=MAX_WAIT_RANGE, default=400, show_default=True,
                 help="How long a soft interrupt (SIGUSR2) waits for a pause before it cuts anyway."),
]


def stream_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options that configure a Streamer (room, format, pacing, outputs, Tavus interrupt)."""
    for option in reversed(_STREAM_OPTIONS):
        command = option(command)
    return command


def streaming_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`stream_options`, and the progress line and signal interrupts of a command run in a terminal."""
    for option in reversed(_SIGNAL_OPTIONS):
        command = option(command)
    return stream_options(command)


def run_streaming(options: dict[str, Any], work: Work, *, inputs: tuple[str, ...] = (),
                  prepare: Callable[[], None] = lambda: None, hard_exit: Callable[[], bool] = lambda: False,
                  interrupts_wait_for_work: bool = True) -> None:
    """Check ``options`` (from :func:`streaming_options`; no output option may name one of the
    ``inputs``), call ``prepare()`` (opening what ``work`` needs, such as a sound card: never left
    open by a usage error), stream until ``work`` is done or a signal stops it, and exit with the
    status: 0, 1 (a segment failed) or 2 (no join).

    An interrupt signal that came while starting is carried out once ``work`` has queued what it
    had at once (``play``'s files: they are cut); with ``interrupts_wait_for_work=False`` (``pipe``,
    ``live``: their segments come as input arrives), before ``work`` begins, finding nothing to cut.

    Exits without interpreter finalisation (:func:`exit_with`) when the join failed or
    ``hard_exit()`` says so."""
    import asyncio

    refuse_overwriting(inputs, stream_outputs(options))
    config = streamer_config(options)
    if options["conversation_id"] and config.tavus_conversation_id is None:
        raise click.UsageError("--conversation-id is used only by --tavus-interrupt and --transport app-message")
    progress = options["progress"]
    show_progress = sys.stderr.isatty() if progress is None else progress
    prepare()
    divert_native_stderr(options["sdk_log"])
    interrupts = _InterruptSignals(options["keep_queue"], options["max_wait_ms"], interrupts_wait_for_work)
    status = asyncio.run(_session(config, options["events_path"], show_progress, interrupts, work))
    # The SDK still finishing a failed join on its own threads would call back into a finalising
    # interpreter (a Rust panic on stderr).
    exit_with(status, skip_finalisation=status == EXIT_JOIN_FAILED or hard_exit())


def exit_with(status: int, *, skip_finalisation: bool) -> NoReturn:
    """Exit with ``status``; without interpreter finalisation when a native library is in a state
    that would hang or abort in it (PortAudio, when a device went away, asserts in its shutdown)."""
    if skip_finalisation:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def say(line: str) -> None:
    """Write ``line`` to stderr as a line of its own: a progress line drawn there is cleared first
    (it is drawn again at its next refresh)."""
    if _Progress.drawn:
        click.echo("\r\033[K", err=True, nl=False)
        _Progress.drawn = False
    click.echo(line, err=True)


def fail(message: str, status: int) -> NoReturn:
    """Say ``message`` as the command's one line about what went wrong, and exit with ``status``."""
    say(f"echo-streamer: {message}")
    sys.exit(status)


def check_stdin(advice: str) -> None:
    """Fail (status 1) when standard input, which the command is to read, is closed or a terminal,
    where it would wait for typed audio; ``advice`` says how to give it audio."""
    if sys.stdin is None:  # closed as we started: descriptor 0 may be another file's by now
        fail("-: standard input is closed", EXIT_BAD_INPUT)
    if sys.stdin.isatty():
        fail(f"-: standard input is a terminal: {advice}", EXIT_BAD_INPUT)


def streamer_config(options: dict[str, Any]) -> StreamerConfig:
    """The Streamer configuration :func:`stream_options` describe (usage errors raised as click exceptions)."""
    from ..engine.streamer import StreamerConfig

    room = options["room"] or None
    if room is not None and not room.startswith(("https://", "http://")):
        raise click.BadParameter(f"{room!r} is not an http(s) URL", param_hint="--room")
    if room is None and options["transport"] == "virtual-mic":
        raise click.UsageError("--transport virtual-mic needs --room: a virtual microphone drops audio until joined")
    conversation_id = _tavus_conversation_id(options["tavus_interrupt"] or options["transport"] == "app-message",
                                             room, options["conversation_id"])
    return StreamerConfig(room_url=room, meeting_token=options["meeting_token"], rate=int(options["rate"]),
                          frame_ms=int(options["frame_ms"]), gap_ms=options["gap_ms"], lead_ms=options["lead_ms"],
                          transport=options["transport"], bitrate=options["bitrate"],
                          join_timeout=options["join_timeout"], capture_path=options["capture"],
                          tavus_conversation_id=conversation_id, stream_start_ms=options.get("stream_start_ms", 0),
                          message_log=options["message_log"])


def _tavus_conversation_id(enabled: bool, room: str | None, conversation_id: str | None) -> str | None:
    if not enabled:
        return None
    if conversation_id:
        return conversation_id
    if room is None:
        raise click.UsageError("--tavus-interrupt and --transport app-message need --room or --conversation-id")
    from ..output.tavus import conversation_id_from_url

    try:
        return conversation_id_from_url(room)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--room") from None


def divert_native_stderr(log_path: str | None) -> None:
    """Send file descriptor 2 to ``log_path`` (or /dev/null) and keep our messages on the real stderr.

    The Daily SDK writes JSON log lines straight to descriptor 2, whatever its log level.
    """
    sys.stderr.flush()
    # Its encoding and error handler kept: a file name that is no valid UTF-8 is written escaped.
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors=sys.stderr.errors)
    target = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    os.close(target)


async def _session(config: StreamerConfig, events_path: str | None, show_progress: bool,
                   interrupts: _InterruptSignals, work: Work) -> int:
    from ..engine.streamer import Streamer
    from ..errors import JoinError
    from ..output.eventlog import EventLog

    streamer = Streamer(config)
    event_log = EventLog(events_path) if events_path else None
    if event_log is not None:
        streamer.add_listener(event_log.write)
    streamer.add_listener(_report_problems)
    if config.room_url is None:
        say("echo-streamer: no room URL given: streaming offline through a Daily audio source not joined to any call")
    try:
        return await _stream_until_done(streamer, show_progress, interrupts, work)
    except JoinError:  # said by _report_problems, from the error event
        return EXIT_JOIN_FAILED
    finally:
        if event_log is not None:
            event_log.close()


async def _stream_until_done(streamer: Streamer, show_progress: bool, interrupts: _InterruptSignals,
                             work: Work) -> int:
    """Start, run ``work``, or stop early on SIGINT / SIGTERM (status 0 unless a segment, or the
    input itself, failed: an :class:`InputError` from ``work``)."""
    import asyncio

    from ..errors import InputError

    stop = _stop_on_signals()
    interrupts.install(streamer)
    noted = HELD_SIGNALS.take()
    if set(noted) & set(STOP_SIGNALS):
        stop.set()
    interrupts.noted([_INTERRUPT_MODES[signum] for signum in noted if signum in _INTERRUPT_MODES])
    if not await _until_stopped(streamer.start(), stop):
        return 0
    segments: list[Segment] = []

    async def working() -> None:
        queueing = asyncio.ensure_future(work(streamer, segments))  # scheduled, not begun
        if interrupts.wait_for_work:
            await asyncio.sleep(0)  # it queues what it has before its first wait
        interrupts.ready(streamer)
        await queueing

    try:
        await _until_stopped(working(), stop, _Progress(streamer) if show_progress else None)
    except InputError as error:  # the input itself failed (a FIFO gone), not one segment of it
        say(f"echo-streamer: {error}")
        return EXIT_BAD_INPUT
    finally:
        await streamer.close()
    return EXIT_BAD_INPUT if any(segment.error for segment in segments) else 0


# Signals that stop a streaming command, and those that interrupt its stream (and how).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_INTERRUPT_MODES: dict[int, str] = {signal.SIGUSR1: "now", signal.SIGUSR2: "next_pause"}


class _HeldSignals:
    """Signals that come while a streaming command starts up (imports, checks, the SDK's start),
    before the event loop's handlers are in place: noted instead of ending the process (or, for
    SIGINT, raising KeyboardInterrupt), and acted on once the handlers are (:meth:`take`). A
    second SIGINT or SIGTERM meanwhile ends the process by the signal's default action: a start
    stuck on something (an output FIFO no one reads, a sound card that hangs) can be stopped."""

    SIGNALS = (*STOP_SIGNALS, *_INTERRUPT_MODES)

    def __init__(self) -> None:
        self._received: list[int] = []

    def hold(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._note)

    def take(self) -> list[int]:
        """The signals noted so far, in order (call once the loop's own handlers are installed)."""
        received, self._received = self._received, []
        return received

    def _note(self, signum: int, _frame: object) -> None:
        if signum in STOP_SIGNALS and any(earlier in STOP_SIGNALS for earlier in self._received):
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        self._received.append(signum)


HELD_SIGNALS = _HeldSignals()


def _stop_on_signals() -> asyncio.Event:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    return stop


class _InterruptSignals:
    """SIGUSR1: interrupt now; SIGUSR2: interrupt at the next pause. One that comes while the
    command starts (or joins) is held until the work begins, or with ``wait_for_work`` until it
    has queued its first items, so that what it would have cut is cut; one that comes while the
    stream stops is ignored, with a line saying so."""

    def __init__(self, keep_queue: bool, max_wait_ms: int, wait_for_work: bool) -> None:
        self.keep_queue = keep_queue
        self.max_wait_ms = max_wait_ms
        self.wait_for_work = wait_for_work
        self._held: list[str] | None = []  # None once ready
        self._noted: list[str] = []

    def install(self, streamer: Streamer) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        for signum, mode in _INTERRUPT_MODES.items():
            loop.add_signal_handler(signum, self.request, streamer, mode)

    def noted(self, modes: list[str]) -> None:
        """Hold the requests :data:`HELD_SIGNALS` noted before :meth:`install`."""
        self._noted = modes

    def ready(self, streamer: Streamer) -> None:
        """The work begins (or, with ``wait_for_work``, has queued what it had): carry out the
        requests held until now; from here on each is carried out as it comes.

        A signal that came while the loop's handlers were being put in place was noted, and the
        loop delivered it as well (its wakeup byte was written): such a pair counts once."""
        held, self._held = self._held or [], None
        for mode in dict.fromkeys(self._noted):
            held += [mode] * (self._noted.count(mode) - held.count(mode))
        for mode in held:
            self.request(streamer, mode)

    def request(self, streamer: Streamer, mode: str) -> None:
        if self._held is not None:
            self._held.append(mode)
        elif streamer.running:
            streamer.interrupt(mode, keep_queue=self.keep_queue, max_wait_ms=self.max_wait_ms)
        else:
            say(f"echo-streamer: interrupt ({mode}) ignored: the stream is stopping")


async def _until_stopped(work: Any, stop: asyncio.Event, progress: _Progress | None = None) -> bool:
    """Run ``work`` until it finishes (True) or ``stop`` is set (False, ``work`` cancelled)."""
    from ..engine.waiting import unless

    try:
        return await unless(stop, work, tick=None if progress is None else (0.1, progress.refresh))
    finally:
        if progress is not None:
            progress.done()


def _report_problems(event: dict[str, Any]) -> None:
    if event["event"] == "error":
        say(f"echo-streamer: {event['message']}")
    elif event["event"] == "clipped":
        say(f"echo-streamer: {event['item']}: {event['samples']} samples clipped at full scale")
    elif event["event"] == "tavus_interrupt" and event["error"]:
        say(f"echo-streamer: conversation.interrupt for {event['conversation_id']} not sent: {event['error']}")


class _Progress:
    """One status line on stderr for the segment now playing: elapsed / total, and its name.
    ``drawn``: whether a status line is on the screen, unfinished (no newline after it)."""

    drawn = False

    def __init__(self, streamer: Streamer) -> None:
        self._streamer = streamer
        self._shown: Segment | None = None

    def refresh(self) -> None:
        segment = self._streamer.current
        if self._shown is not None and segment is not self._shown:
            self.done()
        if segment is None or segment.started_at is None:
            return
        self._shown = segment
        self._draw(segment)

    def done(self) -> None:
        """End the line of the segment shown, drawn where it ended (all of it, unless it was cut)."""
        if self._shown is not None:
            self._draw(self._shown)
            click.echo("", err=True)
            _Progress.drawn = False
            self._shown = None

    @staticmethod
    def _draw(segment: Segment) -> None:
        total = "?" if segment.duration is None else _clock(segment.duration)
        name = os.path.basename(segment.name)
        click.echo(f"\r{_bar(segment)} {_clock(segment.position_ms / 1000)} / {total}  {name}\033[K", err=True,
                   nl=False)
        _Progress.drawn = True


def _bar(segment: Segment, width: int = 24) -> str:
    if not segment.duration:
        return "[" + " " * width + "]"
    filled = min(width, round(width * segment.position_ms / 1000 / segment.duration))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:04.1f}"
