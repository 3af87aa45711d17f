"""Clock drift on live input: the sample edits, and the control loop against simulated clocks.

The simulation runs a card and playout on one simulated clock, in time order, through the real
``DriftControl`` and the real live ``Conditioner`` (48 kHz stereo in, 24 kHz frames of 10 ms
out): the card delivers 5 ms blocks (1 + ppm x 1e-6) times faster than playout asks for frames
(every 10 ms, as the SDK's completions do). As in ``Playout``, a frame not complete when it is
asked for is handed when it is, if that is within ``LATE_MS``; otherwise that frame is an
underrun. Minutes run in a second or two, so every clock offset is checked over a long stretch.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Iterator

import numpy as np
import pytest

from echo_streamer.dsp.drift import QuietGate, correct
from echo_streamer.dsp.fade import FADE_MS
from echo_streamer.dsp.pipeline import Conditioner, OutputFormat
from echo_streamer.dsp.resample import LIVE_QUALITY
from echo_streamer.engine import drift as drift_control
from echo_streamer.engine.deadline import Deadline
from echo_streamer.engine.drift import FORCE_AFTER_S, HYSTERESIS_MS, RELEASE_S, WINDOW_S, DriftControl
from echo_streamer.engine.interrupt import Interruption
from echo_streamer.engine.playout import LATE_MS, Playout
from echo_streamer.engine.segment import Frame, Segment

IN_RATE, OUTPUT = 48_000, OutputFormat(24_000, 10)
BLOCK = IN_RATE * 5 // 1000


# -- the sample edits ------------------------------------------------------------------------


def ramp_with_quiet_spot(length: int, quiet_at: int) -> np.ndarray:
    """A loud stereo block with one quiet stretch of 1 ms centred on ``quiet_at``."""
    block = np.full((length, 2), 0.5, dtype=np.float32)
    block[quiet_at - 24:quiet_at + 24] = 0.001
    return block


@pytest.mark.parametrize("count", [1, 2, 3])
def test_dropped_samples_come_from_the_quiet_stretches(count: int) -> None:
    parts = np.array_split(np.arange(960), count)
    block = np.full((960, 2), 0.5, dtype=np.float32)
    for part in parts:
        centre = int(part[len(part) // 2])
        block[centre - 24:centre + 24] = 0.001
    corrected = correct(block, count, IN_RATE)
    assert corrected.shape == (960 - count, 2)
    assert np.count_nonzero(corrected[:, 0] == np.float32(0.001)) == 48 * count - count  # only quiet ones went


def test_repeated_sample_is_a_copy_of_its_neighbour_in_the_quiet_stretch() -> None:
    block = ramp_with_quiet_spot(240, 100)
    block[:, 0] += np.arange(240, dtype=np.float32) * 1e-6  # every sample distinct
    corrected = correct(block, -1, IN_RATE)
    assert corrected.shape == (241, 2)
    (at,) = np.flatnonzero(np.diff(corrected[:, 0]) == 0)
    assert 76 <= at <= 124 and np.array_equal(np.delete(corrected, at, axis=0), block)


def test_no_correction_leaves_the_block_alone() -> None:
    block = ramp_with_quiet_spot(240, 100)
    assert correct(block, 0, IN_RATE) is block


def test_quiet_gate_follows_the_loud_level() -> None:
    gate = QuietGate(IN_RATE)
    loud, soft = np.full((BLOCK, 1), 0.3, np.float32), np.full((BLOCK, 1), 0.01, np.float32)
    assert not gate.quiet(loud)
    assert gate.quiet(soft)  # 30 dB under the speech just before
    assert gate.quiet(np.zeros((BLOCK, 1), np.float32))
    fresh = QuietGate(IN_RATE)
    assert not fresh.quiet(soft)  # -40 dBFS with nothing louder before: that is the signal


# -- the control loop against simulated clocks -------------------------------------------------


def stereo_tone(start: int, stop: int) -> np.ndarray:
    """Samples ``start`` to ``stop`` of a 300 Hz tone at 0.3 of full scale, both channels, float32."""
    tone = 0.3 * np.sin(2 * np.pi * 300 / IN_RATE * np.arange(start, stop))
    return np.column_stack((tone, tone)).astype(np.float32)


class SimulatedLive:
    """A card ``ppm`` fast against playout, both on one simulated clock, through DriftControl."""

    def __init__(self, ppm: float, late_ms: float = 0.0, late_every: int = 0, seed: int = 0,
                 phase_s: float = 0.0123, stall: tuple[float, float] | None = None, first_blocks: int = 1) -> None:
        self.now = 0.0
        self.drift = DriftControl(IN_RATE, OUTPUT.rate, OUTPUT.frame_samples, 40, LATE_MS, clock=lambda: self.now)
        # What input_for_next_frame() says: a LiveFeed would hold blocks back until this much came.
        self.wanted = 0
        self.held_blocks = 0
        self.held_blocks_with_frames = 0
        self.conditioner = Conditioner("card", IN_RATE, 2, OUTPUT, quality=LIVE_QUALITY)
        self.ready: deque[float] = deque()  # completion times of frames not yet taken
        self.handed = 0
        self.latencies_ms: list[float] = []  # frame complete -> handed
        self.handed_at: list[float] = []
        self._asked_at: float | None = None  # a request waiting for its frame
        self.asked = False  # playout has asked for a frame: the segment's turn has come
        self.underrun_frames = 0
        self.backlog_ms: list[float] = []
        self.loud_starts = 0  # corrections begun (an edited block after an unedited one) in the tone
        self.loud_edits: list[float] = []  # when a block of the tone was edited
        self._blocks = 0
        self._block_s = BLOCK / IN_RATE / (1 + ppm * 1e-6)
        self._next_pull = phase_s  # playout's phase against the card's
        # One block in ``late_every`` (at random) comes ``late_ms`` late: a stalled callback.
        self._late_s = late_ms / 1000
        self._late_every = late_every
        self._random = random.Random(seed)
        # (at seconds, for ms): the card delivers nothing for that long, then all it captured at once.
        self.stall = stall
        # The first delivery joins this many blocks (kept while the segment waited its turn).
        self._first_blocks = first_blocks

    def run(self, until: float) -> None:
        """Run both clocks until simulated time ``until`` (seconds)."""
        edited_before = False
        for block in self.drift.hold(self._card(until), lambda: self.conditioner.samples, lambda: self.handed,
                                     lambda: self.asked):
            edited = len(block) != BLOCK
            loud = np.abs(block).max() > 0.1
            if edited and not edited_before and loud:
                self.loud_starts += 1
            if edited and loud:
                self.loud_edits.append(self.now)
            edited_before = edited
            frames = self.conditioner.push(block)
            held = len(block) < self.wanted  # (each block is still processed here on its own)
            self.held_blocks += held
            self.held_blocks_with_frames += held and len(frames) > 0
            self.wanted = self.drift.input_for_next_frame(self.conditioner.samples)
            for _frame in frames:
                self.ready.append(self.now)
            if self._asked_at is not None and self.ready:
                self._hand(self._asked_at)
                self._asked_at = None

    def _hand(self, asked_at: float) -> None:
        ready = self.ready.popleft()
        self.drift.handed(asked_at, ready)
        self.latencies_ms.append(1000 * (self.now - ready))
        self.handed_at.append(self.now)
        self.handed += 1

    def _card(self, until: float) -> Iterator[np.ndarray]:
        while True:
            index = self._blocks
            late = self._late_every and self._random.randrange(self._late_every) == 0
            arrival = index * self._block_s + (self._late_s if late else 0.0)
            if self.stall is not None and self.stall[0] <= arrival < self.stall[0] + self.stall[1] / 1000:
                arrival = self.stall[0] + self.stall[1] / 1000
            if arrival > until:
                return
            self._blocks += 1
            self._pull_until(arrival)
            self.now = arrival
            if index < self._first_blocks - 1:
                continue
            talking = (index // 100) % 3 != 2  # half a second of tone, a quarter of a second of silence
            start = 0 if index < self._first_blocks else index * BLOCK
            yield stereo_tone(start, (index + 1) * BLOCK) if talking else np.zeros((BLOCK, 2), np.float32)

    def _pull_until(self, t: float) -> None:
        """Playout's requests, and the deadlines of those left waiting, up to time ``t``."""
        while True:
            deadline = math.inf if self._asked_at is None else self._asked_at + LATE_MS / 1000
            self.now = min(deadline, self._next_pull)
            if self.now > t:
                return
            if self.now == deadline:  # the frame did not come in time: silence went out instead
                self._asked_at = None
                self.underrun_frames += 1
                self.drift.underruns += 1
                continue
            self.asked = True
            if self.ready and self.ready[0] <= self.now:
                self._hand(self.now)
            elif self.handed:
                self._asked_at = self.now
            backlog = self.conditioner.samples - self.handed * OUTPUT.frame_samples
            self.backlog_ms.append(1000 * backlog / OUTPUT.rate)
            self._next_pull += OUTPUT.frame_ms / 1000


def longest_wait_ms(drift: DriftControl) -> float:
    """How long a frame may wait for its request once the control has settled: from the latest it
    may come (``margin_ms`` before the ``LATE_MS`` deadline) up one 5 ms block and the hysteresis,
    and 1 ms more that the clocks may slide while a correction waits for a pause."""
    return drift.margin_ms - LATE_MS + 1000 * BLOCK / IN_RATE + HYSTERESIS_MS + 1


@pytest.mark.parametrize("ppm", [-1000, -300, 0, 300, 1000])
def test_backlog_stays_put_while_the_clocks_drift(ppm: float) -> None:
    live = SimulatedLive(ppm)
    live.run(120)
    drift = live.drift
    settled = np.array(live.backlog_ms[1000:])  # after the first 10 s
    assert live.underrun_frames == 0 and drift.overflows == 0
    assert settled.max() <= 20 and drift.peak_ms <= 40
    # Not growing: the last minute's backlog is where the first settled minute's was.
    assert abs(settled[-6000:].mean() - settled[:6000].mean()) < 2.5
    # The corrections after the first (which places the start) add up to the clock offset: what
    # was dropped is what the card had too much.
    expected = ppm * 1e-6 * drift.samples_in
    assert abs(drift.dropped - drift.inserted - drift.placed - expected) <= 2 * BLOCK + 0.05 * abs(expected)
    assert drift.ppm == pytest.approx(ppm, abs=2 * BLOCK / drift.samples_in * 1e6 + 0.05 * abs(ppm))
    # ...to within the error it reports (120 s: 50 ppm).
    assert abs(drift.ppm - ppm) <= drift.fields()["drift_ppm_error"] == pytest.approx(50, abs=1)


@pytest.mark.parametrize("phase_s", [0.001, 0.004, 0.0065, 0.009, 0.0123])
@pytest.mark.parametrize("ppm", [-300, 300])
def test_frames_are_handed_within_a_block_of_completing(ppm: float, phase_s: float) -> None:
    """The control keeps frames complete just in time, whatever the clocks' phase: none waits
    longer than :func:`longest_wait_ms`, no frame misses its deadline, and after the
    start every move goes the way the clocks drift (a move judged on frames of the old timing
    would go too far, and wait RELEASE_S to be undone)."""
    live = SimulatedLive(ppm, phase_s=phase_s)
    moves: list[int] = []
    plan = live.drift._plan  # noqa: SLF001 - observed, not replaced

    def observed_plan(partial: int, now: float) -> None:
        plan(partial, now)
        if now > 10 and live.drift._pending:  # noqa: SLF001
            moves.append(live.drift._pending)  # noqa: SLF001

    live.drift._plan = observed_plan  # type: ignore[method-assign]  # noqa: SLF001
    live.run(120)
    settled = np.array(live.latencies_ms[1000:])
    assert live.underrun_frames == 0
    assert settled.max() <= longest_wait_ms(live.drift)
    assert len(moves) >= 4 and all((count > 0) == (ppm > 0) for count in moves)


@pytest.mark.parametrize("phase_s", [0.001, 0.004, 0.0065, 0.009])
def test_a_first_delivery_of_joined_blocks_does_not_widen_the_timing(phase_s: float) -> None:
    """The first delivery holds two blocks at once (drift control kept them while the segment waited its turn):
    the control still keeps frames within one 5 ms block of completing, not within ten."""
    live = SimulatedLive(300, phase_s=phase_s, first_blocks=2)
    live.run(60)
    assert live.underrun_frames == 0
    assert max(live.latencies_ms[1000:]) <= longest_wait_ms(live.drift)


@pytest.mark.parametrize("ppm", [-1000, 0, 1000])
def test_holding_blocks_for_the_next_frame_never_holds_back_one_that_completes_it(ppm: float) -> None:
    """What a live feed holds back by ``input_for_next_frame`` (not conditioned until the next
    block) never completes a frame, corrections included; and it is about every other 5 ms block."""
    live = SimulatedLive(ppm)
    live.run(60)
    assert live.held_blocks_with_frames == 0
    assert live.held_blocks > 0.45 * live.drift.samples_in / BLOCK


def test_corrections_begin_in_quiet_blocks() -> None:
    """At 300 ppm the loop is never far off, so every correction begins in the silent quarter-seconds
    (and then goes on block after block until it is done)."""
    live = SimulatedLive(300)
    live.run(60)
    assert live.drift.dropped > 0
    assert live.loud_starts <= 2  # the start, where the loop first finds its place, may need them


def test_a_card_that_stalls_now_and_then_raises_the_margin_until_underruns_stop() -> None:
    """One block in 400 comes 9 ms late, more than the deadline allows: the first stalls starve
    a frame each, every underrun widens the margin, and then the stalls are ridden out."""
    live = SimulatedLive(0, late_ms=9, late_every=400, seed=3)
    live.run(60)
    early = live.underrun_frames
    live.underrun_frames = 0
    live.run(300)  # the same clocks go on
    assert early >= 1 and live.drift.margin_ms > drift_control.MARGIN_MS
    assert live.underrun_frames == 0


def test_a_card_that_keeps_stalling_has_its_margin_taken_off_ever_more_rarely(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same card for ten minutes, with ``RELAX_AFTER_S`` shortened to 20 s: each step off the
    margin starves a frame again, and doubles the wait before the next step, so after the first
    minute frames starve at most five times (20 + 40 + 80 + 160 s), not every 20 s."""
    monkeypatch.setattr(drift_control, "RELAX_AFTER_S", 20.0)
    live = SimulatedLive(0, late_ms=9, late_every=400, seed=3)
    live.run(60)
    margin, early = live.drift.margin_ms, live.underrun_frames
    live.run(600)
    assert 1 <= live.underrun_frames - early <= 5
    assert live.drift.margin_ms == margin


def test_the_margin_an_underrun_raised_comes_back_once_the_card_keeps_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stall of the card (30 ms) starves frames and widens the margin; once the card has kept
    time for ``RELAX_AFTER_S`` (shortened here), the margin steps back, and nothing starves."""
    monkeypatch.setattr(drift_control, "RELAX_AFTER_S", 20.0)
    live = SimulatedLive(0, stall=(10.0, 30.0))
    live.run(12)
    live.stall = (12.0, 30.0)  # a second stall, in a later window: a second step
    live.run(14)
    assert live.drift.margin_ms == drift_control.MARGIN_MS + 2 * drift_control.JITTER_STEP_MS
    starved = live.underrun_frames
    live.run(40)
    assert live.drift.margin_ms == drift_control.MARGIN_MS + drift_control.JITTER_STEP_MS
    live.run(60)
    assert live.drift.margin_ms == drift_control.MARGIN_MS
    assert live.underrun_frames == starved


def test_stalls_do_not_keep_frames_hunting_between_blocks() -> None:
    """A card that stalls 6 ms every half second: after moving frames a block earlier the control
    waits RELEASE_S before moving them back, so there is at most one block (240 input samples)
    of edits each way per RELEASE_S, not per half-second window."""
    live = SimulatedLive(0, late_ms=6, late_every=100, seed=3)
    live.run(300)
    assert live.underrun_frames == 0
    assert live.drift.dropped + live.drift.inserted <= 2 * 240 * 300 / RELEASE_S


def test_the_backlog_a_card_stall_leaves_goes_in_the_next_pause() -> None:
    """The card stalls 30 ms in the tone, then delivers what it captured at once: silence went out
    meanwhile (an underrun) and the frames that follow are 30 ms early. All of that goes in one
    correction, not a block per half-second window and its correction (4.7 s), and it waits for
    the pause at 20.5 s, where it takes 0.36 s, instead of shifting the tone's pitch by 1.7 %
    for 2.2 s."""
    live = SimulatedLive(0, stall=(20.0, 30.0))
    live.run(30)
    waits = np.array(live.latencies_ms)
    at = np.array(live.handed_at)
    assert live.underrun_frames >= 2
    assert waits[(at > 20.05) & (at < 20.3)].max() > 20  # the stall's backlog
    assert waits[at > 21.0].max() <= longest_wait_ms(live.drift)
    assert not [t for t in live.loud_edits if 20.0 <= t < 21.5]
    # What was dropped for the stall places the frames again: the clocks still agree.
    assert live.drift.dropped - live.drift.inserted > 1000 and abs(live.drift.ppm) < 20, live.drift.fields()


class LoudFeed:
    """A tone in 5 ms blocks straight through a DriftControl, with each frame's lead set by hand:
    playout takes a frame every other block, and it was complete ``ahead_ms`` before it was asked for."""

    def __init__(self) -> None:
        self.now = 0.0
        self.drift = DriftControl(IN_RATE, OUTPUT.rate, OUTPUT.frame_samples, 40, LATE_MS, clock=lambda: self.now)
        self.edited_at: list[float] = []  # when a block came out longer or shorter
        self._blocks = 0

    def run(self, seconds: float, ahead_ms: float) -> None:
        frames = lambda: self._blocks // 2  # noqa: E731 - no backlog: every frame made is handed
        made = lambda: frames() * OUTPUT.frame_samples  # noqa: E731
        for block in self.drift.hold(self._tone(seconds, ahead_ms), made, frames, lambda: True):
            if len(block) != BLOCK:
                self.edited_at.append(self.now)

    def _tone(self, seconds: float, ahead_ms: float) -> Iterator[np.ndarray]:
        for _ in range(round(seconds * 1000 / 5)):
            self._blocks += 1
            self.now = self._blocks * BLOCK / IN_RATE
            if self._blocks % 2 == 0:
                self.drift.handed(self.now, self.now - ahead_ms / 1000)
            yield stereo_tone(self._blocks * BLOCK, (self._blocks + 1) * BLOCK)


def test_a_lone_late_frame_moves_nothing() -> None:
    """One frame in a half second that came 4.5 ms after its request (within the margin of the
    deadline, but in time: a block delayed now and then) leaves the frames where they are, a
    block later than moving them earlier would; three in a row move them."""
    feed = LoudFeed()
    for _ in range(8):
        feed.run(0.74, ahead_ms=1)
        feed.run(0.01, ahead_ms=-4.5)  # one frame
    assert feed.drift.inserted == feed.drift.dropped == 0
    feed.run(0.1, ahead_ms=1)
    feed.run(0.03, ahead_ms=-4.5)
    feed.run(1, ahead_ms=1)
    assert feed.drift.inserted > 0


def test_frames_late_from_one_stall_move_nothing() -> None:
    """Two frames in a row within the margin of their deadline (one stall of the card delays
    both) count once, as a lone late frame does, and move nothing; late frames apart from each
    other in a half second move them."""
    feed = LoudFeed()
    for _ in range(8):
        feed.run(0.74, ahead_ms=1)
        feed.run(0.02, ahead_ms=-4.5)  # two frames in a row
    assert feed.drift.inserted == feed.drift.dropped == 0
    for _ in range(10):
        feed.run(0.1, ahead_ms=1)
        feed.run(0.01, ahead_ms=-4.5)
    feed.run(1, ahead_ms=1)
    assert feed.drift.inserted > 0


def test_frames_turning_late_do_not_wait_behind_a_correction_waiting_for_a_pause() -> None:
    """In loud audio, frames a block early wait for a pause to be moved later. When frames then come
    too close to their deadline, the next window moves them earlier at once (samples repeated), and
    the waiting correction is dropped: it would have held every plan back for FORCE_AFTER_S."""
    feed = LoudFeed()
    feed.run(1.0, ahead_ms=5)
    assert feed.edited_at == [] and feed.drift._pending > 0  # noqa: SLF001 - waiting for a pause
    feed.run(1.0, ahead_ms=-5)
    assert feed.drift.dropped == 0 and feed.drift.inserted > 0
    assert feed.edited_at[0] <= 1.0 + WINDOW_S + 0.01


def test_a_correction_planned_again_keeps_waiting_only_until_its_first_deadline() -> None:
    """Frames stay a block early through loud audio: each window plans the same correction again,
    and it still begins FORCE_AFTER_S after the first plan, not after the last."""
    feed = LoudFeed()
    feed.run(4.0, ahead_ms=5)
    assert feed.drift.dropped > 0 and feed.drift.inserted == 0
    assert WINDOW_S + FORCE_AFTER_S <= feed.edited_at[0] <= WINDOW_S + FORCE_AFTER_S + 0.01


def test_a_backlog_in_audio_that_never_pauses_goes_without_a_pitch_shift_one_can_hear() -> None:
    """Frames a block early through a tone with no pause (after a stall, say): once the correction
    may no longer wait for a pause it drops at most 1 sample in 400 (a 0.25 % pitch shift), where
    frames about to miss their deadline get a block's worth of samples repeated within 0.3 s."""
    early = LoudFeed()
    early.run(WINDOW_S + FORCE_AFTER_S + 0.5, ahead_ms=5)
    before = early.drift.dropped
    early.run(1.0, ahead_ms=5)
    assert 0 < early.drift.dropped - before <= IN_RATE / 400 + 1, (before, early.drift.dropped)
    late = LoudFeed()
    late.run(WINDOW_S + 0.3, ahead_ms=-5)
    assert late.drift.inserted >= BLOCK, late.drift.inserted


def test_frames_turning_late_during_a_slow_correction_are_moved_earlier_at_once() -> None:
    """A backlog being worked off slowly through loud audio (samples dropped, 1 in 400) when frames
    come too close to their deadline (the card slowed down): that correction gives way, as soon as
    a second frame is that late (a lone one moves nothing), to one that repeats samples at the
    fast rate, instead of dropping on for seconds into underruns."""
    feed = LoudFeed()
    feed.run(WINDOW_S + FORCE_AFTER_S + 0.5, ahead_ms=5)
    dropped = feed.drift.dropped
    assert dropped > 0 and feed.drift._pending > 0  # noqa: SLF001 - still under way
    feed.run(0.3, ahead_ms=-5)
    # Until the second late frame: two blocks at 1 in 400 drop a sample or two.
    assert feed.drift.dropped - dropped <= 2 and feed.drift.inserted >= BLOCK // 2, (feed.drift.dropped,
                                                                                      feed.drift.inserted)


@pytest.mark.parametrize("phase_s", [0.0, 0.004, 0.5, 0.5123])
def test_a_segment_that_waits_its_turn_starts_at_the_live_edge(phase_s: float) -> None:
    """Playout first asks for a frame after ``phase_s`` (0.5 s: a gap, a segment before it):
    meanwhile the control keeps just the newest frame's worth of input, uncounted, so it starts
    at most 15 ms behind the card, not 40 ms behind with a backlog to work off by dropping
    samples. The first correction (at most 3 blocks) only places the start: the ppm is 0."""
    live = SimulatedLive(0, phase_s=phase_s)
    live.run(5)
    assert max(live.backlog_ms) <= 15 and live.underrun_frames == 0
    assert live.drift.overflows == 0 and live.drift.inserted == 0 and live.drift.dropped <= 3 * BLOCK
    assert live.drift.placed == live.drift.dropped and live.drift.ppm == 0


def test_a_stalled_consumer_overflows_instead_of_queueing() -> None:
    """Playout stops taking frames (the SDK stalled): the backlog stops at 40 ms, the rest is dropped."""
    live = SimulatedLive(0)
    live.run(5)
    handed = live.handed
    live._next_pull = float("inf")  # noqa: SLF001 - playout stops
    live.run(6)
    assert live.handed == handed
    assert live.drift.overflows >= 150 and live.drift.peak_ms <= 40


# -- handing live frames just in time -------------------------------------------------------------


def live_segment(loop: asyncio.AbstractEventLoop) -> Segment:
    drift = DriftControl(IN_RATE, OUTPUT.rate, OUTPUT.frame_samples, 40, LATE_MS)
    return Segment("seg-1", "card", lambda: None, OUTPUT.rate, 8, loop, True, drift)  # type: ignore[arg-type,return-value]


def test_playout_leaves_a_late_live_frame_to_be_handed_when_it_comes() -> None:
    loop = asyncio.new_event_loop()
    try:
        events: list[str] = []
        playout = Playout(OUTPUT, 300, lambda name, *_: events.append(name))
        segment = live_segment(loop)
        playout.enqueue(segment, 1.0)
        pcm = bytes(range(256)) * (OUTPUT.frame_bytes // 256) + bytes(OUTPUT.frame_bytes % 256)
        segment.frames.put(Frame(pcm, False, 1.000))
        assert playout.next_frame(1.004) == pcm  # ready 4 ms before it was asked for
        assert playout.next_frame(1.010) is None  # not complete yet: wait for it
        segment.frames.put(Frame(pcm, False, 1.013))
        assert playout.next_frame(1.013, due=1.010) == pcm  # handed as it came, 3 ms late
        assert segment.drift is not None and segment.drift._leads.least == pytest.approx(-3.0)  # noqa: SLF001
        assert playout.next_frame(1.025, due=1.020) == bytes(OUTPUT.frame_bytes)  # the deadline: silence
        assert playout.underruns == 1 and segment.drift.underruns == 1 and "underrun" in events
    finally:
        loop.close()


def interrupted_while_a_live_frame_is_on_its_way(loop: asyncio.AbstractEventLoop,
                                                 mode: str) -> tuple[Playout, Segment, Interruption, bytes]:
    """A live segment has played a frame; an interrupt comes; at the next completion its next
    frame is not complete yet (``next_frame`` has been asked once more, at 1.010)."""
    playout = Playout(OUTPUT, 300, lambda *_: None)
    segment = live_segment(loop)
    playout.enqueue(segment, 1.0)
    pcm = np.full(OUTPUT.frame_samples, 10_000, np.int16).tobytes()
    segment.frames.put(Frame(pcm, False, 1.000))
    assert playout.next_frame(1.004) == pcm
    request = playout.interrupt(Interruption("int-1", mode, False, 400, 1.005, loop), 1.005)
    assert segment.interrupt_requested
    assert playout.next_frame(1.010) is None  # the cut waits for the frame, as the frame itself would
    return playout, segment, request, pcm


def test_a_hard_interrupt_of_live_input_fades_the_frame_on_its_way() -> None:
    """Not silence at once, which would end the audio on a step."""
    loop = asyncio.new_event_loop()
    try:
        playout, segment, request, pcm = interrupted_while_a_live_frame_is_on_its_way(loop, "now")
        segment.frames.put(Frame(pcm, False, 1.012))
        faded = np.frombuffer(playout.next_frame(1.012, due=1.010) or b"", np.int16)
        fade = OUTPUT.rate * FADE_MS // 1000
        assert request.cut == "now" and request.segment is segment
        assert 0 < faded[0] <= 10_000 and np.all(np.diff(faded[:fade].astype(int)) <= 0) and not faded[fade:].any()
    finally:
        loop.close()


def test_a_soft_interrupt_of_live_input_does_not_take_a_frame_on_its_way_for_a_pause() -> None:
    """A frame not complete at its completion is no interrupt point: the audio goes on to a real one."""
    loop = asyncio.new_event_loop()
    try:
        playout, segment, request, pcm = interrupted_while_a_live_frame_is_on_its_way(loop, "next_pause")
        segment.frames.put(Frame(pcm, False, 1.012))
        assert playout.next_frame(1.012, due=1.010) == pcm and request.cut is None
        segment.frames.put(Frame(pcm, True, 1.020))
        assert playout.next_frame(1.021) != pcm and request.cut == "pause"
    finally:
        loop.close()


def test_a_file_segment_is_never_left_waiting() -> None:
    loop = asyncio.new_event_loop()
    try:
        playout = Playout(OUTPUT, 300, lambda *_: None)
        segment = Segment("seg-1", "a.wav", lambda: None, OUTPUT.rate, 8, loop)  # type: ignore[arg-type,return-value]
        playout.enqueue(segment, 1.0)
        segment.frames.put(Frame(bytes(OUTPUT.frame_bytes), False, 1.0))
        playout.next_frame(1.0)
        assert playout.next_frame(1.01) == bytes(OUTPUT.frame_bytes)  # starved: silence at once
        assert playout.underruns == 1
    finally:
        loop.close()


def test_deadline_fires_once_at_its_time() -> None:
    fired: list[float] = []
    deadline = Deadline(lambda: fired.append(time.monotonic()))
    try:
        at = time.monotonic() + 0.05
        deadline.arm(at)
        time.sleep(0.15)
        assert len(fired) == 1 and at <= fired[0] < at + 0.05
    finally:
        deadline.close()


def test_a_deadline_armed_again_replaces_the_pending_one_and_close_cancels() -> None:
    fired: list[float] = []
    deadline = Deadline(lambda: fired.append(time.monotonic()))
    first = time.monotonic() + 0.05
    deadline.arm(first)
    deadline.arm(first + 0.05)
    time.sleep(0.15)
    deadline.arm(time.monotonic() + 0.1)
    deadline.close()
    time.sleep(0.15)
    assert len(fired) == 1 and first + 0.05 <= fired[0] < first + 0.1
