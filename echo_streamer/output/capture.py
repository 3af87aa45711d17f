"""A WAV file of what the microphone sent (the PCM handed to the SDK, and the SDK's own silence
while the stream rests), written off the real-time path."""

from __future__ import annotations

import queue
import threading
import wave
from collections.abc import Callable

_SILENCE = memoryview(bytes(1 << 20))  # written in blocks of this size


class WavCapture:
    """Appends PCM16 mono frames to a WAV file from a background thread.

    ``write()`` and ``write_silence()`` never block (they only enqueue), so they are safe in SDK
    callbacks. ``close()`` blocks until every frame is on disk and the header is final. A write
    that fails (a full disk) calls ``on_error(reason)`` once, on the writer thread, and what comes
    after it is dropped rather than queued up.
    """

    def __init__(self, path: str, rate: int, on_error: Callable[[str], None] | None = None) -> None:
        self.path = path
        self._on_error = on_error
        self._failed = False
        # Opened here, not by wave.open(path), whose half-made writer complains on stderr when
        # the open fails (Python 3.11: "Exception ignored in: Wave_write.__del__").
        self._file = open(path, "wb")
        self._wav = wave.open(self._file, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
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
                self._wav.close()  # the header; the writer lets go of the file even when this fails
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
                        self._wav.writeframesraw(_SILENCE[:frame - start])
                else:
                    self._wav.writeframesraw(frame)
            except OSError as error:
                self._fail(error)

    def _fail(self, error: OSError) -> None:
        if not self._failed and self._on_error is not None:
            self._on_error(f"{self.path}: capture failed: {error.strerror or error}; the rest is not captured")
        self._failed = True
