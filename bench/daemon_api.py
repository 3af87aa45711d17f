"""The daemon over HTTP: play -> first frame, interrupt -> last audible frame, idle CPU, RSS over cycles.

An ``echo-streamer daemon`` (offline, 24 kHz, 10 ms frames, one-frame lead) runs as a subprocess,
with ``python3 -c 'while True: pass'`` keeping the other core busy for parts 1 and 2. Times are
``time.monotonic()`` on both sides (one clock for every process on the machine): the client
notes it just before it sends a request; the daemon's events carry when the SDK was handed the
segment's first frame (``item_started.handed_at``) and when the SDK consumed the fade frame that
ends a cut (``interrupt_done.t``).

1. ``POST /v1/play`` of a 0.5 s WAV while idle -> its first frame handed to the SDK (target p99 <= 30 ms).
2. ``POST /v1/interrupt`` at a random point of a 3 s WAV -> the fade frame consumed (p99 <= 25 ms).
3. CPU of the idle daemon over ``--idle-s`` (target <= 1 % of one core; no busy loop alongside),
   beside what the SDK costs by itself, measured as long in the same invocation: a bare
   ``CustomAudioSource`` left to send its own silence (nothing written, as the idle daemon does
   since it rests), and one written a 10 ms frame of silence per completion by a one-line
   callback (as the daemon did before).
4. RSS across ``--cycles`` play / interrupt cycles spread over ``--cycles-s`` (target: last within 5 MB
   of the first sample after warm-up).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _common import ECHO_STREAMER, busy_cores, clean_env, out_path, pcm16, print_table, sine, verdict

TARGET_PLAY_MS, TARGET_INTERRUPT_MS, TARGET_IDLE_CPU, TARGET_RSS_MB = 30.0, 25.0, 1.0, 5.0


class Daemon:
    def __init__(self, directory: Path) -> None:
        self.events_path = out_path("daemon-events.jsonl")
        self.process = subprocess.Popen(
            [ECHO_STREAMER, "daemon", "--listen", "127.0.0.1:0", "--allow-dir", str(directory),
             "--events", str(self.events_path)], stderr=subprocess.PIPE, text=True, env=clean_env())
        assert self.process.stderr is not None
        line = self.process.stderr.readline()
        found = re.search(r"listening on (http://\S+)", line)
        if not found:
            raise SystemExit(f"the daemon did not start: {line}")
        self.url = found.group(1)
        self._read = 0

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def wait_event(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event called ``name`` after those already read."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.events_path.read_text().splitlines()
            for index in range(self._read, len(lines)):
                event = json.loads(lines[index])
                if event["event"] == name:
                    self._read = index + 1
                    return event
            time.sleep(0.005)
        raise SystemExit(f"no {name} event within {timeout} s")

    def skip_events(self) -> None:
        self._read = len(self.events_path.read_text().splitlines())

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in USER_HZ ticks

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def play_latencies(daemon: Daemon, count: int) -> np.ndarray:
    latencies = []
    for _ in range(count):
        daemon.skip_events()
        sent = time.monotonic()
        daemon.post("/v1/play", {"path": "short.wav"})
        started = daemon.wait_event("item_started")
        latencies.append(1000 * (started["handed_at"] - sent))
        daemon.wait_event("idle")  # after the gap, so the next play does not wait for it
    return np.array(latencies)


def interrupt_latencies(daemon: Daemon, count: int, rng: random.Random) -> np.ndarray:
    latencies = []
    for _ in range(count):
        daemon.skip_events()
        daemon.post("/v1/play", {"path": "long.wav"})
        daemon.wait_event("item_started")
        time.sleep(rng.uniform(0.05, 2.5))
        sent = time.monotonic()
        daemon.post("/v1/interrupt", {"mode": "now"})
        done = daemon.wait_event("interrupt_done")
        latencies.append(1000 * (done["t"] - sent))
        daemon.wait_event("idle")
    return np.array(latencies)


def idle_cpu(daemon: Daemon, seconds: float) -> float:
    before, start = daemon.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return 100 * (daemon.cpu_seconds() - before) / (time.monotonic() - start)


BARE_SDK_LOOP = """
import os, sys, time
from daily import Daily, CustomAudioSource
Daily.init()
source = CustomAudioSource(24000, 1, auto_silence=True)
silence = bytes(480)
def write(*_):
    source.write_frames(silence, completion=write)
if sys.argv[2] == "write":
    write()
time.sleep(3)
before, start = os.times(), time.monotonic()
time.sleep(float(sys.argv[1]))
after = os.times()
print(100 * (after.user + after.system - before.user - before.system) / (time.monotonic() - start))
os._exit(0)
"""


def bare_sdk_cpu(seconds: float, mode: str) -> float:
    """CPU % of one core of the SDK alone sending silence: by itself (``mode`` "rest") or written
    by a callback with the least Python possible ("write")."""
    result = subprocess.run([sys.executable, "-c", BARE_SDK_LOOP, str(seconds), mode], capture_output=True,
                            text=True, check=True, env=clean_env())
    return float(result.stdout)


def rss_over_cycles(daemon: Daemon, cycles: int, seconds: float, rng: random.Random) -> list[float]:
    """RSS (MB) after each play / interrupt cycle, the cycles spread evenly over ``seconds``."""
    samples = []
    period = seconds / cycles
    began = time.monotonic()
    for cycle in range(cycles):
        daemon.post("/v1/play", {"path": rng.choice(["short.wav", "long.wav"])})
        time.sleep(rng.uniform(0.05, 0.4))
        daemon.post("/v1/interrupt", {"mode": rng.choice(["now", "next_pause"])})
        time.sleep(max(0.0, began + (cycle + 1) * period - time.monotonic()))
        samples.append(daemon.rss_mb())
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plays", type=int, default=200)
    parser.add_argument("--interrupts", type=int, default=100)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--cycles-s", type=float, default=600.0)
    args = parser.parse_args()
    rng = random.Random(5)
    directory = out_path("daemon-audio")
    directory.mkdir(exist_ok=True)
    for name, seconds in (("short.wav", 0.5), ("long.wav", 3.0)):
        import soundfile

        soundfile.write(directory / name, np.frombuffer(pcm16(sine(48_000, seconds)), "<i2"), 48_000)
    daemon = Daemon(directory)
    try:
        time.sleep(2)  # start-up over
        with busy_cores(1):
            plays = play_latencies(daemon, args.plays)
            interrupts = interrupt_latencies(daemon, args.interrupts, rng)
        cpu = idle_cpu(daemon, args.idle_s)
        floors = [bare_sdk_cpu(args.idle_s, mode) for mode in ("rest", "write")]
        rss = rss_over_cycles(daemon, args.cycles, args.cycles_s, rng)
    finally:
        daemon.stop()
    rows = [[f"POST /v1/play -> first frame handed ({len(plays)})", *np.percentile(plays, [50, 99]), plays.max()],
            [f"POST /v1/interrupt -> fade frame played ({len(interrupts)})", *np.percentile(interrupts, [50, 99]),
             interrupts.max()]]
    print_table(["", "p50 ms", "p99 ms", "max ms"], rows)
    warm = rss[min(9, len(rss) - 1)]
    print_table(["idle CPU % of a core", "bare SDK, its own silence", "bare SDK, written silence",
                 f"RSS after cycle {min(10, len(rss))} MB", f"RSS after cycle {len(rss)} MB", "max MB"],
                [[cpu, *floors, warm, rss[-1], max(rss)]])
    play_p99, interrupt_p99 = float(np.percentile(plays, 99)), float(np.percentile(interrupts, 99))
    passed = (play_p99 <= TARGET_PLAY_MS and interrupt_p99 <= TARGET_INTERRUPT_MS and cpu <= TARGET_IDLE_CPU
              and abs(rss[-1] - warm) <= TARGET_RSS_MB)
    return verdict(passed, f"play p99 {play_p99:.1f} ms (<= {TARGET_PLAY_MS:g}), interrupt p99 {interrupt_p99:.1f} ms "
                           f"(<= {TARGET_INTERRUPT_MS:g}), idle CPU {cpu:.2f} % (<= {TARGET_IDLE_CPU:g}), RSS "
                           f"{warm:.1f} -> {rss[-1]:.1f} MB (within {TARGET_RSS_MB:g})")


if __name__ == "__main__":
    sys.exit(main())
