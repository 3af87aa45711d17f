"""Decoding through an ffmpeg subprocess: everything libsndfile does not read (AAC/M4A, Opus, WebM, MP4...).

pydub would load the whole file into memory first; a subprocess that streams float32 WAV to a
pipe keeps memory flat however long the file is, and starts producing audio at once.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from ..errors import InputError
from .base import check_complete
from .wavheader import read_wav_header

_DURATION = re.compile(rb"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_ERROR_LINE = re.compile(rb"^\[(?:error|fatal|panic)\] (.*)$", re.MULTILINE)


class FfmpegSource:
    """Streams ``path`` (or, for ``"-"``, the given ``stdin``) through ``ffmpeg`` as float32 PCM.

    Blocks of ``block_seconds`` are read from ffmpeg's stdout as it decodes; the first audio stream
    is used. Decoder errors reported by ffmpeg raise :class:`InputError` at the end of the stream.
    """

    def __init__(self, path: str, block_seconds: float, stdin: BinaryIO | None = None) -> None:
        self.name = path
        self._log = tempfile.TemporaryFile()
        command = [
            "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info",
            "-i", "pipe:0" if path == "-" else path,
            "-map", "0:a:0", "-f", "wav", "-acodec", "pcm_f32le", "pipe:1",
        ]  # fmt: skip
        try:
            self._process = subprocess.Popen(
                command,
                stdin=stdin if path == "-" else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log,
            )
        except FileNotFoundError as error:
            self._log.close()
            raise InputError(path, "needs ffmpeg, which is not installed") from error
        assert self._process.stdout is not None
        self._stdout = self._process.stdout
        try:
            header = read_wav_header(self._stdout, path)
        except InputError as error:
            raise self._failure(f"cannot decode ({self._ffmpeg_reason(error.reason)})") from None
        if not (header.is_float and header.bits == 32):
            raise self._failure("ffmpeg did not deliver float32 PCM")
        self.rate = header.rate
        self.channels = header.channels
        self.duration = self._logged_duration()
        self._block_frames = max(1, round(block_seconds * self.rate))

    def blocks(self) -> Iterator[np.ndarray]:
        frame_bytes = 4 * self.channels
        decoded = 0
        while True:
            data = self._stdout.read(self._block_frames * frame_bytes)
            usable = len(data) - len(data) % frame_bytes
            decoded += usable // frame_bytes
            if usable:
                yield np.frombuffer(data[:usable], dtype=np.float32).reshape(-1, self.channels)
            if len(data) < self._block_frames * frame_bytes:
                break
        self._process.wait()
        if self._process.returncode != 0 or self._logged_errors():
            default = f"ffmpeg exited with status {self._process.returncode}"
            raise self._failure(f"corrupt audio data ({self._ffmpeg_reason(default)})")
        check_complete(self.name, decoded / self.rate, self.duration)

    def close(self) -> None:
        self._stop()
        self._stdout.close()
        self._log.close()

    def _stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    def _failure(self, reason: str) -> InputError:
        self.close()
        return InputError(self.name, reason)

    def _ffmpeg_reason(self, default: str) -> str:
        """The last error ffmpeg logged, without the input path it often starts with."""
        self._stop()
        errors = self._logged_errors()
        if not errors:
            return default
        prefix = f"{self.name}: "
        return errors[-1][len(prefix):] if errors[-1].startswith(prefix) else errors[-1]

    def _log_text(self) -> bytes:
        self._log.seek(0)
        return self._log.read()

    def _logged_errors(self) -> list[str]:
        return [m.decode(errors="replace").strip() for m in _ERROR_LINE.findall(self._log_text())]

    def _logged_duration(self) -> float | None:
        match = _DURATION.search(self._log_text())
        if match is None:
            return None
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)

