"""``render``: the streaming pipeline without pacing, written to a WAV file."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import tempfile
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from .dsp.pipeline import Conditioner, OutputFormat, condition
from .sources.files import open_audio
from .sources.prefetch import Prefetched

# Bigger blocks than playback uses: render has no start-up latency to protect, and libsndfile
# decodes FLAC about 15% faster in 2 s reads than in 0.5 s ones (bench/RESULTS.md).
BLOCK_SECONDS = 2.0
COPY_BUFFER = 1 << 20
# How long a render that stops early (a failed write, Ctrl-C) waits for the decoder to leave its
# read before closing the input under it; one blocked in a pipe is left to the process's exit.
DECODER_STOP_S = 1.0


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


class PartlyWritten(Exception):
    """Replacing an existing output's contents in place stopped part way; ``__cause__`` says why
    (an :class:`OSError`, or :class:`KeyboardInterrupt` for a stop)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: stopped while its old contents were being replaced: it is partly overwritten")
        self.path = path


def render(input_path: str, output_path: str, output: OutputFormat = OutputFormat(),
           *, stdin: BinaryIO | None = None) -> RenderResult:
    """Decode ``input_path`` (``"-"`` for stdin) and write exactly the frames ``play`` would send.

    The output is a mono PCM16 WAV at ``output.rate``; its length is a whole number of frames
    (the last one padded with silence). The result lists the interrupt points the streamer
    would find in it. Runs as fast as decoding allows. ``output_path`` (through a symlink: its
    target) must be a regular file or not exist (:class:`ValueError` otherwise). The WAV is
    written to a temporary file, and only once complete becomes the output (:func:`_replacing`),
    so on any failure, :class:`~echo_streamer.errors.InputError` or other, the output is as it was;
    except :class:`PartlyWritten`, raised when an existing output that had to be rewritten in place
    (a hard-linked one) fails or is stopped part way.
    """
    final = os.path.realpath(output_path)
    if os.path.exists(final) and not os.path.isfile(final):
        raise ValueError(f"{output_path}: not a regular file (a WAV file is written in place, its header last)")
    source = open_audio(input_path, stdin=stdin, block_seconds=BLOCK_SECONDS)
    conditioner = Conditioner(source.name, source.rate, source.channels, output)
    frames = 0
    pause_marks: list[np.ndarray] = []
    blocks = Prefetched(source.blocks())
    try:
        with _replacing(final) as file, wave.open(file, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(output.rate)
            for block, pauses in condition(blocks, conditioner):
                wav.writeframesraw(block.astype("<i2", copy=False).tobytes())
                frames += len(block)
                pause_marks.append(pauses)
    finally:
        if blocks.stop(DECODER_STOP_S):
            source.close()
    points = pause_points(np.concatenate(pause_marks) if pause_marks else np.zeros(0, dtype=bool), output.frame_ms)
    end_ms = frames * output.frame_ms
    points.append(InterruptPoint(end_ms, "end", end_ms))
    return RenderResult(frames=frames, samples=conditioner.samples, clipped=conditioner.clipped, points=points)


@contextmanager
def _replacing(final: str) -> Iterator[BinaryIO]:
    """A temporary file beside ``final`` that becomes it when the block ends without an exception,
    and is removed otherwise. The temporary file, complete and closed, is renamed over ``final``
    (atomic), given the mode and owner of the file it replaces (not its ACLs or extended
    attributes). Only where a rename would change what the file was (another hard link to it, an
    owner or mode that cannot be given back, a folder that cannot be written) are its contents
    replaced in place, after the block, by :func:`_overwrite`. An existing ``final`` that cannot
    be written is refused before anything is (:class:`PermissionError`)."""
    existing = os.stat(final) if os.path.exists(final) else None
    if existing is not None and not os.access(final, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), final)
    folder, name = os.path.split(final)
    partial = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.partial")
    try:
        file, beside = open(partial, "xb+"), True
    except PermissionError:
        if existing is None:
            raise
        file, beside = tempfile.TemporaryFile(), False  # anonymous: nothing to remove however it ends
    try:
        with file:
            yield file
            in_place = existing is not None and not (beside and _made_like(file, existing))
            if in_place:
                _overwrite(final, file)
        if not in_place:  # closed first: a write that fails only at close fails before the rename
            os.replace(partial, final)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _made_like(file: BinaryIO, existing: os.stat_result) -> bool:
    """Give ``file`` the mode and owner of ``existing``; whether renaming it over ``existing`` now
    changes nothing else of what a user sees of the file."""
    if existing.st_nlink != 1:
        return False
    try:
        os.fchown(file.fileno(), existing.st_uid, existing.st_gid)
        os.fchmod(file.fileno(), stat.S_IMODE(existing.st_mode))
    except OSError:  # not ours to give away, or a file system that keeps neither (vfat)
        return False
    return True


def _overwrite(final: str, new: BinaryIO) -> None:
    """Replace the contents of the file ``final`` with those of ``new`` (read from its start). A
    full disk or a stop while its space is reserved leaves it as it was; a failure or a stop after
    that raises :class:`PartlyWritten`."""
    new.flush()
    size = new.seek(0, os.SEEK_END)
    new.seek(0)
    with open(final, "r+b") as target:
        old_size = os.fstat(target.fileno()).st_size
        try:
            os.posix_fallocate(target.fileno(), 0, size)
        except BaseException as error:
            target.truncate(old_size)
            if not (isinstance(error, OSError) and error.errno in (errno.EOPNOTSUPP, errno.EINVAL)):
                raise  # EOPNOTSUPP, EINVAL: a file system that cannot reserve space
        try:
            shutil.copyfileobj(new, target, COPY_BUFFER)
            target.truncate()
        except BaseException as error:
            raise PartlyWritten(final) from error


def pause_points(marks: np.ndarray, frame_ms: int) -> list[InterruptPoint]:
    """One point per run of frames marked as interrupt points."""
    edges = np.diff(np.concatenate(([0], marks.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [InterruptPoint(int(start) * frame_ms, "pause", int(end) * frame_ms)
            for start, end in zip(starts, ends, strict=True)]
