"""Clock drift between a sound card and the SDK: single samples dropped or repeated where it is quietest."""

from __future__ import annotations

import numpy as np

# Where to put a correction: the quietest stretch of this length in the block.
QUIET_WINDOW_MS = 1


class DriftCorrector:
    """Keeps the backlog of a live stream near ``target_ms`` while two clocks disagree.

    A sound card and the SDK's playout clock differ by tens to hundreds of ppm, so a live stream's
    backlog (audio captured but not yet played) creeps up or down: over an hour, seconds. Each
    block passed to :meth:`correct` with the backlog measured just before it loses one sample
    (backlog above ``target_ms + tolerance_ms``) or gains a copy of one (below
    ``target_ms - tolerance_ms``), at the quietest point of the block. One sample per block of
    5 ms at 48 kHz corrects up to about 4000 ppm, far more than clocks drift, and a single sample
    moved where the signal is quietest is inaudible. ``dropped`` and ``inserted`` count them.
    """

    def __init__(self, rate: int, target_ms: float = 20.0, tolerance_ms: float = 5.0) -> None:
        self.high_ms = target_ms + tolerance_ms
        self.low_ms = target_ms - tolerance_ms
        self._window = max(1, rate * QUIET_WINDOW_MS // 1000)
        self.dropped = 0
        self.inserted = 0

    def correct(self, block: np.ndarray, backlog_ms: float) -> np.ndarray:
        """Return ``block`` (``(frames, channels)``) with one sample dropped or repeated, or as it is."""
        if len(block) <= self._window or self.low_ms <= backlog_ms <= self.high_ms:
            return block
        at = self._quietest(block)
        if backlog_ms > self.high_ms:
            self.dropped += 1
            return np.delete(block, at, axis=0)
        self.inserted += 1
        return np.insert(block, at, block[at], axis=0)

    def _quietest(self, block: np.ndarray) -> int:
        """Index of the centre of the quietest ``QUIET_WINDOW_MS`` stretch of ``block``."""
        level = np.abs(block).sum(axis=1)
        sums = np.convolve(level, np.ones(self._window), mode="valid")
        return int(np.argmin(sums)) + self._window // 2
