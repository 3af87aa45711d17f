"""``echo-streamer live`` capturing a real PulseAudio server through PortAudio and ALSA's pulse plugin.

Each test starts a private PulseAudio server (``pulse_server.py``): a null sink ``virt`` whose
monitor is the default source, kept at low latency by a silent loopback playing into it. The
test writes a file (a tone, or seeded noise), ``paplay`` plays it into ``virt``, and
``echo-streamer live --device pulse`` (or ``default``, which ALSA routes to PulseAudio while it
runs) captures ``virt.monitor`` offline into ``--capture``. The capture must hold the tone at its
frequency and level, reach it within a latency bound of paplay starting, and hold the noise
continuously for 12 s, every gap and every sample dropped or repeated reported by the events.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from conftest import frames_of, offline_env, read_events, read_pcm, wait_for_event
from pulse_server import RATE as PLAY_RATE
from pulse_server import MONITOR, SINK, pactl, pulse_server

from echo_streamer.sources.live import BLOCK_MS

RATE = 24_000  # what echo-streamer hands the SDK (its default), in 10 ms frames
FRAME = RATE // 100
WINDOW = FRAME // 2
# paplay's buffer: 100 ms. With 10 ms, paplay underruns now and then on a loaded 2-core VM.
PLAY_LATENCY_MS = 100
# Where the tone starts in the file played for the latency test.
TONE_AT_S = 0.5
# From paplay being started to the tone's first frame in the capture, less TONE_AT_S: paplay's
# start and connection, the null sink's and the capture's buffering, echo-streamer's backlog and
# the 10 ms frame ticks. Measured on a loaded 2-core VM: 14-31 ms over 20 runs (both devices);
# the bound leaves room for scheduling delays, as the JACK test's does. A clean-clone CI run once
# measured -16.8 ms (the tone's level and frequency right): when paplay's first sample is played is
# not known, only when it was started, so the lower bound leaves 30 ms for that and only catches a
# capture that is clearly ahead of the file.
MAX_LATENCY_S = 0.1
MIN_LATENCY_S = -0.03
# Continuity (see test_capture_runs_continuously_and_every_gap_is_reported): the most the noise
# may move on between 5 ms windows beyond 5 ms (measured: at most 7), and the most it may move on
# over the whole run beyond what the drift control reports dropping and repeating (measured: 0 in
# 9 runs, 13 in one), both in samples at 48 kHz. A lost 5 ms block is 240.
MAX_STEP = 10
MAX_UNACCOUNTED = 24
BLOCK_SAMPLES = round(PLAY_RATE * BLOCK_MS / 1000)  # what an overflow drops: one capture block
CLOSING_LINE = re.compile(r"clock drift ([+-]\d+) ppm \(to within (\d+) ppm; (\d+) samples dropped, (\d+) repeated, "
                          r"([+-]\d+) of them placing the frames\), (\d+) blocks dropped \(overflow\), "
                          r"(\d+) overruns in the device, (\d+) underruns")


@pytest.fixture
def pulse_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private PulseAudio server; the environment that selects it."""
    with pulse_server(tmp_path / "pulse", offline_env()) as env:
        yield env


def tone_file(path: Path, seconds: float, freq: float, levels: tuple[float, ...], silent_s: float = 0.0) -> Path:
    """A 48 kHz PCM16 WAV: ``silent_s`` of digital silence, then a sine of ``freq`` Hz lasting
    ``seconds``, at peak ``levels[k]`` in channel k, starting at phase 0."""
    t = np.arange(round(PLAY_RATE * seconds)) / PLAY_RATE
    sine = np.sin(2 * np.pi * freq * t)
    samples = np.concatenate([np.zeros((round(PLAY_RATE * silent_s), len(levels))),
                              np.stack([level * sine for level in levels], axis=1)])
    soundfile.write(path, samples, PLAY_RATE, subtype="PCM_16")
    return path


class Player:
    """``paplay`` playing ``path`` into the null sink; ``started_at`` is time.monotonic() just before
    it was started."""

    def __init__(self, env: dict[str, str], path: Path) -> None:
        before = sink_inputs(env)
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(["paplay", f"--device={SINK}", f"--latency-msec={PLAY_LATENCY_MS}",
                                         "--volume=65536", str(path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        self.env, self.before = env, before

    def wait_playing(self, timeout: float = 10) -> None:
        """Wait until paplay's stream is connected to the sink."""
        deadline = time.monotonic() + timeout
        while len(sink_inputs(self.env) - self.before) < 1:
            assert self.process.poll() is None, f"paplay exited: {self.stderr()}"
            assert time.monotonic() < deadline, "paplay did not connect to the sink"
            time.sleep(0.02)

    def stop(self) -> str:
        """Stop it if it still plays; fail if it failed; return its stderr."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        stderr = self.stderr()
        assert self.process.returncode in (0, -9), f"paplay failed ({self.process.returncode}): {stderr}"
        assert "underrun" not in stderr.lower(), stderr
        return stderr

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace") if self.process.poll() is not None else ""


def sink_inputs(env: dict[str, str]) -> set[str]:
    """The indexes of the streams playing into the server's sinks."""
    return {line.split()[0] for line in pactl(env, "list", "short", "sink-inputs").splitlines() if line.strip()}


def capture_streams(env: dict[str, str]) -> list[str]:
    """The sample specs ("float32le 1ch 48000Hz") of the streams recording the null sink's monitor."""
    sources = {line.split()[0]: line.split()[1] for line in pactl(env, "list", "short", "sources").splitlines()}
    return [" ".join(line.split()[4:]) for line in pactl(env, "list", "short", "source-outputs").splitlines()
            if line.strip() and sources.get(line.split()[1]) == MONITOR]


class Live:
    """``echo-streamer live --device DEVICE ...`` capturing offline, with events."""

    def __init__(self, env: dict[str, str], tmp_path: Path, *args: str) -> None:
        self.events, self.capture = tmp_path / "events.jsonl", tmp_path / "capture.wav"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "echo_streamer", "live", "--events", str(self.events), "--capture",
             str(self.capture), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def wait_started(self) -> None:
        wait_for_event(self.events, "stream_started", self.process)

    def finish(self, timeout: float = 30) -> tuple[str, list[dict[str, Any]]]:
        """Wait for it to end; fail unless it ended with status 0; return stderr and the events."""
        try:
            _stdout, stderr = self.process.communicate(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        text = stderr.decode(errors="replace")
        assert "Traceback" not in text, text
        assert self.process.returncode == 0, text
        return text, read_events(self.events)


def tone_figures(pcm: np.ndarray) -> tuple[float, float, float]:
    """(frequency of the strongest component in Hz, peak level, RMS x sqrt(2): both full scale 1.0)
    of the audible part, less 50 ms at either end (the fade at the end of the run)."""
    nonzero = np.flatnonzero(pcm)
    assert len(nonzero), "the capture is silent"
    audible = pcm[nonzero[0] + RATE // 20:nonzero[-1] - RATE // 20].astype(np.float64) / 32768
    assert len(audible) >= RATE // 2, f"only {len(audible)} samples of audio"
    spectrum = np.abs(np.fft.rfft(audible * np.hanning(len(audible))))
    return (float(np.argmax(spectrum) * RATE / len(audible)), float(np.abs(audible).max()),
            float(np.sqrt(2 * np.mean(audible ** 2))))


@pytest.mark.parametrize(("device", "channels", "input_rate", "freq", "levels"), [
    # PortAudio's default rate for ALSA's pulse device is 44.1 kHz: PulseAudio resamples for it.
    ("pulse", 1, None, 440.0, (0.5,)),
    # Stereo at the sink's rate: a different level per channel; echo-streamer averages them (0.4).
    ("default", 2, PLAY_RATE, 660.0, (0.6, 0.2)),
], ids=["pulse-mono-44k1", "default-stereo-48k"])
def test_tone_reaches_the_capture_at_its_frequency_and_level(pulse_env: dict[str, str], tmp_path: Path,
                                                              device: str, channels: int, input_rate: int | None,
                                                              freq: float, levels: tuple[float, ...]) -> None:
    """A tone paplay plays into the null sink comes out of ``live`` at its frequency, at its level
    (PulseAudio at 100 % volume does not change it), within MAX_LATENCY_S of when it was due."""
    played = tone_file(tmp_path / "tone.wav", 2.0, freq, levels, silent_s=TONE_AT_S)
    rate_args = [] if input_rate is None else ["--input-rate", str(input_rate)]
    live = Live(pulse_env, tmp_path, "--device", device, "--channels", str(channels), *rate_args, "--duration", "3.5")
    live.wait_started()
    player = Player(pulse_env, played)
    streams = capture_streams(pulse_env)
    stderr, events = live.finish()
    player.stop()
    pcm = read_pcm(live.capture, RATE)
    freq_out, peak, rms_level = tone_figures(pcm)
    level = float(np.mean(levels))
    started = next(e for e in events if e["event"] == "stream_started")["t"]
    heard = np.flatnonzero(frames_of(pcm, FRAME).any(axis=1))
    first, last = int(heard[0]), int(heard[-1])
    latency = started + first * 0.010 - (player.started_at + TONE_AT_S)  # frames are handed one per 10 ms tick
    print(f"figures: device={device} channels={channels} freq={freq_out:.2f} peak={peak:.4f} "
          f"rms_level={rms_level:.4f} latency_ms={latency * 1000:.1f}")
    # The capture is the null sink's monitor, at the channels and rate asked for.
    assert len(streams) == 1 and streams[0].endswith(f" {channels}ch {input_rate or 44_100}Hz"), streams
    assert abs(freq_out - freq) < 3, (freq_out, freq)
    assert abs(peak - level) < 0.03 and abs(rms_level - level) < 0.03, (peak, rms_level, level)
    assert MIN_LATENCY_S < latency < MAX_LATENCY_S, latency
    (finished,) = [e for e in events if e["event"] == "item_finished"]
    # PulseAudio reconfigures the null sink as paplay connects and again as it goes, and the
    # monitor stalls a few ms each time: 8 local runs with their underruns timed had 0-2 each,
    # 0.03-0.6 s and 2.7-3.5 s after the start (the tone plays from about 0.6 to 2.6 s). Between
    # the two, while the tone plays, the stream must not starve more than once (0.2 s margins; on
    # 2026-12-04, 2 runs in 4 here had one underrun inside the tone, at 0.66 s and 2.21 s, with
    # the total still within 2: not yet explained, PulseAudio's or ours).
    assert finished["live"]["overflows"] == 0 and finished["live"]["underruns"] <= 2, finished
    tone_plays = (started + first * 0.010 + 0.2, started + last * 0.010 - 0.2)
    starved = [e["t"] - started for e in events if e["event"] == "underrun" and tone_plays[0] < e["t"] < tone_plays[1]]
    assert len(starved) <= 1, f"underruns while the tone played, at {starved} s"
    assert CLOSING_LINE.search(stderr), stderr




def noise_file(path: Path, seconds: float, rms: float, seed: int = 7) -> np.ndarray:
    """A 48 kHz mono PCM16 WAV of Gaussian noise band-limited to 100 Hz-2 kHz at ``rms`` (full scale
    1.0); returns the noise as written (float64). The band is narrow so that a window of it still
    matches the original after a few single samples were dropped or repeated inside it."""
    count = round(PLAY_RATE * seconds)
    rng = np.random.default_rng(seed)
    band = np.fft.rfftfreq(count, 1 / PLAY_RATE)
    keep = (band >= 100) & (band <= 2000)
    spectrum = np.zeros(len(band), dtype=complex)
    spectrum[keep] = rng.normal(size=keep.sum()) + 1j * rng.normal(size=keep.sum())
    noise = np.fft.irfft(spectrum, count)
    noise *= rms / np.sqrt(np.mean(noise ** 2))
    soundfile.write(path, noise, PLAY_RATE, subtype="PCM_16")
    return soundfile.read(path, dtype="float64")[0]


def positions(windows: np.ndarray, played: np.ndarray, lead: np.ndarray,
              search: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Where each 24 kHz window of the capture lies in the 48 kHz noise ``played``: the offset (48 kHz
    samples) of the best-matching stretch of every other sample (nothing in the noise is above
    12 kHz, so that is what resampling it to 24 kHz makes), searched within ``search`` samples of
    where the window after the last one found would be; and each match's normalized correlation
    (1.0: identical but for scale). ``lead``, a longer stretch of the capture that begins with the
    first window (a short window could match noise anywhere in 16 s), is searched for over all
    of ``played`` to find where the first window is."""
    x = windows.astype(np.float64) / 32768
    size = x.shape[1]
    found, quality = np.zeros(len(x), dtype=int), np.zeros(len(x))
    expected = None
    for k, frame in enumerate(x):
        best = (-np.inf, 0)
        for parity in (0, 1):
            reference = played[parity::2]
            if expected is None:
                probe, lo = lead.astype(np.float64) / 32768, 0
                fft = 1 << (len(reference) + len(probe)).bit_length()
                scores = np.fft.irfft(np.fft.rfft(reference, fft) * np.conj(np.fft.rfft(probe, fft)), fft)
                scores = scores[:len(reference) - len(probe) + 1]
            else:
                probe, lo = frame, max(0, (expected - search - parity) // 2)
                scores = np.correlate(reference[lo:(expected + search) // 2 + size], probe, mode="valid")
            energy = np.concatenate([[0.0], np.cumsum(reference[lo:lo + len(scores) + len(probe) - 1] ** 2)])
            scores = scores / np.sqrt(np.maximum(energy[len(probe):] - energy[:-len(probe)], 1e-12))
            best = max(best, (float(scores.max()), 2 * (lo + int(np.argmax(scores))) + parity))
        found[k] = best[1]
        match = played[found[k]:found[k] + 2 * size:2]
        quality[k] = float(frame @ match / (np.linalg.norm(frame) * np.linalg.norm(match) + 1e-12))
        expected = found[k] + 2 * size
    return found, quality


def test_capture_runs_continuously_and_every_gap_is_reported(pulse_env: dict[str, str], tmp_path: Path) -> None:
    """12 s of band-limited noise (seeded), playing before ``live`` starts, tracked frame by frame
    in what was played. Every frame of the capture, from the first audible one to the fade at the
    end, is an exact copy of a stretch of the noise at its level, except the frames handed as
    silence in underruns: as many as the events count, each at the time of an ``underrun`` event.
    From one copied frame to the next the noise moves on by 10 ms, give or take the samples the
    drift control drops or repeats (at most 4 per 5 ms block), and over the whole run by what
    item_finished says it dropped and repeated: nothing was lost or repeated unreported. A stall
    of the machine may leave more backlog than the live buffer holds: the blocks dropped for it
    are counted as overflows, and only there may a window be spliced or the noise jump. (A CI run
    once failed on one window matching at 0.67, with overflows then unchecked: stopping the
    process for 70-120 ms reproduces that, with the overflows counted.) The closing line says
    what item_finished says."""
    rms = 0.2
    played = noise_file(tmp_path / "noise.wav", 16.0, rms)
    player = Player(pulse_env, tmp_path / "noise.wav")
    player.wait_playing()
    live = Live(pulse_env, tmp_path, "--device", "pulse", "--channels", "1", "--input-rate", str(PLAY_RATE),
                "--duration", "12")
    stderr, events = live.finish()
    player.stop()
    frames = frames_of(read_pcm(live.capture, RATE), FRAME)
    started = next(e for e in events if e["event"] == "stream_started")["t"]
    (stream,) = [e for e in events if e["event"] == "stream_finished"]
    (finished,) = [e for e in events if e["event"] == "item_finished"]
    underrun_at = [e["t"] for e in events if e["event"] == "underrun"]
    live_fields = finished["live"]

    audible = np.flatnonzero(frames.any(axis=1))
    first, fade = int(audible[0]), int(audible[-1])
    assert first <= 3, f"the noise starts only at frame {first}"
    assert 11.9 <= (fade - first) / 100 <= 12.1, f"{(fade - first) / 100} s of audio"
    # Silent frames after the first audible one: the underruns, and nothing else.
    silent = np.flatnonzero(~frames[first:fade].any(axis=1)) + first
    assert len(silent) == stream["underrun_frames"], (silent, stream)
    runs = np.split(silent, np.flatnonzero(np.diff(silent) > 1) + 1) if len(silent) else []
    assert len(runs) == len(underrun_at) == stream["underruns"] == live_fields["underruns"], (runs, underrun_at)
    offsets = [started + run[0] * 0.010 - t for run, t in zip(runs, underrun_at)]
    assert all(-0.03 < offset < 0.03 for offset in offsets), offsets
    body = frames[first:fade]
    silent -= first
    sounding = np.setdiff1d(np.arange(len(body)), silent)
    # Every 5 ms of every sounding frame is the noise, at its level.
    windows = body[sounding].reshape(-1, WINDOW)
    start = int(sounding[0])
    lead = body[start:min([start + 20, *silent[silent > start][:1]])].reshape(-1)  # up to 200 ms, no underrun
    overflows = live_fields["overflows"]
    found, quality = positions(windows, played, lead, search=600 + overflows * BLOCK_SAMPLES)
    gain = np.linalg.norm(windows / 32768, axis=1) / np.linalg.norm(
        np.stack([played[p:p + 2 * WINDOW:2] for p in found]), axis=1)
    # ... and follows the one before it: 5 ms on, give or take what the drift control dropped or
    # repeated (4 samples at 48 kHz in each of the up to 2 blocks a window and the next one touch,
    # and a sample or two of misfit in a window that holds them; measured: at most 7).
    steps = np.diff(found) - 2 * WINDOW
    net = int(found[-1] - found[0] - 2 * WINDOW * (len(found) - 1))  # samples skipped (-: repeated)
    reported = live_fields["samples_dropped"] - live_fields["samples_inserted"] + overflows * BLOCK_SAMPLES
    spliced, jumps = np.flatnonzero(quality <= 0.9), np.flatnonzero(np.abs(steps) > MAX_STEP)
    step_counts = np.bincount(np.minimum(np.abs(steps), MAX_STEP + 1)).tolist()  # the last: all jumps
    print(f"figures: underruns={stream['underruns']} underrun_frames={stream['underrun_frames']} "
          f"offsets_ms={[round(o * 1000, 1) for o in offsets]} steps={step_counts} "
          f"net={net} reported={reported} quality_min={quality.min():.4f} gain={np.median(gain):.4f} "
          f"spliced={spliced.tolist()} jumps={steps[jumps].tolist()} at {(jumps + 1).tolist()} live={live_fields}")
    # A block dropped as an overflow splices the window it falls in, or the two it straddles, and
    # the noise jumps there: nowhere else.
    assert len(spliced) <= 2 * overflows, f"windows {spliced.tolist()} match the noise at {quality[spliced]}"
    assert len(jumps) <= 2 * overflows, f"the noise jumps {steps[jumps].tolist()} samples at {(jumps + 1).tolist()}"
    assert abs(np.median(gain) - 1) < 0.03, np.median(gain)
    assert np.abs(np.delete(gain, spliced) - 1).max() < 0.1, (gain.min(), gain.max())
    assert abs(net - reported) <= MAX_UNACCOUNTED, (net, reported)
    closing = CLOSING_LINE.search(stderr)
    assert closing, stderr
    # The closing line rounds the drift to whole ppm, item_finished to a tenth.
    ppm, error, *counts = [int(g) for g in closing.groups()]
    assert abs(ppm - live_fields["drift_ppm"]) <= 0.55, (ppm, live_fields)
    assert abs(error - live_fields["drift_ppm_error"]) <= 0.55 and 0 < error < 1e3, (error, live_fields)
    assert counts == [live_fields["samples_dropped"], live_fields["samples_inserted"], live_fields["placement_samples"],
                      overflows, 0, live_fields["underruns"]]


def test_more_channels_than_the_device_has_is_one_line(pulse_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "echo_streamer", "live", "--device", "pulse", "--channels", "64"],
                            capture_output=True, text=True, env=pulse_env, timeout=30)
    assert result.returncode == 1
    assert result.stderr == "echo-streamer: live input 'pulse': 64 channels asked for, it captures at most 32\n"



def test_a_name_that_matches_several_devices_lists_them_on_its_one_line(pulse_env: dict[str, str]) -> None:
    """"e" is in "pulse" and in "default": the line names the matches, so the user can pick one."""
    result = subprocess.run([sys.executable, "-m", "echo_streamer", "live", "--device", "e"],
                            capture_output=True, text=True, env=pulse_env, timeout=30)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("echo-streamer: live input 'e': Multiple input devices found for 'e': ")
    assert "pulse" in result.stderr and "default" in result.stderr, result.stderr


OPEN_64_CHANNELS = """
import os, sys, sounddevice
from echo_streamer.sources.live import portaudio_checks_hidden
def open_64():
    try:
        sounddevice.RawInputStream(device="pulse", channels=64)
    except sounddevice.PortAudioError as error:
        print(error)
if sys.argv[1] == "hidden":
    with portaudio_checks_hidden():
        os.write(2, b"another thread's line\\n")
        open_64()
else:
    open_64()
"""


def test_portaudio_failed_checks_are_kept_off_stderr_and_nothing_else_is(pulse_env: dict[str, str]) -> None:
    """PortAudio itself, asked for more channels than ALSA's pulse device has: it prints its failed
    checks to stderr, unless they are hidden; what else was written meanwhile still comes out."""
    def run(mode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", OPEN_64_CHANNELS, mode], capture_output=True, text=True,
                              env=pulse_env, timeout=30)

    shown, hidden = run("shown"), run("hidden")
    assert "Invalid number of channels" in shown.stdout and "Invalid number of channels" in hidden.stdout
    assert re.search(r"^Expression '.*' failed in '.*', line: \d+$", shown.stderr, re.MULTILINE), shown.stderr
    assert hidden.stderr == "another thread's line\n"



def test_a_stall_of_the_whole_process_is_not_taken_for_a_lost_device(pulse_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    """The process stopped for a second (SIGSTOP: as when the machine stalls) stops PortAudio's
    thread with it. Once it runs again, the second the sound server held meanwhile comes at once:
    live goes on at the live edge, dropping that backlog as overflows, and PortAudio reports no
    overrun of the device (the server buffered it). Before, the wait for the next block timed out
    on waking and the device was declared gone."""
    noise_file(tmp_path / "noise.wav", 8.0, 0.2)
    player = Player(pulse_env, tmp_path / "noise.wav")
    player.wait_playing()
    live = Live(pulse_env, tmp_path, "--device", "pulse", "--channels", "1", "--duration", "5")
    live.wait_started()
    time.sleep(1.5)
    live.process.send_signal(signal.SIGSTOP)
    time.sleep(1.0)
    live.process.send_signal(signal.SIGCONT)
    stderr, events = live.finish()
    player.stop()
    closing = CLOSING_LINE.search(stderr)
    assert closing, stderr
    print(f"figures: {closing.group(0)}")
    overflows, device_overruns = int(closing.group(6)), int(closing.group(7))
    assert 150 <= overflows <= 200 and device_overruns == 0, closing.group(0)
    (finished,) = [e for e in events if e["event"] == "item_finished"]
    # It played on after the stall, to the end of --duration (wall time, the stopped second in it).
    assert not finished.get("error") and finished["position_ms"] >= 3500, finished
