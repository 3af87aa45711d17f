"""Interrupt points inside speech: frames where a segment can be cut without cutting a word."""

from __future__ import annotations

import math

import numpy as np

# A pause must outlast the stop closures inside words (the silence before a "p", "t" or "k" is
# 30-80 ms in speech, about 50 ms at most from espeak-ng), while the shortest phrase pauses
# (commas) run 140 ms and more.
MIN_PAUSE_MS = 100
# Quiet means this far below the speech level; unvoiced consonants ("f", "s", "th") stay within
# about 30 dB of it.
BELOW_SPEECH_DB = 35.0
# ...or close to the noise floor of a recording with background noise, while still clearly below
# the speech level.
ABOVE_FLOOR_DB = 6.0
BELOW_SPEECH_NOISY_DB = 15.0
# How fast the speech level forgets a loud passage, and the noise floor a quiet one.
SPEECH_RELEASE_DB_PER_S = 3.0
FLOOR_RISE_DB_PER_S = 3.0
# A soft interrupt with no pause ahead cuts in a dip instead (between two words, or a stop
# closure): a frame at least this far under the median level around it, fading there is hardly
# heard next to a cut mid-vowel...
DIP_BELOW_MEDIAN_DB = 12.0
# ...the first frame ahead within this much of the quietest one (an almost as deep dip sooner).
DIP_NEAR_QUIETEST_DB = 6.0
# Anything this quiet is silence whatever the speech level (leading silence, before any speech).
QUIET_DBFS = -70.0
SILENCE_DB = -100.0
_SILENT_POWER = 10 ** (SILENCE_DB / 10)  # relative to full scale


def frame_levels(frames: np.ndarray) -> np.ndarray:
    """RMS level of each int16 frame in dBFS (full-scale sine = -3 dB); silence is -100."""
    return np.array(_levels(frames))


def _levels(frames: np.ndarray) -> list[float]:
    # The logarithm per frame in plain Python: most calls are for a single frame (live input,
    # streams), where numpy's overhead per call outweighs the arithmetic.
    full_scale = frames.shape[1] * 32768.0**2
    powers = np.vecdot(frames, frames, dtype=np.float64).tolist()
    return [10 * math.log10(power / full_scale) if power > _SILENT_POWER * full_scale else SILENCE_DB
            for power in powers]


class PauseDetector:
    """Marks the frames of one segment that are interrupt points ("pause" points).

    A frame is quiet when its level is under ``QUIET_DBFS``, more than ``BELOW_SPEECH_DB`` under the segment's speech
    level (a peak follower releasing ``SPEECH_RELEASE_DB_PER_S``), or within ``ABOVE_FLOOR_DB``
    of its noise floor (a minimum follower rising ``FLOOR_RISE_DB_PER_S``) while at least
    ``BELOW_SPEECH_NOISY_DB`` under the speech level. A pause is ``MIN_PAUSE_MS`` of consecutive
    quiet frames; the frame that completes it and every quiet frame after it are interrupt points.
    Cutting at the start of one of them fades a quiet frame after at least ``MIN_PAUSE_MS`` minus
    one frame of quiet has played. Causal: a frame's mark never depends on later audio.
    """

    def __init__(self, frame_ms: int) -> None:
        self.frame_ms = frame_ms
        self._min_run = max(1, -(-MIN_PAUSE_MS // frame_ms))
        self._release = SPEECH_RELEASE_DB_PER_S * frame_ms / 1000
        self._rise = FLOOR_RISE_DB_PER_S * frame_ms / 1000
        self.clear()

    def clear(self) -> None:
        """Forget the levels and the current quiet run (start of a new segment)."""
        self._speech = SILENCE_DB
        self._floor: float | None = None
        self._run = 0

    def mark(self, frames: np.ndarray) -> np.ndarray:
        """Return one bool per frame of the ``(count, samples)`` int16 array: is it an interrupt point?"""
        marks = []
        for level in _levels(frames):
            self._speech = max(level, self._speech - self._release)
            self._floor = level if self._floor is None else min(level, self._floor + self._rise)
            quiet = (level < QUIET_DBFS or level < self._speech - BELOW_SPEECH_DB
                     or (level < self._floor + ABOVE_FLOOR_DB and level < self._speech - BELOW_SPEECH_NOISY_DB))
            self._run = self._run + 1 if quiet else 0
            marks.append(self._run >= self._min_run)
        return np.array(marks, dtype=bool)


def first_dip(frames: np.ndarray) -> int | None:
    """Index of the first of the ``(count, samples)`` int16 frames that is at least
    ``DIP_BELOW_MEDIAN_DB`` under their median level and within ``DIP_NEAR_QUIETEST_DB`` of the
    quietest of them; None when even the quietest is not that far under the median."""
    if not len(frames):
        return None
    levels = frame_levels(frames)
    deep_enough = min(float(levels.min()) + DIP_NEAR_QUIETEST_DB, float(np.median(levels)) - DIP_BELOW_MEDIAN_DB)
    dips = np.flatnonzero(levels <= deep_enough)
    return int(dips[0]) if len(dips) else None
