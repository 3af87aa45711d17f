"""Start-up time: wall time of ``echo-streamer --help`` (the console script), against ``python -c pass``.

The two run alternately, 20 times each by default; the floor is the same venv's interpreter
doing nothing. Target: median <= 150 ms (``--gate max`` applies it to the slowest run instead).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence

from _common import ECHO_STREAMER, measure_alternating, print_table, verdict

TARGET_MS = 150.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs of each command (default: 20)")
    parser.add_argument("--target-ms", type=float, default=TARGET_MS, help=f"target in ms ({TARGET_MS:g})")
    parser.add_argument("--gate", choices=("median", "max"), default="median",
                        help="which statistic the target applies to (default: median)")
    parser.add_argument("--echo-streamer", default=ECHO_STREAMER, help=f"console script (default: {ECHO_STREAMER})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    commands = {
        f"{args.echo_streamer} --help": [args.echo_streamer, "--help"],
        f"{sys.executable} -c pass (floor)": [sys.executable, "-c", "pass"],
    }
    timings = measure_alternating(commands, args.runs)
    walls = {name: [1000 * timing.wall for timing in runs] for name, runs in timings.items()}
    rows = [[name, f"{statistics.median(ms):.1f}", f"{min(ms):.1f}", f"{max(ms):.1f}"] for name, ms in walls.items()]
    print(f"{args.runs} alternating runs each")
    print_table(["command", "median ms", "min ms", "max ms"], rows)
    help_ms = walls[next(iter(commands))]
    value = statistics.median(help_ms) if args.gate == "median" else max(help_ms)
    return verdict(value <= args.target_ms,
                   f"--help {args.gate} {value:.1f} ms (target <= {args.target_ms:g} ms; "
                   f"median {statistics.median(help_ms):.1f}, max {max(help_ms):.1f})")


if __name__ == "__main__":
    sys.exit(main())
