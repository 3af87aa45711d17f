"""A source made of arrays the caller produces (a TTS engine in the same process)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import InputError
from .base import check_format


class ArraySource:
    """Wraps an iterable of sample arrays at ``rate`` Hz with ``channels`` channels.

    Each item is a 1-D array (mono) or a ``(frames, channels)`` array, either int16 (PCM16) or
    float (full scale 1.0). Iteration may block (the caller's synthesis); it runs in the
    streamer's decode worker, never on the real-time path.
    """

    duration: float | None = None

    def __init__(self, chunks: Iterable[np.ndarray], rate: int, channels: int = 1, name: str = "stream") -> None:
        check_format(name, rate, channels)
        self.name = name
        self.rate = rate
        self.channels = channels
        self._chunks = chunks

    def blocks(self) -> Iterator[np.ndarray]:
        for chunk in self._chunks:
            yield self._as_float_block(np.asarray(chunk))

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def _as_float_block(self, chunk: np.ndarray) -> np.ndarray:
        if chunk.dtype == np.int16:
            chunk = chunk.astype(np.float32) / 32768.0
        elif chunk.dtype.kind != "f":
            raise InputError(self.name, f"unsupported sample type {chunk.dtype} (use int16 or float)")
        block = chunk.reshape(-1, 1) if chunk.ndim == 1 else chunk
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise InputError(self.name, f"chunk of shape {chunk.shape} does not match {self.channels} channel(s)")
        return block.astype(np.float32, copy=False)
