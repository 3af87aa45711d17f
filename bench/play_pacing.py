"""Real-time pacing: ``echo-streamer play`` offline (no room) with the other core kept busy.

Each scenario plays a generated file (60 s by default) through the CLI with ``--events`` and
checks, per item, the wall clock from ``item_started`` to ``item_finished`` against the audio
handed to the SDK (whole frames), plus ``max_lag_ms`` and ``underruns`` from
``stream_finished``. Scenarios: ``--lead-ms`` 10 (one frame, the default) and 20, and one that
plays a FLAC then an AAC/M4A file, so the second one's ffmpeg decoder and resampler start while
the first is still playing. Target: every |wall - audio| and max_lag_ms <= 10 ms, zero underruns.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (ECHO_STREAMER, SleepProbe, busy_cores, clean_env, noise_sweep_flac, out_path, print_table,
                     verdict)

TARGET_MS = 10.0
FRAME_MS = 10
RATE = 24_000  # play's default output rate


@dataclass(frozen=True)
class Scenario:
    name: str
    files: tuple[Path, ...]
    lead_ms: int


@dataclass(frozen=True)
class ItemResult:
    item: str
    audio_s: float  # whole frames handed to the SDK for this item
    wall_s: float  # item_started -> item_finished

    @property
    def diff_ms(self) -> float:
        return 1000 * (self.wall_s - self.audio_s)


@dataclass(frozen=True)
class RunResult:
    scenario: Scenario
    items: list[ItemResult]
    stats: dict[str, Any]
    elapsed_s: float
    probe_max_ms: float

    def passed(self, target_ms: float) -> bool:
        return (len(self.items) == len(self.scenario.files) and self.stats["underruns"] == 0
                and self.stats["max_lag_ms"] <= target_ms and all(abs(i.diff_ms) <= target_ms for i in self.items))


def m4a_copy(source: Path) -> Path:
    """An AAC/M4A transcode of ``source`` at 44.1 kHz (decoded by ffmpeg, resampled 44.1 -> 24 kHz)."""
    path = out_path(source.stem + "-44k.m4a")
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-ar", "44100", "-c:a", "aac",
                        "-b:a", "160k", str(path)], check=True)
    return path


def play(echo_streamer: str, scenario: Scenario, events: Path) -> float:
    """Run ``echo-streamer play`` for the scenario; return its wall time in seconds."""
    command = [echo_streamer, "play", *map(str, scenario.files), "--events", str(events),
               "--lead-ms", str(scenario.lead_ms), "--frame-ms", str(FRAME_MS), "--rate", str(RATE), "--no-progress"]
    start = time.perf_counter()
    result = subprocess.run(command, check=False, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()}")
    return time.perf_counter() - start


def read_events(events: Path) -> list[dict[str, Any]]:
    with events.open() as lines:
        return [json.loads(line) for line in lines if line.strip()]


def analyse(scenario: Scenario, events: list[dict[str, Any]], elapsed_s: float, probe_max_ms: float) -> RunResult:
    """Pair each item's start and finish and take the stream totals."""
    frame_samples = RATE * FRAME_MS // 1000
    started = {e["id"]: e["t"] for e in events if e["event"] == "item_started"}
    items = []
    for event in events:
        if event["event"] == "item_finished" and event["id"] in started:
            frames = math.ceil(event["samples"] / frame_samples)
            items.append(ItemResult(Path(event["item"]).name, frames * FRAME_MS / 1000,
                                    event["t"] - started[event["id"]]))
    finished = [e for e in events if e["event"] == "stream_finished"]
    if not finished:
        raise RuntimeError(f"{scenario.name}: no stream_finished event")
    return RunResult(scenario, items, finished[-1], elapsed_s, probe_max_ms)


def run_scenario(echo_streamer: str, scenario: Scenario, busy: int) -> RunResult:
    events = out_path(f"pacing-{scenario.name.replace(' ', '-').replace(',', '')}.jsonl")
    with busy_cores(busy), SleepProbe() as probe:
        elapsed = play(echo_streamer, scenario, events)
    return analyse(scenario, read_events(events), elapsed, probe.worst_ms)


def report(results: list[RunResult]) -> None:
    rows = []
    for result in results:
        stats = result.stats
        for item in result.items:
            rows.append([result.scenario.name, item.item, f"{item.audio_s:.3f}", f"{item.wall_s:.4f}",
                         f"{item.diff_ms:+.2f}", f"{stats['max_lag_ms']:.2f}", stats["late_completions"],
                         stats["underruns"],
                         stats["underrun_frames"], f"{stats['frames_played']}/{stats['frames_sent']}",
                         f"{result.probe_max_ms:.1f}"])
    print_table(["scenario", "item", "audio s", "wall s", "wall-audio ms", "max_lag_ms", "late", "underruns",
                 "underrun frames", "played/sent frames", "probe oversleep ms"], rows)


def scenarios(source: Path, leads: Sequence[int], two_files: bool) -> list[Scenario]:
    chosen = [Scenario(f"lead {lead} ms", (source,), lead) for lead in leads]
    if two_files:
        chosen.append(Scenario(f"lead {leads[0]} ms, flac then m4a", (source, m4a_copy(source)), leads[0]))
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="length of the test file (default: 60)")
    parser.add_argument("--leads", type=int, nargs="+", default=[10, 20], help="--lead-ms values (default: 10 20)")
    parser.add_argument("--no-two-files", dest="two_files", action="store_false",
                        help="skip the two-file scenario (played with the first lead)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario (default: 1)")
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes during each play (default: 1)")
    parser.add_argument("--target-ms", type=float, default=TARGET_MS, help=f"pacing tolerance in ms ({TARGET_MS:g})")
    parser.add_argument("--echo-streamer", default=ECHO_STREAMER, help=f"console script (default: {ECHO_STREAMER})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    source = noise_sweep_flac(args.seconds)
    plan = scenarios(source, args.leads, args.two_files) * args.repeat
    print(f"{len(plan)} scenarios, {args.seconds} s each file, {RATE} Hz, {FRAME_MS} ms frames, "
          f"{args.busy} busy-loop process(es) alongside", flush=True)
    results = []
    for scenario in plan:
        results.append(run_scenario(args.echo_streamer, scenario, args.busy))
        print(f"  {scenario.name}: done in {results[-1].elapsed_s:.1f} s", flush=True)
    report(results)
    failed = [r.scenario.name for r in results if not r.passed(args.target_ms)]
    return verdict(not failed, f"|wall - audio| and max_lag_ms <= {args.target_ms:g} ms with zero underruns"
                               + (f"; failed: {', '.join(failed)}" if failed else " in every scenario"))


if __name__ == "__main__":
    sys.exit(main())
