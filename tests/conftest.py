"""Fixtures generated on the fly with real tools: numpy, sox, ffmpeg, espeak-ng.

Every tool a test needs must be installed (scripts/setup does it); a missing one fails the
test loudly rather than skipping it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import pytest
import soundfile

from echo_streamer.dsp.fade import FADE_MS, fade_out
from echo_streamer.dsp.pipeline import OutputFormat
from echo_streamer.renderer import RenderResult
from echo_streamer.renderer import render as render_file

REQUIRED_TOOLS = ("ffmpeg", "ffprobe", "sox", "espeak-ng", "jackd", "jack_lsp", "jack_connect", "jack_disconnect",
                  "pulseaudio", "pactl", "paplay")

T = TypeVar("T")


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(f"tests need {', '.join(missing)} on PATH: run scripts/setup")


def arun(coroutine: Awaitable[T], timeout: float = 30.0) -> T:
    """Run ``coroutine`` on a fresh event loop; fail (rather than hang) after ``timeout`` seconds."""

    async def guarded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(guarded())


def unused_port() -> int:
    """A loopback TCP port nothing listens on (once the probe that found it is closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def offline_env() -> dict[str, str]:
    """The current environment without any room URL or meeting token, so the CLI streams offline."""
    env = dict(os.environ)
    env.pop("ECHO_STREAMER_ROOM_URL", None)
    env.pop("ECHO_STREAMER_MEETING_TOKEN", None)
    return env


def cli_command(*args: str | Path | int) -> list[str]:
    """``echo-streamer ARGS`` as an argument list, run by this interpreter."""
    return [sys.executable, "-m", "echo_streamer", *[str(a) for a in args]]


def wait_for_event(path: Path, name: str, process: subprocess.Popen[Any], count: int = 1,
                   timeout: float = 20) -> None:
    """Wait until the events file at ``path`` holds ``count`` ``name`` events; fail if ``process``
    exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text(encoding="utf-8").count(f'"event": "{name}"') >= count):
        assert process.poll() is None, f"exited with status {process.returncode} before the {name} event"
        assert time.monotonic() < deadline, f"no {name} event within {timeout} s"
        time.sleep(0.02)


@contextmanager
def killed_at_exit(*processes: subprocess.Popen[Any]) -> Iterator[None]:
    """Kill and reap whichever of ``processes`` still runs when the block is left (a failed
    assertion, a timeout), so that no test leaves one behind."""
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


def handles(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler installed for ``signum`` (its SigCgt mask)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        caught = next(line for line in status if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) >> (signum - 1) & 1)


def run(*command: str | Path, stdin: bytes | None = None) -> bytes:
    """Run a tool, fail the test with its stderr if it fails, return its stdout."""
    result = subprocess.run([str(part) for part in command], input=stdin, capture_output=True)
    if result.returncode != 0:
        raise AssertionError(f"{command[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')}")
    return result.stdout


def ffmpeg_decode(path: Path) -> tuple[np.ndarray, int]:
    """ffmpeg's own decode of ``path``: float32 ``(frames, channels)`` at the file's rate."""
    probe = run("ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels",
                "-of", "csv=p=0", path).decode().strip().split(",")
    rate, channels = int(probe[0]), int(probe[1])
    raw = run("ffmpeg", "-v", "error", "-i", path, "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-")
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, channels), rate


def read_pcm(path: Path | str, rate: int | None = None) -> np.ndarray:
    """Read a mono PCM16 WAV (checking that it is one, at ``rate`` if given); return int16 samples."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2), f"{path} is not mono PCM16"
        if rate is not None:
            assert wav.getframerate() == rate, f"{path} is at {wav.getframerate()} Hz, not {rate}"
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)


def read_events(path: Path) -> list[dict[str, Any]]:
    """Parse an events file, checking that every line is one JSON object with float ``t`` and ``event``."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), "the events file must end with a complete line"
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        event = json.loads(line)
        assert isinstance(event, dict), f"line {number} is not a JSON object: {line!r}"
        assert isinstance(event.get("t"), float), f"line {number} has no float 't': {line!r}"
        assert isinstance(event.get("event"), str) and event["event"], f"line {number} has no 'event': {line!r}"
        events.append(event)
    return events


def locate(capture: np.ndarray, references: list[np.ndarray], frame_samples: int) -> list[int]:
    """Find each reference, in order, bit-exact in ``capture``; everything else must be exact zeros.

    Returns the sample offset of each reference. Each reference starts on a frame boundary.
    """
    starts: list[int] = []
    position = 0
    for index, reference in enumerate(references):
        lead = int(np.flatnonzero(reference)[0])
        nonzero = np.flatnonzero(capture[position:])
        assert len(nonzero), f"reference {index} is missing from the capture"
        start = position + int(nonzero[0]) - lead
        assert start >= position, f"reference {index} overlaps the one before it"
        assert start % frame_samples == 0, f"reference {index} does not start on a frame boundary ({start})"
        np.testing.assert_array_equal(capture[start:start + len(reference)], reference,
                                      err_msg=f"reference {index} differs from what was captured")
        starts.append(start)
        position = start + len(reference)
    assert not capture[position:].any(), "non-zero samples after the last reference"
    return starts


def frames_of(pcm: np.ndarray, frame_samples: int) -> np.ndarray:
    assert len(pcm) % frame_samples == 0, "the capture must hold whole frames"
    return pcm.reshape(-1, frame_samples)


def rendered(path: Path, output: OutputFormat) -> tuple[np.ndarray, RenderResult]:
    """The frames play sends for ``path`` (a ``(count, frame_samples)`` array) and the render result."""
    out = path.with_name(f"{path.stem}-{output.rate}-{output.frame_ms}.wav")
    result = render_file(str(path), str(out), output)
    return frames_of(read_pcm(out, output.rate), output.frame_samples), result


def cut_in_capture(capture: np.ndarray, reference: np.ndarray, output: OutputFormat,
                   position_ms: float | None) -> tuple[int, bool]:
    """Check that ``capture`` holds, from the segment's start: ``reference[:k]``, then
    ``fade_out(reference[k])`` (or a silent frame when the cut had nothing audible to fade), then
    zeros to the end, where ``k`` whole frames and the fade are what ``position_ms`` reports.
    Returns ``(k, faded)``."""
    assert position_ms is not None
    frames = frames_of(capture, output.frame_samples)
    first = segment_start(frames, reference)
    k, extra_ms = divmod(round(position_ms * 1000), output.frame_ms * 1000)
    assert extra_ms in (0, FADE_MS * 1000), f"position {position_ms} ms is neither whole frames nor frames and a fade"
    faded = extra_ms > 0
    np.testing.assert_array_equal(frames[first:first + k], reference[:k],
                                  err_msg="the frames played before the cut differ from the segment's")
    fade_samples = output.rate * FADE_MS // 1000
    expected = fade_out(reference[k].tobytes(), fade_samples) if faded else bytes(output.frame_bytes)
    np.testing.assert_array_equal(frames[first + k], np.frombuffer(expected, np.int16),
                                  err_msg=f"frame {k} of the segment is not its {'fade' if faded else 'silent cut'}")
    assert not frames[first + k + 1:].any(), "audio after the cut"
    return k, faded


def segment_start(frames: np.ndarray, reference: np.ndarray) -> int:
    """The frame index where ``reference`` (which may begin with silent frames) starts in ``frames``."""
    audible = np.flatnonzero(frames.any(axis=1))
    assert len(audible), "no audio reached the SDK"
    return int(audible[0]) - int(np.flatnonzero(reference.any(axis=1))[0])


def wav_header(*, rate: int = 16000, channels: int = 1, bits: int = 16, tag: int = 1, data_bytes: int = 3200,
               riff_bytes: int | None = None) -> bytes:
    """A canonical 44-byte RIFF/WAVE header with the given fields, written byte by byte.

    The size fields take any 32-bit value (0, 0xFFFFFFFF, ...) as a streaming writer puts there;
    `riff_bytes` defaults to the consistent 36 + `data_bytes`.
    """
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    riff = 36 + data_bytes if riff_bytes is None else riff_bytes
    return (b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF))


def tone(rate: int, seconds: float, freq: float = 440.0, channels: int = 1, level: float = 0.5) -> np.ndarray:
    """A sine at ``freq`` Hz, float32 ``(frames, channels)``; channel k is scaled by 1/(k+1)."""
    t = np.arange(round(rate * seconds)) / rate
    mono = (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([mono / (k + 1) for k in range(channels)], axis=1)


@pytest.fixture
def make_wav(tmp_path: Path) -> Callable[..., Path]:
    """Write float samples to a WAV (``subtype`` as soundfile names it) and return its path."""

    def make(samples: np.ndarray, rate: int, name: str = "in.wav", subtype: str = "PCM_16") -> Path:
        path = tmp_path / name
        soundfile.write(path, samples, rate, subtype=subtype)
        return path

    return make


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real espeak-ng sentence: 22050 Hz mono PCM16, with pauses between words."""
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    run("espeak-ng", "-w", path, "Hello there. This is a test of the echo streamer, with a pause or two.")
    return path


@pytest.fixture(scope="session")
def stereo_music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three seconds of 44.1 kHz stereo made by sox: a sweep on the left, noise on the right."""
    path = tmp_path_factory.mktemp("music") / "music.wav"
    run("sox", "-n", "-r", "44100", "-c", "2", "-b", "16", path, "synth", "3", "sine", "200-4000", "pinknoise",
        "vol", "0.5")
    return path


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``echo-streamer`` as users do, in a subprocess; returns the completed process."""

    def invoke(*args: str | Path, timeout: float = 120,
               stdin: bytes | BinaryIO | None = None) -> subprocess.CompletedProcess[str]:
        """``stdin``: bytes to pipe in, or a file to redirect from."""
        command = [sys.executable, "-m", "echo_streamer", *[str(a) for a in args]]
        redirect = {"input": stdin} if stdin is None or isinstance(stdin, bytes) else {"stdin": stdin}
        result = subprocess.run(command, capture_output=True, timeout=timeout, **redirect)
        return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                           result.stderr.decode(errors="replace"))

    return invoke
