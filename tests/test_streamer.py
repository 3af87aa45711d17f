"""The Python API, ``Streamer`` / ``StreamerConfig``, offline through the real Daily SDK.

Each test runs its own asyncio loop (``asyncio.run`` under a timeout, so a hang fails instead of
blocking the suite). Audio is generated here: numpy tones and generators, espeak-ng speech; the
reference for what must reach the SDK is ``render`` of the same samples written to a WAV file.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from conftest import arun, frames_of, locate, read_pcm, run, tone
from software_card import SoftwareCard

from echo_streamer import Segment, Streamer, StreamerConfig
from echo_streamer.dsp.pipeline import Conditioner, OutputFormat, condition
from echo_streamer.dsp.resample import STREAM_QUALITY
from echo_streamer.renderer import render as render_file
from echo_streamer.sources.arrays import ArraySource

Event = dict[str, Any]

IN_RATE = 22050
MAX_LAG_MS = 60.0


# -- helpers -------------------------------------------------------------------------------


def chunked(samples: np.ndarray, size: int, stall_at: int | None = None, stall_s: float = 0.0) -> Iterator[np.ndarray]:
    """Yield ``samples`` in chunks of ``size`` frames; sleep ``stall_s`` before the chunk at frame ``stall_at``."""
    for start in range(0, len(samples), size):
        if stall_at is not None and start == stall_at:
            time.sleep(stall_s)
        yield samples[start:start + size]


def as_int16(samples: np.ndarray) -> np.ndarray:
    return np.rint(samples * 32767).astype(np.int16)


def reference(samples: np.ndarray, rate: int, output: OutputFormat) -> tuple[np.ndarray, int]:
    """What stream() must send for ``samples``: the streams' pipeline over the whole signal in
    one block (the frames as one PCM16 vector, and the real sample count)."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    conditioner = Conditioner("reference", rate, channels, output, quality=STREAM_QUALITY)
    blocks = ArraySource([samples], rate, channels).blocks()
    frames = np.concatenate([frames for frames, _pauses in condition(blocks, conditioner)])
    return frames.reshape(-1), conditioner.samples


def render_of(path: Path, output: OutputFormat) -> tuple[np.ndarray, int]:
    rendered = path.with_name(path.stem + f"-render-{output.rate}-{output.frame_ms}.wav")
    result = render_file(str(path), str(rendered), output)
    return read_pcm(rendered), result.samples


def nonzero_frames(pcm: np.ndarray, frame_samples: int) -> np.ndarray:
    frames = pcm[:len(pcm) - len(pcm) % frame_samples].reshape(-1, frame_samples)
    return frames[frames.any(axis=1)]


def compressed(states: list[str]) -> list[str]:
    """Drop consecutive repeats: the sequence of distinct states."""
    return [state for index, state in enumerate(states) if index == 0 or states[index - 1] != state]


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About a second of real espeak-ng speech, 22050 Hz mono PCM16."""
    path = tmp_path_factory.mktemp("streamer-speech") / "echo.wav"
    run("espeak-ng", "-w", path, "Echo test.")
    return path


# -- the public names -----------------------------------------------------------------------


def test_public_names_resolve_to_what_they_document() -> None:
    """In a fresh interpreter, every name in ``echo_streamer.__all__`` is what the README documents
    (``render`` a function, the rest classes), whichever import style is used, on every access."""
    script = (
        "import inspect, echo_streamer\n"
        "from echo_streamer import render, Streamer, StreamerConfig, Segment, InputError, JoinError\n"
        "names = [n for n in echo_streamer.__all__ if n != '__version__']\n"
        "kinds = {n: inspect.isfunction(getattr(echo_streamer, n)) for n in names}\n"
        "again = {n: inspect.isfunction(getattr(echo_streamer, n)) for n in names}\n"
        "print(inspect.isfunction(render), kinds == again, sorted(n for n, f in kinds.items() if f),"
        " all(inspect.isclass(c) for c in (Streamer, StreamerConfig, Segment, InputError, JoinError)))\n"
    )
    assert run(sys.executable, "-c", script).decode().strip() == "True True ['render'] True"


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize("fields, says", [
    ({"gap_ms": -1}, "gap_ms must be a whole number of ms, from 0 to 60000, not -1"),
    ({"gap_ms": 60_001}, "gap_ms must be a whole number of ms, from 0 to 60000, not 60001"),
    ({"lead_ms": 0}, "lead_ms must be a whole number of ms, from 1 to 200, not 0"),
    ({"lead_ms": 3000}, "lead_ms must be a whole number of ms, from 1 to 200, not 3000"),
    ({"buffer_ms": 0.5}, "buffer_ms must be a whole number of ms, at least 1, not 0.5"),
    ({"stream_start_ms": True}, "stream_start_ms must be a whole number of ms, from 0 to 1000, not True"),
    ({"stream_start_ms": 10**7}, "stream_start_ms must be a whole number of ms, from 0 to 1000, not 10000000"),
    ({"rate": 24000.0}, "rate must be an int, not 24000.0"),
    ({"frame_ms": 10.0}, "frame_ms must be an int, not 10.0"),
    ({"room_url": "tavus.daily.co/c1"}, "room_url must be an http(s) URL, not 'tavus.daily.co/c1'"),
    ({"transport": "webrtc"}, "transport must be one of custom-track, virtual-mic, app-message, not 'webrtc'"),
    ({"transport": "virtual-mic"}, "the virtual-mic transport drops audio until a room is joined"),
    ({"transport": "app-message"}, "the app-message transport needs tavus_conversation_id"),
    ({"bitrate": 1000}, "bitrate must be a whole number of bit/s, from 6000 to 510000, not 1000"),
    ({"join_timeout": 0}, "join_timeout must be a number of s, from 0.1 to 600.0, not 0"),
    ({"join_timeout": "20"}, "join_timeout must be a number of s, from 0.1 to 600.0, not '20'"),
    ({"join_timeout": float("nan")}, "join_timeout must be a number of s, from 0.1 to 600.0, not nan"),
])
def test_a_config_out_of_range_is_refused_naming_the_field(fields: dict[str, Any], says: str) -> None:
    """The Python API checks what the CLI's options check (the same ranges: echo_streamer.limits),
    when the config is made."""
    with pytest.raises(ValueError) as refused:
        StreamerConfig(**fields)
    assert str(refused.value).startswith(says)


def test_a_config_takes_numpy_numbers_as_plain_ones() -> None:
    """Numbers a program computed with numpy are whole numbers too, kept as plain Python ones
    (the SDK's settings are JSON)."""
    config = StreamerConfig(rate=np.int64(16000), frame_ms=np.int32(20), gap_ms=np.int64(200),  # type: ignore[arg-type]
                            bitrate=np.int64(64_000), join_timeout=np.float32(5.5))  # type: ignore[arg-type]
    fields = (config.rate, config.frame_ms, config.gap_ms, config.bitrate, config.join_timeout)
    assert fields == (16000, 20, 200, 64_000, 5.5)
    assert [type(value) for value in fields] == [int, int, int, int, float]


def test_ids_and_buffers_a_segment_cannot_take_are_refused_at_the_call() -> None:
    """An id still queued or playing (events would not tell the two apart), and a buffer of no
    length, raise ValueError at once; an id may be taken again once its segment is done."""
    async def session() -> str:
        async with Streamer(StreamerConfig(gap_ms=10)) as streamer:
            first = streamer.stream(tone(IN_RATE, 0.1)[:, 0], IN_RATE, segment_id="hello")
            with pytest.raises(ValueError, match="segment id 'hello' is queued or playing already"):
                streamer.stream(tone(IN_RATE, 0.1)[:, 0], IN_RATE, segment_id="hello")
            with pytest.raises(ValueError, match="buffer_ms must be a whole number of ms, at least 1, not 0"):
                streamer.stream(tone(IN_RATE, 0.1)[:, 0], IN_RATE, buffer_ms=0)
            await first.wait()
            again = await streamer.stream(tone(IN_RATE, 0.1)[:, 0], IN_RATE, segment_id="hello").wait()
            return again.state

    assert arun(session()) == "finished"


def test_automatic_ids_never_repeat_one_a_caller_chose() -> None:
    """seg-N ids skip one of that form the caller gave, while it plays and after it is done."""
    async def session() -> list[str]:
        async with Streamer(StreamerConfig(gap_ms=10)) as streamer:
            chosen = streamer.stream(tone(IN_RATE, 0.1)[:, 0], IN_RATE, segment_id="seg-1")
            automatic = streamer.stream(tone(IN_RATE, 0.1)[:, 0], IN_RATE)
            await streamer.drain()
            later = [streamer.stream(tone(IN_RATE, 0.05)[:, 0], IN_RATE, segment_id="seg-4"),
                     streamer.stream(tone(IN_RATE, 0.05)[:, 0], IN_RATE),
                     streamer.stream(tone(IN_RATE, 0.05)[:, 0], IN_RATE)]
            await streamer.drain()
            return [segment.id for segment in (chosen, automatic, *later)]

    assert arun(session()) == ["seg-1", "seg-2", "seg-4", "seg-3", "seg-5"]


def test_cancel_ends_one_segment_alone() -> None:
    """A queued one is dropped and the one playing goes on; the one playing is cut and the one
    queued after it plays; one already done returns at once; another streamer's is refused."""
    async def session() -> list[str]:
        async with Streamer(StreamerConfig(gap_ms=10)) as streamer, Streamer() as other:
            playing = streamer.stream(chunked(tone(IN_RATE, 0.6)[:, 0], 441), IN_RATE)
            dropped = streamer.stream(tone(IN_RATE, 0.2)[:, 0], IN_RATE)
            after = streamer.stream(tone(IN_RATE, 0.2)[:, 0], IN_RATE)
            heard: list[str] = []
            streamer.add_listener(lambda event: heard.append(event["event"]))
            await streamer.cancel(dropped)
            assert heard == ["item_dropped"], "cancel() returned before the listeners heard of the drop"
            while playing.position_ms < 100:
                await asyncio.sleep(0.01)
            await streamer.cancel(playing)
            await streamer.cancel(playing)
            foreign = other.stream(tone(IN_RATE, 0.2)[:, 0], IN_RATE)
            with pytest.raises(ValueError, match=f"segment {foreign.id!r} is not this streamer's"):
                await streamer.cancel(foreign)
            await streamer.drain()
            return [segment.state for segment in (playing, dropped, after)]

    assert arun(session()) == ["interrupted", "cancelled", "finished"]


@pytest.mark.parametrize("fields, named", [({"rate": 44100}, "44100"), ({"frame_ms": 15}, "15")])
def test_unsupported_output_format_is_rejected(fields: dict[str, Any], named: str) -> None:
    """A rate other than 16/24 kHz or a frame other than 10/20 ms raises ValueError naming the value, before any I/O."""
    with pytest.raises(ValueError, match=named):
        Streamer(StreamerConfig(**fields))


@pytest.mark.parametrize("rate, frame_ms", [(16000, 10), (16000, 20), (24000, 10), (24000, 20)])
def test_supported_output_formats_stream(rate: int, frame_ms: int, tmp_path: Path) -> None:
    """Every supported rate / frame length starts, announces itself in stream_started and captures
    whole frames of that size at that rate: every frame sent, and the SDK's own silence while the
    stream rests."""
    capture = tmp_path / "capture.wav"
    events: list[Event] = []

    async def session() -> dict[str, Any]:
        streamer = Streamer(StreamerConfig(rate=rate, frame_ms=frame_ms, gap_ms=0, capture_path=str(capture)))
        streamer.add_listener(events.append)
        async with streamer:
            await streamer.stream([tone(IN_RATE, 0.1)[:, 0]], IN_RATE).wait()
        return streamer.stats()

    stats = arun(session())
    assert events[0]["event"] == "stream_started"
    assert (events[0]["rate"], events[0]["frame_ms"], events[0]["offline"]) == (rate, frame_ms, True)
    with wave.open(str(capture), "rb") as wav:
        assert wav.getframerate() == rate
        assert wav.getnframes() % (rate * frame_ms // 1000) == 0
        assert wav.getnframes() >= stats["frames_sent"] * rate * frame_ms // 1000
    assert stats["frames_sent"] >= 100 // frame_ms


# -- queueing: FIFO, gaps, exact audio -----------------------------------------------------


def test_streams_and_files_play_fifo_bit_exact_with_gaps(speech_file: Path, tmp_path: Path) -> None:
    """stream() generators (int16/float, mono/stereo, 22050 Hz and 16 kHz) and play() of a file, in
    one session: each reaches the SDK bit-exact as its one-block reference (the render, for the
    file), in queue order, >= gap_ms of zeros apart, with item events in that order reporting the
    real sample count."""
    output, gap_ms = OutputFormat(24000, 10), 120
    sources: list[tuple[str, np.ndarray | Path, int, int]] = [
        ("int16-mono", as_int16(tone(IN_RATE, 0.31, 440.0)[:, 0]), 1000, IN_RATE),
        ("file", speech_file, 0, 0),
        ("float32-stereo", tone(IN_RATE, 0.27, 660.0, channels=2), 333, IN_RATE),
        ("int16-stereo-16k", as_int16(tone(16000, 0.25, 550.0, channels=2)), 512, 16000),
        ("float64-mono", tone(IN_RATE, 0.23, 770.0)[:, 0].astype(np.float64), 700, IN_RATE),
    ]
    expected: list[tuple[np.ndarray, int]] = []
    for _name, source, _size, rate in sources:
        if isinstance(source, Path):
            expected.append(render_of(source, output))
        else:
            expected.append(reference(source, rate, output))
    capture = tmp_path / "capture.wav"
    events: list[Event] = []

    async def session() -> list[Segment]:
        config = StreamerConfig(rate=output.rate, frame_ms=output.frame_ms, gap_ms=gap_ms, capture_path=str(capture))
        async with Streamer(config) as streamer:
            streamer.add_listener(events.append)
            segments = []
            for name, source, size, rate in sources:
                if isinstance(source, Path):
                    segments.append(streamer.play(str(source)))
                else:
                    channels = 1 if source.ndim == 1 else source.shape[1]
                    segments.append(streamer.stream(chunked(source, size), rate, channels=channels, name=name))
            assert [segment.state for segment in segments] == ["queued"] * len(segments)
            await streamer.drain()
            assert streamer.stats()["underruns"] == 0
        return segments

    segments = arun(session())
    starts = locate(read_pcm(capture), [pcm for pcm, _real in expected], output.frame_samples)
    for index in range(len(starts) - 1):
        silence = starts[index + 1] - (starts[index] + len(expected[index][0]))
        assert silence >= gap_ms * output.rate // 1000, f"only {silence} zero samples after segment {index}"
    for event in (e for e in events if e["event"] == "item_started"):  # written to the SDK, then consumed
        assert 0 < event["t"] - event["handed_at"] < 0.2
    items = [(e["event"], e["id"]) for e in events if e["event"] in ("item_started", "item_finished")]
    assert items == [(kind, segment.id) for segment in segments for kind in ("item_started", "item_finished")]
    finished = [e for e in events if e["event"] == "item_finished"]
    for segment, event, (_pcm, real) in zip(segments, finished, expected):
        assert segment.state == "finished" and segment.error is None
        assert event["samples"] == real
        assert segment.position_ms == pytest.approx(1000 * real / output.rate)
        assert event["position_ms"] == pytest.approx(1000 * real / output.rate, abs=0.05)
    for earlier, later in itertools.pairwise(segments):
        assert earlier.finished_at is not None and later.started_at is not None
        assert later.started_at - earlier.finished_at >= gap_ms / 1000 - 2 * output.frame_ms / 1000


def test_segment_states_and_a_missing_file(speech_file: Path, tmp_path: Path) -> None:
    """States go queued -> playing -> finished; a missing file goes queued -> failed with .error
    and an error event, and the segment after it still plays in full."""
    missing = tmp_path / "not-there.wav"
    output = OutputFormat(16000, 20)
    _pcm, real = render_of(speech_file, output)
    events: list[Event] = []
    history: dict[str, list[str]] = {}

    async def session() -> tuple[list[Segment], dict[str, Any]]:
        async with Streamer(StreamerConfig(rate=16000, frame_ms=20, gap_ms=60)) as streamer:
            first = streamer.stream(chunked(tone(IN_RATE, 0.3)[:, 0], 441), IN_RATE, name="tone")
            failing = streamer.play(str(missing))
            last = streamer.play(str(speech_file))
            segments = [first, failing, last]
            for segment in segments:
                history[segment.id] = [segment.state]

            def record(event: Event) -> None:
                events.append(event)
                for segment in segments:
                    history[segment.id].append(segment.state)

            streamer.add_listener(record)
            waited = await asyncio.wait_for(failing.wait(), 10)
            assert waited is failing
            await streamer.drain()
            for segment in segments:
                history[segment.id].append(segment.state)
            return segments, streamer.stats()

    (first, failing, last), stats = arun(session())
    assert compressed(history[first.id]) == ["queued", "playing", "finished"]
    assert compressed(history[failing.id]) == ["queued", "failed"]
    assert compressed(history[last.id]) == ["queued", "playing", "finished"]
    assert failing.error is not None and str(missing) in failing.error and "no such file" in failing.error
    assert failing.position_ms == 0 and failing.started_at is None
    errors = [e for e in events if e["event"] == "error"]
    assert [(e["id"], e["message"]) for e in errors] == [(failing.id, failing.error)]
    assert stats["last_error"] == failing.error
    assert last.error is None and last.position_ms == pytest.approx(1000 * real / output.rate)
    assert [e["id"] for e in events if e["event"] == "item_started"] == [first.id, last.id]


# -- pacing and position -------------------------------------------------------------------


@pytest.mark.parametrize("frame_ms", [10, 20])
def test_playback_is_real_time_and_position_follows_it(frame_ms: int, speech_file: Path) -> None:
    """A file takes its duration in real time; while it plays position_ms is whole frames consumed
    and follows the wall clock; at the end it is the real length; no underrun, small lag."""
    output = OutputFormat(24000, frame_ms)
    pcm, real = render_of(speech_file, output)
    frame_s = frame_ms / 1000
    samples: list[tuple[float, float, float]] = []  # (before, position_ms, after)

    async def session() -> tuple[Segment, dict[str, Any], float]:
        async with Streamer(StreamerConfig(rate=24000, frame_ms=frame_ms, gap_ms=0)) as streamer:
            began = time.monotonic()
            segment = streamer.play(str(speech_file))
            while not segment.done():
                before = time.monotonic()
                position = segment.position_ms
                samples.append((before, position, time.monotonic()))
                await asyncio.sleep(0.025)
            waited = time.monotonic() - began
            return segment, streamer.stats(), waited

    segment, stats, waited = arun(session())
    duration = len(pcm) / output.rate
    assert segment.started_at is not None and segment.finished_at is not None
    assert abs((segment.finished_at - segment.started_at) - duration) <= 2 * frame_s
    assert duration - 2 * frame_s <= waited <= duration + 0.5
    assert stats["underruns"] == 0 and 0 <= stats["max_lag_ms"] < MAX_LAG_MS
    assert segment.position_ms == pytest.approx(1000 * real / output.rate)
    playing = [(before, position, after) for before, position, after in samples
               if position > 0 and position < 1000 * real / output.rate]
    assert len(playing) >= 10, "too few observations during playback"
    positions = [position for _before, position, _after in samples]
    assert positions == sorted(positions), "position went backwards"
    for before, position, after in playing:
        assert position % frame_ms == pytest.approx(0, abs=1e-6) or position % frame_ms == pytest.approx(frame_ms)
        # The first audio frame's completion sets started_at with one frame already played.
        low = 1000 * (before - segment.started_at) + frame_ms - 2 * frame_ms - 25
        high = 1000 * (after - segment.started_at) + frame_ms + 2 * frame_ms + 25
        assert low <= position <= high, (position, before - segment.started_at)


@pytest.mark.parametrize("lead_ms, frame_ms, lead_frames", [(10, 10, 1), (25, 10, 3), (45, 20, 3)])
def test_frames_in_flight_never_exceed_lead(lead_ms: int, frame_ms: int, lead_frames: int) -> None:
    """frames_sent - frames_played stays within [0, lead_frames] throughout, reaches it, and is 0
    after close; the segment wakes the resting stream without an underrun (the lead is topped up
    with frames that are ready, not silence)."""
    gaps: list[int] = []
    events: list[Event] = []

    async def session() -> dict[str, Any]:
        streamer = Streamer(StreamerConfig(rate=16000, frame_ms=frame_ms, lead_ms=lead_ms, gap_ms=0))
        streamer.add_listener(events.append)
        async with streamer:
            segment = streamer.stream(chunked(tone(IN_RATE, 0.7)[:, 0], 1024), IN_RATE)
            while not segment.done():
                stats = streamer.stats()
                gaps.append(stats["frames_sent"] - stats["frames_played"])
                assert stats["lead_frames"] == lead_frames
                await asyncio.sleep(0.007)
        return streamer.stats()

    final = arun(session())
    assert len(gaps) >= 50
    assert min(gaps) >= 0 and max(gaps) <= lead_frames, (min(gaps), max(gaps))
    assert max(gaps) == lead_frames, "the SDK was never kept lead_frames ahead"
    assert final["frames_sent"] == final["frames_played"]
    assert final["underruns"] == 0 and final["late_completions"] == 0
    assert events[0]["event"] == "stream_started" and events[0]["lead_frames"] == lead_frames


# -- resting while idle ----------------------------------------------------------------------


def test_idle_stream_rests_and_wakes_with_the_next_segment(tmp_path: Path) -> None:
    """Idle, nothing is handed to the SDK (its source sends silence by itself, which the capture
    records as whole frames); the next segment's first frame wakes the stream at once and is the
    first frame written; after the segment and its gap the stream rests again, and the playout
    clock counts no completion late across it."""
    output, gap_ms = OutputFormat(24000, 10), 50
    samples = tone(IN_RATE, 0.2, 440.0)[:, 0]
    expected, _real = reference(samples, IN_RATE, output)
    capture = tmp_path / "capture.wav"
    events: list[Event] = []

    async def session() -> tuple[list[dict[str, Any]], float, Segment]:
        config = StreamerConfig(rate=output.rate, frame_ms=output.frame_ms, gap_ms=gap_ms, capture_path=str(capture))
        async with Streamer(config) as streamer:
            streamer.add_listener(events.append)
            await asyncio.sleep(0.3)
            seen = [streamer.stats()]
            asked = time.monotonic()
            segment = streamer.stream(chunked(samples, 441), IN_RATE, name="tone")
            await streamer.drain()
            seen.append(streamer.stats())
            await asyncio.sleep(0.3)
            seen.append(streamer.stats())
            return seen, asked, segment

    (before, after, later), asked, segment = arun(session())
    assert before["frames_sent"] == 0 and before["resting"] is True
    assert segment.first_handed_at is not None and segment.first_handed_at - asked < 0.05
    pcm = read_pcm(capture)
    rested = int(np.flatnonzero(pcm)[0]) // output.frame_samples  # the tone starts at once
    assert not pcm[:rested * output.frame_samples].any() and 28 <= rested <= 33, rested  # 0.3 s and a tick
    assert np.array_equal(pcm[rested * output.frame_samples:][:len(expected)], expected)
    frames = len(expected) // output.frame_samples
    gap_frames = gap_ms // output.frame_ms
    assert after["frames_sent"] == frames + gap_frames  # its end frame opens the gap
    assert after["frames_rested"] == rested
    assert len(pcm) // output.frame_samples >= rested + frames + gap_frames + 25  # and the rest after it
    assert later["frames_sent"] == after["frames_sent"] and later["resting"] is True
    assert after["late_completions"] == 0 and after["underruns"] == 0
    assert [e["event"] for e in events if e["event"] in ("item_started", "item_finished", "idle")] == [
        "item_started", "item_finished", "idle"]


def test_dropping_a_segment_that_never_started_passes_the_turn_while_resting() -> None:
    """While the stream rests, a segment whose source has delivered nothing is current; an
    interrupt with keep_queue drops it, and the live segment queued behind it gets its turn at
    once (a live input passes no audio before its turn), plays, and drain() returns."""
    released = threading.Event()

    def silent_writer() -> Iterator[np.ndarray]:  # a TTS engine still thinking
        released.wait(5)
        yield from ()

    def card(samples: np.ndarray) -> Iterator[np.ndarray]:  # 5 ms blocks in real time
        for start in range(0, len(samples), 240):
            time.sleep(0.005)
            yield samples[start:start + 240]

    async def session() -> tuple[Segment, Segment, Any, dict[str, Any]]:
        async with Streamer(StreamerConfig(rate=24000, frame_ms=10, gap_ms=50)) as streamer:
            await asyncio.sleep(0.05)
            thinking = streamer.stream(silent_writer(), IN_RATE, name="thinking")
            live = streamer.stream(card(tone(48000, 0.3)[:, 0]), 48000, name="live", live=True)
            await asyncio.sleep(0.05)
            interruption = await streamer.interrupt("now", keep_queue=True).wait()
            released.set()
            await asyncio.wait_for(streamer.drain(), 5)
            return thinking, live, interruption, streamer.stats()

    thinking, live, interruption, stats = arun(session())
    assert interruption.cut is None and [segment.id for segment in interruption.dropped] == [thinking.id]
    assert thinking.state == "cancelled" and live.state == "finished" and live.position_ms > 200
    assert stats["resting"] is True


def test_live_input_wakes_the_resting_stream_as_it_is_queued() -> None:
    """A live input is handed its frames just in time at completions, so it wakes the resting
    stream at once, before its first frame (which comes 200 ms later here): completions run,
    carrying silence, when that frame comes."""

    def late_card() -> Iterator[np.ndarray]:
        time.sleep(0.2)
        samples = tone(48000, 0.2)[:, 0]
        for start in range(0, len(samples), 240):
            time.sleep(0.005)
            yield samples[start:start + 240]

    async def session() -> tuple[dict[str, Any], dict[str, Any], Segment]:
        async with Streamer(StreamerConfig(rate=24000, frame_ms=10, gap_ms=50)) as streamer:
            await asyncio.sleep(0.05)
            resting = streamer.stats()
            live = streamer.stream(late_card(), 48000, name="card", live=True)
            await asyncio.sleep(0.05)
            waiting = streamer.stats()
            assert live.started_at is None, "the first frame came early: the test proves nothing"
            await asyncio.wait_for(streamer.drain(), 5)
            return resting, waiting, live

    resting, waiting, live = arun(session())
    assert resting["resting"] is True and resting["frames_sent"] == 0
    assert waiting["resting"] is False and waiting["frames_sent"] >= 3
    assert live.state == "finished" and live.position_ms > 100


class ToneCard(SoftwareCard):
    """A 440 Hz tone at half scale, 48 kHz mono, in 5 ms blocks."""

    def __init__(self) -> None:
        self.samples = tone(self.rate, 10.0)
        super().__init__("tone card")

    def block(self, index: int) -> np.ndarray | None:
        start = index * 240 % len(self.samples)
        return self.samples[start:start + 240].copy()


def test_a_cut_card_leaves_the_decoder_at_once_for_what_comes_next(tmp_path: Path) -> None:
    """A card's segment is conditioned in the card's own thread while the decoder watches it; once
    it is cut, the card's next block lets the decoder go on to the segment queued after it, which
    starts right after the gap (the decoder's own watch comes only every 100 ms)."""
    card = ToneCard()

    async def session() -> tuple[Segment, Segment, Any]:
        async with Streamer(StreamerConfig(gap_ms=10, capture_path=str(tmp_path / "out.wav"))) as streamer:
            live = streamer.live(card)  # type: ignore[arg-type]
            await asyncio.sleep(0.5)
            after = streamer.stream(tone(24000, 0.1), 24000, name="after")
            cut = await streamer.interrupt("now", keep_queue=True).wait()
            await after.wait()
            return live, after, cut

    try:
        live, after, cut = arun(session())
    finally:
        card.close()
    assert live.interrupted and live.position_ms > 400 and after.state == "finished"
    assert after.started_at is not None and cut.done_at is not None
    assert after.started_at - cut.done_at < 0.05, after.started_at - cut.done_at
    pcm = read_pcm(tmp_path / "out.wav", 24000)
    assert 0.45 < np.abs(pcm).max() / 32768 < 0.55  # the card's tone came through


@pytest.mark.parametrize("muted", [False, True], ids=["streaming", "muted"])
@pytest.mark.parametrize("closed", ["card", "streamer"])
def test_a_live_session_ends_when_its_card_or_streamer_is_closed(closed: str, muted: bool) -> None:
    """The owner closes the card a LiveSession streams, or the streamer, while it streams or while
    an interrupt has it muted: the session ends there, with no error. It went on as if muted,
    and failed a second later with 'no audio for 1 s while muted: the device stopped' (a closed
    card), or waited for ever (a closed streamer)."""
    from echo_streamer.engine.live import LiveSession

    card = ToneCard()

    async def session() -> tuple[LiveSession, float]:
        async with Streamer(StreamerConfig()) as streamer:
            live = LiveSession(streamer, card)  # type: ignore[arg-type]
            running = asyncio.ensure_future(live.run())
            await asyncio.sleep(0.5)
            if muted:
                await streamer.interrupt("now").wait()
                await asyncio.sleep(0.1)
                assert live.state == "muted"
            await (asyncio.to_thread(card.close) if closed == "card" else streamer.close())
            closed_at = time.monotonic()
            await asyncio.wait_for(running, 5)
            return live, time.monotonic() - closed_at

    try:
        live, took = arun(session())
    finally:
        card.close()
    assert live.state == "ended" and live.error is None, live.error
    assert not card.lost
    assert live.segments[0].state == ("interrupted" if muted or closed == "streamer" else "finished")
    assert took < 0.5, f"ended {took:.2f} s after the {closed} was closed"


def test_a_live_session_that_ends_finishes_its_segment_with_no_interrupt(tmp_path: Path) -> None:
    """A LiveSession's end (its duration, stop(), Ctrl-C) is the end of the card's input, not an
    interrupt: the segment's last frame fades out, it finishes (not interrupted), no interrupt
    event comes, and over app messages its last message says done, with no conversation.interrupt
    (it was cut: counted as an interrupt, the audio waiting to be sent dropped, done never said)."""
    import json

    from echo_streamer.engine.live import LiveSession

    card = ToneCard()
    messages, capture = tmp_path / "messages.jsonl", tmp_path / "out.wav"
    config = StreamerConfig(transport="app-message", tavus_conversation_id="c123", message_log=str(messages),
                            capture_path=str(capture))

    async def session() -> tuple[LiveSession, list[str]]:
        async with Streamer(config) as streamer:
            names: list[str] = []
            streamer.add_listener(lambda event: names.append(event["event"]))
            live = LiveSession(streamer, card)  # type: ignore[arg-type]
            await live.run(0.6)
            return live, names

    try:
        live, names = arun(session())
    finally:
        card.close()
    (segment,) = live.segments
    assert segment.state == "finished" and not segment.interrupted and segment.position_ms > 400
    assert not {"interrupt_requested", "interrupt_done"} & set(names), names
    sent = [json.loads(line) for line in messages.read_text(encoding="utf-8").splitlines()]
    assert {message["event_type"] for message in sent} == {"conversation.echo"}
    assert [message["properties"]["done"] for message in sent] == [False] * (len(sent) - 1) + [True]
    frames = frames_of(read_pcm(capture, 24_000), 240)
    last = frames[np.flatnonzero(frames.any(axis=1))[-1]]
    assert last[:96].any() and not last[96:].any(), "the last frame is the 4 ms fade"


def test_a_second_end_live_waits_for_the_first() -> None:
    """end_live again once the card's last frame is made but not played yet (Ctrl-C right as
    --duration ends it): it waits for that end, and does not cut the segment instead."""
    card = ToneCard()

    async def session() -> tuple[Segment, list[str]]:
        async with Streamer(StreamerConfig()) as streamer:
            names: list[str] = []
            streamer.add_listener(lambda event: names.append(event["event"]))
            segment = streamer.live(card)  # type: ignore[arg-type]
            await asyncio.sleep(0.5)
            first = asyncio.ensure_future(streamer.end_live(segment))
            while not segment.decoded:
                await asyncio.sleep(0.001)
            assert not segment.done(), "played already: the test proves nothing"
            await streamer.end_live(segment)
            await first
            return segment, names

    try:
        segment, names = arun(session())
    finally:
        card.close()
    assert segment.state == "finished" and "interrupt_requested" not in names, names


class PausableCard(ToneCard):
    """A ToneCard whose thread delivers nothing while ``paused`` (``idle`` is set once it has
    passed a block by, so it is not delivering one); the test hands blocks itself meanwhile."""

    def __init__(self) -> None:
        self.paused = False
        self.idle = threading.Event()
        super().__init__()

    def block(self, index: int) -> np.ndarray | None:
        if self.paused:
            self.idle.set()
            return None
        return super().block(index)

    def push(self, block: np.ndarray) -> None:
        assert self._consumer is not None
        self._consumer(block)


def test_a_block_after_the_request_leaves_the_frame_to_the_next_one() -> None:
    """The SDK asks for a card's next frame before the card has delivered it; then a block comes
    that does not complete it (one sample: a block that came late, or a card with small blocks),
    and at once one that does (a frame's worth). The frame is handed: the first block did not
    end the wait with silence, as if the next block could not come in time."""
    card = PausableCard()

    def step(streamer: Streamer) -> None:
        card.paused = True
        assert card.idle.wait(1)
        deadline = time.monotonic() + 2
        while streamer._late_since is None:  # noqa: SLF001 - the SDK waits for the card's next frame
            assert time.monotonic() < deadline, "the SDK never waited for a frame"
            time.sleep(0)
        samples = card.samples[:480]
        card.push(samples[:1])
        card.push(samples[1:])
        card.paused = False

    async def session() -> tuple[dict[str, Any], dict[str, Any]]:
        async with Streamer(StreamerConfig()) as streamer:
            streamer.live(card)  # type: ignore[arg-type]
            await asyncio.sleep(0.5)
            before = streamer.stats()
            await asyncio.to_thread(step, streamer)
            await asyncio.sleep(0.1)
            after = streamer.stats()
            await streamer.interrupt("now").wait()
            return before, after

    try:
        before, after = arun(session())
    finally:
        card.close()
    assert before["underruns"] == 0 and after["underruns"] == 0, (before, after)


def test_a_card_that_stalls_is_an_underrun() -> None:
    """A card that delivers nothing for 60 ms: the SDK fills the gap with silence of its own
    while the frame's write waits for the card, and that gap is one underrun of the segment
    (event, counters, the drift control's count), not passed over because the frame came at last."""
    card = PausableCard()
    events: list[dict[str, Any]] = []

    async def session() -> tuple[dict[str, Any], dict[str, Any], Segment]:
        async with Streamer(StreamerConfig()) as streamer:
            live = streamer.live(card)  # type: ignore[arg-type]
            await asyncio.sleep(0.5)
            streamer.add_listener(events.append)
            before = streamer.stats()
            card.paused = True
            await asyncio.sleep(0.06)
            card.paused = False
            await asyncio.sleep(0.3)
            after = streamer.stats()
            await streamer.interrupt("now").wait()
            return before, after, live

    try:
        before, after, live = arun(session())
    finally:
        card.close()
    underruns = [event for event in events if event["event"] == "underrun"]
    assert after["underruns"] - before["underruns"] == len(underruns) == 1, (before, after)
    assert after["underrun_frames"] - before["underrun_frames"] >= 4
    assert live.drift is not None and live.drift.underruns >= 1


# -- underruns -----------------------------------------------------------------------------


def test_stalled_generator_underruns_then_resumes(speech_file: Path, tmp_path: Path) -> None:
    """A generator that stalls 0.3 s mid-stream makes the stream carry silence and report one
    `underrun` for that segment; afterwards every frame still arrives in order and the next
    segment plays."""
    output = OutputFormat(24000, 10)
    samples = tone(IN_RATE, 0.8, 440.0)[:, 0]
    chunk = 441  # 20 ms
    stall_at, stall_s = 20 * chunk, 0.3
    expected, real = reference(samples, IN_RATE, output)
    speech_pcm, _speech_real = render_of(speech_file, output)
    capture = tmp_path / "capture.wav"
    events: list[Event] = []

    async def session() -> tuple[Segment, Segment, dict[str, Any]]:
        config = StreamerConfig(rate=24000, frame_ms=10, gap_ms=50, buffer_ms=20, capture_path=str(capture))
        async with Streamer(config) as streamer:
            streamer.add_listener(events.append)
            stalling = streamer.stream(chunked(samples, chunk, stall_at, stall_s), IN_RATE, name="stalling")
            after = streamer.play(str(speech_file))
            await streamer.drain()
            return stalling, after, streamer.stats()

    stalling, after, stats = arun(session())
    underruns = [e for e in events if e["event"] == "underrun"]
    assert underruns and underruns[0]["id"] == stalling.id
    assert stats["underruns"] >= 1
    assert stats["underrun_frames"] * 10 >= 1000 * stall_s - 100, stats
    assert stalling.started_at is not None and stalling.finished_at is not None
    assert stalling.started_at < underruns[0]["t"] < stalling.finished_at
    assert stalling.finished_at - stalling.started_at >= len(expected) / output.rate + stall_s - 0.1
    assert stalling.state == "finished" and stalling.position_ms == pytest.approx(1000 * real / output.rate)
    assert after.state == "finished"
    # Remove the silent frames: what is left is exactly both renders, in order, nothing lost or repeated.
    sent = nonzero_frames(read_pcm(capture), output.frame_samples)
    wanted = np.concatenate((nonzero_frames(expected, output.frame_samples),
                             nonzero_frames(speech_pcm, output.frame_samples)))
    np.testing.assert_array_equal(sent, wanted)


@pytest.mark.parametrize("quiet_s", [0.6, 0.15], ids=["quiet-longer-than-the-gap", "quiet-shorter"])
def test_silence_a_stream_ends_with_counts_toward_the_gap(quiet_s: float, tmp_path: Path) -> None:
    """A stream whose writer goes quiet before it ends (a TTS that keeps its pipe open after a
    sentence) has carried silence all that time: the next segment starts as soon as it ends, or
    once the gap is complete, not a whole gap later. Between the two, never less than the gap.
    (At the output rate: a resampled stream's last few ms come out of the resampler as it ends,
    after the quiet, and the whole gap follows them.)"""
    output = OutputFormat(24000, 10)
    capture = tmp_path / "capture.wav"

    def quiet_at_the_end() -> Iterator[np.ndarray]:
        yield tone(output.rate, 0.2, 440.0)[:, 0]
        time.sleep(0.2 + quiet_s)  # asked for its next chunk as its first one starts to play

    async def session() -> tuple[Segment, Segment]:
        config = StreamerConfig(gap_ms=300, capture_path=str(capture))
        async with Streamer(config) as streamer:
            first = streamer.stream(quiet_at_the_end(), output.rate, name="first")
            second = streamer.stream(tone(output.rate, 0.2, 660.0)[:, 0], output.rate, name="second")
            await streamer.drain()
            return first, second

    first, second = arun(session())
    assert first.finished_at is not None and second.started_at is not None
    waited = second.started_at - first.finished_at
    assert waited < max(0.3 - quiet_s, 0) + 0.06, waited
    frames = frames_of(read_pcm(capture), output.frame_samples)
    audible = np.flatnonzero(np.abs(frames).max(axis=1) > 0)
    jumps = np.diff(audible)
    silent_between = int(jumps.max()) - 1  # the one run of silent frames between the two tones
    assert silent_between >= 30 and silent_between * 10 < max(300, 1000 * quiet_s) + 60, silent_between


# -- events --------------------------------------------------------------------------------


def test_events_iterator_yields_what_listeners_get(tmp_path: Path) -> None:
    """An events() subscriber sees exactly the listener's events, from stream_started to stream_finished, then ends."""
    listened: list[Event] = []
    iterated: list[Event] = []
    wav = tmp_path / "short.wav"
    soundfile.write(wav, tone(IN_RATE, 0.2), IN_RATE, subtype="PCM_16")

    async def session() -> None:
        streamer = Streamer(StreamerConfig(gap_ms=40))
        streamer.add_listener(listened.append)

        async def consume() -> None:
            async for event in streamer.events():
                iterated.append(event)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)  # let the subscriber register before the first event
        async with streamer:
            streamer.play(str(wav))
            streamer.stream(chunked(tone(IN_RATE, 0.2, 880.0)[:, 0], 500), IN_RATE)
            streamer.play(str(tmp_path / "missing.wav"))
            await streamer.drain()
        await asyncio.wait_for(consumer, 2.0)

    arun(session())
    names = [event["event"] for event in listened]
    assert names[0] == "stream_started" and names[-1] == "stream_finished"
    assert names.count("item_started") == 2 and names.count("item_finished") == 3 and "error" in names
    assert iterated == listened


# -- close ---------------------------------------------------------------------------------


def test_close_during_playback_is_prompt_and_releases_segments(speech_file: Path, tmp_path: Path) -> None:
    """close() mid-segment returns in < 1 s; the playing segment ends interrupted (with an
    item_finished event at its position), the queued ones are cancelled, every wait() returns,
    the capture holds frames_sent whole frames, and the streamer refuses new audio."""
    capture = tmp_path / "capture.wav"
    long_wav = tmp_path / "long.wav"
    soundfile.write(long_wav, tone(IN_RATE, 3.0), IN_RATE, subtype="PCM_16")
    events: list[Event] = []

    async def session() -> tuple[list[Segment], float, float, dict[str, Any]]:
        streamer = Streamer(StreamerConfig(frame_ms=20, rate=16000, capture_path=str(capture)))
        streamer.add_listener(events.append)
        await streamer.start()
        segments = [streamer.play(str(long_wav)), streamer.play(str(speech_file)),
                    streamer.stream(chunked(tone(IN_RATE, 1.0)[:, 0], 441), IN_RATE)]
        while segments[0].state != "playing":
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        began = time.monotonic()
        await streamer.close()
        closing = time.monotonic() - began
        began = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(segment.wait() for segment in segments)), 2.0)
        waiting = time.monotonic() - began
        with pytest.raises(RuntimeError):
            streamer.play(str(speech_file))
        await streamer.close()  # a second close is harmless
        return segments, closing, waiting, streamer.stats()

    segments, closing, waiting, stats = arun(session())
    assert closing < 1.0, f"close() took {closing:.2f} s"
    assert waiting < 0.5
    assert [segment.state for segment in segments] == ["interrupted", "cancelled", "cancelled"]
    assert 0 < segments[0].position_ms < 3000
    finished = [e for e in events if e["event"] == "item_finished"]
    assert len(finished) == 1 and finished[0]["id"] == segments[0].id and finished[0]["interrupted"] is True
    assert finished[0]["position_ms"] == round(segments[0].position_ms, 1)
    assert segments[1].position_ms == 0 and segments[2].position_ms == 0
    assert [e["event"] for e in events].count("stream_finished") == 1
    assert events[-1]["event"] == "stream_finished"
    assert stats["frames_sent"] == stats["frames_played"]
    assert len(read_pcm(capture)) == stats["frames_sent"] * 320


@pytest.mark.parametrize("transport", ["custom-track", "virtual-mic", "app-message"])
def test_join_settings_publish_our_microphone_and_no_camera(transport: str) -> None:
    """The settings the join hands the SDK, from real SDK objects: the camera neither captured
    nor published; our custom track (by its id) or the virtual microphone (processing off) as
    the microphone, mono at the asked bitrate; nothing at all for audio sent as app messages."""
    from echo_streamer.output.daily import DailyMicrophone

    async def settings() -> tuple[dict[str, Any], str | None]:
        microphone = DailyMicrophone(24_000, transport, bitrate=48_000)
        try:
            return microphone.client_settings(), None if microphone._track is None else microphone._track.id
        finally:
            await microphone.close()

    got, track_id = arun(settings())
    assert got["inputs"]["camera"] is False and got["publishing"]["camera"] == {"isPublishing": False}
    if transport == "app-message":
        assert got["inputs"]["microphone"] is False
        assert got["publishing"]["microphone"] == {"isPublishing": False}
        return
    microphone = got["inputs"]["microphone"]
    assert microphone["isEnabled"] is True
    if transport == "custom-track":
        assert microphone["settings"] == {"customTrack": {"id": track_id}}
    else:
        off = {"exact": False}
        assert microphone["settings"]["customConstraints"] == {
            "autoGainControl": off, "echoCancellation": off, "noiseSuppression": off}
    assert got["publishing"]["microphone"] == {"isPublishing": True,
                                               "sendSettings": {"channelConfig": "mono", "bitrate": 48_000}}
