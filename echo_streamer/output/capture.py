"""A WAV file of what the microphone sent (the PCM handed to the SDK, and the SDK's own silence
while the stream rests), written off the real-time path."""

from __future__ import annotations

import os
import queue
import struct
import threading
from collections.abc import Callable
from typing import BinaryIO

_SILENCE = memoryview(bytes(1 << 20))  # written in blocks of this size
_HEADER_BYTES = 44
_MAX_SIZE = 0xFFFFFFFF  # past 4 GiB (a day at 24 kHz), the sizes say "to the end of the file"


def _header(rate: int, data_bytes: int) -> bytes:
    """A canonical 44-byte RIFF/WAVE header: PCM16 mono at ``rate``, then ``data_bytes`` of samples."""
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", min(36 + data_bytes, _MAX_SIZE), b"WAVE", b"fmt ", 16, 1, 1,
                       rate, rate * 2, 2, 16, b"data", min(data_bytes, _MAX_SIZE))


class WavCapture:
    """Appends PCM16 mono frames to a WAV file from a background thread.

    ``write()`` and ``write_silence()`` never block (they only enqueue), so they are safe in SDK
    callbacks. ``close()`` blocks until every frame is on disk and the header is final. A write
    that fails (a full disk) calls ``on_error(reason)`` once, on the writer thread, and what comes
    after it is dropped rather than queued up. With ``append``, a capture already at ``path`` at
    the same rate (a PCM16 mono WAV with the canonical header this class writes) is continued
    (the daemon's capture across rejoins); any other file there is replaced.
    """

    def __init__(self, path: str, rate: int, on_error: Callable[[str], None] | None = None, *,
                 append: bool = False) -> None:
        self.path = path
        self._rate = rate
        self._on_error = on_error
        self._failed = False
        continued = _continued_data_bytes(path, rate) if append else None
        self._file: BinaryIO = open(path, "wb" if continued is None else "r+b")
        self._data_bytes = continued or 0
        if continued is None:
            self._file.write(_header(rate, 0))
        else:
            self._file.seek(_HEADER_BYTES + continued)
        self._frames: queue.SimpleQueue[bytes | int | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_all, name="echo-streamer-capture", daemon=True)
        self._writer.start()

    def write(self, frame: bytes) -> None:
        self._frames.put(frame)

    def write_silence(self, size: int) -> None:
        """Append ``size`` bytes of digital silence (an idle hour at 24 kHz is 172 MB: the zeros
        are made by the writer thread, a block at a time)."""
        self._frames.put(size)

    def close(self) -> None:
        self._frames.put(None)
        self._writer.join()
        try:
            try:
                self._file.seek(0)
                self._file.write(_header(self._rate, self._data_bytes))
            finally:
                self._file.close()
        except OSError as error:
            self._fail(error)

    def _write_all(self) -> None:
        while (frame := self._frames.get()) is not None:
            if self._failed:
                continue
            try:
                if isinstance(frame, int):
                    for start in range(0, frame, len(_SILENCE)):
                        self._append(_SILENCE[:frame - start])
                else:
                    self._append(frame)
            except OSError as error:
                self._fail(error)

    def _append(self, pcm: bytes | memoryview) -> None:
        self._file.write(pcm)
        self._data_bytes += len(pcm)

    def _fail(self, error: OSError) -> None:
        if not self._failed and self._on_error is not None:
            self._on_error(f"{self.path}: capture failed: {error.strerror or error}; the rest is not captured")
        self._failed = True


def _continued_data_bytes(path: str, rate: int) -> int | None:
    """The samples' size in the file at ``path`` when it is a capture at ``rate`` to go on with:
    a PCM16 mono WAV with the canonical 44-byte header :class:`WavCapture` writes, whatever its
    size fields say (a capture whose disk filled up never wrote them), less a partial sample at
    its end; else None."""
    try:
        with open(path, "rb") as file:
            head = file.read(_HEADER_BYTES)
            size = os.fstat(file.fileno()).st_size
    except OSError:
        return None
    expected = _header(rate, 0)
    if len(head) < _HEADER_BYTES or head[:4] + head[8:40] != expected[:4] + expected[8:40]:
        return None
    return (size - _HEADER_BYTES) & ~1
