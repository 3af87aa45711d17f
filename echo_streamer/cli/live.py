"""``echo-streamer live`` (a sound card through the face) and ``echo-streamer devices``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from .session import EXIT_BAD_INPUT, run_streaming, say, streaming_options

if TYPE_CHECKING:
    from ..engine.segment import Segment
    from ..engine.streamer import Streamer
    from ..sources.live import LiveInput


@click.command()
@click.option("--device", metavar="NAME|INDEX", help="Input device (see `echo-streamer devices`; default: the "
                                                     "system's default input).")
@click.option("--input-rate", type=click.IntRange(8_000, 192_000), metavar="HZ",
              help="Capture rate (default: the device's default rate).")
@click.option("--channels", type=click.IntRange(1, 64), help="Channels to capture (default: up to 2).")
@click.option("--duration", type=click.FloatRange(0.1, None), metavar="S",
              help="Stop after S seconds (default: until Ctrl-C or SIGTERM).")
@click.option("--mute-ms", type=click.IntRange(1, None), metavar="MS",
              help="After an interrupt, unmute by itself after this long (default: wait for SIGCONT).")
@streaming_options
def live(device: str | None, input_rate: int | None, channels: int | None, duration: float | None,
         mute_ms: int | None, **options: Any) -> None:
    """Stream a sound card's input into the room in real time.

    The capture is downmixed, resampled and framed as it arrives. The card's clock and the
    SDK's drift apart, so the backlog is held near 10 ms by dropping or repeating single samples
    in quiet moments, and never passes 40 ms (beyond it whole blocks are dropped as overflows);
    the counts are printed at the end. SIGUSR1 / SIGUSR2 fade the input out and mute
    it until SIGCONT (or --mute-ms); each unmuted stretch is one segment. A device that is
    missing or stops delivering audio ends it with one line and exit status 1.

    \b
    Examples:
      echo-streamer devices
      echo-streamer live --device pulse --room https://tavus.daily.co/c123456
      echo-streamer live --duration 10 --capture heard.wav       # offline, ten seconds
      kill -USR1 <pid>; sleep 2; kill -CONT <pid>                # mute, then unmute
    """
    from ..errors import InputError
    from ..sources.live import LiveInput

    try:
        live_input = LiveInput(int(device) if device is not None and device.isdigit() else device, input_rate,
                               channels)
    except InputError as error:
        say(f"echo-streamer: {error}")
        sys.exit(EXIT_BAD_INPUT)

    async def live_segments(streamer: Streamer, segments: list[Segment]) -> None:
        try:
            await _stream_until_done(streamer, segments, live_input, duration, mute_ms)
        finally:
            live_input.close()
            _report_drift(live_input, segments)

    run_streaming(options, live_segments, hard_exit=lambda: live_input.lost)


async def _stream_until_done(streamer: Streamer, segments: list[Segment], live_input: LiveInput,
                             duration: float | None, mute_ms: int | None) -> None:
    """One segment per unmuted stretch, until ``duration`` is over or the device fails."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    unmute = asyncio.Event()
    loop.add_signal_handler(signal.SIGCONT, unmute.set)
    ends = None if duration is None else loop.time() + duration

    def left() -> float | None:
        return None if ends is None else max(0.0, ends - loop.time())

    while True:
        segment = streamer.stream(live_input.blocks(), live_input.rate, channels=live_input.channels,
                                  name=live_input.name, live=True)
        segments.append(segment)
        try:
            await asyncio.wait_for(segment.wait(), left())
        except TimeoutError:  # the duration is over: fade out and stop
            await streamer.interrupt("now").wait()
            return
        if segment.error:
            return
        unmute.clear()
        try:
            await asyncio.wait_for(unmute.wait(), _shorter(left(), None if mute_ms is None else mute_ms / 1000))
        except TimeoutError:
            if ends is not None and loop.time() >= ends:
                return


def _report_drift(live_input: LiveInput, segments: list[Segment]) -> None:
    """One line: how the card's clock compared with playout and what it cost."""
    from ..engine.drift import drift_ppm

    controls = [segment.drift for segment in segments if segment.drift is not None]
    dropped, inserted = sum(c.dropped for c in controls), sum(c.inserted for c in controls)
    overflows = live_input.overflows + sum(c.overflows for c in controls)
    underruns = sum(c.underruns for c in controls)
    ppm = drift_ppm(dropped, inserted, sum(c.samples_in for c in controls))
    say(f"echo-streamer: {live_input.name}: clock drift {ppm:+.0f} ppm ({dropped} samples dropped, {inserted} "
        f"repeated, the first placement included), {overflows} blocks dropped (overflow), {underruns} underruns")


def _shorter(first: float | None, second: float | None) -> float | None:
    return min((t for t in (first, second) if t is not None), default=None)


@click.command()
def devices() -> None:
    """List the input devices `live` can capture from.

    Columns: index (for --device), name (also usable), host API, default sample rate, input
    channels. The default input is marked with *.

    \b
    Examples:
      echo-streamer devices
    """
    import sounddevice

    from ..sources.live import input_devices

    default = sounddevice.default.device[0]
    for device in input_devices():
        mark = "*" if device.index == default else " "
        click.echo(f"{mark}{device.index:3d}  {device.name}  ({device.host_api}, {device.default_rate:g} Hz, "
                   f"{device.channels} in)")
