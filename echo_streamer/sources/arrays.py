"""A source made of arrays the caller produces (a TTS engine in the same process)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import InputError
from .base import check_format

# Floats beyond this (36 dB over full scale) are no audio level but a scaling mistake. NaN passes
# (it compares false) and is refused later, with the rest of the pipeline's input.
MAX_FLOAT_LEVEL = 64.0


class ArraySource:
    """Wraps an iterable of sample arrays at ``rate`` Hz with ``channels`` channels.

    Each item is a 1-D array (mono) or a ``(frames, channels)`` array, either int16 (PCM16) or
    float (full scale 1.0; beyond it clipped, and beyond ``MAX_FLOAT_LEVEL`` an :class:`InputError`,
    as int16 values passed as floats). Iteration may block (the caller's synthesis); it runs in the
    streamer's decode worker, never on the real-time path. An exception the iterable raises
    ends the source with an :class:`InputError` naming it, like damaged data in a file: what
    came before it plays out.
    """

    duration: float | None = None

    def __init__(self, chunks: Iterable[np.ndarray], rate: int, channels: int = 1, name: str = "stream") -> None:
        check_format(name, rate, channels)
        self.name = name
        self.rate = int(rate)
        self.channels = int(channels)
        self._chunks = chunks

    def blocks(self) -> Iterator[np.ndarray]:
        chunks = iter(self._chunks)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except InputError:  # already says which input and why (a sound card that went away)
                raise
            except Exception as error:
                raise InputError(self.name, f"its chunks raised {type(error).__name__}: {error}") from error
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
        elif chunk.size and (peak := float(np.max(np.abs(chunk)))) > MAX_FLOAT_LEVEL:
            # int16 values passed as floats: they would play as full-scale noise
            raise InputError(self.name, f"float samples reach {peak:.6g}, far beyond full scale 1.0 (int16 values "
                                        "as floats? divide them by 32768, or pass int16)")
        block = chunk.reshape(-1, 1) if chunk.ndim == 1 else chunk
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise InputError(self.name, f"chunk of shape {chunk.shape} does not match {self.channels} channel(s)")
        return block.astype(np.float32, copy=False)
