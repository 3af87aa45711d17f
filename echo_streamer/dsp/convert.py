"""Sample-format conversions: downmix to mono, float to PCM16 with clipping counted."""

from __future__ import annotations

import math
from functools import cache

import numpy as np


def downmix(block: np.ndarray) -> np.ndarray:
    """Average the channels of a ``(frames, channels)`` float block (or take a mono vector as it
    is) into a mono float32 vector."""
    if block.ndim == 1:
        mono = block
    else:
        mono = block[:, 0] if block.shape[1] == 1 else block @ _mean_weights(block.shape[1])
    return mono.astype(np.float32, copy=False)


@cache
def _mean_weights(channels: int) -> np.ndarray:
    return np.full(channels, 1.0 / channels, dtype=np.float32)


def to_pcm16(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Scale float samples (full scale 1.0) to int16, rounding to nearest; return (pcm, clipped count).

    Samples beyond full scale are clipped and counted so the caller can report them. Exactly
    +1.0 becomes 32767 without being counted: full scale is legal, PCM16 is just one step short.
    NaN or infinite samples raise :class:`ValueError` (the extremes this looks at anyway tell them,
    so a resampler's output can be checked here for the input it came from: any such sample
    makes every output whose window holds it NaN or infinite).
    """
    scaled = samples * 32768.0
    np.rint(scaled, out=scaled)
    if not len(samples):
        return scaled.astype(np.int16), 0
    top, bottom = float(samples.max()), float(samples.min())
    if not (math.isfinite(top) and math.isfinite(bottom)):
        raise ValueError("NaN or infinite samples")
    if top > 1.0 or round(bottom * 32768.0) < -32768:
        clipped = int(np.count_nonzero((samples > 1.0) | (scaled < -32768)))
        np.clip(scaled, -32768, 32767, out=scaled)
    else:
        clipped = 0
        if top * 32768.0 >= 32767.5:  # +1.0, or within half a step of it, rounded up to 32768
            np.minimum(scaled, 32767, out=scaled)
    return scaled.astype(np.int16), clipped
