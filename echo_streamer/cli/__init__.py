"""The ``echo-streamer`` command line: thin drivers over :class:`echo_streamer.Streamer` and ``render``.

Only click and the standard library are imported at start-up; numpy, soundfile and daily load
inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import click

from .. import __version__
from .client import events, interrupt, say_command, status
from .daemon import daemon
from .live import devices, live
from .pipe import pipe
from .play import play
from .render import render
from .session import HELD_SIGNALS

# Commands that stream: a signal that comes while they start is held for the stream to act on.
STREAMING = ("play", "pipe", "live", "daemon")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="echo-streamer")
@click.pass_context
def main(context: click.Context) -> None:
    """Stream audio into a Daily room as a microphone, for Tavus microphone echo mode.

    The replica lip-syncs whatever arrives on our microphone track. Files are decoded,
    downmixed, resampled to 16 or 24 kHz mono PCM16, cut into exact frames and paced in
    real time by the Daily SDK.

    \b
    Examples:
      echo-streamer play samples/*.wav                      # offline: no room needed
      echo-streamer play intro.mp3 answer.m4a --room https://tavus.daily.co/c123456
      espeak-ng --stdout "Hello there" | echo-streamer pipe
      echo-streamer live --device pulse --input-rate 48000 --duration 10
      echo-streamer render speech.flac -o speech-24k.wav
      echo-streamer daemon &                                # the HTTP daemon, and a client:
      echo-streamer say --connect-timeout 10 hello.wav      # (waits for the daemon to listen)
    """
    if context.invoked_subcommand in STREAMING:
        HELD_SIGNALS.hold()


main.add_command(play)
main.add_command(pipe)
main.add_command(live)
main.add_command(devices)
main.add_command(render)
main.add_command(daemon)
main.add_command(say_command)
main.add_command(interrupt)
main.add_command(status)
main.add_command(events)
