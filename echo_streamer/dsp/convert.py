"""Sample-format conversions: downmix to mono, float to PCM16 with clipping counted."""

from __future__ import annotations

from functools import cache

import numpy as np

from ..errors import InputError


def downmix(block: np.ndarray, name: str) -> np.ndarray:
    """Average the channels of a ``(frames, channels)`` float block into a mono float32 vector.

    Raises :class:`InputError` naming ``name`` if the block holds NaN or infinite samples.
    """
    if block.shape[1] == 1:
        mono = block[:, 0]
    else:
        mono = block @ _mean_weights(block.shape[1])
    if not np.isfinite(mono).all():
        raise InputError(name, "contains NaN or infinite samples")
    return mono.astype(np.float32, copy=False)


@cache
def _mean_weights(channels: int) -> np.ndarray:
    return np.full(channels, 1.0 / channels, dtype=np.float32)


def to_pcm16(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Scale float samples (full scale 1.0) to int16, rounding to nearest; return (pcm, clipped count).

    Samples beyond full scale are clipped and counted so the caller can report them. Exactly
    +1.0 becomes 32767 without being counted: full scale is legal, PCM16 is just one step short.
    """
    scaled = np.rint(samples * 32768.0)
    if len(samples) and (samples.max() > 1.0 or scaled.min() < -32768):
        clipped = int(np.count_nonzero((samples > 1.0) | (scaled < -32768)))
        np.clip(scaled, -32768, 32767, out=scaled)
    else:  # the usual case, checked with two reductions: at most +1.0 rounded up to 32768
        clipped = 0
        np.minimum(scaled, 32767, out=scaled)
    return scaled.astype(np.int16), clipped
