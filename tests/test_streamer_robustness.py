"""The Python API under the ways a caller's own code misbehaves or races it, offline through the
real Daily SDK: sources that block, raise or are async; barge-in (interrupt, then queue the
reply); listeners that raise; close() cancelled; a streamer used before or after its life.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from conftest import arun, locate, read_pcm, tone
from test_streamer import IN_RATE, chunked, nonzero_frames, reference

from echo_streamer import Streamer, StreamerConfig
from echo_streamer.dsp.pipeline import OutputFormat
from echo_streamer.errors import JoinError
from echo_streamer.output.daily import DailyMicrophone

Event = dict[str, Any]
OUTPUT = OutputFormat(24000, 10)


def feeders() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "echo-streamer-feeder"]


class BlockingChunks:
    """A generator of 0.4 s of tone (at once, or ``paced`` in real time in 10 ms chunks, as a
    live feed comes) that then blocks until ``release`` is set (a producer that went away), then
    raises ``then_raise`` if given; notes whether it was closed."""

    def __init__(self, then_raise: Exception | None = None, paced: bool = False) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()
        self.then_raise = then_raise
        self.paced = paced
        self.blocked = threading.Event()

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for chunk in chunked(tone(IN_RATE, 0.4)[:, 0], IN_RATE // 100 if self.paced else 4410):
                yield chunk
                if self.paced:
                    time.sleep(0.01)
            self.blocked.set()
            self.release.wait(20)
            if self.then_raise is not None:
                raise self.then_raise
            yield tone(IN_RATE, 0.1)[:, 0]
        finally:
            self.closed.set()


@pytest.mark.parametrize("live", [False, True], ids=["stream", "live-stream"])
def test_a_source_blocked_when_cut_does_not_hold_up_what_follows(live: bool, tmp_path: Path) -> None:
    """A generator blocked for its next chunk is cut: the segments queued after the cut play at
    once, and the generator is closed (in the decoder it blocked) once it returns; a live one
    (``stream(..., live=True)``: a network feed on a clock of its own) too."""
    chunks = BlockingChunks(paced=live)
    wav = tmp_path / "after.wav"
    soundfile.write(wav, tone(IN_RATE, 0.3), IN_RATE, subtype="PCM_16")
    events: list[Event] = []

    async def session() -> tuple[str, str, float, bool]:
        async with Streamer(StreamerConfig(gap_ms=50)) as streamer:
            streamer.add_listener(events.append)
            blocked = streamer.stream(iter(chunks), IN_RATE, name="blocked", live=live)
            while not chunks.blocked.is_set() or blocked.state != "playing":
                await asyncio.sleep(0.01)
            await streamer.interrupt("now").wait()
            began = time.monotonic()
            after = streamer.play(str(wav))
            await asyncio.wait_for(after.wait(), 3)
            took = time.monotonic() - began
            closed_while_blocked = chunks.closed.is_set()
            chunks.release.set()
            await asyncio.to_thread(chunks.closed.wait, 2)
            return blocked.state, after.state, took, closed_while_blocked

    blocked_state, after_state, took, closed_while_blocked = arun(session())
    assert (blocked_state, after_state) == ("interrupted", "finished")
    assert took < 0.3 + 0.2 + 0.3 + 0.3, took  # its audio, the decoder's hand-over, the gap, slack
    assert not closed_while_blocked and chunks.closed.is_set()
    assert not [e for e in events if e["event"] == "error"]
    deadline = time.monotonic() + 1
    while feeders() and time.monotonic() < deadline:  # the one left behind ends once it has closed the source
        time.sleep(0.01)
    assert not feeders()


def test_drain_returns_when_the_streamer_is_closed_meanwhile(tmp_path: Path) -> None:
    """A task waiting in drain() while another closes the streamer gets its answer once the
    shutdown has cut the segment (whose gap the shutdown never writes), not never."""
    wav = tmp_path / "long.wav"
    soundfile.write(wav, tone(IN_RATE, 5.0), IN_RATE, subtype="PCM_16")

    async def session() -> tuple[str, float]:
        streamer = Streamer(StreamerConfig(gap_ms=300))
        await streamer.start()
        segment = streamer.play(str(wav))
        draining = asyncio.create_task(streamer.drain())
        while segment.state != "playing":
            await asyncio.sleep(0.01)
        began = time.monotonic()
        await streamer.close()
        await asyncio.wait_for(draining, 2)
        return segment.state, time.monotonic() - began

    state, took = arun(session())
    assert state == "interrupted" and took < 3, took


def test_a_join_given_up_on_reports_nothing_when_the_sdk_ends_it_later() -> None:
    """A join abandoned at its timeout goes on in the SDK, which ends it ~19 s later for an
    unreachable room, "left" among its events: that is no news of the streamer's call. (Closing
    the SDK stops it; here a second microphone keeps the SDK up, as another streamer in the
    process would.) That microphone, joining the same room without a timeout, shows when the
    SDK's failure has come."""
    unreachable = "https://nonexistent.invalid/room"
    events: list[Event] = []

    async def session() -> tuple[list[str], str | None]:
        witness = DailyMicrophone(24_000)
        streamer = Streamer(StreamerConfig(room_url=unreachable, join_timeout=0.5))
        streamer.add_listener(events.append)
        with pytest.raises(JoinError):
            await streamer.start()
        before = [event["event"] for event in events]
        try:
            await witness.join(unreachable, 60)
        except JoinError as error:
            failure: str | None = str(error)
        else:
            failure = None
        finally:
            await witness.close()
        await asyncio.sleep(1.0)
        return before, failure

    before, failure = arun(session(), timeout=90)
    assert failure is not None and "nonexistent.invalid" in failure
    assert before == ["error"] and [event["event"] for event in events] == before, events


@pytest.mark.parametrize("option", ["capture_path", "message_log"])
def test_a_start_that_fails_on_an_output_file_shuts_the_sdk_down(option: str, tmp_path: Path,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    """``async with`` never closes a streamer whose start raised: the start itself undoes what it
    made (in a room it would have joined), so the SDK's users count down again, and nothing is
    said on stderr."""
    from echo_streamer.output import daily

    users = daily._daily_users

    async def session() -> None:
        with pytest.raises(FileNotFoundError):
            async with Streamer(StreamerConfig(**{option: str(tmp_path / "missing" / "out")})):
                pass

    arun(session())
    assert daily._daily_users == users
    assert capfd.readouterr().err == ""


def test_a_source_that_raises_after_its_cut_is_not_a_failure() -> None:
    """The caller's generator, cancelled with the cut, raises (a closed TTS socket): the segment
    stays interrupted, with no error event and no last_error."""
    chunks = BlockingChunks(then_raise=ConnectionError("socket closed"))
    events: list[Event] = []

    async def session() -> tuple[str, Any]:
        async with Streamer(StreamerConfig(gap_ms=50)) as streamer:
            streamer.add_listener(events.append)
            segment = streamer.stream(iter(chunks), IN_RATE)
            while not chunks.blocked.is_set() or segment.state != "playing":
                await asyncio.sleep(0.01)
            await streamer.interrupt("now").wait()
            chunks.release.set()
            await asyncio.to_thread(chunks.closed.wait, 2)
            await asyncio.sleep(0.1)
            return segment.state, streamer.last_error

    assert arun(session()) == ("interrupted", None)
    assert not [e for e in events if e["event"] == "error"]


def test_a_source_that_raises_fails_its_segment_after_playing_what_came_before(tmp_path: Path) -> None:
    """An exception from the caller's generator ends the segment like damaged data: every sample
    it yielded plays (the resampler's tail included), then the error names the stream."""
    samples = tone(IN_RATE, 0.5)[:, 0]
    expected, real = reference(samples, IN_RATE, OUTPUT)
    capture = tmp_path / "capture.wav"

    def failing() -> Iterator[np.ndarray]:
        yield from chunked(samples, 441)
        raise ConnectionError("tts went away")

    async def session() -> tuple[str, str | None, float]:
        async with Streamer(StreamerConfig(capture_path=str(capture))) as streamer:
            segment = streamer.stream(failing(), IN_RATE, name="tts")
            await segment.wait()
            return segment.state, segment.error, segment.position_ms

    state, error, position_ms = arun(session())
    assert state == "failed" and error == "tts: its chunks raised ConnectionError: tts went away"
    assert position_ms == pytest.approx(1000 * real / OUTPUT.rate)
    np.testing.assert_array_equal(nonzero_frames(read_pcm(capture), OUTPUT.frame_samples),
                                  nonzero_frames(expected, OUTPUT.frame_samples))


@pytest.mark.parametrize("mode", ["now", "next_pause"])
def test_a_reply_queued_right_after_an_interrupt_plays(mode: str) -> None:
    """Barge-in: interrupt, then queue the reply at once. The segment playing is cut, the one
    queued behind it before the request is dropped, the reply queued after it plays in full."""

    async def session() -> tuple[str, str, str, list[str]]:
        async with Streamer(StreamerConfig(gap_ms=50)) as streamer:
            playing = streamer.stream(chunked(tone(IN_RATE, 2.0)[:, 0], 441), IN_RATE, name="answer")
            queued = streamer.stream(chunked(tone(IN_RATE, 1.0)[:, 0], 441), IN_RATE, name="more")
            while playing.state != "playing":
                await asyncio.sleep(0.01)
            interruption = streamer.interrupt(mode)
            reply = streamer.stream(chunked(tone(IN_RATE, 0.3)[:, 0], 441), IN_RATE, name="reply")
            await interruption.wait()
            await reply.wait()
            return playing.state, queued.state, reply.state, [segment.id for segment in interruption.dropped]

    playing, queued, reply, dropped = arun(session())
    assert (playing, queued, reply) == ("interrupted", "cancelled", "finished")
    assert dropped == ["seg-2"]


def test_async_iterables_whole_arrays_and_bytes_stream_bit_exact(tmp_path: Path) -> None:
    """An async generator of chunks, a whole array and a whole bytes object each send exactly
    what the same samples sent as a generator of chunks send."""
    samples = tone(IN_RATE, 0.4)[:, 0]
    expected, _real = reference(samples, IN_RATE, OUTPUT)
    pcm16 = np.rint(samples * 32767).astype("<i2")
    expected16, _ = reference(pcm16.astype(np.float32) / 32768, IN_RATE, OUTPUT)
    capture = tmp_path / "capture.wav"

    async def produced() -> AsyncIterator[np.ndarray]:
        for chunk in chunked(samples, 300):
            await asyncio.sleep(0)
            yield chunk

    async def session() -> list[str]:
        async with Streamer(StreamerConfig(gap_ms=10, capture_path=str(capture))) as streamer:
            segments = [streamer.stream(produced(), IN_RATE), streamer.stream(samples, IN_RATE),
                        streamer.stream_bytes(pcm16.tobytes(), sample_format="s16le", rate=IN_RATE, channels=1)]
            await streamer.drain()
            return [segment.state for segment in segments]

    assert arun(session()) == ["finished"] * 3
    sent = nonzero_frames(read_pcm(capture), OUTPUT.frame_samples)
    one, exact16 = nonzero_frames(expected, OUTPUT.frame_samples), nonzero_frames(expected16, OUTPUT.frame_samples)
    np.testing.assert_array_equal(sent, np.concatenate((one, one, exact16)))


@pytest.mark.parametrize(("rate", "channels"), [(0, 1), (24000.5, 1), (24000, 0), (True, 1), (float("inf"), 1),
                                               (float("nan"), 1), ("24000", 1)])
def test_a_format_the_pipeline_cannot_take_is_refused_at_the_call(rate: Any, channels: Any) -> None:
    """By stream() and by stream_bytes() of a raw format alike."""
    async def session() -> None:
        async with Streamer() as streamer:
            with pytest.raises(ValueError):
                streamer.stream([np.zeros(100, np.float32)], rate, channels=channels)
            with pytest.raises(ValueError):
                streamer.stream_bytes([bytes(200)], sample_format="s16le", rate=rate, channels=channels)
            assert streamer.queued() == [] and streamer.current is None

    arun(session())


def test_chunks_that_are_no_iterable_are_refused_at_the_call() -> None:
    async def session() -> None:
        async with Streamer() as streamer:
            for method in (lambda chunks: streamer.stream(chunks, IN_RATE),
                           lambda chunks: streamer.stream_bytes(chunks, sample_format="s16le", rate=IN_RATE,
                                                                channels=1)):
                for chunks in (None, 5):
                    with pytest.raises(TypeError, match=f"takes an iterable or async iterable of chunks, not "
                                                        f"{type(chunks).__name__}"):
                        method(chunks)
            with pytest.raises(TypeError, match="stream_bytes.. takes bytes, not str$"):
                streamer.stream_bytes("hello")
            with pytest.raises(TypeError, match="takes bytes, not ndarray: for sample arrays use stream"):
                streamer.stream_bytes(np.zeros(100, np.int16))  # type: ignore[arg-type]
            assert streamer.queued() == [] and streamer.current is None

    arun(session())


class ClosableChunks:
    """An iterable with a close() (an HTTP response, a socket reader): tone in 20 ms chunks."""

    def __init__(self, name: str, closed: list[str], seconds: float) -> None:
        self.name = name
        self.closed = closed
        self._chunks = chunked(tone(IN_RATE, seconds)[:, 0], 441)

    def __iter__(self) -> ClosableChunks:
        return self

    def __next__(self) -> np.ndarray:
        return next(self._chunks)

    def close(self) -> None:
        self.closed.append(self.name)


def test_cut_and_dropped_segments_close_their_iterables() -> None:
    """The one cut while playing, and the one dropped before its turn to decode (the decoder is
    still on the first, which runs further ahead than the buffer)."""
    closed: list[str] = []
    sources = [ClosableChunks("playing", closed, 3.0), ClosableChunks("queued", closed, 1.0)]

    async def session() -> None:
        async with Streamer() as streamer:
            playing, dropped = (streamer.stream(source, IN_RATE) for source in sources)
            while playing.state != "playing":
                await asyncio.sleep(0.01)
            await streamer.interrupt("now").wait()
            await dropped.wait()
            for _ in range(100):
                if len(closed) == 2:
                    break
                await asyncio.sleep(0.01)
            assert sorted(closed) == ["playing", "queued"]  # not only at close

    arun(session())


def test_close_with_the_decoder_stuck_still_closes_the_queued_iterables() -> None:
    """The decoder is blocked in a source that never returns while the streamer closes: close()
    gives up on it, and the segments it never reached still have their iterables closed."""
    chunks = BlockingChunks()
    closed: list[str] = []

    async def session() -> float:
        async with Streamer() as streamer:
            blocked = streamer.stream(iter(chunks), IN_RATE, name="blocked")
            streamer.stream(ClosableChunks("queued", closed, 1.0), IN_RATE)
            while not chunks.blocked.is_set() or blocked.state != "playing":
                await asyncio.sleep(0.01)
            began = time.monotonic()
        return time.monotonic() - began

    try:
        took = arun(session())
        assert closed == ["queued"]
        assert took < 1.0, took
        assert not chunks.closed.is_set()  # still blocked: its own decoder closes it if it returns
    finally:
        chunks.release.set()
    assert chunks.closed.wait(2)


def test_a_listener_that_raises_does_not_break_the_streamer(caplog: pytest.LogCaptureFixture) -> None:
    """It is reported through the loop's exception handler (logged); the interrupt it ran in still happens."""
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise ValueError(f"broken listener on {event['event']}")

    async def session() -> tuple[bool, int]:
        async with Streamer() as streamer:
            streamer.add_listener(broken)
            streamer.add_listener(lambda event: seen.append(event["event"]))
            segment = streamer.stream(chunked(tone(IN_RATE, 1.0)[:, 0], 441), IN_RATE)
            while segment.state != "playing":
                await asyncio.sleep(0.01)
            interruption = streamer.interrupt("now")
            await interruption.wait()
            return interruption.noop, streamer.stats()["interrupts"]

    assert arun(session()) == (False, 1)
    assert "interrupt_requested" in seen and "interrupt_done" in seen
    failures = [str(record.exc_info[1]) for record in caplog.records if record.exc_info]
    assert "broken listener on interrupt_requested" in failures


def test_a_listener_may_call_the_streamer() -> None:
    """Listeners hear of an interrupt once it is registered, not half way through: a reply a
    listener queues on interrupt_requested is kept (queued after the interrupt, as in a barge-in),
    and an interrupt a listener asks for on item_dropped is carried out."""
    nested: list[Any] = []
    replies: list[Any] = []

    async def session() -> tuple[str, str, bool, str]:
        async with Streamer(StreamerConfig(gap_ms=10)) as streamer:
            def listener(event: Event) -> None:
                if event["event"] == "interrupt_requested" and not replies:
                    replies.append(streamer.stream(tone(IN_RATE, 0.3)[:, 0], IN_RATE, segment_id="reply"))
                elif event["event"] == "item_dropped" and not nested:
                    nested.append(streamer.interrupt("now", keep_queue=True))

            streamer.add_listener(listener)
            playing = streamer.stream(chunked(tone(IN_RATE, 1.0)[:, 0], 441), IN_RATE)
            queued = streamer.stream(tone(IN_RATE, 0.3)[:, 0], IN_RATE)
            while playing.state != "playing":
                await asyncio.sleep(0.01)
            await streamer.interrupt("now").wait()
            await asyncio.wait_for(nested[0].wait(), 3)
            await asyncio.wait_for(replies[0].wait(), 3)
            return playing.state, queued.state, nested[0].done(), replies[0].state

    assert arun(session()) == ("interrupted", "cancelled", True, "finished")


def test_listeners_are_called_not_awaited() -> None:
    async def coroutine_listener(event: Event) -> None:
        pass

    with pytest.raises(TypeError, match="events"):
        Streamer().add_listener(coroutine_listener)


def test_events_subscribe_at_the_call_and_end_at_close() -> None:
    """A consumer task created before an interrupt sees it though it has not run yet; after
    close, a new subscription ends at once."""

    async def session() -> tuple[list[str], list[Event]]:
        async with Streamer() as streamer:
            consumer = asyncio.create_task(collect(streamer.events()))
            streamer.interrupt("now")
            await asyncio.sleep(0.1)
        late = await asyncio.wait_for(collect(streamer.events()), 1)
        return [event["event"] for event in await consumer], late

    async def collect(events: AsyncIterator[Event]) -> list[Event]:
        return [event async for event in events]

    names, late = arun(session())
    assert names[:2] == ["interrupt_requested", "interrupt_done"] and names[-1] == "stream_finished"
    assert late == []


def test_close_cancelled_twice_still_shuts_down() -> None:
    """A task in ``async with Streamer()`` is cancelled, and cancelled again while it closes
    (two Ctrl-Cs): the shutdown still runs to its end, and the task ends cancelled."""

    events: list[Event] = []

    async def session() -> tuple[bool, bool]:
        holder: list[Streamer] = []

        async def speaking() -> None:
            async with Streamer() as streamer:
                holder.append(streamer)
                streamer.add_listener(events.append)
                streamer.stream(chunked(tone(IN_RATE, 5.0)[:, 0], 441), IN_RATE)
                await asyncio.sleep(30)

        task = asyncio.create_task(speaking())
        while not holder or holder[0].current is None or holder[0].current.state != "playing":
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.005)  # into close(): the fade is under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        streamer = holder[0]
        await asyncio.wait_for(streamer.close(), 2)  # joins the shutdown still under way
        return streamer.running, bool(feeders())

    assert arun(session()) == (False, False)
    assert [e["event"] for e in events][-1] == "stream_finished" and "interrupt_done" in [e["event"] for e in events]


def test_a_streamer_lives_once_and_restores_the_switch_interval(tmp_path: Path) -> None:
    before = sys.getswitchinterval()

    async def session() -> list[str]:
        refused = []
        streamer = Streamer()
        with pytest.raises(RuntimeError):
            await streamer.drain()
        async with streamer:
            assert sys.getswitchinterval() <= 0.001
            with pytest.raises(RuntimeError, match="make a new one"):
                await streamer.start()
            streamer.play(tmp_path / "missing.wav")  # a path object is a path
            await streamer.drain()
        for call in (lambda: streamer.interrupt(), lambda: streamer.stream([np.zeros(10)], 16000)):
            with pytest.raises(RuntimeError) as error:
                call()
            refused.append(str(error.value))
        with pytest.raises(RuntimeError, match="make a new one"):
            await streamer.start()
        await asyncio.wait_for(streamer.drain(), 1)  # closed: nothing left to wait for
        return refused

    refused = arun(session())
    assert refused == ["the streamer is closed: a streamer runs once, make a new one"] * 2
    assert sys.getswitchinterval() == before


def test_cancelling_a_wait_unless_stopped_cancels_its_work() -> None:
    """``unless`` (the daemon's and the CLI's waits: a live session, an upload) passes the
    caller's cancellation on to the work it waits for, which would otherwise run on unowned."""
    from echo_streamer.engine.waiting import unless

    async def session() -> bool:
        work_cancelled = asyncio.Event()

        async def work() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                work_cancelled.set()
                raise

        waiting = asyncio.ensure_future(unless(asyncio.Event(), work()))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.wait_for(work_cancelled.wait(), 1)
        return work_cancelled.is_set()

    assert arun(session())


def test_a_capture_that_cannot_be_written_is_one_error_and_the_stream_goes_on(
        capfd: pytest.CaptureFixture[str]) -> None:
    """A capture file on a full disk (``/dev/full``): one ``error`` event naming it, the segment
    plays to its end all the same, close() ends the event feed (stream_finished, then the end),
    and nothing is said on stderr (no thread dies with a traceback)."""
    events: list[str] = []
    messages: list[str] = []

    async def session() -> str:
        streamer = Streamer(StreamerConfig(capture_path="/dev/full"))
        await streamer.start()
        feed = streamer.events()

        async def follow() -> None:
            async for event in feed:
                events.append(event["event"])
                if event["event"] == "error":
                    messages.append(event["message"])

        following = asyncio.ensure_future(follow())
        segment = streamer.stream(tone(IN_RATE, 0.3)[:, 0], IN_RATE)
        await segment.wait()
        await streamer.close()
        await asyncio.wait_for(following, 3)
        return segment.state

    assert arun(session()) == "finished"
    assert events.count("error") == 1 and events[-1] == "stream_finished", events
    assert messages == ["/dev/full: capture failed: No space left on device; the rest is not captured"]
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("before", ["capture", "unfinished capture", "other rate", "not a wav", "none"])
def test_capture_append_continues_only_a_capture_of_the_same_format(before: str, tmp_path: Path) -> None:
    """``capture_append`` (the daemon's rejoins): a second streamer's capture goes on after the
    first's, one WAV in order, also when the first never wrote its sizes (its disk filled up)
    and ended in part of a sample; a file that is no capture at this rate is replaced."""
    path = tmp_path / "capture.wav"
    first, second = tone(IN_RATE, 0.3, 440)[:, 0], tone(IN_RATE, 0.3, 660)[:, 0]

    async def stream(samples: np.ndarray, rate: int, append: bool) -> None:
        async with Streamer(StreamerConfig(rate=rate, gap_ms=50, capture_path=str(path),
                                           capture_append=append)) as streamer:
            await streamer.stream(samples, IN_RATE).wait()

    if before in ("capture", "unfinished capture", "other rate"):
        arun(stream(first, 16_000 if before == "other rate" else 24_000, append=False))
    if before == "unfinished capture":
        with open(path, "r+b") as unfinished:
            unfinished.seek(4)
            unfinished.write(bytes(4))
            unfinished.seek(40)
            unfinished.write(bytes(4))
            unfinished.seek(0, 2)
            unfinished.write(b"\x01")
    elif before == "not a wav":
        path.write_bytes(b"RIFF" + bytes(60))
    arun(stream(second, 24_000, append=True))
    capture = read_pcm(path, 24_000)
    assert path.stat().st_size == 44 + 2 * len(capture), "the header's size is the file's"
    played = [first, second] if before.endswith("capture") else [second]
    locate(capture, [reference(samples, IN_RATE, OUTPUT)[0] for samples in played], OUTPUT.frame_samples)


@pytest.mark.parametrize("kind", ["arrays", "bytes"])
def test_a_cut_async_source_waiting_for_its_next_chunk_stops_at_once(kind: str) -> None:
    """A TTS that waits for more text when the cut comes: its wait is cancelled there and then
    (its ``finally`` runs, while the stream goes on), not left hanging until a chunk comes or
    the streamer closes; the reply queued after the cut plays."""
    stopped: list[tuple[str, float]] = []
    more_text = asyncio.Event()  # never set
    pcm = tone(IN_RATE, 0.3)[:, 0]

    async def tts() -> AsyncIterator[Any]:
        try:
            yield pcm if kind == "arrays" else np.rint(pcm * 32767).astype("<i2").tobytes()
            await more_text.wait()
        except asyncio.CancelledError:
            stopped.append(("cancelled", time.monotonic()))
            raise
        finally:
            stopped.append(("finally", time.monotonic()))

    async def session() -> tuple[str, str, float]:
        async with Streamer(StreamerConfig(gap_ms=50)) as streamer:
            segment = (streamer.stream(tts(), IN_RATE) if kind == "arrays" else
                       streamer.stream_bytes(tts(), sample_format="s16le", rate=IN_RATE, channels=1))
            while segment.position_ms < 100:
                await asyncio.sleep(0.01)
            cut = await streamer.interrupt("now").wait()
            reply = streamer.stream(tone(IN_RATE, 0.2)[:, 0], IN_RATE)
            await reply.wait()
            assert [name for name, _t in stopped] == ["cancelled", "finally"], "stopped before the reply played"
            return segment.state, reply.state, stopped[-1][1] - cut.done_at

    state, reply_state, after_cut = arun(session())
    assert (state, reply_state) == ("interrupted", "finished")
    assert after_cut < 0.1, f"the generator's finally ran {after_cut:.3f} s after the cut"


def test_an_async_source_is_read_as_async_for_would_read_it() -> None:
    """In one task and in the caller's context throughout: a context variable set before
    stream() is seen, one the generator sets keeps its value across its yields, and an
    asyncio.timeout() spanning its yields fires (failing the segment with its TimeoutError, not
    waiting out the stall)."""
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")
    seen: list[str] = []

    async def tts(stall_s: float) -> AsyncIterator[np.ndarray]:
        seen.append(request_id.get())
        request_id.set("set by the generator")
        async with asyncio.timeout(0.3):
            yield tone(IN_RATE, 0.1)[:, 0]
            seen.append(request_id.get())
            await asyncio.sleep(stall_s)
            yield tone(IN_RATE, 0.1)[:, 0]

    async def session() -> tuple[str, str | None, float]:
        async with Streamer(StreamerConfig(gap_ms=10)) as streamer:
            request_id.set("req-42")
            began = time.monotonic()
            segment = await streamer.stream(tts(stall_s=5), IN_RATE).wait()
            return segment.state, segment.error, time.monotonic() - began

    state, error, took = arun(session())
    assert seen == ["req-42", "set by the generator"]
    assert (state, error) == ("failed", "stream: its chunks raised TimeoutError: "), error
    assert took < 2, f"the timeout spanning the yields fired only after {took:.2f} s"


def test_an_async_source_s_timeout_fires_while_the_decoder_is_ahead_of_it() -> None:
    """A TTS faster than real time has its items read ahead and then waits at a yield until the
    decoder asks again: a timeout spanning its yields that expires there is raised in it (its
    TimeoutError fails the segment), not taken for the end of the stream."""
    async def tts() -> AsyncIterator[np.ndarray]:
        async with asyncio.timeout(0.4):
            for chunk in chunked(tone(IN_RATE, 3.0)[:, 0], 441):
                yield chunk

    async def session() -> tuple[str, str | None, float]:
        async with Streamer(StreamerConfig(gap_ms=10)) as streamer:
            segment = await streamer.stream(tts(), IN_RATE).wait()
            return segment.state, segment.error, segment.position_ms

    state, error, position_ms = arun(session())
    assert (state, error) == ("failed", "stream: its chunks raised TimeoutError: "), error
    assert position_ms < 2500, "it played on as if the timeout had not fired"


def test_an_async_source_closed_before_its_reader_starts_ends_the_wait_for_it() -> None:
    """next() asked and close() come in the same round of the loop (the loop is held up while
    both arrive), before the task that reads the iterable has taken a step: the next() ends
    (StopIteration) and the iterable is closed all the same."""
    from echo_streamer.sources.awaited import AwaitedIterator

    async def tts() -> AsyncIterator[int]:
        yield 1

    async def session() -> tuple[list[str], bool]:
        loop = asyncio.get_running_loop()
        generator = tts()
        items = AwaitedIterator(generator, loop)
        outcome: list[str] = []
        consumer = threading.Thread(target=lambda: outcome.append(repr(next(items, "the end"))))

        def hold_the_loop() -> None:
            consumer.start()
            threading.Timer(0.1, items.close).start()
            time.sleep(0.3)

        loop.call_soon(hold_the_loop)
        await asyncio.sleep(0.01)
        await asyncio.to_thread(consumer.join, 5)
        await asyncio.sleep(0.1)
        return outcome, generator.ag_frame is None

    assert arun(session()) == (["'the end'"], True)


def test_an_async_source_cancelled_by_its_own_code_fails_its_segment() -> None:
    """A CancelledError the streamer did not cause (the TTS's connection task was cancelled) cut
    the utterance short: the segment fails saying so, it is not reported as played to its end."""
    async def tts() -> AsyncIterator[np.ndarray]:
        yield tone(IN_RATE, 0.2)[:, 0]
        connection = asyncio.ensure_future(asyncio.sleep(10))
        connection.cancel()
        await connection

    async def session() -> tuple[str, str | None]:
        async with Streamer(StreamerConfig(gap_ms=10)) as streamer:
            segment = await streamer.stream(tts(), IN_RATE).wait()
            return segment.state, segment.error

    assert arun(session()) == ("failed", "stream: its chunks raised RuntimeError: CancelledError, not from the "
                                         "streamer: it was cut short")


@pytest.mark.parametrize(("chunk", "reason"), [
    (np.rint(tone(IN_RATE, 0.2)[:, 0] * 20_000).astype(np.float32),
     "float samples reach 10000, far beyond full scale 1.0 (int16 values as floats? divide them by 32768, "
     "or pass int16)"),
    (np.zeros(480, np.int32), "unsupported sample type int32 (use int16 or float)"),
    (np.zeros((2, 480), np.float32), "chunk of shape (2, 480) does not match 1 channel(s)"),
], ids=["int16-scaled-floats", "int32", "channels-first"])
def test_chunks_of_the_wrong_kind_fail_their_segment_saying_why(chunk: np.ndarray, reason: str) -> None:
    """The usual mistakes with a TTS's arrays fail the segment before anything of it plays, with
    an error event that says what to do; bytes are refused at the call (stream_bytes takes them)."""
    errors: list[str] = []

    async def session() -> tuple[str, float]:
        async with Streamer(StreamerConfig(gap_ms=10)) as streamer:
            streamer.add_listener(lambda event: errors.append(event["message"]) if event["event"] == "error" else None)
            with pytest.raises(TypeError, match="use stream_bytes"):
                streamer.stream(b"\0\1" * 480, IN_RATE)
            segment = await streamer.stream([chunk], IN_RATE, name="tts").wait()
            return segment.state, segment.position_ms

    assert arun(session()) == ("failed", 0)
    assert errors == [f"tts: {reason}"]
