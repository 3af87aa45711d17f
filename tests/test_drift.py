"""DriftCorrector: a live stream's backlog held near its target while two clocks disagree."""

from __future__ import annotations

import numpy as np
import pytest

from echo_streamer.dsp.drift import DriftCorrector

RATE = 48_000
BLOCK = 240  # 5 ms


@pytest.mark.parametrize("ppm", [300.0, -300.0, 1000.0, 0.0])
def test_backlog_stays_bounded_over_ten_simulated_minutes(ppm: float) -> None:
    """A card running ppm fast or slow against a playout clock that takes exactly RATE samples a
    second: without correction the backlog would drift by ppm x 600 s (180 ms at 300 ppm); with
    it, it stays within the band, and the samples dropped or inserted match the drift."""
    corrector = DriftCorrector(RATE, target_ms=20, tolerance_ms=5)
    block = np.zeros((BLOCK, 2), dtype=np.float32)
    produced, backlog_ms, worst = 20 * RATE // 1000, 20.0, (20.0, 20.0)
    blocks = int(600 * RATE / BLOCK * (1 + ppm / 1e6))
    for index in range(1, blocks + 1):
        arrival = index * BLOCK / (RATE * (1 + ppm / 1e6))  # seconds, on the playout clock
        backlog_ms = 1000 * (produced - arrival * RATE) / RATE
        produced += len(corrector.correct(block, backlog_ms))
        if index > 2000:
            worst = (min(worst[0], backlog_ms), max(worst[1], backlog_ms))
    assert 14.0 <= worst[0] and worst[1] <= 26.0, worst
    # Every sample of drift is corrected, but for what the backlog moved inside the 10 ms band.
    expected, band = abs(ppm) / 1e6 * 600 * RATE, 10 * RATE // 1000
    assert abs((corrector.dropped if ppm > 0 else corrector.inserted) - expected) <= band + 0.01 * expected
    assert (corrector.inserted if ppm > 0 else corrector.dropped) <= 2


def test_the_correction_goes_where_it_is_quietest() -> None:
    """A tone with 2 ms of silence in the middle: the dropped or repeated sample is in the silence,
    and everything else is untouched."""
    t = np.arange(BLOCK) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    tone[100:196] = 0.0
    block = np.stack([tone, tone], axis=1)
    corrector = DriftCorrector(RATE)
    shorter = corrector.correct(block, backlog_ms=40)
    longer = corrector.correct(block, backlog_ms=5)
    assert len(shorter) == BLOCK - 1 and len(longer) == BLOCK + 1
    np.testing.assert_array_equal(shorter[:100], block[:100])
    np.testing.assert_array_equal(shorter[195:], block[196:])
    np.testing.assert_array_equal(longer[:100], block[:100])
    np.testing.assert_array_equal(longer[197:], block[196:])
    assert not shorter[100:195].any() and not longer[100:197].any()
    assert (corrector.dropped, corrector.inserted) == (1, 1)


def test_inside_the_band_nothing_changes() -> None:
    corrector = DriftCorrector(RATE, target_ms=20, tolerance_ms=5)
    block = np.ones((BLOCK, 1), dtype=np.float32)
    for backlog in (15.0, 20.0, 25.0):
        assert corrector.correct(block, backlog) is block
    assert (corrector.dropped, corrector.inserted) == (0, 0)
