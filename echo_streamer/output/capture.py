"""A WAV file of what the microphone sent (the PCM handed to the SDK, and the SDK's own silence
while the stream rests), written off the real-time path."""

from __future__ import annotations

import queue
import threading
import wave

_SILENCE = memoryview(bytes(1 << 20))  # written in blocks of this size


class WavCapture:
    """Appends PCM16 mono frames to a WAV file from a background thread.

    ``write()`` and ``write_silence()`` never block (they only enqueue), so they are safe in SDK
    callbacks. ``close()`` blocks until every frame is on disk and the header is final.
    """

    def __init__(self, path: str, rate: int) -> None:
        # Opened here, not by wave.open(path), whose half-made writer complains on stderr when
        # the open fails (Python 3.11: "Exception ignored in: Wave_write.__del__").
        self._wav = wave.open(open(path, "wb"), "wb")
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
        self._wav.close()

    def _write_all(self) -> None:
        while (frame := self._frames.get()) is not None:
            if isinstance(frame, int):
                for start in range(0, frame, len(_SILENCE)):
                    self._wav.writeframesraw(_SILENCE[:frame - start])
            else:
                self._wav.writeframesraw(frame)
