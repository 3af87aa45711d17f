"""A stand-in sound card for the live tests: a JACK client that plays into a given input port.

Usage: python jack_card.py TARGET_PORT FREQ_HZ LEVEL SILENT_S

Plays SILENT_S seconds of silence, then a sine of FREQ_HZ at LEVEL (peak, full scale 1.0), into
TARGET_PORT (and nowhere else) until killed. Prints "tone_at <time.monotonic()>" when the
callback writes the tone's first sample: JACK hands a cycle's output to connected inputs in
that same cycle.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import sounddevice


def ports() -> set[str]:
    return set(subprocess.run(["jack_lsp"], capture_output=True, text=True, check=True).stdout.split())


def main() -> None:
    target, freq, level, silent_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    jack = next(index for index, api in enumerate(sounddevice.query_hostapis()) if "JACK" in api["name"])
    rate = 48_000
    start = round(silent_s * rate)
    written = [0]

    def play(data: np.ndarray, frames: int, _time: object, _status: object) -> None:
        index = np.arange(written[0], written[0] + frames)
        tone = level * np.sin(2 * np.pi * freq * index / rate)
        data[:, 0] = np.where(index >= start, tone, 0.0)
        if written[0] < start <= written[0] + frames:
            print(f"tone_at {time.monotonic()}", flush=True)
        written[0] += frames

    before = ports()
    stream = sounddevice.OutputStream(device=sounddevice.query_hostapis(jack)["default_output_device"],
                                      samplerate=rate, channels=1, dtype="float32", callback=play)
    stream.start()
    (mine,) = ports() - before
    for port in ("system:playback_1", "system:playback_2"):
        subprocess.run(["jack_disconnect", mine, port], capture_output=True)
    subprocess.run(["jack_connect", mine, target], check=True)
    print("connected", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
