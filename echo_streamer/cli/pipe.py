"""``echo-streamer pipe``: audio from standard input or a named FIFO, streamed as the bytes arrive."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

import click

from ..errors import InputError
from ..limits import STREAM_START_MS
from ..sources.formats import AUTO, STREAM_FORMATS
from .session import EXIT_BAD_INPUT, check_stdin, fail, run_streaming, streaming_options

if TYPE_CHECKING:
    import asyncio

    from ..engine.segment import Segment
    from ..engine.streamer import Streamer
    from ..sources.pipe import FollowedFifo, PipeReader


@click.command()
@click.option("--input", "input_path", metavar="PATH", help="Read this file or named FIFO instead of standard input.")
@click.option("--format", "sample_format", type=click.Choice(STREAM_FORMATS), default=AUTO, show_default=True,
              help="auto: a WAV header if there is one (its sizes are not trusted), else whatever ffmpeg "
                   "decodes (MP3, Ogg, ...); or raw samples, which need --input-rate.")
@click.option("--input-rate", type=click.IntRange(8_000, 192_000), metavar="HZ", help="Sample rate of raw input.")
@click.option("--channels", type=click.IntRange(1, 64), help="Channels of raw input (interleaved). [default: 1]")
@click.option("--follow", is_flag=True,
              help="Reopen --input (a named FIFO) each time its writer closes: one segment per writer.")
@click.option("--start-ms", type=click.IntRange(*STREAM_START_MS), default=0, show_default=True,
              help="Start a segment once this much audio is ready (0: with its first frame). 20 avoids a "
                   "stutter when the writer delivers 20 ms at a time barely faster than real time.")
@streaming_options
def pipe(input_path: str | None, sample_format: str, input_rate: int | None, channels: int | None, follow: bool,
         start_ms: int, **options: Any) -> None:
    """Stream audio from standard input (or --input) into the room as it arrives.

    Nothing waits for the end of the input: each chunk a TTS process writes is decoded,
    resampled and framed at once. While the writer is silent the stream carries silence (an
    underrun while a segment is open); when it closes, the segment ends and --gap-ms of silence
    follows. With --format auto, a new WAV header in the stream also starts a new segment, so
    WAVs written back to back (writers that follow each other closely on a FIFO, or several
    commands into one pipe) stay apart. SIGUSR1 / SIGUSR2 interrupt as in `play`; what the writer
    sends after a cut, until it closes (or its next WAV header), is read and dropped, and so are
    the WAVs and --follow writers that came before the interrupt and wait to play. Exit
    status: 0 once the input has ended and played out, or on Ctrl-C / SIGTERM; 1 when the input
    cannot be read or an utterance could not be decoded (one line each); 2 when the room cannot
    be joined.

    \b
    Examples:
      espeak-ng --stdout "Hello there" | echo-streamer pipe
      piper -m voice.onnx --output-raw < story.txt | echo-streamer pipe --format s16le --input-rate 22050
      mkfifo /tmp/say; echo-streamer pipe --input /tmp/say --follow &
      espeak-ng --stdout "One sentence." > /tmp/say; espeak-ng --stdout "Another." > /tmp/say
    """
    if sample_format != AUTO and input_rate is None:
        raise click.UsageError(f"--format {sample_format} needs --input-rate")
    if sample_format == AUTO and (input_rate or channels):
        raise click.UsageError("--input-rate and --channels describe raw input (--format s16le, ...): with --format "
                               "auto they come from the stream")
    if sample_format != AUTO:
        channels = channels or 1
    if follow and input_path is None:
        raise click.UsageError("--follow needs --input PATH (a named FIFO to reopen)")

    def check_input() -> None:
        if input_path is not None:
            _check_input(input_path, follow)
        else:
            check_stdin("pipe audio in (espeak-ng --stdout Hi | echo-streamer pipe) or give --input")

    async def pipe_segments(streamer: Streamer, segments: list[Segment]) -> None:
        from ..engine.waiting import in_daemon_thread

        split_wav = sample_format == AUTO
        current: list[PipeReader] = []  # the writer's reader being streamed, for an interrupt to drop
        if not follow:
            current.append(await _opened(input_path, split_wav))
            streamer.add_listener(lambda event: _drop_writers(event, current, None))
            await _stream_writer(streamer, current[0], segments, sample_format, input_rate, channels)
            current[0].close()
            await streamer.drain()
            return
        from ..sources.pipe import FollowedFifo

        assert input_path is not None
        fifo = FollowedFifo(input_path, split_wav)
        streamer.add_listener(lambda event: _drop_writers(event, current, fifo))
        while True:
            try:
                reader = await in_daemon_thread(fifo.next)
            except InputError:  # the FIFO is gone: what was read of it still plays out first
                await streamer.drain()
                raise
            finally:
                # Only now: while no reader is open, the FIFO drops what a writer has left in it.
                for previous in current:
                    previous.close()
            current[:] = [reader]
            if reader.dropped:  # read to its end elsewhere (FollowedFifo.drop_waiting)
                await in_daemon_thread(reader.ended.wait)
            else:
                await _stream_writer(streamer, reader, segments, sample_format, input_rate, channels)

    run_streaming({**options, "stream_start_ms": start_ms}, pipe_segments,
                  inputs=() if input_path is None else (input_path,), prepare=check_input,
                  interrupts_wait_for_work=False)


def _check_input(path: str, follow: bool) -> None:
    """Exit with one line (status 1) for an input that cannot be read; a usage error (status 2)
    for --follow on what is no named FIFO."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        fail(f"{path}: cannot open it: {error.strerror}", EXIT_BAD_INPUT)
    if stat.S_ISDIR(mode):
        fail(f"{path}: is a directory", EXIT_BAD_INPUT)
    if follow and not stat.S_ISFIFO(mode):
        kind = "a regular file" if stat.S_ISREG(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise click.BadParameter(f"{path}: --follow needs a named FIFO (mkfifo), not {kind}", param_hint="--input")
    # /dev/stdin or /dev/fd/N on a shell's pipe: a FIFO too, but reopening it finds its end again at once.
    if follow and os.path.basename(os.path.realpath(path)).startswith("pipe:["):
        raise click.BadParameter(f"{path}: --follow needs a named FIFO (mkfifo), not an anonymous pipe",
                                 param_hint="--input")


async def _opened(path: str | None, split_wav: bool) -> PipeReader:
    from ..engine.waiting import in_daemon_thread
    from ..sources.pipe import PipeReader

    if path is None:
        return PipeReader.stdin(split_wav)
    return await in_daemon_thread(lambda: PipeReader.open(path, split_wav))


async def _stream_writer(streamer: Streamer, reader: PipeReader, segments: list[Segment], sample_format: str,
                         rate: int | None, channels: int | None) -> None:
    """Stream what one writer sends until it closes: a segment per utterance (per WAV, with
    --format auto), each queued once the one before has been read to its end, but for those that
    an interrupt drops (:func:`_drop_writers`)."""
    while True:
        segment = streamer.stream_bytes(reader.utterance(), sample_format=sample_format, rate=rate,
                                        channels=channels, name=reader.name)
        # Only the failed ones matter for the exit status: a long --follow keeps no more.
        segments[:] = [kept for kept in segments if kept.error or not kept.done()] + [segment]
        await _utterance_over(reader, segment)
        if not await _next_kept_utterance(reader):
            return


async def _next_kept_utterance(reader: PipeReader) -> bool:
    """Move on to the writer's next utterance that began after the last interrupt, dropping those
    that began before it; False once the writer has closed."""
    from ..engine.waiting import in_daemon_thread

    while reader.next_utterance():
        if not reader.began_before_drop():
            return True
        await in_daemon_thread(reader.discard_utterance)
    return False


def _drop_writers(event: dict[str, Any], current: list[PipeReader], fifo: FollowedFifo | None) -> None:
    """An interrupt that drops what is queued (not --keep-queue) also drops what had come from the
    writers before it and is not queued yet: the streaming writer's WAVs that began before it,
    and, with --follow, every writer waiting for its turn."""
    if event["event"] == "interrupt_requested" and not event["keep_queue"]:
        for reader in current:
            reader.drop_received()
        if fifo is not None:
            fifo.drop_waiting()


async def _utterance_over(reader: PipeReader, segment: Segment) -> None:
    """Wait until the utterance has been read to its end; once the segment is over before that
    (cut, dropped or failed), read and drop the rest so that the writer is never blocked."""
    import asyncio

    from ..engine.waiting import in_daemon_thread

    over: asyncio.Future[Any] = in_daemon_thread(reader.utterance_over.wait)
    done: asyncio.Future[Any] = asyncio.ensure_future(segment.wait())
    try:
        await asyncio.wait({over, done}, return_when=asyncio.FIRST_COMPLETED)
        if not reader.utterance_over.is_set():
            await in_daemon_thread(reader.discard_utterance)
    finally:
        done.cancel()
