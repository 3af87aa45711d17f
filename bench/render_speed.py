"""Render speed: ``echo-streamer render`` against ``ffmpeg`` on a 10-minute 48 kHz stereo FLAC.

Both (and two plain soundfile+soxr loops, for context) run alternately as fresh processes;
the verdict is on the ratio of medians, render / ffmpeg. Target: <= 1.5x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import ECHO_STREAMER, Timing, measure_alternating, noise_sweep_flac, out_path, print_table, verdict

TARGET_RATIO = 1.5
AIM_RATIO = 1.2


def baseline_render(input_path: str, output_path: str, block_seconds: float, out_rate: int) -> None:
    """The plainest equivalent pipeline: soundfile blocks, mean downmix, soxr stream, PCM16 raw."""
    import numpy as np
    import soundfile
    import soxr

    def pcm16(samples: np.ndarray) -> bytes:
        return np.clip(np.rint(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()

    with soundfile.SoundFile(input_path) as source, open(output_path, "wb") as out:
        stream = soxr.ResampleStream(source.samplerate, out_rate, 1, dtype="float32", quality="HQ")
        block_frames = max(1, round(block_seconds * source.samplerate))
        for block in source.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
            out.write(pcm16(stream.resample_chunk(block.mean(axis=1, dtype=np.float32))))
        out.write(pcm16(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)))


def contenders(source: Path, rate: int, echo_streamer: str) -> dict[str, list[str]]:
    """Name -> command line; the first is the reference, the second the one under test."""
    me = [sys.executable, str(Path(__file__).resolve())]
    return {
        "ffmpeg (reference)": ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-ac", "1", "-ar", str(rate),
                               "-f", "s16le", str(out_path("speed-ffmpeg.raw"))],
        "echo-streamer render": [echo_streamer, "render", str(source), "-o", str(out_path("speed-render.wav")),
                                 "--rate", str(rate)],
        "soundfile+soxr, 100 ms blocks": [*me, "--baseline-block", "0.1", "--rate", str(rate), "--input", str(source),
                                          "--output", str(out_path("speed-baseline-100ms.raw"))],
        "soundfile+soxr, 1 s blocks": [*me, "--baseline-block", "1.0", "--rate", str(rate), "--input", str(source),
                                       "--output", str(out_path("speed-baseline-1s.raw"))],
    }  # fmt: skip


def report(timings: dict[str, list[Timing]], audio_seconds: float) -> float:
    """Print the table; return the median ratio of the tested command to the reference."""
    names = list(timings)
    reference = statistics.median(t.wall for t in timings[names[0]])
    rows = []
    for name, runs in timings.items():
        walls = [t.wall for t in runs]
        median = statistics.median(walls)
        rows.append([name, f"{median:.3f}", f"{min(walls):.3f}", f"{max(walls):.3f}",
                     f"{statistics.median(t.cpu for t in runs):.3f}", f"{median / reference:.2f}x",
                     f"{audio_seconds / median:.0f}x"])
    print_table(["command", "median s", "min s", "max s", "median CPU s", "vs ffmpeg", "real-time factor"], rows)
    return statistics.median(t.wall for t in timings[names[1]]) / reference


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=600, help="length of the generated test file (default: 600)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command (default: 7)")
    parser.add_argument("--rate", type=int, choices=(16000, 24000), default=16000, help="output rate (default: 16000)")
    parser.add_argument("--target", type=float, default=TARGET_RATIO, help=f"max render/ffmpeg ratio ({TARGET_RATIO})")
    parser.add_argument("--echo-streamer", default=ECHO_STREAMER, help=f"console script (default: {ECHO_STREAMER})")
    parser.add_argument("--input", help="use this file instead of the generated one")
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-block", type=float, help=argparse.SUPPRESS)  # run the baseline loop only
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_block is not None:
        baseline_render(args.input, args.output, args.baseline_block, args.rate)
        return 0
    source = Path(args.input) if args.input else noise_sweep_flac(args.seconds)
    import soundfile

    audio_seconds = soundfile.info(str(source)).duration
    print(f"input: {source} ({audio_seconds:.0f} s), output {args.rate} Hz mono, {args.runs} runs each, alternating")
    ratio = report(measure_alternating(contenders(source, args.rate, args.echo_streamer), args.runs), audio_seconds)
    return verdict(ratio <= args.target,
                   f"render/ffmpeg median ratio {ratio:.2f}x (target <= {args.target:g}x, aim {AIM_RATIO:g}x)")


if __name__ == "__main__":
    sys.exit(main())
