"""``echo-streamer play`` end to end: real subprocesses, the real Daily SDK offline, real files.

The offline path writes into a ``daily.CustomAudioSource`` that is not joined to any call; the
SDK still consumes it in real time, so these tests check pacing, the capture of exactly what the
SDK was given, the events file, the offline / failed-join messages and clean stops on signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from conftest import (cli_command, cut_in_capture, handles, killed_at_exit, locate, offline_env, read_events, read_pcm,
                      rendered, run, tone, wait_for_event)

from echo_streamer.dsp.pipeline import OutputFormat
from echo_streamer.renderer import render as render_file

GAP_MS = 150
UNREACHABLE_ROOM = "https://nonexistent.invalid/room"
# Pacing tolerances: generous for a loaded 2-core box, tight enough to catch an unpaced path
# (everything at once) or one that takes twice as long.
TOTAL_TOLERANCE_S = 0.060
MAX_LAG_MS = 60.0
CRASH_MARKERS = ("Traceback", "panicked", "panic", "RUST_BACKTRACE", "Segmentation fault", "core dumped")


# -- helpers -------------------------------------------------------------------------------


def no_crash_text(stderr: str) -> None:
    for marker in CRASH_MARKERS:
        assert marker not in stderr, f"{marker!r} on stderr:\n{stderr}"


# -- a real offline session, run once per output format ------------------------------------


@dataclass
class Session:
    """One ``play`` run of two files, with what is needed to check it."""

    rate: int
    frame_ms: int
    files: list[Path]
    references: list[np.ndarray]  # what ``echo-streamer render`` produced for each file
    real_samples: list[int]  # unpadded output samples of each file
    capture: np.ndarray
    events: list[dict[str, Any]]
    result: subprocess.CompletedProcess[str]
    wall_s: float

    @property
    def frame_samples(self) -> int:
        return self.rate * self.frame_ms // 1000

    @property
    def frame_s(self) -> float:
        return self.frame_ms / 1000

    def named(self, name: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == name]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two different real inputs: espeak-ng speech (22050 Hz mono) and a sox 44.1 kHz stereo sweep + noise."""
    folder = tmp_path_factory.mktemp("play-inputs")
    speech = folder / "speech.wav"
    run("espeak-ng", "-w", speech, "Echo test.")
    music = folder / "music.wav"
    run("sox", "-n", "-r", "44100", "-c", "2", "-b", "16", music, "synth", "0.557", "sine", "300-3000", "pinknoise",
        "vol", "0.4")
    return [speech, music]


@pytest.fixture(scope="module", params=[(24000, 10), (16000, 20), (24000, 20), (16000, 10)],
                ids=lambda p: f"{p[0]}Hz-{p[1]}ms")
def session(request: pytest.FixtureRequest, inputs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Session:
    """Play both inputs offline with --capture and --events at one rate / frame length."""
    rate, frame_ms = request.param
    folder = tmp_path_factory.mktemp(f"play-{rate}-{frame_ms}")
    references, real_samples = [], []
    for index, path in enumerate(inputs):
        rendered = folder / f"render-{index}.wav"
        run(*cli_command("render", path, "-o", rendered, "--rate", rate, "--frame-ms", frame_ms))
        references.append(read_pcm(rendered, rate))
        api_render = render_file(str(path), str(folder / f"api-{index}.wav"), OutputFormat(rate, frame_ms))
        real_samples.append(api_render.samples)
    capture, events = folder / "capture.wav", folder / "events.jsonl"
    began = time.monotonic()
    result = subprocess.run(
        cli_command("play", *inputs, "--rate", rate, "--frame-ms", frame_ms, "--gap-ms", GAP_MS,
                    "--capture", capture, "--events", events),
        capture_output=True, text=True, env=offline_env(), timeout=60, check=False)
    wall_s = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    captured = read_pcm(capture, rate)
    return Session(rate, frame_ms, list(inputs), references, real_samples, captured,
                   read_events(events), result, wall_s)


# -- 1. pacing -----------------------------------------------------------------------------


def test_each_item_plays_for_its_duration(session: Session) -> None:
    """item_started -> item_finished spans exactly the file's frames in real time, within two frames."""
    started, finished = session.named("item_started"), session.named("item_finished")
    assert len(started) == len(finished) == len(session.files)
    for start, finish, reference in zip(started, finished, session.references):
        expected = len(reference) / session.rate
        span = finish["t"] - start["t"]
        assert abs(span - expected) <= 2 * session.frame_s, (start["item"], span, expected)


def test_whole_run_takes_audio_plus_gap_in_real_time(session: Session) -> None:
    """Two files and the gap take their real duration: not faster (unpaced), not slower (doubled)."""
    frames = sum(len(reference) for reference in session.references) // session.frame_samples
    gap_frames = -(-GAP_MS // session.frame_ms)
    expected = (frames + gap_frames) * session.frame_s
    first_start = session.named("item_started")[0]["t"]
    last_finish = session.named("item_finished")[-1]["t"]
    # From the completion of the first audio frame to that of the frame after the last one.
    assert abs(last_finish - first_start - expected) <= TOTAL_TOLERANCE_S, (last_finish - first_start, expected)
    stream_span = session.named("stream_finished")[0]["t"] - session.named("stream_started")[0]["t"]
    assert stream_span >= expected - TOTAL_TOLERANCE_S
    assert stream_span <= expected + 1.0, "start-up or shut-down took far longer than the audio"
    assert session.wall_s >= expected - TOTAL_TOLERANCE_S, "the process finished before the audio could have played"


def test_no_underruns_and_small_lag(session: Session) -> None:
    """Files decode far faster than real time, so a run reports no underrun and a small clock lag."""
    (finished,) = session.named("stream_finished")
    assert finished["underruns"] == 0
    assert finished["underrun_frames"] == 0
    assert 0 <= finished["max_lag_ms"] < MAX_LAG_MS
    assert finished["frames_sent"] == finished["frames_played"], "frames handed to the SDK were not all consumed"
    assert not session.named("underrun")


# -- 2. capture ----------------------------------------------------------------------------


def test_capture_is_render_output_in_order_with_gap(session: Session) -> None:
    """The capture holds each file's rendered frames bit-exact, in order, separated by >= gap of zeros."""
    starts = locate(session.capture, session.references, session.frame_samples)
    silence = starts[1] - (starts[0] + len(session.references[0]))
    assert silence >= GAP_MS * session.rate // 1000, f"only {silence} zero samples between the files"
    # The gap is rounded up to whole frames; the next file must not wait much longer than that.
    assert silence <= (GAP_MS + 250) * session.rate // 1000, f"{silence} zero samples between the files"


def test_capture_length_is_frames_sent(session: Session) -> None:
    """The capture holds every frame handed to the SDK and the SDK's own silence while the stream
    rested (after the last gap, until the stop: a frame when the stop comes 5 ms or more after
    the last completion), nothing else: (frames_sent + frames_rested) * frame_samples."""
    (finished,) = session.named("stream_finished")
    assert finished["frames_rested"] <= 2, finished
    assert len(session.capture) == (finished["frames_sent"] + finished["frames_rested"]) * session.frame_samples
    assert len(session.capture) % session.frame_samples == 0


# -- 3. events file ------------------------------------------------------------------------


def test_events_order_and_fields(session: Session) -> None:
    """stream_started first, stream_finished last, one item_started/item_finished pair per file in order."""
    events = session.events
    assert events[0]["event"] == "stream_started"
    assert events[-1]["event"] == "stream_finished"
    assert [e["event"] for e in events].count("stream_started") == 1
    assert [e["event"] for e in events].count("stream_finished") == 1
    first = events[0]
    assert first["offline"] is True and first["room"] is None
    assert first["rate"] == session.rate and first["frame_ms"] == session.frame_ms
    items = [e for e in events if e["event"] in ("item_started", "item_finished")]
    expected_order = [(kind, str(path)) for path in session.files for kind in ("item_started", "item_finished")]
    assert [(e["event"], e["item"]) for e in items] == expected_order
    for start, finish in zip(items[::2], items[1::2]):
        assert start["id"] == finish["id"]
        assert Path(finish["item"]).name in {path.name for path in session.files}
    assert len({e["id"] for e in items}) == len(session.files)
    assert not [e for e in events if e["event"] == "error"]


def test_item_finished_counts_real_samples(session: Session) -> None:
    """item_finished reports the unpadded sample count render produced and position_ms = samples / rate."""
    finished = session.named("item_finished")
    for event, real, reference in zip(finished, session.real_samples, session.references):
        assert event["samples"] == real
        assert real <= len(reference) < real + session.frame_samples
        assert event["position_ms"] == pytest.approx(1000 * real / session.rate, abs=0.05)
        assert event["interrupted"] is False
        assert "error" not in event


def test_event_times_never_go_back(session: Session) -> None:
    """``t`` (time.monotonic()) is non-decreasing down the file."""
    times = [event["t"] for event in session.events]
    assert times == sorted(times)
    assert times[-1] - times[0] > 0


def test_offline_run_says_so_once(session: Session) -> None:
    """A successful offline run writes nothing on stdout and only the offline line on stderr."""
    assert session.result.stdout == ""
    lines = session.result.stderr.splitlines()
    assert len(lines) == 1 and "offline" in lines[0], session.result.stderr


# -- 4. offline message and failed joins ---------------------------------------------------


@pytest.fixture
def short_wav(make_wav: Callable[..., Path]) -> Path:
    """A 0.2 s 22050 Hz tone."""
    return make_wav(tone(22050, 0.2), 22050, name="short.wav")


def test_no_room_streams_offline_with_one_line(cli: Callable[..., subprocess.CompletedProcess[str]],
                                               monkeypatch: pytest.MonkeyPatch, short_wav: Path) -> None:
    """Without --room or $ECHO_STREAMER_ROOM_URL, play exits 0 and prints exactly one line saying it streams offline."""
    monkeypatch.delenv("ECHO_STREAMER_ROOM_URL", raising=False)
    monkeypatch.delenv("ECHO_STREAMER_MEETING_TOKEN", raising=False)
    result = cli("play", short_wav, "--gap-ms", "0", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "offline" in lines[0] and lines[0].startswith("echo-streamer:")


@pytest.mark.parametrize("via", ["env", "option"])
def test_unreachable_room_fails_fast_with_one_line(via: str, short_wav: Path, tmp_path: Path) -> None:
    """An unreachable room (from $ECHO_STREAMER_ROOM_URL or --room) is joined, fails: exit 2, one line, < 5 s,
    and the same line as an error event."""
    env = offline_env()
    events = tmp_path / "events.jsonl"
    args: list[str | Path | int] = ["play", short_wav, "--join-timeout", "2", "--capture", tmp_path / "cap.wav",
                                    "--events", events]
    if via == "env":
        env["ECHO_STREAMER_ROOM_URL"] = UNREACHABLE_ROOM
    else:
        args += ["--room", UNREACHABLE_ROOM]
    began = time.monotonic()
    result = subprocess.run(cli_command(*args), capture_output=True, text=True, env=env, timeout=30, check=False)
    elapsed = time.monotonic() - began
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert elapsed < 5.0, f"took {elapsed:.1f} s to give up on the room"
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert UNREACHABLE_ROOM in lines[0]
    assert "offline" not in lines[0], "a room was given, so it must not claim to stream offline"
    no_crash_text(result.stderr)
    (error,) = read_events(events)
    assert error["event"] == "error" and f"echo-streamer: {error['message']}" == lines[0], error


# -- 5. signals ----------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(signum: signal.Signals, make_wav: Callable[..., Path], tmp_path: Path) -> None:
    """SIGTERM / SIGINT mid-file: exit 0 within 3 s, no traceback, a whole-frame capture, events end with
    stream_finished."""
    rate, frame_ms = 16000, 20
    long_file = make_wav(tone(44100, 5.0, freq=330.0), 44100, name="long.wav")
    capture, events = tmp_path / "cap.wav", tmp_path / "events.jsonl"
    process = subprocess.Popen(
        cli_command("play", long_file, "--rate", rate, "--frame-ms", frame_ms, "--capture", capture,
                    "--events", events),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=offline_env())
    with killed_at_exit(process):
        wait_for_event(events, "item_started", process)
        time.sleep(0.4)
        signalled = time.monotonic()
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=10)
        stopped = time.monotonic() - signalled
    text = stderr.decode(errors="replace")
    assert process.returncode == 0, (process.returncode, text)
    assert stopped < 3.0, f"took {stopped:.2f} s to stop"
    no_crash_text(text)
    assert stdout == b""
    with soundfile.SoundFile(capture) as wav:  # a valid, finalised WAV header
        assert (wav.samplerate, wav.channels, wav.subtype) == (rate, 1, "PCM_16")
        captured_frames = wav.frames
    frame_samples = rate * frame_ms // 1000
    assert captured_frames > 0 and captured_frames % frame_samples == 0
    logged = read_events(events)
    assert logged[-1]["event"] == "stream_finished"
    assert logged[-1]["frames_sent"] * frame_samples == captured_frames
    assert captured_frames < 4.0 * rate, "the whole file played although it was stopped"


# -- 6. interrupt signals ------------------------------------------------------------------


def play_and_signal(args: list[str | Path | int], events: Path, signum: signal.Signals,
                    after_ms: float) -> tuple[int, str, list[dict[str, Any]]]:
    """Run play, send ``signum`` once the first item has played ``after_ms``, and let it finish by itself."""
    process = subprocess.Popen(cli_command("play", *args, "--events", events), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=offline_env())
    with killed_at_exit(process):
        wait_for_event(events, "item_started", process)
        time.sleep(after_ms / 1000)
        process.send_signal(signum)
        _stdout, stderr = process.communicate(timeout=20)
    text = stderr.decode(errors="replace")
    no_crash_text(text)
    return process.returncode, text, read_events(events)


def test_sigusr1_cuts_now_drops_the_rest_and_tells_tavus(make_wav: Callable[..., Path], tmp_path: Path) -> None:
    """SIGUSR1: the current file fades out where the events say, the next file is dropped, play
    exits 0 on its own; with --tavus-interrupt the conversation.interrupt attempt is an event and
    (offline, not joined) a one-line complaint."""
    output = OutputFormat(24000, 10)
    long_file = make_wav(tone(44100, 6.0, freq=330.0), 44100, name="long.wav")
    other = make_wav(tone(44100, 1.0, freq=990.0), 44100, name="other.wav")
    capture, events = tmp_path / "cap.wav", tmp_path / "events.jsonl"
    status, stderr, logged = play_and_signal(
        [long_file, other, "--capture", capture, "--tavus-interrupt", "--conversation-id", "c42"],
        events, signal.SIGUSR1, 500)
    assert status == 0, stderr
    names = [event["event"] for event in logged]
    assert names.count("interrupt_requested") == 1 and names.count("interrupt_done") == 1
    done = next(event for event in logged if event["event"] == "interrupt_done")
    assert (done["mode"], done["cut"], done["id"], done["dropped"]) == ("now", "now", "seg-1", ["seg-2"])
    assert {"event": "item_dropped", "id": "seg-2", "item": str(other)}.items() <= \
        next(event for event in logged if event["event"] == "item_dropped").items()
    reference, _ = rendered(long_file, output)
    _k, faded = cut_in_capture(read_pcm(capture), reference, output, done["position_ms"])
    assert faded and 400 <= done["position_ms"] < 3000
    tavus = next(event for event in logged if event["event"] == "tavus_interrupt")
    assert tavus["conversation_id"] == "c42" and tavus["error"] == "not joined to a room"
    assert "conversation.interrupt for c42 not sent: not joined to a room" in stderr


def test_sigusr2_with_keep_queue_cuts_at_a_pause_and_plays_the_rest(speech: Path, make_wav: Callable[..., Path],
                                                                     tmp_path: Path) -> None:
    """SIGUSR2 on real speech: the cut lands in a pause render --points reports; with --keep-queue
    the next file still plays in full."""
    output = OutputFormat(24000, 10)
    other = make_wav(tone(44100, 0.5, freq=990.0), 44100, name="other.wav")
    events = tmp_path / "events.jsonl"
    status, stderr, logged = play_and_signal([speech, other, "--keep-queue", "--max-wait-ms", "3000"], events,
                                             signal.SIGUSR2, 200)
    assert status == 0, stderr
    done = next(event for event in logged if event["event"] == "interrupt_done")
    assert (done["mode"], done["cut"], done["dropped"]) == ("next_pause", "pause", [])
    _reference, result = rendered(speech, output)
    cut_ms = done["position_ms"] // 10 * 10
    assert any(point.ms <= cut_ms < point.until_ms for point in result.points if point.kind == "pause")
    finished = {event["id"]: event for event in logged if event["event"] == "item_finished"}
    assert finished["seg-1"]["interrupted"] is True
    assert finished["seg-2"]["interrupted"] is False and finished["seg-2"]["position_ms"] == 500.0


def test_interrupt_signals_during_the_join_are_held(short_wav: Path) -> None:
    """SIGUSR1/SIGUSR2 before the stream runs (here: while an unreachable room is being joined)
    neither kill play (their default action) nor crash it; they are held for the stream, which
    never comes: the join failure decides the exit."""
    process = subprocess.Popen(cli_command("play", short_wav, "--room", UNREACHABLE_ROOM, "--join-timeout", "2"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=offline_env())
    time.sleep(0.8)
    process.send_signal(signal.SIGUSR1)
    process.send_signal(signal.SIGUSR2)
    _stdout, stderr = process.communicate(timeout=30)
    text = stderr.decode(errors="replace")
    assert process.returncode == 2, (process.returncode, text)
    no_crash_text(text)
    assert "interrupt" not in text, text


def test_a_second_stop_signal_ends_a_start_that_is_stuck(short_wav: Path, tmp_path: Path) -> None:
    """The first SIGTERM while play starts is held for the stream; a start stuck on something
    (here: opening an --events FIFO no one reads) is ended by the second, by its default action."""
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    process = subprocess.Popen(cli_command("play", short_wav, "--events", fifo), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=offline_env())
    with killed_at_exit(process):
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert process.poll() is None, "the first is held"
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == -signal.SIGTERM
        process.communicate()


@pytest.mark.parametrize("delay_s", [0.1, 0.2, 0.35])
def test_signals_while_play_starts_are_acted_on(delay_s: float, make_wav: Callable[..., Path],
                                                tmp_path: Path) -> None:
    """A signal that comes while play is still starting (importing, starting the SDK: about the
    first 0.2 s here) does not end it by its default action: SIGTERM stops it with status 0;
    SIGUSR1 interrupts what it was told to play, held until the files are queued: neither plays
    to its end (both dropped before a sample went out, or, sent just as the stream started, the
    first cut and the second dropped)."""
    long_wav = make_wav(tone(22050, 1.0), 22050, name="long.wav")  # still playing at the latest signal
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        events = tmp_path / f"{signum.name}-{delay_s}.jsonl"
        process = subprocess.Popen(cli_command("play", long_wav, long_wav, "--events", events),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=offline_env())
        sent_at = time.monotonic() + delay_s
        # Not before the interpreter's own start-up is over (on a loaded machine, 0.1 s may not be):
        # until echo-streamer's first line runs, the signal's default action is all there is.
        while not handles(process.pid, signum):
            time.sleep(0.002)
        time.sleep(max(0.0, sent_at - time.monotonic()))
        process.send_signal(signum)
        _stdout, stderr = process.communicate(timeout=30)
        text = stderr.decode(errors="replace")
        assert process.returncode == 0, (signum.name, process.returncode, text)
        no_crash_text(text)
        if signum == signal.SIGUSR1:
            logged = read_events(events)
            (done,) = [event for event in logged if event["event"] == "interrupt_done"]
            assert done["dropped"] in (["seg-1", "seg-2"], ["seg-2"]), done
            assert not [event for event in logged if event["event"] == "item_finished" and not event["interrupted"]]


@pytest.mark.parametrize(("sdk_error", "reason"), [
    ('Connection(Api(RoomLookup(RoomInfoFetchFailed(Get(hyper_util::client::legacy::Error(Connect, Custom { kind: '
     'Uncategorized, error: "failed to lookup address information: Name or service not known" }))))))',
     "failed to lookup address information: Name or service not known"),
    ("Connection(Api(RoomLookup(RoomNotFound)))", "room not found"),
    ("Connection(Api(RoomLookup(RoomInfoFetchFailed(Status(404)))))", "status 404"),
    ("meeting token is invalid", "meeting token is invalid"),
], ids=["name-lookup", "innermost-name", "innermost-call", "plain"])
def test_join_failures_are_said_in_words(sdk_error: str, reason: str) -> None:
    """The SDK's join errors are Rust debug dumps (the first one is what an unknown host gives);
    the line a user sees carries their innermost cause."""
    from echo_streamer.output.daily import join_failure_reason

    assert join_failure_reason(sdk_error) == reason
