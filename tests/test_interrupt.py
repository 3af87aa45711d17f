"""Interrupts through the Python API, offline through the real Daily SDK.

What reaches the SDK is read back from ``capture_path`` (the exact PCM handed to it, in order) and
compared frame by frame with ``render`` of the same input: the frames before the cut are the
reference's, the cut frame is the next reference frame faded out, and nothing but zeros follows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from conftest import (
    arun,
    cut_in_capture,
    frames_of,
    locate,
    read_pcm,
    rendered,
    run,
    segment_start,
    tone,
)

from echo_streamer import Interruption, Segment, Streamer, StreamerConfig
from echo_streamer.dsp.fade import FADE_MS, fade_out, fade_window
from echo_streamer.dsp.pauses import frame_levels
from echo_streamer.dsp.pipeline import OutputFormat

Event = dict[str, Any]
IN_RATE = 22050


# -- helpers -------------------------------------------------------------------------------


def zeros_after_cut(capture: np.ndarray, output: OutputFormat) -> int:
    """Samples of exact silence from the end of the last audible frame to the end of the capture."""
    frames = frames_of(capture, output.frame_samples)
    return (len(frames) - 1 - int(np.flatnonzero(frames.any(axis=1))[-1])) * output.frame_samples


def write_tone(path: Path, seconds: float, freq: float = 440.0) -> Path:
    soundfile.write(path, tone(IN_RATE, seconds, freq), IN_RATE, subtype="PCM_16")
    return path


async def reach(segment: Segment, position_ms: float) -> None:
    while segment.position_ms < position_ms:
        assert not segment.done(), f"{segment.id} ended before {position_ms} ms"
        await asyncio.sleep(0.002)


def soft_cut(path: Path, at_ms: float, capture: Path, max_wait_ms: int = 400) -> tuple[Interruption, float]:
    """Play ``path`` into ``capture`` and ask for a next_pause cut once ``at_ms`` has played;
    the interruption once carried out, and the position the request was made at."""

    async def session() -> tuple[Interruption, float]:
        async with Streamer(StreamerConfig(capture_path=str(capture))) as streamer:
            segment = streamer.play(str(path))
            await reach(segment, at_ms)
            position_at_request = segment.position_ms
            interruption = await streamer.interrupt("next_pause", max_wait_ms=max_wait_ms).wait()
            await streamer.drain()
        return interruption, position_at_request

    return arun(session())


def held_back(samples: np.ndarray, release: threading.Event, after: int, pulled: list[int]) -> Iterator[np.ndarray]:
    """Yield 10 ms chunks of ``samples``; before chunk ``after`` wait for ``release``. Counts chunks in ``pulled``."""
    for index, start in enumerate(range(0, len(samples), IN_RATE // 100)):
        if index == after:
            release.wait(10)
        pulled.append(index)
        yield samples[start:start + IN_RATE // 100]


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 3 s 440 Hz tone and a 1 s 1 kHz tone (distinguishable if any of it leaks)."""
    folder = tmp_path_factory.mktemp("tones")
    return write_tone(folder / "long.wav", 3.0), write_tone(folder / "other.wav", 1.0, 1000.0)


# -- the fade ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 24000])
def test_fade_is_a_short_raised_cosine_to_zero(rate: int) -> None:
    """4 ms (within the 2-5 ms asked for), falling monotonically from ~1 to ~0 along 0.5(1+cos);
    the rest of the frame is exact zeros."""
    samples = rate * FADE_MS // 1000
    window = fade_window(samples)
    assert 2 <= 1000 * samples / rate <= 5
    assert window[0] > 0.999 and window[-1] < 0.001
    assert np.all(np.diff(window) < 0)
    np.testing.assert_allclose(window + window[::-1], 1.0, atol=1e-12)  # raised cosine: odd-symmetric about 0.5
    frame = np.full(rate // 100, 20000, dtype=np.int16)
    faded = np.frombuffer(fade_out(frame.tobytes(), samples), dtype=np.int16)
    np.testing.assert_array_equal(faded[:samples], np.rint(20000 * window).astype(np.int16))
    assert not faded[samples:].any()


# -- hard interrupts -----------------------------------------------------------------------


@pytest.mark.parametrize("rate, frame_ms", [(24000, 10), (16000, 20)])
def test_now_fades_the_next_frame_then_silence_and_drops_the_queue(rate: int, frame_ms: int, tones: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    """The frames before the cut are the reference's, the next is its fade, then only zeros for
    at least gap_ms: not one sample of the rest of the segment or of the dropped one. position_ms
    is the frames played plus the fade; events and states say the same."""
    output, gap_ms = OutputFormat(rate, frame_ms), 300
    long_tone, other = tones
    reference, _ = rendered(long_tone, output)
    capture = tmp_path / "capture.wav"
    events: list[Event] = []

    async def session() -> tuple[Interruption, list[Segment]]:
        config = StreamerConfig(rate=rate, frame_ms=frame_ms, gap_ms=gap_ms, capture_path=str(capture))
        async with Streamer(config) as streamer:
            streamer.add_listener(events.append)
            segments = [streamer.play(str(long_tone)), streamer.play(str(other))]
            await reach(segments[0], 700)
            interruption = await streamer.interrupt("now").wait()
            await streamer.drain()
        return interruption, segments

    interruption, segments = arun(session())
    pcm = read_pcm(capture, rate)
    _k, faded = cut_in_capture(pcm, reference, output, segments[0].position_ms)
    assert faded, "a cut in the middle of a tone must carry a fade"
    assert interruption.position_ms == segments[0].position_ms
    assert zeros_after_cut(pcm, output) >= gap_ms * rate // 1000
    assert [segment.state for segment in segments] == ["interrupted", "cancelled"]
    assert interruption.cut == "now" and interruption.segment is segments[0] and not interruption.noop
    assert interruption.dropped == [segments[1]]
    assert interruption.done_at is not None and interruption.done_at >= interruption.requested_at
    names = [e["event"] for e in events]
    assert names.index("interrupt_requested") < names.index("item_dropped") < names.index("item_finished") \
        < names.index("interrupt_done")
    requested = next(e for e in events if e["event"] == "interrupt_requested")
    assert requested["id"] == segments[0].id and 700 <= requested["position_ms"] <= segments[0].position_ms
    done = next(e for e in events if e["event"] == "interrupt_done")
    assert done["id"] == segments[0].id and done["dropped"] == [segments[1].id] and done["cut"] == "now"
    assert done["position_ms"] == round(segments[0].position_ms, 1)
    finished = next(e for e in events if e["event"] == "item_finished")
    assert finished["interrupted"] is True and finished["position_ms"] == done["position_ms"]


def test_keep_queue_skips_only_the_current_segment(tones: tuple[Path, Path], speech: Path, tmp_path: Path) -> None:
    """With keep_queue the next segment plays in full, bit-exact, after at least gap_ms of zeros."""
    output, gap_ms = OutputFormat(24000, 10), 250
    long_tone, _other = tones
    reference, _ = rendered(long_tone, output)
    following, _ = rendered(speech, output)
    capture = tmp_path / "capture.wav"

    async def session() -> tuple[Interruption, list[Segment]]:
        async with Streamer(StreamerConfig(gap_ms=gap_ms, capture_path=str(capture))) as streamer:
            segments = [streamer.play(str(long_tone)), streamer.play(str(speech))]
            await reach(segments[0], 400)
            interruption = await streamer.interrupt("now", keep_queue=True).wait()
            await streamer.drain()
        return interruption, segments

    interruption, segments = arun(session())
    frames = frames_of(read_pcm(capture), output.frame_samples)
    first = segment_start(frames, reference)
    k = int(segments[0].position_ms // output.frame_ms)
    np.testing.assert_array_equal(frames[first:first + k], reference[:k])
    [start] = locate(frames[first + k + 1:].reshape(-1), [following.reshape(-1)], output.frame_samples)
    assert start >= gap_ms * output.rate // 1000
    assert [segment.state for segment in segments] == ["interrupted", "finished"]
    assert interruption.dropped == [] and interruption.segment is segments[0]


# -- soft interrupts -----------------------------------------------------------------------


def test_next_pause_on_real_speech_cuts_in_the_first_pause_after_the_request(speech: Path, tmp_path: Path) -> None:
    """espeak-ng speech: the cut frame is an interrupt point that render --points reports, no
    point was skipped on the way, and the fade falls on a quiet frame."""
    output = OutputFormat(24000, 10)
    reference, result = rendered(speech, output)
    pauses = [point for point in result.points if point.kind == "pause"]
    target = next(point for point in pauses if point.ms >= 600)
    request_at = target.ms - 250
    capture = tmp_path / "capture.wav"
    interruption, position_at_request = soft_cut(speech, request_at, capture)
    k, _faded = cut_in_capture(read_pcm(capture), reference, output, interruption.position_ms)
    cut_ms = k * output.frame_ms
    assert interruption.cut == "pause"
    assert any(point.ms <= cut_ms < point.until_ms for point in pauses), f"cut at {cut_ms} ms is not in a pause"
    assert not any(position_at_request + 3 * output.frame_ms <= point.ms < cut_ms for point in pauses), \
        "a pause after the request was skipped"
    assert cut_ms - position_at_request <= 400
    assert np.abs(reference[k]).max() < 0.02 * np.abs(reference).max(), "the faded frame is not quiet"


@pytest.fixture(scope="module")
def fluent_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng reading a long sentence with no punctuation: words run together, hardly a pause."""
    path = tmp_path_factory.mktemp("fluent") / "fluent.wav"
    run("espeak-ng", "-w", path, "the quick brown fox jumps over the lazy dog while the old band plays on and on "
        "into the night and nobody in the whole town goes to sleep before the morning comes")
    return path


@pytest.mark.parametrize("request_ms", [700, 1500, 2300, 3100])
def test_next_pause_in_fluent_speech_cuts_in_the_first_deep_dip_ahead(fluent_speech: Path, request_ms: int,
                                                                        tmp_path: Path) -> None:
    """Fluent speech has no 100 ms pause within max_wait_ms of most moments: the soft cut then
    fades the first frame within max_wait_ms that is 12 dB under the median level there and
    within 6 dB of the quietest (a dip between words), not whatever frame comes next."""
    output = OutputFormat(24000, 10)
    reference, result = rendered(fluent_speech, output)
    capture = tmp_path / "capture.wav"
    interruption, position_at_request = soft_cut(fluent_speech, request_ms, capture)
    k, faded = cut_in_capture(read_pcm(capture), reference, output, interruption.position_ms)
    cut_ms = k * output.frame_ms
    assert interruption.cut in ("dip", "pause"), interruption.cut
    assert faded and 0 <= cut_ms - position_at_request <= 400
    if interruption.cut == "dip":
        first = int(position_at_request // output.frame_ms) + 1  # the frame after the one in flight
        window = frame_levels(reference[first:first + 40])
        deep = np.flatnonzero((window <= np.median(window) - 12) & (window <= window.min() + 6))
        assert len(deep) and k == first + deep[0], (k, first, deep)


@pytest.mark.parametrize("max_wait_ms", [200, 0])
def test_next_pause_cuts_at_once_when_the_decoded_audio_has_no_pause(max_wait_ms: int, tones: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    """A file is decoded up to a second ahead: when none of it within max_wait_ms is an
    interrupt point (a tone: no pause, no dip), waiting would only cut mid-sound later, so the
    fade comes at once; with max_wait_ms 0 there is nothing to wait for."""
    output = OutputFormat(24000, 10)
    long_tone, _other = tones
    reference, result = rendered(long_tone, output)
    assert [point.kind for point in result.points] == ["end"]
    capture = tmp_path / "capture.wav"
    interruption, position_at_request = soft_cut(long_tone, 300, capture, max_wait_ms=max_wait_ms)
    k, faded = cut_in_capture(read_pcm(capture), reference, output, interruption.position_ms)
    assert interruption.cut == "no_pause" and interruption.mode == "next_pause" and faded
    assert 0 <= k * output.frame_ms - position_at_request <= 40


def test_next_pause_becomes_now_at_the_deadline(tmp_path: Path) -> None:
    """A stream produced in real time has nothing decoded ahead to look at: with no pause coming,
    the cut comes max_wait_ms after the request, with a fade."""
    output = OutputFormat(24000, 10)
    capture = tmp_path / "capture.wav"
    samples = tone(IN_RATE, 3.0)[:, 0]

    def real_time() -> Iterator[np.ndarray]:
        """20 ms chunks on absolute deadlines, 60 ms ahead of real time: a busy machine's late
        wake-ups neither accumulate nor starve the stream."""
        begin = time.monotonic()
        for index, start in enumerate(range(0, len(samples), IN_RATE // 50)):
            time.sleep(max(0.0, begin + 0.02 * index - 0.06 - time.monotonic()))
            yield samples[start:start + IN_RATE // 50]

    async def session() -> tuple[Interruption, float]:
        async with Streamer(StreamerConfig(capture_path=str(capture))) as streamer:
            segment = streamer.stream(real_time(), IN_RATE)
            await reach(segment, 300)
            position_at_request = segment.position_ms
            interruption = await streamer.interrupt("next_pause", max_wait_ms=200).wait()
        return interruption, position_at_request

    interruption, position_at_request = arun(session())
    assert interruption.cut == "deadline" and interruption.position_ms is not None
    cut_ms = interruption.position_ms - FADE_MS
    assert 150 <= cut_ms - position_at_request <= 300
    frames = frames_of(read_pcm(capture), output.frame_samples)
    assert len(np.flatnonzero(frames.any(axis=1))) * output.frame_ms == pytest.approx(interruption.position_ms,
                                                                                      abs=output.frame_ms)


def test_next_pause_that_meets_the_segment_end_lets_it_finish(tones: tuple[Path, Path]) -> None:
    """When the segment ends before a pause or the deadline, it finishes whole (not interrupted)
    and the queue behind it is still dropped."""
    long_tone, other = tones

    async def session() -> tuple[Interruption, list[Segment]]:
        async with Streamer(StreamerConfig()) as streamer:
            segments = [streamer.play(str(other)), streamer.play(str(long_tone))]
            await reach(segments[0], 800)
            interruption = await streamer.interrupt("next_pause", max_wait_ms=5000).wait()
        return interruption, segments

    interruption, segments = arun(session())
    assert interruption.cut == "end" and interruption.segment is segments[0]
    assert [segment.state for segment in segments] == ["finished", "cancelled"]
    assert interruption.position_ms == pytest.approx(1000.0)


@pytest.mark.parametrize(("second", "max_wait_ms", "cut"), [("now", 400, "now"), ("next_pause", 100, "no_pause")],
                         ids=["hard-upgrades-it", "shorter-wait-plans-again"])
def test_a_second_request_joins_a_waiting_soft_one(second: str, max_wait_ms: int, cut: str,
                                                   tones: tuple[Path, Path]) -> None:
    """A tone has no pause: next_pause waiting 5 s (more than is decoded ahead, so it waits), then
    a second request 0.1 s later, and one interruption carries both out: a "now" cuts at once
    (the mode becomes "now"); a next_pause waiting 100 ms looks at the 100 ms decoded ahead, as
    it would alone, finds neither pause nor dip there and cuts at once too."""
    long_tone, _other = tones

    async def session() -> tuple[Interruption, Interruption, float]:
        async with Streamer(StreamerConfig()) as streamer:
            segment = streamer.play(str(long_tone))
            await reach(segment, 200)
            first = streamer.interrupt("next_pause", max_wait_ms=5000)
            await asyncio.sleep(0.1)
            assert not first.done()
            second_at = time.monotonic()
            joined = streamer.interrupt(second, max_wait_ms=max_wait_ms)
            await joined.wait()
            assert joined.done_at is not None
            return first, joined, joined.done_at - second_at

    first, joined, took = arun(session())
    assert first is joined and joined.cut == cut and joined.mode == second
    assert took < 0.08, took  # the frame in flight, the fade frame, and slack: not the 100 ms wait


def test_with_a_long_lead_an_interrupt_of_the_next_segment_does_not_join_the_last_cut(
        tones: tuple[Path, Path]) -> None:
    """Four frames ahead and a one-frame gap: the next segment starts while the SDK still holds
    the fade that ended the one before. An interrupt then is that segment's own, not a request
    joining the earlier cut (which would leave it playing)."""
    long_tone, other = tones

    async def session() -> tuple[Interruption, Interruption, list[Segment]]:
        async with Streamer(StreamerConfig(lead_ms=40, gap_ms=10)) as streamer:
            segments = [streamer.play(str(long_tone)), streamer.play(str(other))]
            await reach(segments[0], 300)
            first = streamer.interrupt("now", keep_queue=True)
            while streamer.current is not segments[1]:
                await asyncio.sleep(0.001)
            assert not first.done()  # its fade is still in the SDK's hands
            second = streamer.interrupt("now")
            await asyncio.gather(first.wait(), second.wait())
        return first, second, segments

    first, second, segments = arun(session())
    assert second is not first and second.segment is segments[1] and second.cut == "now"
    assert first.segment is segments[0] and first.done_at is not None
    assert [segment.state for segment in segments] == ["interrupted", "interrupted"]
    assert segments[1].position_ms < 100


def test_a_request_after_the_cut_was_made_does_not_relabel_it() -> None:
    """Once a cut has been chosen (its fade is on its way), a second request only joins it: a
    "now" does not turn a cut made at a pause into a hard one, nor move its deadline."""
    loop = asyncio.new_event_loop()
    try:
        soft = Interruption("int-1", "next_pause", False, 400, 100.0, loop)
        soft.cut = "pause"
        soft.absorb(Interruption("int-2", "now", True, 400, 100.2, loop))
        assert (soft.mode, soft.deadline, soft.keep_queue) == ("next_pause", 100.4, False)
        waiting = Interruption("int-3", "next_pause", True, 400, 100.0, loop)
        waiting.absorb(Interruption("int-4", "now", True, 400, 100.2, loop))
        assert (waiting.mode, waiting.deadline, waiting.keep_queue) == ("now", 100.2, True)
    finally:
        loop.close()


# -- edge cases ----------------------------------------------------------------------------


def test_interrupts_with_nothing_to_cut_are_reported_no_ops(tones: tuple[Path, Path]) -> None:
    """Idle, twice in a row, and in the gap between segments: no crash; what had nothing to
    cut says so, and what it did do (drop the queue) is reported."""
    long_tone, other = tones
    events: list[Event] = []

    async def session() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with Streamer(StreamerConfig(gap_ms=500)) as streamer:
            streamer.add_listener(events.append)
            idle = streamer.interrupt("now")
            seen["idle"] = (idle.done(), idle.noop, idle.cut)

            playing = streamer.play(str(long_tone))
            await reach(playing, 100)
            first, second = streamer.interrupt("now"), streamer.interrupt("next_pause")
            await first.wait()
            third = await streamer.interrupt("now").wait()
            seen["twice"] = (first is second, first.noop, third.noop, third is first)

            a, b, c = streamer.play(str(other)), streamer.play(str(other)), streamer.play(str(other))
            await a.wait()
            in_gap_keep = await streamer.interrupt("now", keep_queue=True).wait()
            seen["gap_keep"] = (in_gap_keep.noop, in_gap_keep.cut, b.state)
            await b.wait()
            in_gap = await streamer.interrupt("next_pause").wait()
            seen["gap"] = (in_gap.noop, in_gap.cut, in_gap.dropped == [c], c.state)
            seen["states"] = [segment.state for segment in (playing, a, b, c)]
            seen["stats"] = streamer.stats()
        return seen

    seen = arun(session())
    assert seen["idle"] == (True, True, None)
    assert seen["twice"] == (True, False, True, False)
    assert seen["gap_keep"] == (True, None, "queued")
    assert seen["gap"] == (False, None, True, "cancelled")
    assert seen["states"] == ["interrupted", "finished", "finished", "cancelled"]
    done = [e for e in events if e["event"] == "interrupt_done"]
    assert [e["noop"] for e in done] == [True, False, True, True, False]
    assert [e["event"] for e in events].count("interrupt_requested") == 6
    assert seen["stats"]["interrupts"] == 5


def test_interrupt_before_the_first_frame_drops_the_segment(tmp_path: Path) -> None:
    """A segment whose decoder has produced nothing yet is dropped whole: position 0, nothing
    of it reaches the SDK, and its generator is never pulled again."""
    capture = tmp_path / "capture.wav"
    release = threading.Event()
    pulled: list[int] = []

    async def session() -> tuple[Interruption, Segment]:
        async with Streamer(StreamerConfig(capture_path=str(capture))) as streamer:
            segment = streamer.stream(held_back(tone(IN_RATE, 1.0)[:, 0], release, 0, pulled), IN_RATE)
            await asyncio.sleep(0.05)
            interruption = await streamer.interrupt("now").wait()
            release.set()
            await asyncio.sleep(0.1)
        return interruption, segment

    interruption, segment = arun(session())
    assert interruption.dropped == [segment] and interruption.segment is None and interruption.cut is None
    assert segment.state == "cancelled" and segment.position_ms == 0
    assert not read_pcm(capture).any()
    assert len(pulled) <= 1


def test_interrupt_on_the_very_first_frame(tones: tuple[Path, Path], tmp_path: Path) -> None:
    """Requested as the first frame completes: the cut lands a frame or two in, with a fade."""
    output = OutputFormat(24000, 10)
    long_tone, _other = tones
    reference, _ = rendered(long_tone, output)
    capture = tmp_path / "capture.wav"

    async def session() -> Interruption:
        async with Streamer(StreamerConfig(capture_path=str(capture))) as streamer:
            requested: list[Interruption] = []
            streamer.add_listener(lambda event: requested.append(streamer.interrupt("now"))
                                  if event["event"] == "item_started" else None)
            segment = streamer.play(str(long_tone))
            await segment.wait()
            return await requested[0].wait()

    interruption = arun(session())
    k, faded = cut_in_capture(read_pcm(capture), reference, output, interruption.position_ms)
    assert faded and 1 <= k <= 3
    assert interruption.cut == "now"


@pytest.mark.parametrize("mode, cut", [("now", "now"), ("next_pause", "underrun")])
def test_interrupt_while_starved_cuts_without_a_fade_and_stops_the_source(mode: str, cut: str,
                                                                         tmp_path: Path) -> None:
    """A generator stalled mid-segment (the stream already carries silence): the cut is a silent
    frame, the segment's later audio never appears, and the generator is not pulled again."""
    output = OutputFormat(24000, 10)
    samples = tone(IN_RATE, 1.0)[:, 0]
    capture = tmp_path / "capture.wav"
    release = threading.Event()
    pulled: list[int] = []

    async def session() -> tuple[Interruption, int]:
        async with Streamer(StreamerConfig(capture_path=str(capture))) as streamer:
            segment = streamer.stream(held_back(samples, release, 30, pulled), IN_RATE)
            while streamer.stats()["underruns"] == 0:
                await asyncio.sleep(0.005)
            interruption = await streamer.interrupt(mode).wait()
            release.set()
            await asyncio.sleep(0.2)
            assert segment.state == "interrupted"
            return interruption, len(pulled)

    interruption, pulled_count = arun(session())
    assert interruption.cut == cut
    frames = frames_of(read_pcm(capture), output.frame_samples)
    audible = np.flatnonzero(frames.any(axis=1))
    played_ms = 1000 * len(audible) / 100
    assert played_ms <= 300, "audio of the segment appeared after the cut"
    assert interruption.position_ms == pytest.approx(played_ms, abs=10)
    assert pulled_count <= 31 + 2  # the chunk that was waiting, and at most one more block


def test_interrupt_needs_a_running_streamer_and_a_known_mode() -> None:
    async def session() -> None:
        streamer = Streamer(StreamerConfig())
        with pytest.raises(RuntimeError):
            streamer.interrupt("now")
        async with streamer:
            with pytest.raises(ValueError, match="mode"):
                streamer.interrupt("later")
            for max_wait_ms in (-1, 60_001, "100", 1.5):
                with pytest.raises(ValueError, match="max_wait_ms must be a whole number of ms, from 0 to 60000"):
                    streamer.interrupt("next_pause", max_wait_ms=max_wait_ms)  # type: ignore[arg-type]

    arun(session())


def test_close_while_playing_fades_out(tones: tuple[Path, Path], tmp_path: Path) -> None:
    """Closing mid-segment is a hard interrupt: fade, then the remaining frames in flight are silent."""
    output = OutputFormat(24000, 10)
    long_tone, _other = tones
    reference, _ = rendered(long_tone, output)
    capture = tmp_path / "capture.wav"

    async def session() -> tuple[float, Segment]:
        streamer = Streamer(StreamerConfig(capture_path=str(capture)))
        await streamer.start()
        segment = streamer.play(str(long_tone))
        await reach(segment, 300)
        began = time.monotonic()
        await streamer.close()
        return time.monotonic() - began, segment

    closing, segment = arun(session())
    _k, faded = cut_in_capture(read_pcm(capture), reference, output, segment.position_ms)
    assert faded and closing < 1.0 and segment.state == "interrupted"
