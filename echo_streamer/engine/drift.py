"""Holding a live segment's latency steady while the sound card's clock and the SDK's disagree.

A sound card and the SDK's playout clock differ by tens to hundreds of ppm: left alone, a live
stream's backlog (audio captured but not yet handed to the SDK) grows by seconds per hour, or
shrinks until the stream starves. Capture comes in blocks, so a frame is complete only when
the block holding its last sample arrives (plus the resampler's look-ahead). The SDK asks for
the next frame at each completion and takes it at its next 10 ms tick, so a live frame may be
handed over up to ``late_ms`` after it was asked for (``Playout.next_frame``). How far ahead of
that request each frame is complete (negative: how late) is what :class:`DriftControl` steers.
Dropping or repeating single input samples (``dsp.drift``) moves the frame boundaries against
the block boundaries, and it uses that for two things:

- the timing: in each half second, the frames may come at most ``late_ms`` minus
  ``margin_ms`` (the jitter it must absorb) after their requests, all but those of one stall
  (a block that comes late now and then, delaying a frame or two in a row, still comes within
  ``late_ms``: moving every frame a block earlier for it would add a block of latency for
  seconds), and the latest no more than one block (and a little) before that; as the clocks
  slide past each other, frame ends move to the next or previous block;
- the fit: a frame should end right where the block that completes it ends, so that no frame
  waits for a block it needs only a few samples of.

Corrections begin in a quiet block unless frames came too close to their deadline (an underrun
is near) or none came for ``FORCE_AFTER_S``, and once begun go on block after block: halfway
through, frames may wait for a block they need only a few samples of. Quiet blocks take them
fast, so a correction begun in a pause is mostly done in it: the backlog a stall leaves (frames
tens of ms early) goes in the next pause. Loud blocks take them fast only when an underrun is
near; otherwise (audio that never pauses) at a pitch shift of 0.25 %, too little to hear, so a
tone or music comes out at its pitch while a backlog is worked off over seconds. Whatever would take the backlog past
``max_ms`` is dropped a whole block at a time and counted as an overflow. Until the segment's
turn comes (playout first asks it for a frame), only the newest ``start_ms`` of input (rounded up
to whole frames, one at least) is kept, unconditioned, and what is dropped is not counted: the
segment starts at the live edge, not ``max_ms`` behind it with a backlog to work off, and with
its audio contiguous (keeping the oldest frames and dropping newer blocks would splice it).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..dsp.drift import QuietGate, correct

# The least lead is taken over this long, and corrected after each.
WINDOW_S = 0.5
# At most this share of a block's samples dropped or repeated when frames are about to miss their
# deadline: 4 in a 5 ms block at 48 kHz. (More shifts a 2 kHz component by more than 30 degrees
# within one 5 ms block.)
MAX_CORRECTION = 1 / 60
# ...in a quiet block (20 dB under the recent level, or under -50 dBFS): 20 at 48 kHz.
QUIET_MAX_CORRECTION = 1 / 12
# ...and in a loud block otherwise (a backlog worked off through a tone or music that never
# pauses): a 0.25 % pitch shift (4 cents, under what a listener tells apart) while it lasts.
LOUD_MAX_CORRECTION = 1 / 400
# Corrections wait for a quiet block for at most this long (frames too late never wait).
FORCE_AFTER_S = 2.0
# A frame may end this many output samples before the end of the block that completes it.
FIT_SAMPLES = 8
# input_for_next_frame() counts this many output samples' worth less input than the next frame
# needs, so that rounding and corrections never leave a frame waiting for a block it did not need.
HOLD_SLACK_SAMPLES = 8
# The timing's band is one block wide plus this, so that jitter at its edge does not flip frame
# ends back and forth between blocks.
HYSTERESIS_MS = 1.0
# Frames move a block earlier at once when they came too close to their deadline twice in a
# window, and not back later for this long after that: a card that stalls now and then would
# otherwise have them hunting back and forth.
RELEASE_S = 5.0
# Frames too close to their deadline one after another count once, as one stall delays them all,
# unless there are this many in a row: then they are late for good, not from a stall.
SUSTAINED_FRAMES = 3
# Kept between frames (but those of one stall) and their deadline, for scheduling jitter; every
# half-second window with an underrun adds JITTER_STEP_MS, up to MAX_MARGIN_MS. Each
# RELAX_AFTER_S with no underrun takes a step off again, so that a stall of the machine does
# not add latency for the rest of a long session; an underrun within as long after such a step
# doubles the wait for the next one, so a card that stalls every few minutes keeps the margin
# it needs, tried ever more rarely.
# A wider margin also costs less CPU: while the SDK holds no frame (one asked for and not handed
# yet), its sender thread polls about every millisecond, so each millisecond a frame comes after
# its request wakes it once more (~30 us each on this project's VM).
MARGIN_MS = 2.5
JITTER_STEP_MS = 1.0
MAX_MARGIN_MS = 10.0
RELAX_AFTER_S = 300.0


def drift_ppm(net_dropped: int, samples_in: int) -> float:
    """A card's clock relative to playout from the samples dropped less those repeated for it,
    the placements left out (positive: faster)."""
    return 1e6 * net_dropped / samples_in if samples_in else 0.0


def drift_ppm_error(band_ms: float, samples_in: int, in_rate: int) -> float:
    """How far :func:`drift_ppm` may be off: the corrections follow the clocks only to within the
    band frames are kept in (``band_ms``, summed over the segments), over ``samples_in`` samples
    at ``in_rate`` Hz (a 60 s run: about 100 ppm; ten minutes: 10). 0 with no input."""
    return 1e3 * band_ms * in_rate / samples_in if samples_in else 0.0


class DriftControl:
    """Keeps one live segment's frames complete just in time, and its backlog under ``max_ms``.

    :meth:`take` corrects each captured block as it arrives: in the sound card's own thread for a
    :class:`~echo_streamer.sources.live.LiveInput`, or in the decode worker over an iterable
    (:meth:`hold`). Playout reports how far ahead of its request each frame was complete
    (:meth:`handed`, from whichever thread hands it: one comparison, never blocks). ``late_ms``:
    how late after its request playout still takes a frame. ``clock`` gives the time in seconds
    (``time.monotonic``, or a simulated one). Counters: ``dropped`` / ``inserted`` samples,
    ``overflows`` (whole blocks dropped above ``max_ms``, and frames a full queue had no room
    for), ``underruns`` (counted by playout; a half second with any raises ``margin_ms``, for
    ``RELAX_AFTER_S`` at least); ``ahead_ms`` is the last half second's smallest lead (negative: the latest frame),
    ``peak_ms`` the highest backlog seen once the segment plays. ``placed``: the samples dropped
    (negative: repeated) by the first correction, which places the segment's frames against
    playout's requests, and by those that work off the backlog a stall left (frames more than a
    block early): neither follows the clocks' drift, and :attr:`ppm` leaves them out.
    """

    def __init__(self, in_rate: int, out_rate: int, frame_samples: int, max_ms: int, late_ms: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, start_ms: float = 0.0) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.frame_samples = frame_samples
        self.max_ms = max_ms
        frame_ms = 1000 * frame_samples / out_rate
        self.start_ms = max(1, math.ceil(start_ms / frame_ms)) * frame_ms  # whole frames, the first at least
        self.late_ms = late_ms
        self.margin_ms = MARGIN_MS
        self.ahead_ms: float | None = None
        self.peak_ms = 0.0
        self.dropped = 0
        self.inserted = 0
        self.overflows = 0
        self.underruns = 0
        self.samples_in = 0
        self.placed = 0
        self._placing = True  # the correction under way places the frames (see ``placed``)
        self._start_placed = False
        self._leads = _Leads(self._low)
        self._gate = QuietGate(in_rate)
        self._pending = 0
        self._planned = 0  # what _pending was when planned: once begun, a correction is carried through
        self._forced = False
        self._allowance = 0.0  # samples a correction under way may still drop or repeat
        self._force_at = math.inf
        self._window_ends: float | None = None
        self._underruns_seen = 0
        self._margin_set_at = self._relaxed_at = -math.inf
        self._relax_after_s = RELAX_AFTER_S
        self._moved_earlier_at = -math.inf
        self._fresh_after = -math.inf
        self._clock = clock
        self._keep = math.ceil(self.start_ms * in_rate / 1000)
        self._waiting: deque[np.ndarray] = deque()  # the newest input, while the segment waits its turn
        self._block_ms = math.inf  # the capture's block: the shortest seen (a LiveFeed joins blocks)

    @property
    def ppm(self) -> float:
        """The card's clock relative to playout, from the corrections that follow it (positive:
        faster), to within :attr:`band_ms` over the input's duration (:func:`drift_ppm_error`)."""
        return drift_ppm(self.dropped - self.inserted - self.placed, self.samples_in)

    @property
    def band_ms(self) -> float:
        """How wide the band of leads is that frames are kept in (0 before any input)."""
        return self._block_ms + HYSTERESIS_MS if self.samples_in else 0.0

    def fields(self) -> dict[str, Any]:
        return {"ahead_ms": None if self.ahead_ms is None else round(self.ahead_ms, 2), "margin_ms": self.margin_ms,
                "peak_ms": round(self.peak_ms, 2), "samples_dropped": self.dropped,
                "samples_inserted": self.inserted, "placement_samples": self.placed, "overflows": self.overflows,
                "underruns": self.underruns, "drift_ppm": round(self.ppm, 1),
                "drift_ppm_error": round(drift_ppm_error(self.band_ms, self.samples_in, self.in_rate), 1)}

    def handed(self, asked_at: float, ready_at: float) -> None:
        """A frame of this segment was handed to the SDK: playout asked for it at ``asked_at`` and
        it was complete at ``ready_at`` (clock seconds). Frames completed before the block after
        the last correction say nothing about the timing it made, so they are not counted; nor
        do frames completed before playout first asked (the segment was waiting its turn)."""
        if self._fresh_after == -math.inf:
            self._fresh_after = asked_at
        if ready_at >= self._fresh_after:
            self._leads.add(1000 * (asked_at - ready_at))

    def hold(self, blocks: Iterable[np.ndarray], produced: Callable[[], int], handed: Callable[[], int],
             its_turn: Callable[[], bool]) -> Iterator[np.ndarray]:
        """Pass ``blocks`` on, corrected (:meth:`take` for each, as it arrives)."""
        for block in blocks:
            taken = self.take(block, produced(), handed(), its_turn())
            if taken is not None:
                yield taken

    def take(self, block: np.ndarray, made: int, handed_frames: int, its_turn: bool) -> np.ndarray | None:
        """The captured ``block`` corrected, or None when nothing of it is to be conditioned now
        (held while the segment waits its turn, or dropped as an overflow). ``made`` is the
        output samples conditioned so far, ``handed_frames`` the frames handed to the SDK,
        ``its_turn`` whether playout has asked the segment for a frame yet."""
        if len(block):  # every block as it came: the ones held back for a turn are the capture's own
            self._block_ms = min(self._block_ms, 1000 * len(block) / self.in_rate)
        if not its_turn:
            self._waiting.append(block)
            while sum(map(len, self._waiting)) - len(self._waiting[0]) >= self._keep:
                self._waiting.popleft()
            return None
        if self._waiting:
            self._waiting.append(block)
            block = np.concatenate(self._waiting)
            self._waiting.clear()
        now = self._clock()
        if self._window_ends is None:
            self._window_ends = now + WINDOW_S
        block_ms = 1000 * len(block) / self.in_rate
        quiet = self._gate.quiet(block)
        backlog_ms = 1000 * (made - handed_frames * self.frame_samples) / self.out_rate
        if backlog_ms + block_ms > self.max_ms:
            self.overflow(block_ms)
            return None
        if handed_frames:
            self.peak_ms = max(self.peak_ms, backlog_ms)
        if now >= self._window_ends and (self._pending in (0, self._planned) or self._leads.too_close):
            # No correction under way: none, or one still waiting for a pause, which the last
            # window may replace (frames that became late cannot wait for it); or one under way
            # (slowly, in loud audio) while frames became late: that one gives way too.
            self._plan(made % self.frame_samples, now)
        if self._fresh_after == math.inf:  # the last correction is done: judge frames from now on
            self._leads = _Leads(self._low)
            self._window_ends = now + WINDOW_S
            self._fresh_after = now
        if self._pending and (quiet or self._forced or now >= self._force_at or self._pending != self._planned):
            count = max(-1, min(1, self._pending)) * self._allowed(len(block), quiet, abs(self._pending))
            block = correct(block, count, self.in_rate)
            self._pending -= count
            self.dropped += max(count, 0)
            self.inserted += max(-count, 0)
            self.placed += count if self._placing else 0
            # Frames completed by this block may still have the old timing: the next window
            # counts only frames completed by the blocks after it.
            if not self._pending:
                self._fresh_after = math.inf
                self._start_placed = True
        self.samples_in += len(block)
        return block

    def overflow(self, ms: float) -> None:
        """Count ``ms`` of audio dropped as overflows, in the capture's blocks (joined or not)."""
        self.overflows += max(1, round(ms / self._block_ms))

    @property
    def kept_samples(self) -> int:
        """Input samples (per channel) kept while the segment waits its turn, not yet taken."""
        return sum(map(len, self._waiting))

    def input_for_next_frame(self, made: int) -> int:
        """Input samples (per channel) the next frame needs at least, ``made`` output samples so
        far: a capture may hold its blocks back until that much has come (fewer wakeups), and
        never delays a frame by it."""
        short = self.frame_samples - made % self.frame_samples - HOLD_SLACK_SAMPLES
        return max(0, math.floor(short * self.in_rate / self.out_rate))

    @property
    def _low(self) -> float:
        """The least lead (ms) a frame may have: a frame under it came too close to its deadline
        (``_Leads.too_close``)."""
        return self.margin_ms - self.late_ms

    def _allowed(self, samples: int, quiet: bool, wanted: int) -> int:
        """How many of ``wanted`` samples a correction may drop or repeat in a block of ``samples``:
        at the rate for the block, the fraction a block leaves carried to the next."""
        share = QUIET_MAX_CORRECTION if quiet else MAX_CORRECTION if self._forced else LOUD_MAX_CORRECTION
        self._allowance = min(self._allowance + samples * share, max(1.0, samples * share))
        count = min(wanted, math.floor(self._allowance))
        self._allowance -= count
        return count

    def _plan(self, partial: int, now: float) -> None:
        """Decide the next corrections from the last window's least lead and from ``partial``, the
        output samples past the last whole frame. They are carried out before the next plan."""
        leads = self._leads
        if self.underruns > self._underruns_seen:
            self._underruns_seen = self.underruns
            self.margin_ms = min(self.margin_ms + JITTER_STEP_MS, MAX_MARGIN_MS)
            if now - self._relaxed_at < self._relax_after_s:  # that step off was one too many
                self._relax_after_s *= 2
            self._margin_set_at = now
        elif self.margin_ms > MARGIN_MS and now - self._margin_set_at >= self._relax_after_s:
            self.margin_ms = max(self.margin_ms - JITTER_STEP_MS, MARGIN_MS)
            self._margin_set_at = self._relaxed_at = now
        self._leads = _Leads(self._low)
        least, too_close = leads.least, leads.too_close
        self._window_ends = now + WINDOW_S
        if not self._pending:  # a correction planned again keeps waiting for a pause only as long
            self._force_at = now + FORCE_AFTER_S
        self._pending = self._planned = 0
        if least == math.inf:  # no frame handed yet
            return
        self.ahead_ms = least
        low = self._low
        high = low + self._block_ms + HYSTERESIS_MS
        block = self._block_ms * self.out_rate / 1000
        overshoot = partial % block  # how far frame ends fall short of the ends of the blocks completing them
        # More than a block too early (the card or the machine stalled, and the audio captured
        # meanwhile came at once): every block of it goes in this correction, hold or not.
        excess_blocks = max(0, math.floor((least - high) / self._block_ms))
        if too_close:  # end frames one block earlier: repeat samples until they fit again
            change = block - overshoot
            self._moved_earlier_at = now
        elif least > high and (excess_blocks or now - self._moved_earlier_at >= RELEASE_S):
            change = -(overshoot + (1 + excess_blocks) * block)  # later by as many blocks, fitting again
        elif overshoot > FIT_SAMPLES:
            change = -overshoot
        else:
            self._start_placed = True  # placed as it came
            return
        self._placing = not self._start_placed or excess_blocks > 0
        self._pending = self._planned = -round(change * self.in_rate / self.out_rate)
        self._forced = too_close


class _Leads:
    """The least lead (ms) of the frames handed in one window, and whether frames came too close
    to their deadline (a lead under ``low``) twice: two frames apart, or ``SUSTAINED_FRAMES`` in
    a row (fewer in a row count once: one stall delays them all). Leads are added one at a time,
    in the order the frames are handed (playout notes them under the streamer's lock, from
    whichever thread hands the frame); the capture's thread starts the next window by replacing
    the object, so a lead noted as a window ends goes to the window it belongs to (or, noted
    after that window was judged, is not counted), never into the next one."""

    __slots__ = ("least", "_low", "_close_calls", "_in_a_row")

    def __init__(self, low: float) -> None:
        self.least = math.inf
        self._low = low
        self._close_calls = 0
        self._in_a_row = 0  # frames too close to their deadline, up to the last one added

    @property
    def too_close(self) -> bool:
        return self._close_calls >= 2

    def add(self, ahead: float) -> None:
        self.least = min(self.least, ahead)
        if ahead >= self._low:
            self._in_a_row = 0
            return
        self._in_a_row += 1
        if self._in_a_row in (1, SUSTAINED_FRAMES):
            self._close_calls += 1
