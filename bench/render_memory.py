"""Render memory: peak RSS of ``echo-streamer render`` on a 1-hour 48 kHz stereo FLAC.

Peak RSS comes from GNU time (``/usr/bin/time -v``) around a fresh process. The 10-minute file is
rendered too, to show memory does not grow with length, and, if pydub is importable, pydub's
``AudioSegment.from_file`` on the 10-minute file is measured for contrast. Target: <= 80 MB.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import ECHO_STREAMER, noise_sweep_flac, out_path, peak_rss_mb, print_table, verdict

TARGET_MB = 80.0


def render_command(echo_streamer: str, source: Path) -> list[str]:
    return [echo_streamer, "render", str(source), "-o", str(out_path(f"memory-{source.stem}.wav")), "--rate", "16000"]


def pydub_command(source: Path) -> list[str]:
    return [sys.executable, "-c", f"from pydub import AudioSegment; AudioSegment.from_file({str(source)!r})"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long-seconds", type=int, default=3600, help="length of the main test file (default: 3600)")
    parser.add_argument("--short-seconds", type=int, default=600,
                        help="length of the comparison file (default: 600)")
    parser.add_argument("--target-mb", type=float, default=TARGET_MB, help=f"max peak RSS in MiB ({TARGET_MB:g})")
    parser.add_argument("--echo-streamer", default=ECHO_STREAMER, help=f"console script (default: {ECHO_STREAMER})")
    parser.add_argument("--no-pydub", action="store_true", help="skip the pydub contrast")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    long_file, short_file = noise_sweep_flac(args.long_seconds), noise_sweep_flac(args.short_seconds)
    long_mb = peak_rss_mb(render_command(args.echo_streamer, long_file))
    rows: list[list[object]] = [
        ["echo-streamer render --rate 16000", f"{args.long_seconds} s", f"{long_mb:.1f}"],
        ["echo-streamer render --rate 16000", f"{args.short_seconds} s",
         f"{peak_rss_mb(render_command(args.echo_streamer, short_file)):.1f}"],
    ]
    if args.no_pydub:
        pass
    elif importlib.util.find_spec("pydub") is None:
        print("pydub is not importable in this interpreter: contrast skipped")
    else:
        rows.append(["pydub AudioSegment.from_file", f"{args.short_seconds} s",
                     f"{peak_rss_mb(pydub_command(short_file)):.1f}"])
    print(f"inputs: 48 kHz stereo 16-bit FLAC ({long_file.name}, {short_file.name})")
    print_table(["command", "input length", "peak RSS MiB"], rows)
    return verdict(long_mb <= args.target_mb,
                   f"render of {args.long_seconds} s peaks at {long_mb:.1f} MiB (target <= {args.target_mb:g} MB)")


if __name__ == "__main__":
    sys.exit(main())
