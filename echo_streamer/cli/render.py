"""``echo-streamer render``: the pipeline without pacing, to a WAV file."""

from __future__ import annotations

import signal
from types import FrameType
from typing import NoReturn

import click

from .session import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, OutputPath, check_stdin, exit_with, fail, frame_option,
                      rate_option, refuse_overwriting, say)


@click.command()
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", "output_path", required=True, type=OutputPath(wav=True),
              help="Output WAV file.")
@rate_option
@frame_option
@click.option("--points", "points_path", type=OutputPath(), metavar="PATH",
              help="Write the interrupt points (pauses and the end) to this JSON file.")
def render(input_path: str, output_path: str, rate: str, frame_ms: str, points_path: str | None) -> None:
    """Run the play pipeline without pacing and write the frames to a WAV file.

    The output holds exactly the frames `play` would send for INPUT (mono PCM16, a whole
    number of frames, the last one padded with silence), as fast as decoding allows.
    INPUT may be - for standard input. --points lists where a soft interrupt may cut it:
    {"ms", "kind": "pause" | "end", "until_ms"}, times from the start of the output. Exit
    status: 0; 1 when INPUT cannot be decoded or OUT cannot be written (one line; OUT as it
    was); 130 when stopped by Ctrl-C or SIGTERM (OUT as it was; the exceptions, such as an OUT
    with another hard link, are in the README).

    \b
    Examples:
      echo-streamer render speech.flac -o speech-24k.wav
      echo-streamer render song.mp3 -o song-16k.wav --rate 16000 --frame-ms 20
      espeak-ng --stdout "Hello there" | echo-streamer render - -o hello.wav --points hello-points.json
    """
    from ..dsp.pipeline import OutputFormat
    from ..errors import InputError
    from ..renderer import PartlyWritten
    from ..renderer import render as render_file

    refuse_overwriting((input_path,), {"--output": output_path, "--points": points_path})
    if input_path == "-":
        check_stdin("pipe audio in (espeak-ng --stdout Hi | echo-streamer render - -o hi.wav)")
    signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: the partial output is removed
    try:
        result = render_file(input_path, output_path, OutputFormat(int(rate), int(frame_ms)))
    except InputError as error:
        fail(str(error), EXIT_BAD_INPUT)
    except (KeyboardInterrupt, OSError, PartlyWritten) as error:
        _stopped(error, input_path, output_path)
    if result.clipped:
        say(f"echo-streamer: {input_path}: {result.clipped} samples clipped at full scale")
    if points_path is not None:
        import dataclasses
        import json

        with open(points_path, "w", encoding="utf-8") as points:
            json.dump([dataclasses.asdict(point) for point in result.points], points, indent=1)
            points.write("\n")


def _stopped(error: BaseException, input_path: str, output_path: str) -> NoReturn:
    """Say why a render stopped (a stop, or an output that cannot be written: a full disk, a file
    size limit) and in what state it left the output, and exit."""
    from ..renderer import PartlyWritten

    state = "as it was"
    if isinstance(error, PartlyWritten):  # only an output a rename would change is rewritten in place
        state, error = "partly overwritten", error.__cause__ or error
    if isinstance(error, OSError):
        say(f"echo-streamer: {output_path}: cannot write it: {error.strerror or error}; it is {state}")
        code = EXIT_BAD_INPUT
    else:
        say(f"echo-streamer: {input_path}: render interrupted; {output_path} is {state}")
        code = EXIT_INTERRUPTED
    # Not finalised: the decoder may be blocked reading a pipe, and Python's shutdown would wait
    # for that read's lock (and abort).
    exit_with(code, skip_finalisation=True)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt
