"""Live input: capture callback -> handed to the SDK, CPU, and the backlog under clock drift.

Part 1, a real PortAudio stream: a private JACK server (dummy driver, 48 kHz, 5 ms periods; see
``tests/jack_card.py``) is the sound card; a JACK client plays a single-sample impulse at the
last sample of every tenth period into both input ports of this process's ``LiveInput``
(48 kHz stereo), which a ``Streamer`` (offline, 24 kHz, 10 ms frames) streams with
``Streamer.live``, with ``python3 -c 'while True: pass'`` keeping the other core busy. Each
PortAudio callback is timed on arrival; each frame is timed as it is handed to the SDK. The
latency of a block is the handing of the frame holding its last sample (found as the impulse's
peak in the output) minus the block's callback: it includes the resampler's look-ahead and the
wait for the rest of the frame. CPU is this process's user + system time over a run (after
a 3 s warm-up) of the live path as it ships, without that timing (which looks at every block
in PortAudio's thread: its own cost is shown as the timed run's CPU), against the same
streamer idle for as long just before it, and against the machine's own cost of waking a
thread: at the start, 20 s of a bare thread sleeping 5 ms in a loop (the card's period; the
live path wakes at least that often in the PortAudio callback, and half as often in the worker
and in the SDK's sender). Part 1 runs in rounds (idle, then live untimed, then live timed, each
round): the same code's CPU figure moves by up to 2x from one minute to the next on this
project's VM, so every round is reported and the verdict takes the median round's CPU and the
p99 of all impulses.

Part 2, clock drift: the same streamer fed by a software card (``Streamer.live``: a thread of
its own hands its blocks on, as PortAudio's does) whose 5 ms blocks come on
absolute deadlines (1 + ppm x 1e-6) times faster than the wall clock the SDK paces by, with one
second of a 440 Hz tone and one of near-silence in turn; the backlog (time-averaged every half
second) is sampled every second.

Targets: p99 <= 15 ms, CPU <= 3 % of one core, and a backlog that stays under 40 ms without
growing at +-300 ppm.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
from _common import BENCH_DIR, SleepProbe, busy_cores, clean_env, out_path, print_table, verdict

sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
from jack_card import jack_server, ports  # noqa: E402
from software_card import SoftwareCard  # noqa: E402

from echo_streamer import Streamer, StreamerConfig  # noqa: E402
from echo_streamer.sources.live import LiveInput  # noqa: E402

CARD = BENCH_DIR.parent / "tests" / "jack_card.py"
IN_RATE, OUT_RATE, FRAME = 48_000, 24_000, 240
IMPULSE_EVERY = 9  # periods of 5 ms: 45 ms apart, so matching is unambiguous and both halves of a frame get some
TARGET_P99_MS, TARGET_CPU, MAX_BACKLOG_MS = 15.0, 3.0, 40.0
WAKEUP_SECONDS = 20.0


class TimedInput(LiveInput):
    """A LiveInput that notes when each callback came and where the impulses in it are."""

    def __init__(self, *args: Any) -> None:
        self.arrivals: list[float] = []  # time of each callback that held an impulse
        super().__init__(*args)

    def _captured(self, data: Any, frames: int, time_info: Any, status: Any) -> None:
        if np.frombuffer(data, np.float32).reshape(frames, -1)[-1, 0] > 0.25:
            self.arrivals.append(time.monotonic())
        super()._captured(data, frames, time_info, status)


class FrameClock:
    """Stands in for the capture file: keeps each frame handed to the SDK with its time."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, bytes]] = []

    def write(self, frame: bytes) -> None:
        self.frames.append((time.monotonic(), frame))

    def write_silence(self, _bytes: int) -> None:
        """The SDK's own silence (a write that came a frame or more late): nothing was handed."""

    def close(self) -> None:
        pass


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure_cpu(seconds: float) -> float:
    """Percent of one core this process used over the next ``seconds``."""
    before, start = cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds() - before) / (time.monotonic() - start)


async def wakeup_cpu(seconds: float, period: float) -> float:
    """The machine's floor: CPU of this process while one bare thread sleeps ``period`` in a loop."""
    with SleepProbe(period):
        return await measure_cpu(seconds)


async def idle_cpu(seconds: float) -> float:
    async with Streamer(StreamerConfig()):
        await asyncio.sleep(3)
        return await measure_cpu(seconds)


async def live_run(env: dict[str, str], seconds: float, timed: bool) -> dict[str, Any]:
    """``timed``: note each callback and each frame handed (latencies; the noting costs CPU of its
    own, a numpy look at each block in PortAudio's thread); else the live path as it ships."""
    before = ports(env)
    live_input = (TimedInput if timed else LiveInput)("system", IN_RATE, 2)
    mine = sorted(port for port in ports(env) - before if ":in_" in port)
    card = subprocess.Popen([sys.executable, str(CARD), ",".join(mine), "impulses", str(IMPULSE_EVERY), "0.9"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert card.stdout is not None and card.stdout.readline().strip() == "connected", card.communicate()[1]
        async with Streamer(StreamerConfig()) as streamer:
            clock = FrameClock()
            if timed:
                streamer._capture = clock  # type: ignore[assignment]  # instrumentation: time every frame handed
            segment = streamer.live(live_input)
            await asyncio.sleep(3)
            cpu = await measure_cpu(seconds)
            await streamer.interrupt("now").wait()
            stats = streamer.stats()
    finally:
        card.kill()
        card.wait()
        live_input.close()
    assert segment.drift is not None
    latencies = block_latencies(live_input.arrivals, clock.frames) if isinstance(live_input, TimedInput) else None
    return {"latencies": latencies, "cpu": cpu, "stats": stats,
            "drift": segment.drift.fields(),
            "device_overflows": live_input.device_overflows}


def block_latencies(arrivals: list[float], frames: list[tuple[float, bytes]]) -> np.ndarray:
    """For each impulse found in the output: its frame's hand-over minus its block's callback (ms)."""
    handed = np.array([t for t, _ in frames])
    pcm = np.frombuffer(b"".join(frame for _, frame in frames), dtype="<i2").astype(np.float64) / 32768
    above = np.flatnonzero(pcm > 0.2)
    starts = above[np.insert(np.diff(above) > OUT_RATE // 100, 0, True)]  # first sample of each impulse
    peaks = [start + int(np.argmax(pcm[start:start + 48])) for start in starts]
    times = handed[np.array(peaks) // FRAME]
    arrival = np.array(arrivals)
    latencies = []
    for t in times:
        index = np.searchsorted(arrival, t) - 1  # the last impulse to arrive before its frame was handed
        latencies.append(1000 * (t - arrival[index]))
    return np.array(latencies)


class DriftCard(SoftwareCard):
    """A software card (stereo 48 kHz blocks of 5 ms, handed on from a thread of its own as
    PortAudio's are) on a clock ``ppm`` fast (or slow) against the wall: one second of a quiet
    440 Hz tone and one of near-silence in turn, with the same impulses as the JACK card. Notes
    when each block holding an impulse is delivered."""

    def __init__(self, ppm: float) -> None:
        self.arrivals: list[float] = []
        super().__init__(f"card {ppm:+g} ppm", channels=2, ppm=ppm)

    def block(self, index: int) -> np.ndarray:
        samples = IN_RATE * 5 // 1000
        at = np.arange(index * samples, (index + 1) * samples)
        level = 0.05 if (at[0] // IN_RATE) % 2 == 0 else 0.001
        block = (level * np.sin(2 * np.pi * 440 * at / IN_RATE)).astype(np.float32)
        if index % IMPULSE_EVERY == 0:
            block[-1] = 0.9
            self.arrivals.append(time.monotonic())
        return np.column_stack((block, block))


async def drift_run(ppm: float, seconds: float) -> dict[str, Any]:
    card = DriftCard(ppm)
    try:
        async with Streamer(StreamerConfig()) as streamer:
            clock = FrameClock()
            streamer._capture = clock  # type: ignore[assignment]  # instrumentation: time every frame handed
            segment = streamer.live(card)  # type: ignore[arg-type]  # a LiveInput in all but PortAudio
            assert segment.drift is not None
            aheads = []
            for _ in range(int(seconds)):
                await asyncio.sleep(1)
                aheads.append(segment.drift.ahead_ms)
            fields = segment.drift.fields()
            await streamer.interrupt("now").wait()
    finally:
        card.close()
    half = len(aheads) // 2
    return {**fields, "first_half_ms": float(np.mean(aheads[:half])), "second_half_ms": float(np.mean(aheads[half:])),
            "max_ahead_ms": max(aheads), "latencies": block_latencies(card.arrivals, clock.frames),
            "card_late_p99_ms": float(np.percentile(card.late_ms, 99))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60,
                        help="length of each round of the PortAudio run (default 60)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the PortAudio run (default 3)")
    parser.add_argument("--drift-seconds", type=float, default=600,
                        help="length of each drift run (default 600; 0 runs part 1 only)")
    parser.add_argument("--ppm", type=float, default=300, help="clock offset of the drift runs (default 300)")
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes alongside (default 1)")
    args = parser.parse_args()
    env = clean_env()
    with busy_cores(args.busy), jack_server(f"echo-streamer-bench-{os.getpid()}", env) as jack_env:
        os.environ["JACK_DEFAULT_SERVER"] = jack_env["JACK_DEFAULT_SERVER"]
        wakeups = asyncio.run(wakeup_cpu(WAKEUP_SECONDS, 0.005))
        rounds = [(asyncio.run(idle_cpu(args.seconds)), asyncio.run(live_run(jack_env, args.seconds, timed=False)),
                   asyncio.run(live_run(jack_env, args.seconds, timed=True))) for _ in range(args.rounds)]
        import sounddevice  # loaded by LiveInput once the JACK server is chosen

        sounddevice._terminate()  # before the JACK server goes: PortAudio aborts if it is gone at exit
    latencies = np.concatenate([timed["latencies"] for _idle, _plain, timed in rounds])
    np.save(out_path("live-latency-card.npy"), latencies)
    p50, p99 = np.percentile(latencies, [50, 99])
    cpu = float(np.median([plain["cpu"] for _idle, plain, _timed in rounds]))
    print(f"live 48 kHz stereo -> 24 kHz, 5 ms blocks, {args.rounds} x {args.seconds:g} s, {args.busy} busy-loop "
          f"process(es): {len(latencies)} impulses; a bare thread waking every 5 ms costs {wakeups:.2f} % of a core "
          "on this machine")
    for number, runs in enumerate(rounds, 1):
        for kind, run in zip(("plain", "timed"), runs[1:], strict=True):
            print(f"round {number} {kind}: drift control {run['drift']}; "
                  f"overruns in the device {run['device_overflows']}; "
                  f"underruns {run['stats']['underruns']}")
    print_table(["callback -> handed (timed runs)", "p50 ms", "p99 ms", "max ms", "CPU % of a core (plain run)",
                 "CPU % timed run", "idle streamer CPU %"],
                [[f"round {number}", *np.percentile(timed["latencies"], [50, 99]).tolist(),
                  float(timed["latencies"].max()), plain["cpu"], timed["cpu"], idle]
                 for number, (idle, plain, timed) in enumerate(rounds, 1)]
                + [["all (CPU: median)", float(p50), float(p99), float(latencies.max()), cpu, "", ""]])
    drift = {ppm: asyncio.run(drift_run(ppm, args.drift_seconds)) for ppm in (args.ppm, -args.ppm)
             if args.drift_seconds > 0}
    for ppm, r in drift.items():
        np.save(out_path(f"live-latency-drift{ppm:+g}.npy"), r["latencies"])
    if not drift:
        return verdict(float(p99) <= TARGET_P99_MS and cpu <= TARGET_CPU,
                       f"p99 {p99:.1f} ms (<= {TARGET_P99_MS:g}), CPU {cpu:.2f} % (<= {TARGET_CPU:g}); "
                       "no drift runs")
    print(f"\nsoftware card, {args.drift_seconds:g} s per run (latencies in bench/out/live-latency-*.npy)")
    print_table(["clock", "frames ahead 1st half ms", "2nd half ms", "max ms", "backlog peak ms", "margin ms",
                 "dropped", "repeated", "measured ppm", "overflows", "underruns", "latency p50 ms", "p99 ms",
                 "card late p99 ms"],
                [[f"{ppm:+g} ppm", r["first_half_ms"], r["second_half_ms"], r["max_ahead_ms"], r["peak_ms"],
                  r["margin_ms"], r["samples_dropped"], r["samples_inserted"], r["drift_ppm"], r["overflows"],
                  r["underruns"], *np.percentile(r["latencies"], [50, 99]).tolist(), r["card_late_p99_ms"]]
                 for ppm, r in drift.items()])
    # Not growing: in the second half frames are on average no further ahead of their deadlines
    # (no more backlog) than within one block of the first half.
    bounded = all(r["peak_ms"] <= MAX_BACKLOG_MS and r["overflows"] == 0
                  and r["second_half_ms"] <= r["first_half_ms"] + 5 for r in drift.values())
    worst_p99 = max([float(p99)] + [float(np.percentile(r["latencies"], 99)) for r in drift.values()])
    return verdict(worst_p99 <= TARGET_P99_MS and cpu <= TARGET_CPU and bounded,
                   f"worst p99 {worst_p99:.1f} ms (<= {TARGET_P99_MS:g}), CPU {cpu:.2f} % (<= {TARGET_CPU:g}), "
                   f"backlog bounded at +-{args.ppm:g} ppm: {bounded}")


if __name__ == "__main__":
    sys.exit(main())
