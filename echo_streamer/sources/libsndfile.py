"""Decoding through libsndfile (the soundfile package): WAV, FLAC, Ogg/Vorbis, AIFF, CAF and more."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import numpy as np
import soundfile

from ..errors import InputError
from .base import check_complete
from .wavheader import is_placeholder_size

# libsndfile notes a WAV data chunk (AIFF: SSND chunk) that claims more than the file holds as
# "data : N (should be M)"; for RF64 and Wave64 only the whole file's size: "Riff size : N (should
# be M)", "riff : N (should be M)" (a WAV's own "RIFF" line is not taken: its data line says more).
_DATA_SIZE_MISMATCH = re.compile(r"^ *(?:data|SSND) : (\d+) \(should be (\d+)\)", re.MULTILINE)
_FILE_SIZE_MISMATCH = re.compile(r"^ *(?:Riff size|riff) : (\d+) \(should be (\d+)\)", re.MULTILINE)


# Frames per read when a block's read failed and what it held before the fault is read again.
SALVAGE_FRAMES = 256


class NotForLibsndfile(Exception):
    """libsndfile does not recognise the container; another decoder should try."""


class SoundFileSource:
    """Streams a file through libsndfile in blocks of ``block_seconds`` (never the whole file)."""

    def __init__(self, path: str, block_seconds: float) -> None:
        try:
            # As bytes: a name that is no valid UTF-8 (Latin-1 from an old archive) is still a file name.
            self._file = soundfile.SoundFile(os.fsencode(path))
        except soundfile.LibsndfileError as error:
            raise NotForLibsndfile(str(error)) from error
        if self._file.frames == 0:
            # A WAV whose data size is 0 (a writer that never came back to fill it in) may still
            # hold samples after its header: ffmpeg reads those, and says so when there are none.
            self._file.close()
            raise NotForLibsndfile("no frames declared")
        self.name = path
        self.rate = self._file.samplerate
        self.channels = self._file.channels
        self.duration: float | None = self._file.frames / self.rate if self.rate > 0 else None
        self._declared_duration = self._declared_wav_duration()
        self._block_frames = max(1, round(block_seconds * self.rate))

    def blocks(self) -> Iterator[np.ndarray]:
        decoded = 0
        while True:
            try:
                block = self._file.read(self._block_frames, dtype="float32", always_2d=True)
            except soundfile.LibsndfileError as error:
                yield from self._salvaged(decoded)
                raise InputError(self.name, f"corrupt audio data ({error.error_string})") from error
            if len(block) == 0:
                break
            decoded += len(block)
            yield block
        check_complete(self.name, decoded / self.rate, self._declared_duration)

    def close(self) -> None:
        self._file.close()

    def _salvaged(self, start: int) -> Iterator[np.ndarray]:
        """What decodes of the block from frame ``start`` whose read failed, read again in small
        pieces up to the fault (a truncated or damaged file plays all that decodes)."""
        try:
            self._file.seek(start)
            while len(piece := self._file.read(SALVAGE_FRAMES, dtype="float32", always_2d=True)):
                yield piece
        except (soundfile.LibsndfileError, RuntimeError):  # the fault again, or a file that cannot seek
            return

    def _declared_wav_duration(self) -> float | None:
        """The length a WAV, AIFF, RF64 or Wave64 header declares, when it is more than the file
        holds (from a whole file's size: to within its header's, far under the 1 % allowed)."""
        info = self._file.extra_info
        mismatch = _DATA_SIZE_MISMATCH.search(info) or _FILE_SIZE_MISMATCH.search(info)
        if mismatch is None or self.duration is None:
            return None
        declared, actual = int(mismatch[1]), int(mismatch[2])
        if is_placeholder_size(declared) or declared <= actual or actual == 0:  # not truncated
            return None
        return self.duration * declared / actual
