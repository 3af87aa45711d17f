"""``render``: the streaming pipeline without pacing, written to a WAV file."""

from __future__ import annotations

import os
import secrets
import wave
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from .dsp.pipeline import Conditioner, OutputFormat, condition
from .sources.files import open_audio
from .sources.prefetch import prefetched

# Bigger blocks than playback uses: render has no start-up latency to protect, and libsndfile
# decodes FLAC about 15% faster in 2 s reads than in 0.5 s ones (bench/RESULTS.md).
BLOCK_SECONDS = 2.0


@dataclass(frozen=True)
class InterruptPoint:
    """Where the stream may be cut: ``ms`` from the start of the segment, at a frame boundary.

    ``kind`` is ``"pause"`` (every frame start from ``ms`` up to ``until_ms`` is a point) or
    ``"end"`` (the end of the segment, where ``until_ms`` equals ``ms``).
    """

    ms: int
    kind: str
    until_ms: int


@dataclass(frozen=True)
class RenderResult:
    frames: int
    samples: int
    clipped: int
    points: list[InterruptPoint] = field(default_factory=list)


def render(input_path: str, output_path: str, output: OutputFormat = OutputFormat(),
           *, stdin: BinaryIO | None = None) -> RenderResult:
    """Decode ``input_path`` (``"-"`` for stdin) and write exactly the frames ``play`` would send.

    The output is a mono PCM16 WAV at ``output.rate``; its length is a whole number of frames
    (the last one padded with silence). The result lists the interrupt points the streamer
    would find in it. Runs as fast as decoding allows. The WAV is written beside the output
    path (through a symlink: beside its target) and renamed onto it once complete, so on any
    failure, :class:`~echo_streamer.errors.InputError` or other, the output path is as it was.
    """
    source = open_audio(input_path, stdin=stdin, block_seconds=BLOCK_SECONDS)
    conditioner = Conditioner(source.name, source.rate, output)
    frames = 0
    pause_marks: list[np.ndarray] = []
    final = os.path.realpath(output_path)
    folder, name = os.path.split(final)
    partial = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.partial")
    try:
        with open(partial, "xb") as file, wave.open(file, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(output.rate)
            for block, pauses in condition(prefetched(source.blocks()), conditioner):
                wav.writeframesraw(block.astype("<i2", copy=False).tobytes())
                frames += len(block)
                pause_marks.append(pauses)
        os.replace(partial, final)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    finally:
        source.close()
    points = pause_points(np.concatenate(pause_marks) if pause_marks else np.zeros(0, dtype=bool), output.frame_ms)
    end_ms = frames * output.frame_ms
    points.append(InterruptPoint(end_ms, "end", end_ms))
    return RenderResult(frames=frames, samples=conditioner.samples, clipped=conditioner.clipped, points=points)


def pause_points(marks: np.ndarray, frame_ms: int) -> list[InterruptPoint]:
    """One point per run of frames marked as interrupt points."""
    edges = np.diff(np.concatenate(([0], marks.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [InterruptPoint(int(start) * frame_ms, "pause", int(end) * frame_ms)
            for start, end in zip(starts, ends, strict=True)]
