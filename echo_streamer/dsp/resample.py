"""Sample-rate conversion with python-soxr: a one-shot call and a streaming object."""

from __future__ import annotations

import numpy as np
import soxr

QUALITY = "HQ"


def resample(samples: np.ndarray, in_rate: int, out_rate: int, quality: str = QUALITY) -> np.ndarray:
    """Resample a whole mono float32 vector at once (the reference the streaming path must equal)."""
    if in_rate == out_rate:
        return np.asarray(samples, dtype=np.float32)
    return soxr.resample(np.asarray(samples, dtype=np.float32), in_rate, out_rate, quality=quality)


class StreamResampler:
    """Resamples a mono float32 stream block by block; its filter state carries across blocks.

    The concatenation of every ``process()`` result and the final ``flush()`` equals
    :func:`resample` of the whole signal. When the rates are equal, samples pass through untouched.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = QUALITY) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample one block; returns what the filter can emit so far (possibly nothing)."""
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples)

    def flush(self) -> np.ndarray:
        """Emit the filter's tail at the end of the stream."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def clear(self) -> None:
        """Forget all state, ready for an unrelated stream."""
        if self._stream is not None:
            self._stream.clear()
