"""A private JACK server and a stand-in sound card for it, for the live tests and benchmark.

``jack_server()`` starts a JACK server with its dummy driver (no sound card needed; it keeps real
time). Run as a script, this module is the card: a JACK client that plays into given input ports.

Usage: python jack_card.py PORT[,PORT...] FREQ_HZ LEVEL SILENT_S [ON_S OFF_S]
       python jack_card.py PORT[,PORT...] impulses EVERY_N_PERIODS LEVEL

The first plays SILENT_S seconds of silence, then a sine of FREQ_HZ at LEVEL (peak, full scale
1.0), and prints "tone_at <time.monotonic()>" when the callback writes the tone's first sample:
JACK hands a cycle's output to connected inputs in that same cycle. With ON_S and OFF_S the sine
comes in bursts of ON_S seconds with OFF_S of silence between them, pausing like speech. The second writes one sample
at LEVEL, the last of every EVERY_N_PERIODS-th period, and silence otherwise. Both print
"connected" once the ports are connected, then play until killed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

RATE = 48_000


def ports(env: dict[str, str] | None = None) -> set[str]:
    """The JACK server's ports; empty while it is not up."""
    result = subprocess.run(["jack_lsp"], capture_output=True, text=True, env=env)
    return set(result.stdout.split()) if result.returncode == 0 else set()


@contextmanager
def jack_server(name: str, env: dict[str, str], period: int = 240) -> Iterator[dict[str, str]]:
    """A JACK server ``name`` (dummy driver, 48 kHz, ``period`` frames per cycle, 2 in, 2 out);
    yields ``env`` extended to select it. Fails if it does not come up within 10 s."""
    env = {**env, "JACK_DEFAULT_SERVER": name}
    server = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", str(RATE), "-p",
                               str(period), "-C", "2", "-P", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 10
    while "system:capture_1" not in ports(env):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise AssertionError(f"jackd did not start: {server.communicate()[1].decode(errors='replace')}")
        time.sleep(0.05)
    try:
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    import sounddevice

    targets = sys.argv[1].split(",")
    impulses = sys.argv[2] == "impulses"
    if impulses:
        every, level = int(sys.argv[3]), float(sys.argv[4])
        start = freq = 0.0
        on, off = 1, 0
    else:
        freq, level, start = float(sys.argv[2]), float(sys.argv[3]), round(float(sys.argv[4]) * RATE)
        on, off = (round(float(seconds) * RATE) for seconds in (sys.argv[5:7] or (1, 0)))
    jack = next(index for index, api in enumerate(sounddevice.query_hostapis()) if "JACK" in api["name"])
    written = [0, 0]  # samples, periods

    def play(data: np.ndarray, frames: int, _time: object, _status: object) -> None:
        if impulses:
            data.fill(0)
            if written[1] % every == 0:
                data[-1, 0] = level
        else:
            index = np.arange(written[0], written[0] + frames)
            sounding = (index >= start) & ((index - start) % (on + off) < on)
            data[:, 0] = np.where(sounding, level * np.sin(2 * np.pi * freq * index / RATE), 0.0)
            if written[0] < start <= written[0] + frames:
                print(f"tone_at {time.monotonic()}", flush=True)
        written[0] += frames
        written[1] += 1

    before = ports()
    stream = sounddevice.OutputStream(device=sounddevice.query_hostapis(jack)["default_output_device"],
                                      samplerate=RATE, channels=1, dtype="float32", callback=play)
    stream.start()
    (mine,) = ports() - before
    for port in ("system:playback_1", "system:playback_2"):
        subprocess.run(["jack_disconnect", mine, port], capture_output=True)
    for target in targets:
        subprocess.run(["jack_connect", mine, target], check=True)
    print("connected", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
