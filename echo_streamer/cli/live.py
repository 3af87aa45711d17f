"""``echo-streamer live`` (a sound card through the face) and ``echo-streamer devices``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .session import EXIT_BAD_INPUT, fail, run_streaming, say, streaming_options

# A SIGCONT this long after the process went on from Ctrl-Z (or never stopped) is a resume again.
JOB_STOP_S = 0.5

if TYPE_CHECKING:
    import asyncio

    from ..engine.segment import Segment
    from ..engine.streamer import Streamer


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
      echo-streamer live --device pulse --input-rate 48000 --room https://tavus.daily.co/c123456
      echo-streamer live --duration 10 --capture heard.wav       # offline, ten seconds
      kill -USR1 <pid>; sleep 2; kill -CONT <pid>                # mute, then unmute
    """
    from ..errors import InputError
    from ..sources.live import LiveInput

    cards: list[LiveInput] = []  # the one card, opened once the options are known to be good

    def open_card() -> None:
        try:
            cards.append(LiveInput(int(device) if device is not None and device.isdigit() else device, input_rate,
                                   channels))
        except InputError as error:
            fail(str(error), EXIT_BAD_INPUT)

    async def live_segments(streamer: Streamer, segments: list[Segment]) -> None:
        import asyncio

        from ..engine.live import LiveSession

        (live_input,) = cards
        session = LiveSession(streamer, live_input, mute_ms)
        _resume_on_sigcont(asyncio.get_running_loop(), session.resume)
        try:
            await session.run(duration)
        finally:
            segments.extend(session.segments)
            await asyncio.to_thread(live_input.close)
            _report_drift(live_input.name, session.drift_report())

    run_streaming(options, live_segments, prepare=open_card, hard_exit=lambda: any(card.lost for card in cards),
                  interrupts_wait_for_work=False)


def _resume_on_sigcont(loop: asyncio.AbstractEventLoop, resume: Callable[[], object]) -> None:
    """Call ``resume`` on SIGCONT, except on the one that continues the process after Ctrl-Z
    (SIGTSTP): ``fg`` and ``bg`` send it too, and must not unmute what an interrupt muted.
    Ctrl-Z itself stops the process as it would by default (a SIGTSTP ignored as the process
    started stays ignored). A SIGCONT ``JOB_STOP_S`` or more after the process went on is a
    resume again (where the kernel dropped the stop, in a process group with no shell to
    continue it, the process never stopped)."""
    import math
    import os
    import signal
    import time

    went_on_at = -math.inf  # when the process went on after its last stop

    def on_stop() -> None:
        nonlocal went_on_at
        loop.remove_signal_handler(signal.SIGTSTP)  # back to the default action: stop
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here, until fg, bg or SIGCONT
        went_on_at = time.monotonic()
        loop.add_signal_handler(signal.SIGTSTP, on_stop)

    def on_continue() -> None:  # (the loop runs it after on_stop has returned)
        if time.monotonic() - went_on_at >= JOB_STOP_S:
            resume()

    if signal.getsignal(signal.SIGTSTP) is not signal.SIG_IGN:
        loop.add_signal_handler(signal.SIGTSTP, on_stop)
    loop.add_signal_handler(signal.SIGCONT, on_continue)


def _report_drift(name: str, report: dict[str, float]) -> None:
    """One line: how the card's clock compared with playout (not measured before any audio came
    through) and what it cost."""
    drift = (f"clock drift {report['ppm']:+.0f} ppm (to within {report['ppm_error']:.0f} ppm; " if report["measured"]
             else "clock drift not measured (no audio came through; ")
    say(f"echo-streamer: {name}: {drift}"
        f"{report['samples_dropped']} samples dropped, {report['samples_inserted']} repeated, "
        f"{report['placement_samples']:+d} of them placing the frames), {report['overflows']} blocks dropped "
        f"(overflow), {report['device_overflows']} overruns in the device, {report['underruns']} underruns")


@click.command()
def devices() -> None:
    """List the input devices `live` can capture from.

    Columns: index (for --device), name (also usable), host API, default sample rate, input
    channels. The default input is marked with *. With none, says so in one line and exits 1.

    \b
    Examples:
      echo-streamer devices
    """
    from ..errors import InputError
    from ..sources.live import input_devices

    try:
        found = input_devices()
    except InputError as error:
        fail(str(error), EXIT_BAD_INPUT)
    if not found:
        fail("no input devices: PortAudio found no sound card, and no sound server (PulseAudio, JACK) to "
             "capture from", EXIT_BAD_INPUT)
    for device in found:
        mark = "*" if device.is_default else " "
        click.echo(f"{mark}{device.index:3d}  {device.name}  ({device.host_api}, {device.default_rate:g} Hz, "
                   f"{device.channels} in)")
