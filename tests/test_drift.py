"""Clock drift on live input: the sample edits, and the control loop against simulated clocks.

The simulation runs a card and playout on one simulated clock, in time order, through the real
``DriftControl`` and the real live ``Conditioner`` (48 kHz stereo in, 24 kHz frames of 10 ms
out): the card delivers 5 ms blocks (1 + ppm x 1e-6) times faster than playout takes frames,
and a frame that is not complete when playout comes for it is an underrun. Minutes run in a
second or two, so every clock offset is checked over a long stretch.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator

import numpy as np
import pytest

from echo_streamer.dsp.drift import QuietGate, correct
from echo_streamer.dsp.pipeline import Conditioner, OutputFormat
from echo_streamer.dsp.resample import LIVE_QUALITY
from echo_streamer.engine.drift import DriftControl

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


class SimulatedLive:
    """A card ``ppm`` fast against playout, both on one simulated clock, through DriftControl."""

    def __init__(self, ppm: float, jitter_ms: float = 0.0, seed: int = 0) -> None:
        self.now = 0.0
        self.drift = DriftControl(IN_RATE, OUTPUT.rate, OUTPUT.frame_samples, 40, clock=lambda: self.now)
        self.conditioner = Conditioner("card", IN_RATE, OUTPUT, quality=LIVE_QUALITY)
        self.ready: deque[float] = deque()  # completion times of frames not yet taken
        self.handed = 0
        self.underrun_frames = 0
        self.backlog_ms: list[float] = []
        self.loud_edits = 0  # blocks that lost or gained samples while the tone played
        self._blocks = 0
        self._block_s = BLOCK / IN_RATE / (1 + ppm * 1e-6)
        self._next_pull = 0.0123  # playout's phase against the card's: arbitrary
        self._jitter = jitter_ms / 1000
        self._random = random.Random(seed)

    def run(self, until: float) -> None:
        """Run both clocks until simulated time ``until`` (seconds)."""
        for block in self.drift.hold(self._card(until), lambda: self.conditioner.samples, lambda: self.handed):
            if len(block) != BLOCK and np.abs(block).max() > 0.1:
                self.loud_edits += 1
            for _frame in self.conditioner.push(block):
                self.ready.append(self.now)

    def _card(self, until: float) -> Iterator[np.ndarray]:
        phase = 2 * np.pi * 300 / IN_RATE
        while True:
            index = self._blocks
            arrival = index * self._block_s + self._random.uniform(0, self._jitter)
            if arrival > until:
                return
            self._blocks += 1
            self._pull_until(arrival)
            self.now = arrival
            talking = (index // 100) % 3 != 2  # half a second of tone, a quarter of a second of silence
            tone = 0.3 * np.sin(phase * np.arange(index * BLOCK, (index + 1) * BLOCK)) if talking else np.zeros(BLOCK)
            yield np.column_stack((tone, tone)).astype(np.float32)

    def _pull_until(self, t: float) -> None:
        while self._next_pull <= t:
            self.now = self._next_pull
            if self.ready and self.ready[0] <= self.now:
                self.drift.waited(self.now - self.ready.popleft())
                self.handed += 1
            elif self.handed:
                self.underrun_frames += 1
                self.drift.underruns += 1
            backlog = self.conditioner.samples - self.handed * OUTPUT.frame_samples
            self.backlog_ms.append(1000 * backlog / OUTPUT.rate)
            self._next_pull += OUTPUT.frame_ms / 1000


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
    # The corrections add up to the clock offset: what was dropped is what the card had too much.
    expected = ppm * 1e-6 * drift.samples_in
    assert abs(drift.dropped - drift.inserted - expected) <= 2 * BLOCK + 0.05 * abs(expected)


def test_frames_wait_at_most_a_block_and_a_margin() -> None:
    live = SimulatedLive(300)
    live.run(60)
    assert live.drift.wait_ms is not None
    assert live.drift.margin_ms <= live.drift.wait_ms <= live.drift.margin_ms + 5 + 1


def test_corrections_wait_for_quiet_blocks() -> None:
    """At 300 ppm the loop is never far off, so every edit lands in the silent quarter-seconds."""
    live = SimulatedLive(300)
    live.run(60)
    assert live.drift.dropped > 0
    assert live.loud_edits <= 3  # the start, where the loop first finds its place, may need them


def test_jitter_raises_the_margin_until_underruns_stop() -> None:
    live = SimulatedLive(0, jitter_ms=4.0, seed=3)
    live.run(60)
    early = live.underrun_frames
    live.underrun_frames = 0
    live.run(180)  # the same clocks go on
    assert live.drift.margin_ms > 1.5
    assert live.underrun_frames <= max(1, early // 4)


def test_a_stalled_consumer_overflows_instead_of_queueing() -> None:
    """Playout stops taking frames (the SDK stalled): the backlog stops at 40 ms, the rest is dropped."""
    live = SimulatedLive(0)
    live.run(5)
    handed = live.handed
    live._next_pull = float("inf")  # noqa: SLF001 - playout stops
    live.run(6)
    assert live.handed == handed
    assert live.drift.overflows >= 150 and live.drift.peak_ms <= 40
