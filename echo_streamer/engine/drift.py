"""Holding a live segment's latency steady while the sound card's clock and the SDK's disagree.

A sound card and the SDK's playout clock differ by tens to hundreds of ppm: left alone, a live
stream's backlog (audio captured but not yet handed to the SDK) grows by seconds per hour, or
shrinks until the stream starves. Capture comes in blocks, so a frame is complete only when
the block holding its last sample arrives (plus the resampler's look-ahead), and then waits for
the SDK to take it. Dropping or repeating single input samples (``dsp.drift``) moves the frame
boundaries against the block boundaries, and :class:`DriftControl` uses that for two things:

- the wait: the shortest of each half second is kept between ``margin_ms`` (the jitter it must
  absorb) and ``margin_ms`` plus one block (and a little), by moving frame ends to the next or previous block
  as the clocks slide past each other;
- the fit: a frame should end right where the block that completes it ends, so that no frame
  waits for a block it needs only a few samples of.

Corrections go into quiet blocks unless the wait is below the margin (a starved frame is near)
or far too long. Whatever would take the backlog past ``max_ms`` is dropped a whole block at a
time and counted as an overflow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..dsp.drift import QuietGate, correct

# The shortest wait is taken over this long, and corrected after each.
WINDOW_S = 0.5
# At most this many samples dropped or repeated per block: 4 in a 5 ms block at 48 kHz is 1.7 %.
MAX_PER_BLOCK = 4
# Corrections wait for a quiet block unless the wait is this far over its band, or for this long.
FORCE_MS = 3.0
FORCE_AFTER_S = 2.0
# A frame may end this many output samples before the end of the block that completes it.
FIT_SAMPLES = 8
# The wait's band is one block wide plus this, so that jitter at its edge does not flip frame
# ends back and forth between blocks.
HYSTERESIS_MS = 1.0
# The wait that rides out scheduling jitter; every underrun adds JITTER_STEP_MS, up to MAX_MARGIN_MS.
MARGIN_MS = 1.5
JITTER_STEP_MS = 1.0
MAX_MARGIN_MS = 10.0


class DriftControl:
    """Keeps one live segment's frames waiting just long enough, and its backlog under ``max_ms``.

    :meth:`hold` runs in the decode worker over the captured blocks; playout reports each frame's
    wait (:meth:`waited`, from the SDK's thread: one comparison, never blocks). ``clock`` gives
    the time in seconds (``time.monotonic``, or a simulated one). Counters:
    ``dropped`` / ``inserted`` samples, ``overflows`` (whole blocks dropped above ``max_ms``),
    ``underruns`` (counted by playout, each raising ``margin_ms``); ``wait_ms`` is the last half
    second's shortest wait, ``peak_ms`` the highest backlog seen.
    """

    def __init__(self, in_rate: int, out_rate: int, frame_samples: int, max_ms: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.frame_samples = frame_samples
        self.max_ms = max_ms
        self.margin_ms = MARGIN_MS
        self.wait_ms: float | None = None
        self.peak_ms = 0.0
        self.dropped = 0
        self.inserted = 0
        self.overflows = 0
        self.underruns = 0
        self.samples_in = 0
        self._shortest_wait = math.inf
        self._gate = QuietGate(in_rate)
        self._pending = 0
        self._forced = False
        self._force_at = math.inf
        self._window_ends: float | None = None
        self._underruns_seen = 0
        self._clock = clock
        self._block_ms = 0.0

    @property
    def ppm(self) -> float:
        """The card's clock relative to playout, from the corrections so far (positive: faster)."""
        return 1e6 * (self.dropped - self.inserted) / self.samples_in if self.samples_in else 0.0

    def fields(self) -> dict[str, Any]:
        return {"wait_ms": None if self.wait_ms is None else round(self.wait_ms, 2), "margin_ms": self.margin_ms,
                "peak_ms": round(self.peak_ms, 2), "samples_dropped": self.dropped,
                "samples_inserted": self.inserted, "overflows": self.overflows, "underruns": self.underruns,
                "drift_ppm": round(self.ppm, 1)}

    def waited(self, seconds: float) -> None:
        """A frame of this segment was handed to the SDK ``seconds`` after it was complete."""
        self._shortest_wait = min(self._shortest_wait, 1000 * seconds)

    def hold(self, blocks: Iterable[np.ndarray], produced: Callable[[], int],
             handed: Callable[[], int]) -> Iterator[np.ndarray]:
        """Pass ``blocks`` on, corrected. ``produced()`` is the output samples made from them so far,
        ``handed()`` the frames handed to the SDK; both are read as each block arrives."""
        for block in blocks:
            now = self._clock()
            if self._window_ends is None:
                self._window_ends = now + WINDOW_S
                self._block_ms = 1000 * len(block) / self.in_rate
            quiet = self._gate.quiet(block)
            made = produced()
            backlog_ms = 1000 * (made - handed() * self.frame_samples) / self.out_rate
            self.peak_ms = max(self.peak_ms, backlog_ms)
            if backlog_ms + self._block_ms > self.max_ms:
                self.overflows += 1
                continue
            if not self._pending and now >= self._window_ends:
                self._plan(made % self.frame_samples, now)
            if self._pending and (quiet or self._forced or now >= self._force_at):
                count = max(-MAX_PER_BLOCK, min(MAX_PER_BLOCK, self._pending))
                block = correct(block, count, self.in_rate)
                self._pending -= count
                self.dropped += max(count, 0)
                self.inserted += max(-count, 0)
                if not self._pending:  # judge the next window by waits measured after this correction
                    self._shortest_wait = math.inf
                    self._window_ends = now + WINDOW_S
            self.samples_in += len(block)
            yield block

    def _plan(self, partial: int, now: float) -> None:
        """Decide the next corrections from the last window's shortest wait and from ``partial``,
        the output samples past the last whole frame. They are carried out before the next plan."""
        shortest, self._shortest_wait = self._shortest_wait, math.inf
        self._window_ends = now + WINDOW_S
        self._force_at = now + FORCE_AFTER_S
        if self.underruns > self._underruns_seen:
            self._underruns_seen = self.underruns
            self.margin_ms = min(self.margin_ms + JITTER_STEP_MS, MAX_MARGIN_MS)
        if shortest == math.inf:  # no frame handed yet
            return
        self.wait_ms = shortest
        block = self._block_ms * self.out_rate / 1000
        overshoot = partial % block  # how far frame ends fall short of the ends of the blocks completing them
        if shortest < self.margin_ms:  # end frames one block earlier: repeat samples until they fit again
            change = block - overshoot
        elif shortest > self.margin_ms + self._block_ms + HYSTERESIS_MS:  # one block later, fitting again
            change = -(overshoot + block)
        elif overshoot > FIT_SAMPLES:
            change = -overshoot
        else:
            return
        self._pending = -round(change * self.in_rate / self.out_rate)
        self._forced = shortest < self.margin_ms or shortest > self.margin_ms + self._block_ms + FORCE_MS
