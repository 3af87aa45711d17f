"""Interrupt latency: request -> SDK completion of the last frame that carries audio.

Three ways of speaking into the same daily-python ``CustomAudioSource`` (offline, 24 kHz mono,
a continuous 440 Hz tone so that every frame carries audio) are interrupted at random points,
each in a fresh worker process, in turn, with one ``python3 -c 'while True: pass'`` keeping the
other core busy throughout:

- ``echo-streamer``: ``Streamer`` with 10 ms frames and a one-frame lead, ``interrupt("now")``;
  the latency is the completion time of the fade frame (``Interruption.done_at``) minus the
  request time. The run lasts ``--seconds`` (default 600) and also counts underruns: a playing
  segment with no frame ready (``underruns``), and SDK completions more than a frame late
  (``late_completions``: the SDK may have had nothing to send), which a stall of the machine
  also causes (see the probe).
- ``blocking 100 ms`` (the SDK demos' shape): a thread calls ``write_frames`` with 100 ms chunks
  and no completion, which blocks until the chunk is consumed; an interrupt stops it after the
  write in progress. Latency: that write's return minus the request.
- ``awaited 40 ms`` (a popular framework's shape): an asyncio task writes 40 ms chunks with a
  completion callback and awaits each one before the next; an interrupt cancels the task.
  Latency: the completion of the chunk in flight minus the request.

Target: echo-streamer p99 <= 22 ms with zero underruns of either kind (``--target-ms``). Percentiles are numpy's
default (linear interpolation). The "probe" columns give the worst oversleep of a 10 ms sleep loop
in the parent process during each worker's run, and the sum of its oversleeps over 20 ms: stalls
of the machine itself. ``lag_ms at end`` is how far the SDK's consumption ended up behind the wall
clock: time the stream lost for good.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from _common import SleepProbe, busy_cores, pcm16, print_table, sine, verdict

RATE = 24_000
TARGET_MS = 22.0
GAP_S = 0.3  # silence between one interrupted utterance and the next
WAIT_S = (0.05, 1.0)  # the interrupt comes this long (uniform) after the audio starts
BASELINES = ("blocking 100 ms", "awaited 40 ms")


# -- workers (each runs in its own process and prints one JSON object) ----------------------


def endless_tone(chunk_s: float = 0.02) -> Iterator[np.ndarray]:
    start = 0
    while True:
        chunk = sine(RATE, chunk_s, start)
        start += len(chunk)
        yield chunk


async def echo_streamer_worker(seconds: float, interrupts: int, rng: random.Random) -> dict[str, Any]:
    from echo_streamer import Streamer, StreamerConfig

    latencies = []
    config = StreamerConfig(rate=RATE, frame_ms=10, lead_ms=10, gap_ms=round(GAP_S * 1000))
    async with Streamer(config) as streamer:
        ends = time.monotonic() + seconds
        while len(latencies) < interrupts or time.monotonic() < ends:
            segment = streamer.stream(endless_tone(), RATE, name="tone")
            while segment.started_at is None:
                await asyncio.sleep(0.005)
            await asyncio.sleep(rng.uniform(*WAIT_S))
            interruption = await streamer.interrupt("now").wait()
            if interruption.cut != "now" or interruption.done_at is None:
                raise RuntimeError(f"unexpected interruption: {interruption.fields()}")
            latencies.append(1000 * (interruption.done_at - interruption.requested_at))
            await streamer.drain()
        stats = streamer.stats()
    return {"latencies_ms": latencies, "stats": stats}


@contextmanager
def offline_source() -> Iterator[Any]:
    """A ``daily.CustomAudioSource`` (with its track), not joined to any call; shut down in the safe order."""
    from daily import CustomAudioSource, CustomAudioTrack, Daily

    Daily.init()
    source = CustomAudioSource(RATE, 1)
    track = CustomAudioTrack(source)
    try:
        yield source
    finally:
        del track, source
        Daily.deinit()


def blocking_worker(interrupts: int, rng: random.Random) -> dict[str, Any]:
    with offline_source() as source:
        return {"latencies_ms": [blocking_interrupt(source, rng) for _ in range(interrupts)]}


def blocking_interrupt(source: Any, rng: random.Random) -> float:
    chunk = pcm16(sine(RATE, 0.1))
    stop = threading.Event()
    returned = [0.0]
    writer = threading.Thread(target=speak_blocking, args=(source, chunk, stop, returned))
    writer.start()
    time.sleep(rng.uniform(*WAIT_S))
    requested = time.monotonic()
    stop.set()
    writer.join()
    time.sleep(GAP_S)
    return 1000 * max(0.0, returned[0] - requested)


def speak_blocking(source: Any, chunk: bytes, stop: threading.Event, returned: list[float]) -> None:
    """Write ``chunk`` after ``chunk`` (each call blocks until consumed) until ``stop``."""
    while not stop.is_set():
        source.write_frames(chunk)
        returned[0] = time.monotonic()


async def awaited_worker(interrupts: int, rng: random.Random) -> dict[str, Any]:
    with offline_source() as source:
        return {"latencies_ms": [await awaited_interrupt(source, rng) for _ in range(interrupts)]}


async def awaited_interrupt(source: Any, rng: random.Random) -> float:
    completed = [0.0]
    settled = asyncio.Event()
    task = asyncio.create_task(speak_awaited(source, pcm16(sine(RATE, 0.04)), completed, settled))
    await asyncio.sleep(rng.uniform(*WAIT_S))
    requested = time.monotonic()
    task.cancel()
    await settled.wait()  # the write in flight still plays
    await asyncio.sleep(GAP_S)
    return 1000 * max(0.0, completed[0] - requested)


async def speak_awaited(source: Any, chunk: bytes, completed: list[float], settled: asyncio.Event) -> None:
    """Write ``chunk`` with a completion callback and await it, again and again, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        written: asyncio.Future[None] = loop.create_future()

        def on_done(_frames: int, written: asyncio.Future[None] = written) -> None:
            completed[0] = time.monotonic()
            loop.call_soon_threadsafe(_settle, written, settled)

        settled.clear()
        source.write_frames(chunk, completion=on_done)
        await written


def _settle(written: asyncio.Future[None], settled: asyncio.Event) -> None:
    if not written.done():
        written.set_result(None)
    settled.set()


def run_worker(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    if args.worker == "echo-streamer":
        result = asyncio.run(echo_streamer_worker(args.seconds, args.interrupts, rng))
    elif args.worker == "blocking 100 ms":
        result = blocking_worker(args.interrupts, rng)
    else:
        result = asyncio.run(awaited_worker(args.interrupts, rng))
    print(json.dumps(result))
    return 0


# -- the parent --------------------------------------------------------------------------------


def measure(name: str, args: argparse.Namespace) -> tuple[dict[str, Any], SleepProbe]:
    command = [sys.executable, __file__, "--worker", name, "--seconds", str(args.seconds),
               "--interrupts", str(args.interrupts), "--seed", str(args.seed)]
    with SleepProbe() as probe:
        result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"worker {name!r} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1]), probe


def summary(latencies: list[float], target_ms: float) -> dict[str, float]:
    values = np.asarray(latencies)
    return {"n": len(values), "p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)), "max": float(values.max()),
            "over": int((values > target_ms).sum())}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600, help="length of the echo-streamer run (default: 600)")
    parser.add_argument("--interrupts", type=int, default=60,
                        help="interrupts per baseline, and at least this many for echo-streamer (default: 60)")
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes alongside (default: 1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the interrupt points (default: 1)")
    parser.add_argument("--target-ms", type=float, default=TARGET_MS, help=f"p99 target in ms ({TARGET_MS:g})")
    parser.add_argument("--worker", choices=("echo-streamer", *BASELINES), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    print(f"echo-streamer for {args.seconds:g} s (>= {args.interrupts} interrupts), then {args.interrupts} "
          f"interrupts per baseline; {args.busy} busy-loop process(es) alongside", flush=True)
    rows, figures = [], {}
    with busy_cores(args.busy):
        for name in ("echo-streamer", *BASELINES):
            result, probe = measure(name, args)
            figures[name] = summary(result["latencies_ms"], args.target_ms)
            stats = result.get("stats", {})
            rows.append([name, figures[name]["n"], *(f"{figures[name][k]:.1f}" for k in ("p50", "p90", "p99", "max")),
                         figures[name]["over"], stats.get("underruns", "-"), stats.get("late_completions", "-"),
                         stats.get("lag_ms", "-"),
                         f"{probe.worst_ms:.1f}", f"{probe.stalled_ms:.0f}"])
            print(f"  {name}: done", flush=True)
            if name == "echo-streamer":
                underruns, late = stats["underruns"], stats["late_completions"]
    print_table(["shape", "interrupts", "p50 ms", "p90 ms", "p99 ms", "max ms", f"> {args.target_ms:g} ms",
                 "underruns", "late completions", "lag_ms at end", "probe worst ms", "probe stalls ms"], rows)
    ours = figures["echo-streamer"]
    for name in BASELINES:
        print(f"echo-streamer / {name}: p99 {ours['p99'] / figures[name]['p99']:.2f}x, "
              f"max {ours['max'] / figures[name]['max']:.2f}x")
    return verdict(ours["p99"] <= args.target_ms and underruns == 0 and late == 0,
                   f"echo-streamer p99 {ours['p99']:.1f} ms (target <= {args.target_ms:g}), {underruns} underruns, "
                   f"{late} late completions")


if __name__ == "__main__":
    sys.exit(main())
