"""Clock-drift corrections on a live block: single samples dropped or repeated where it is quietest.

The policy (how many, when) lives in :mod:`echo_streamer.engine.drift`; this module only edits
samples, so it can be tested on plain arrays.
"""

from __future__ import annotations

import math

import numpy as np

# A correction goes at the centre of the quietest stretch of this length.
QUIET_WINDOW_MS = 1
# A block is quiet when its RMS is this far under the loudest recent block (or under the floor).
QUIET_BELOW_DB = 20.0
QUIET_FLOOR_DBFS = -50.0
# How fast the loudest-recent level decays: 3 dB per second.
_LOUD_DECAY_PER_S = 10 ** (-3 / 20)


def correct(block: np.ndarray, count: int, rate: int) -> np.ndarray:
    """``block`` (``(frames, channels)``) with ``count`` single samples dropped (``count > 0``) or
    repeated (``count < 0``), one at the quietest point of each of ``abs(count)`` equal parts."""
    if count == 0 or len(block) < 2 * abs(count):
        return block
    parts = np.array_split(np.arange(len(block)), abs(count))
    window = max(1, rate * QUIET_WINDOW_MS // 1000)
    at = [part[0] + _quietest(block[part], window) for part in parts]
    if count > 0:
        return np.delete(block, at, axis=0)
    return np.insert(block, at, block[at], axis=0)


def _quietest(block: np.ndarray, window: int) -> int:
    """Index of the centre of the quietest ``window`` samples of ``block``."""
    window = min(window, len(block))
    level = np.abs(block).sum(axis=1)
    sums = np.convolve(level, np.ones(window, dtype=level.dtype), mode="valid")
    return int(np.argmin(sums)) + window // 2


class QuietGate:
    """Tells quiet blocks (pauses, silence) from loud ones, relative to the loudest recent block.

    A block is quiet when its RMS is ``QUIET_BELOW_DB`` under the loudest block of the last few
    seconds (that level decays by 3 dB per second) or under ``QUIET_FLOOR_DBFS`` absolutely.
    """

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._loud = 0.0
        self._floor = 10 ** (QUIET_FLOOR_DBFS / 20)
        self._below = 10 ** (-QUIET_BELOW_DB / 20)

    def quiet(self, block: np.ndarray) -> bool:
        rms = math.sqrt(float(np.vdot(block, block)) / block.size) if block.size else 0.0
        self._loud = max(rms, self._loud * _LOUD_DECAY_PER_S ** (len(block) / self._rate))
        return rms <= max(self._floor, self._loud * self._below)
