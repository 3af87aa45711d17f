"""Sample-format conversions: downmix to mono, float to PCM16 with clipping counted."""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from ..errors import InputError


def downmix(block: np.ndarray, name: str) -> np.ndarray:
    """Average the channels of a ``(frames, channels)`` float block into a mono float32 vector.

    Raises :class:`InputError` naming ``name`` if the block holds NaN or infinite samples.
    """
    mono = block[:, 0] if block.shape[1] == 1 else block @ _mean_weights(block.shape[1])
    # One reduction per block in the usual case: NaN or infinity anywhere makes the sum non-finite
    # (summed in float64, finite float32 samples never overflow it; the exact check settles the rest).
    # The sum of +inf and -inf is NaN, which numpy would warn about on stderr.
    with np.errstate(invalid="ignore", over="ignore"):
        total = float(mono.sum(dtype=np.float64))
    if not math.isfinite(total) and not np.isfinite(mono).all():
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
    scaled = samples * 32768.0
    np.rint(scaled, out=scaled)
    if not len(samples):
        return scaled.astype(np.int16), 0
    top = float(samples.max())
    if top > 1.0 or scaled.min() < -32768:
        clipped = int(np.count_nonzero((samples > 1.0) | (scaled < -32768)))
        np.clip(scaled, -32768, 32767, out=scaled)
    else:
        clipped = 0
        if top * 32768.0 >= 32767.5:  # +1.0, or within half a step of it, rounded up to 32768
            np.minimum(scaled, 32767, out=scaled)
    return scaled.astype(np.int16), clipped
