"""Cutting a PCM16 stream into exact, equal frames."""

from __future__ import annotations

import numpy as np

_NOTHING = np.zeros(0, dtype=np.int16)
_NOTHING.flags.writeable = False


class Framer:
    """Collects int16 samples and releases them as whole frames of ``frame_samples``.

    ``push()`` returns a ``(count, frame_samples)`` array of the frames completed so far;
    ``flush()`` pads the remaining partial frame with silence and returns it with the number
    of real samples it carries. Not one sample is lost or duplicated.
    """

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self._partial = _NOTHING

    def push(self, pcm: np.ndarray) -> np.ndarray:
        joined = np.concatenate((self._partial, pcm)) if len(self._partial) else pcm
        whole = len(joined) - len(joined) % self.frame_samples
        self._partial = joined[whole:].copy() if whole < len(joined) else _NOTHING
        return joined[:whole].reshape(-1, self.frame_samples)

    def flush(self) -> tuple[np.ndarray, int]:
        """Return ``(frames, real_samples)``: zero or one padded frame."""
        real = len(self._partial)
        if real == 0:
            return np.zeros((0, self.frame_samples), dtype=np.int16), 0
        frame = np.zeros((1, self.frame_samples), dtype=np.int16)
        frame[0, :real] = self._partial
        self._partial = _NOTHING
        return frame, real

    def clear(self) -> None:
        """Drop the partial frame."""
        self._partial = _NOTHING
