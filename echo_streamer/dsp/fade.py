"""The fade that ends a cut segment: a short raised-cosine ramp to zero, then silence."""

from __future__ import annotations

import numpy as np

FADE_MS = 4


def fade_window(samples: int) -> np.ndarray:
    """Raised-cosine gains falling from just under 1 to just over 0 across ``samples`` samples."""
    return 0.5 * (1.0 + np.cos(np.pi * (np.arange(samples) + 0.5) / samples))


def fade_out(frame: bytes, fade_samples: int) -> bytes:
    """Return the PCM16 ``frame`` faded to zero over its first ``fade_samples`` samples, silent after."""
    pcm = np.frombuffer(frame, dtype=np.int16)
    out = np.zeros_like(pcm)
    out[:fade_samples] = np.rint(pcm[:fade_samples] * fade_window(fade_samples))
    return out.tobytes()
