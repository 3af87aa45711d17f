"""``echo-streamer play``: files, one after another, in real time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .session import check_stdin, run_streaming, streaming_options

if TYPE_CHECKING:
    from ..engine.segment import Segment
    from ..engine.streamer import Streamer


@click.command()
@click.argument("files", nargs=-1, required=True)
@streaming_options
def play(files: tuple[str, ...], **options: Any) -> None:
    """Play FILES into the room in real time, one after another.

    Any format libsndfile or ffmpeg decodes, at any rate from 8 to 192 kHz and any channel
    count. A file that cannot be decoded is reported in one line and skipped; the exit status
    is then 1. A room that cannot be joined exits with status 2. Ctrl-C or SIGTERM fades out
    and stops cleanly (status 0).

    Interrupts: SIGUSR1 cuts the current file now (a 4 ms fade, then --gap-ms of silence);
    SIGUSR2 cuts it at the next pause in the speech, within --max-wait-ms. Either drops the
    files queued behind it unless --keep-queue is given.

    \b
    Examples:
      echo-streamer play samples/*.wav
      echo-streamer play a.mp3 b.flac --room https://tavus.daily.co/c123456 --rate 16000
      echo-streamer play talk.m4a --capture sent.wav --events events.jsonl
      echo-streamer play story.wav & sleep 2; kill -USR2 $!       # stop at the next pause
    """

    async def play_files(streamer: Streamer, segments: list[Segment]) -> None:
        segments.extend(streamer.play(path) for path in files)
        await streamer.drain()

    def check_inputs() -> None:
        if "-" in files:
            check_stdin("pipe audio in (espeak-ng --stdout Hi | echo-streamer play -)")

    run_streaming(options, play_files, inputs=files, prepare=check_inputs)
