"""Shared helpers for the benchmarks: test inputs, subprocess timing, peak RSS, a busy core, a sleep probe, tables."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
VENV_BIN = Path(sys.executable).parent
ECHO_STREAMER = str(VENV_BIN / "echo-streamer")
BUSY_LOOP = "while True: pass"


def out_path(name: str) -> Path:
    """A path under bench/out/ (created on demand)."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUT_DIR / name


def noise_sweep_flac(seconds: int, rate: int = 48_000, name: str | None = None) -> Path:
    """A 16-bit stereo FLAC that does not compress trivially, cached in bench/out/.

    Each channel is its own pink noise mixed with its own sine sweep, so FLAC can use neither
    inter-channel nor long-term prediction much (about 1.2 Mbit/s at 48 kHz).
    """
    path = out_path(name or f"noise-sweep-{seconds}s-{rate // 1000}k.flac")
    if path.exists() and path.stat().st_size > 0:
        return path
    partial = path.with_suffix(".partial.flac")
    run_checked(["sox", "-n", "-r", str(rate), "-c", "2", "-b", "16", str(partial),
                 "synth", str(seconds), "pinknoise", "pinknoise",
                 "synth", str(seconds), "sine", "mix", "20-20000", "sine", "mix", "30-15000",
                 "vol", "0.5"])  # fmt: skip
    partial.rename(path)
    return path


def sine(rate: int, seconds: float, start: int = 0) -> Any:
    """A 440 Hz sine at half scale, float32, ``seconds`` long from sample ``start`` (numpy loads here)."""
    import numpy as np

    t = (start + np.arange(round(rate * seconds))) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def pcm16(samples: Any) -> bytes:
    """Float samples (full scale 1.0, not beyond it) as little-endian PCM16 bytes."""
    import numpy as np

    return np.rint(samples * 32767).astype("<i2").tobytes()


def run_checked(command: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` quietly; raise with its stderr if it fails."""
    result = subprocess.run(list(command), check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: "
                           f"{result.stderr.decode(errors='replace').strip()}")
    return result


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds, start to exit
    cpu: float  # user + system seconds of the process and its children


def time_command(command: Sequence[str], env: dict[str, str] | None = None) -> Timing:
    """Time one run of ``command``, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run_checked(command, env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def peak_rss_mb(command: Sequence[str]) -> float:
    """Peak resident set size of ``command`` in MiB, from GNU time's 'Maximum resident set size'."""
    time_bin = shutil.which("time", path="/usr/bin") or "/usr/bin/time"
    result = subprocess.run([time_bin, "-v", *command], check=False, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no 'Maximum resident set size' in /usr/bin/time output:\n{result.stderr}")
    return int(match[1]) / 1024


@contextmanager
def busy_cores(count: int) -> Iterator[list[int]]:
    """Keep ``count`` processes spinning ``python3 -c 'while True: pass'`` for the duration; yield their pids."""
    python = shutil.which("python3") or sys.executable
    spinners = [subprocess.Popen([python, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL) for _ in range(count)]
    try:
        yield [spinner.pid for spinner in spinners]
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@dataclass
class SleepProbe:
    """A thread in this (otherwise idle) process sleeping ``period`` in a loop, recording how late it wakes.

    Its worst oversleep shows scheduling hiccups of the machine itself, outside echo-streamer;
    ``stalled_ms`` adds up the oversleeps longer than ``STALL_MS``, the time the machine was frozen.
    """

    STALL_MS = 20.0

    period: float = 0.01
    worst_ms: float = 0.0
    stalled_ms: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> SleepProbe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            time.sleep(self.period)
            oversleep = 1000 * (time.perf_counter() - start - self.period)
            self.worst_ms = max(self.worst_ms, oversleep)
            if oversleep > self.STALL_MS:
                self.stalled_ms += oversleep


def clean_env() -> dict[str, str]:
    """The current environment without a room URL, so ``play`` streams offline."""
    env = dict(os.environ)
    env.pop("ECHO_STREAMER_ROOM_URL", None)
    env.pop("ECHO_STREAMER_MEETING_TOKEN", None)
    return env


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


def _fmt(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def verdict(passed: bool, message: str) -> int:
    """Print the PASS/FAIL line and return the exit status."""
    print(f"{'PASS' if passed else 'FAIL'}: {message}")
    return 0 if passed else 1


def measure_alternating(commands: dict[str, list[str]], runs: int) -> dict[str, list[Timing]]:
    """One untimed warm-up round, then ``runs`` rounds running every command once, in turn (A/B/A/B...)."""
    for command in commands.values():
        time_command(command)
    timings: dict[str, list[Timing]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            timings[name].append(time_command(command))
    return timings
