"""Pipe latency: first bytes written -> first audible frame handed to the SDK.

``echo-streamer pipe --input FIFO --follow --format s16le --input-rate 22050`` runs offline with
``--events``, resampling 22050 -> 24000 Hz as piper's ``--output-raw`` stream needs, with one
``python3 -c 'while True: pass'`` keeping the other core busy. A writer opens the FIFO once per
utterance (``--utterances``, default 100) and writes a 0.5 s tone in ``--chunk-ms`` pieces (20 ms
by default), each as soon as it is "synthesised" at ``--speed`` times real time (1.25 by default,
as TTS engines run faster than real time; at exactly 1.0 the stream, which starts at once,
catches up with the writer and underruns), recording ``time.monotonic()`` just before its first
write. The latency of an utterance is its ``item_started.handed_at`` (when
the first frame went to the SDK, the same clock) minus that time; every frame of the tone is
audible. The writer waits for each utterance's trailing gap to end (the ``idle`` event) and a
random 0-50 ms more before the next, so the streamer is idle (sending silence) when the first
bytes come, at a random phase of its 10 ms tick. Target: p99 <= 30 ms (``--target-ms``).

``--wav`` writes each utterance as a streaming WAV instead (the header's size fields are the
placeholders ``espeak-ng --stdout`` writes) to ``pipe --format auto``, timing the header sniffing
and parsing too; the time is taken just before the header is written.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _common import ECHO_STREAMER, SleepProbe, busy_cores, clean_env, out_path, pcm16, print_table, sine, verdict

IN_RATE = 22050
TARGET_MS = 30.0
# What espeak-ng --stdout writes in a WAV header's RIFF and data size fields: it cannot know them.
STREAMING_SIZE = 0x7FFFF000


def streaming_wav_header(rate: int) -> bytes:
    """A 44-byte mono PCM16 WAV header with placeholder sizes, as a TTS engine streaming to a pipe writes."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", STREAMING_SIZE) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", STREAMING_SIZE))


def wait_for(events: Path, name: str, count: int, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if events.exists() and events.read_text().count(f'"event": "{name}"') >= count:
            return
        if process.poll() is not None:
            raise RuntimeError(f"echo-streamer pipe exited with {process.returncode}")
        time.sleep(0.005)
    raise RuntimeError(f"no {count}th {name} event within {timeout} s")


def speak(fifo: Path, pcm: bytes, chunk_ms: int, speed: float, header: bytes) -> float:
    """Write ``header`` (may be empty) and one utterance at ``speed`` x real time; return the time
    just before the first write."""
    chunk = IN_RATE * chunk_ms // 1000 * 2
    with open(fifo, "wb", buffering=0) as writer:
        started = time.monotonic()
        if header:
            writer.write(header)
        for index, start in enumerate(range(0, len(pcm), chunk)):
            delay = started + index * chunk_ms / 1000 / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            writer.write(pcm[start:start + chunk])
    return started


def run(args: argparse.Namespace) -> tuple[list[float], dict[str, object], float]:
    fifo, events = out_path("pipe-latency.fifo"), out_path("pipe-latency.jsonl")
    for path in (fifo, events):
        if path.exists() or path.is_fifo():
            path.unlink()
    os.mkfifo(fifo)
    input_format = ["--format", "auto"] if args.wav else ["--format", "s16le", "--input-rate", str(IN_RATE)]
    command = [args.echo_streamer, "pipe", "--input", str(fifo), "--follow", *input_format, "--events", str(events),
               "--gap-ms", "100", "--no-progress", "--start-ms", str(args.start_ms)]
    pcm = pcm16(sine(IN_RATE, 0.5))
    header = streaming_wav_header(IN_RATE) if args.wav else b""
    rng = random.Random(args.seed)
    starts = []
    with busy_cores(args.busy), SleepProbe() as probe:
        process = subprocess.Popen(command, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            wait_for(events, "stream_started", 1, process)
            for index in range(args.utterances):
                time.sleep(rng.uniform(0.0, 0.05))
                starts.append(speak(fifo, pcm, args.chunk_ms, args.speed, header))
                wait_for(events, "idle", index + 1, process)  # the utterance and its gap are over
        finally:
            process.terminate()
            process.wait(timeout=10)
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    handed = [event["handed_at"] for event in logged if event["event"] == "item_started"]
    finished = next(event for event in logged if event["event"] == "stream_finished")
    return [1000 * (h - s) for h, s in zip(handed, starts, strict=True)], finished, probe.worst_ms


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=100, help="utterances written (default: 100)")
    parser.add_argument("--chunk-ms", type=int, default=20, help="audio per write, in ms (default: 20)")
    parser.add_argument("--speed", type=float, default=1.25,
                        help="how much faster than real time the writer produces audio (default: 1.25)")
    parser.add_argument("--start-ms", type=int, default=0, help="pipe's --start-ms (default: 0)")
    parser.add_argument("--wav", action="store_true",
                        help="each utterance a streaming WAV (placeholder sizes) to --format auto, not raw s16le")
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes alongside (default: 1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the pauses between utterances")
    parser.add_argument("--target-ms", type=float, default=TARGET_MS, help=f"p99 target in ms ({TARGET_MS:g})")
    parser.add_argument("--echo-streamer", default=ECHO_STREAMER, help=f"console script (default: {ECHO_STREAMER})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    latencies, finished, probe_ms = run(args)
    values = np.asarray(latencies)
    figures = {name: float(np.percentile(values, q)) for name, q in (("p50", 50), ("p90", 90), ("p99", 99))}
    shape = "s16le WAV (streaming header)" if args.wav else "s16le"
    print(f"{len(values)} utterances, {IN_RATE} Hz {shape} in {args.chunk_ms} ms writes at {args.speed:g}x real time "
          f"-> 24000 Hz, --start-ms {args.start_ms}, "
          f"{args.busy} busy-loop process(es) alongside")
    print_table(["utterances", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms", "underruns", "probe ms"],
                [[len(values), f"{values.min():.1f}", *(f"{figures[k]:.1f}" for k in ("p50", "p90", "p99")),
                  f"{values.max():.1f}", finished["underruns"], f"{probe_ms:.1f}"]])
    return verdict(figures["p99"] <= args.target_ms, f"p99 {figures['p99']:.1f} ms (target <= {args.target_ms:g})")


if __name__ == "__main__":
    sys.exit(main())
