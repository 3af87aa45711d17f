"""Bad inputs through the real CLI: one clear line each, a non-zero exit, no traceback, no output left behind.

Every bad file is made on the spot (cut, corrupted, or with header bytes written by ``struct``);
``render`` and offline ``play`` (real time, so inputs stay short) must both reject it.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import cli_command, offline_env, read_events, run, tone, wav_header

from echo_streamer.dsp.pipeline import OutputFormat
from echo_streamer.renderer import render
from echo_streamer.sources.ffmpeg import logged_errors, logged_reason

Cli = Callable[..., subprocess.CompletedProcess[str]]
OFFLINE_LINE = "echo-streamer: no room URL given"
ANY_REASON = r"\S"
DAMAGED = r"truncated|corrupt|cannot decode"


def good_wav(folder: Path, name: str = "good.wav", seconds: float = 0.4, rate: int = 44100) -> Path:
    """A short, valid stereo PCM16 WAV."""
    path = folder / name
    soundfile.write(path, tone(rate, seconds, channels=2), rate, subtype="PCM_16")
    return path


def encode(folder: Path, name: str, *args: str) -> Path:
    """The short good WAV encoded by ffmpeg into ``name`` with encoder ``args``."""
    path = folder / name
    run("ffmpeg", "-v", "error", "-i", good_wav(folder, "src-" + name + ".wav"), *args, path)
    return path


def cut(source: Path, keep: float, name: str) -> Path:
    """A copy of ``source`` keeping only the first ``keep`` fraction of its bytes."""
    data = source.read_bytes()
    path = source.with_name(name)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def garbage_middle(source: Path, name: str) -> Path:
    """A copy of ``source`` whose middle third is replaced by random bytes."""
    data = source.read_bytes()
    third = len(data) // 3
    path = source.with_name(name)
    path.write_bytes(data[:third] + np.random.default_rng(1).bytes(third) + data[2 * third :])
    return path


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` and return it."""
    path.write_bytes(data)
    return path


def make_directory(path: Path) -> Path:
    """A directory where a file is expected."""
    path.mkdir()
    return path


def nan_wav(path: Path) -> Path:
    """A float WAV whose every sample is NaN."""
    soundfile.write(path, np.full((8000, 1), np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    return path


def video_only(path: Path) -> Path:
    """A video file (MP4, AVI: RIFF like WAV) holding one video stream and no audio at all."""
    run("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=10", "-c:v", "mpeg4", path)
    return path


def large_format(folder: Path, kind: str) -> Path:
    """The short good WAV's audio as RF64 or Wave64, the WAVs of 64-bit sizes."""
    path = folder / f"a.{kind.lower()}"
    soundfile.write(path, soundfile.read(good_wav(folder))[0], 44100, format=kind, subtype="PCM_16")
    return path


def with_cover_art(mp3: Path) -> Path:
    """``mp3`` with a picture attached (an ID3 APIC frame), as music files have."""
    path = mp3.with_name("cover.mp3")
    run("ffmpeg", "-v", "error", "-i", mp3, "-f", "lavfi", "-i", "color=c=red:size=32x32:duration=0.04", "-map", "0",
        "-map", "1", "-c:a", "copy", "-c:v", "mjpeg", "-frames:v", "1", "-disposition:v", "attached_pic", path)
    return path


random_bytes = np.random.default_rng(0).bytes

def text_file(name: str) -> Callable[[Path], Path]:
    """A builder of a text file with an audio file's name."""
    return lambda folder: write(folder / name, b"this is not audio, only text\n" * 20)


# case -> (builder taking a fresh folder, pattern the reason must match)
BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda d: d / "missing.wav", r"no such file"),
    "directory": (lambda d: make_directory(d / "folder.wav"), r"directory"),
    "empty": (lambda d: write(d / "empty.wav", b""), r"empty"),
    **{f"text-as-{kind}": (text_file(f"notes.{kind}"), r"not a known audio format, or damaged")
       for kind in ("wav", "mp3", "flac", "ogg", "m4a")},
    "wav-cut-mid-data": (lambda d: cut(good_wav(d), 0.6, "cut.wav"), r"truncated"),
    "flac-cut-in-half": (lambda d: cut(encode(d, "a.flac"), 0.5, "cut.flac"), DAMAGED),
    "mp3-cut-in-half": (lambda d: cut(encode(d, "a.mp3"), 0.5, "cut.mp3"), DAMAGED),
    # Its cover art is a stream of its own, which does not make the sound's length unknown.
    "mp3-with-cover-art-cut-in-half": (lambda d: cut(with_cover_art(encode(d, "a.mp3")), 0.5, "cut.mp3"),
                                       r"truncated"),
    # Its index (moov) comes last: the demuxer's own reason, before ffmpeg's "Invalid data found".
    "m4a-cut-in-half": (lambda d: cut(encode(d, "a.m4a", "-c:a", "aac"), 0.5, "cut.m4a"),
                        r"cannot decode: .*\(moov atom not found; Invalid data found"),
    "m4a-faststart-cut-in-half": (
        lambda d: cut(encode(d, "a.m4a", "-c:a", "aac", "-movflags", "+faststart"), 0.5, "cut.m4a"),
        DAMAGED,
    ),
    "aiff-cut-in-half": (lambda d: cut(encode(d, "a.aiff"), 0.5, "cut.aiff"), DAMAGED),
    **{f"{kind.lower()}-cut-in-half": (lambda d, kind=kind: cut(large_format(d, kind), 0.5, f"cut.{kind.lower()}"),
                                      r"truncated") for kind in ("RF64", "W64")},
    "flac-header-then-random": (
        lambda d: write(d / "noise.flac", encode(d, "a.flac").read_bytes()[:42] + random_bytes(40_000)),
        DAMAGED,
    ),
    "flac-garbage-middle": (lambda d: garbage_middle(encode(d, "a.flac"), "mangled.flac"), DAMAGED),
    "mp3-garbage-middle": (lambda d: garbage_middle(encode(d, "a.mp3"), "mangled.mp3"), DAMAGED),
    "float-wav-header-then-random": (
        lambda d: write(d / "noise.wav", wav_header(tag=3, bits=32, data_bytes=32_000) + random_bytes(32_000)),
        r"NaN|corrupt",
    ),
    "mp4-video-only": (lambda d: video_only(d / "video.mp4"), r"no audio stream"),
    "avi-video-only": (lambda d: video_only(d / "video.avi"), r"no audio stream"),
    "wav-unknown-format-tag": (lambda d: write(d / "tag.wav", wav_header(tag=0x1234) + bytes(3200)),
                              r"unsupported WAV sample format \(tag 0x1234, 16 bits\)"),
    "wav-1-hz": (lambda d: write(d / "1hz.wav", wav_header(rate=1) + bytes(3200)), r"sample rate"),
    "wav-10-mhz": (lambda d: write(d / "10mhz.wav", wav_header(rate=10_000_000) + bytes(3200)), r"sample rate"),
    "wav-0-channels": (lambda d: write(d / "0ch.wav", wav_header(channels=0) + bytes(3200)), r"0 channels"),
    "wav-full-of-nan": (lambda d: nan_wav(d / "nan.wav"), r"NaN"),
    "wav-header-alone": (lambda d: write(d / "header.wav", wav_header(data_bytes=0)), r"^no audio in it"),
}


def problem_lines(result: subprocess.CompletedProcess[str], command: str) -> list[str]:
    """stderr lines, less the one line offline ``play`` prints (which must be there for play)."""
    lines = result.stderr.splitlines()
    if command == "play":
        offline = [line for line in lines if line.startswith(OFFLINE_LINE)]
        assert len(offline) == 1, result.stderr
        lines.remove(offline[0])
    return lines


def assert_one_line_about(result: subprocess.CompletedProcess[str], command: str, name: str, reason: str) -> None:
    """Exit 1, no traceback, and exactly one stderr line: ``echo-streamer: <name>: <reason>``."""
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 1, result.stderr
    lines = problem_lines(result, command)
    assert len(lines) == 1, result.stderr
    prefix = f"echo-streamer: {name}: "
    assert lines[0].startswith(prefix), lines[0]
    assert re.search(reason, lines[0][len(prefix) :]), lines[0]


@pytest.mark.parametrize("command", ["render", "play"])
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line(case: str, command: str, cli: Cli, tmp_path: Path) -> None:
    """A bad input gives exit 1 and one line naming it with a reason; render leaves no output file."""
    build, reason = BAD_INPUTS[case]
    path = build(tmp_path)
    out = tmp_path / "out.wav"
    if command == "render":
        result = cli("render", path, "-o", out, timeout=60)
    else:
        result = cli("play", path, "--gap-ms", "0", timeout=60)
    assert_one_line_about(result, command, str(path), reason)
    assert not out.exists()


@pytest.mark.parametrize(
    ("case", "data", "reason"),
    [
        ("empty", b"", r"^empty stream$"),
        ("text", b"plain text, not audio\n" * 20, ANY_REASON),
        ("1-hz-header", wav_header(rate=1) + bytes(3200), r"sample rate"),
        ("nan", wav_header(tag=3, bits=32, data_bytes=16) + struct.pack("<4f", 0.0, float("nan"), 0.0, 0.0), r"NaN"),
    ],
)
def test_bad_stdin_is_one_line(case: str, data: bytes, reason: str, cli: Cli, tmp_path: Path) -> None:
    """Bad bytes on stdin (``render -``) are reported like a bad file, naming ``-``."""
    out = tmp_path / "out.wav"
    result = cli("render", "-", "-o", out, stdin=data)
    assert_one_line_about(result, "render", "-", reason)
    assert not out.exists()


@pytest.mark.parametrize("command", ["render", "play"])
def test_closed_stdin_is_one_line(command: str, tmp_path: Path) -> None:
    """``-`` with standard input closed (``<&-`` in a shell: Python has no ``sys.stdin`` then)
    is one line naming ``-``, not a traceback, and the only line: play says so before it starts."""
    args = ("render", "-", "-o", tmp_path / "out.wav") if command == "render" else ("play", "-", "--gap-ms", "0")
    result = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=60, env=offline_env(),
                            preexec_fn=lambda: os.close(0))
    assert (result.returncode, result.stderr) == (1, "echo-streamer: -: standard input is closed\n")


@pytest.mark.parametrize("source", ["/dev/null", "empty file", "empty FIFO"])
def test_empty_input_other_than_a_file_is_said_to_be_empty(source: str, cli: Cli, tmp_path: Path) -> None:
    """ffmpeg's reason for an empty stream is the one it gives for garbage: echo-streamer looks
    first (without reading), for stdin redirected from /dev/null or an empty file, and for a FIFO
    given by name whose writer closes without writing."""
    out = tmp_path / "out.wav"
    if source == "empty FIFO":
        fifo = tmp_path / "tts.fifo"
        os.mkfifo(fifo)
        writer = subprocess.Popen(["sh", "-c", f"sleep 0.3; : > {fifo}"])
        result = cli("render", fifo, "-o", out)
        writer.wait(5)
        name = str(fifo)
    else:
        path = os.devnull if source == "/dev/null" else write(tmp_path / "empty.bin", b"")
        with open(path, "rb") as stdin:
            result = cli("render", "-", "-o", out, stdin=stdin)
        name = "-"
    assert_one_line_about(result, "render", name, r"^empty stream$")
    assert not out.exists()


def test_play_skips_bad_file_and_plays_the_rest(cli: Cli, tmp_path: Path) -> None:
    """play good bad good2: one line about bad, both good files played in order and captured, exit 1."""
    good = good_wav(tmp_path, "good.wav", seconds=0.3, rate=44100)
    good2 = tmp_path / "good2.wav"
    soundfile.write(good2, tone(16000, 0.25, freq=1000.0), 16000)
    bad = write(tmp_path / "bad.wav", b"not a wav file at all\n" * 10)
    events, capture = tmp_path / "ev.jsonl", tmp_path / "cap.wav"
    result = cli("play", good, bad, good2, "--gap-ms", "50", "--events", events, "--capture", capture, timeout=60)
    assert_one_line_about(result, "play", str(bad), ANY_REASON)

    log = read_events(events)
    finished = {e["item"]: e for e in log if e["event"] == "item_finished"}
    for path in (good, good2):
        expected = render(str(path), str(tmp_path / f"{path.stem}-ref.wav"), OutputFormat())
        assert finished[str(path)]["samples"] == expected.samples > 0
        assert "error" not in finished[str(path)]
    errors = [e for e in log if e["event"] == "error"]
    assert len(errors) == 1 and errors[0]["item"] == str(bad)
    assert str(bad) in str(errors[0]["message"])

    # The capture holds exactly the frames render makes for each good file, in order.
    sent = soundfile.read(capture, dtype="int16")[0].tobytes()
    first = sent.find(soundfile.read(tmp_path / "good-ref.wav", dtype="int16")[0].tobytes())
    second = sent.find(soundfile.read(tmp_path / "good2-ref.wav", dtype="int16")[0].tobytes())
    assert 0 <= first < second


@pytest.mark.parametrize("command", ["render", "play"])
def test_a_line_break_in_a_file_name_keeps_the_message_one_line(command: str, cli: Cli, tmp_path: Path) -> None:
    """A file name may hold a line break: its message is still one line, the break written as \\n."""
    broken = tmp_path / "new\nline.wav"
    args = ("-o", tmp_path / "out.wav") if command == "render" else ()
    result = cli(command, broken, *args)
    assert_one_line_about(result, command, str(broken).replace("\n", "\\n"), r"no such file")


@pytest.mark.parametrize("command", ["render", "play"])
def test_file_names_that_are_no_utf8_decode(command: str, cli: Cli, tmp_path: Path) -> None:
    """Linux file names are bytes: Latin-1 ones (no valid UTF-8) decode, a WAV through libsndfile
    and an MP3 through ffmpeg (play with its progress line drawn), and a missing one is one line
    naming it, escaped, while the files after it still play."""
    latin = os.fsdecode(b"lat\xe9")  # a lone surrogate where the byte 0xE9 was
    wav, mp3 = tmp_path / f"{latin}.wav", tmp_path / f"{latin}.mp3"
    os.rename(good_wav(tmp_path), wav)
    os.rename(encode(tmp_path, "a.mp3"), mp3)
    if command == "render":
        for source in (wav, mp3):
            result = cli("render", source, "-o", tmp_path / "out.wav")
            assert result.returncode == 0, result.stderr
            assert soundfile.info(tmp_path / "out.wav").duration == pytest.approx(0.4, abs=0.03)
        return
    events = tmp_path / "events.jsonl"
    result = cli("play", wav, tmp_path / f"{latin}-missing.wav", mp3, "--progress", "--events", events)
    assert "Traceback" not in result.stderr and result.returncode == 1, result.stderr
    assert "echo-streamer: " + str(tmp_path / "lat\\udce9-missing.wav: no such file") in result.stderr
    finished = [event for event in read_events(events) if event["event"] == "item_finished"]
    assert [(event["samples"] > 0, "error" in event) for event in finished] == [
        (True, False), (False, True), (True, False)], finished


def test_truncated_file_plays_to_its_last_sample_then_fails(cli: Cli, tmp_path: Path) -> None:
    """A WAV cut off mid-data: the capture holds exactly what render makes of the samples before
    the cut (the resampler's tail and the padded last frame included), then the gap; the item
    fails with 'truncated'."""
    rate = 44100
    samples = tone(rate, 1.0, channels=2)
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, samples, rate, subtype="PCM_16")
    truncated = cut(whole, 0.55, "cut.wav")
    kept = (truncated.stat().st_size - 44) // 4  # whole stereo PCM16 sample frames after the 44-byte header
    intact = tmp_path / "intact.wav"
    soundfile.write(intact, soundfile.read(whole, dtype="int16")[0][:kept], rate, subtype="PCM_16")
    expected = render(str(intact), str(tmp_path / "intact-ref.wav"), OutputFormat())

    events, capture = tmp_path / "ev.jsonl", tmp_path / "cap.wav"
    result = cli("play", truncated, "--gap-ms", "50", "--events", events, "--capture", capture, timeout=60)
    assert_one_line_about(result, "play", str(truncated), r"truncated")
    (finished,) = [e for e in read_events(events) if e["event"] == "item_finished"]
    assert finished["samples"] == expected.samples
    sent = soundfile.read(capture, dtype="int16")[0]
    reference = soundfile.read(tmp_path / "intact-ref.wav", dtype="int16")[0]
    at = sent.tobytes().find(reference.tobytes())
    assert at >= 0 and at % 2 == 0, "the capture does not hold the intact part's frames"
    assert not sent[at // 2 + len(reference):].any(), "something after the intact part's last frame"


def test_a_truncated_flac_plays_all_that_decodes(cli: Cli, tmp_path: Path) -> None:
    """libsndfile fails a whole read when the data runs out part way: the block that failed is
    read again in small pieces, so what plays ends within SALVAGE_FRAMES of where ffmpeg's own
    decode of the file ends (before, up to a 0.5 s block short of it), and the item fails."""
    from conftest import ffmpeg_decode

    from echo_streamer.sources.libsndfile import SALVAGE_FRAMES

    rate = 24000
    noisy = tone(rate, 3.0) * 0.5 + np.random.default_rng(4).uniform(-0.2, 0.2, (rate * 3, 1))
    whole = tmp_path / "whole.flac"
    soundfile.write(whole, noisy, rate, subtype="PCM_16")
    truncated = cut(whole, 0.55, "cut.flac")
    decodable = len(ffmpeg_decode(truncated)[0])
    events = tmp_path / "ev.jsonl"
    result = cli("play", truncated, "--gap-ms", "50", "--events", events, timeout=60)
    assert_one_line_about(result, "play", str(truncated), DAMAGED)
    (finished,) = [e for e in read_events(events) if e["event"] == "item_finished"]
    assert decodable - SALVAGE_FRAMES <= finished["samples"] <= decodable + rate // 100, (finished, decodable)


def test_a_wav_whose_data_size_was_never_filled_in_plays_what_follows(cli: Cli, tmp_path: Path) -> None:
    """A data size of 0 (a writer that never came back to it) with samples after the header: the
    samples play, as ffmpeg reads them, rather than nothing with status 0."""
    samples = (tone(16000, 0.5)[:, 0] * 32767).astype("<i2")
    path = write(tmp_path / "unfinished.wav", wav_header(data_bytes=0, riff_bytes=0) + samples.tobytes())
    out = tmp_path / "out.wav"
    result = cli("render", path, "-o", out, "--rate", "16000")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    rendered, _rate = soundfile.read(out, dtype="int16")
    np.testing.assert_array_equal(rendered, samples)


# An MP3 with a hole, decoded by ffmpeg 5.1 (Debian 12, this project's CI) and, in the form
# ffmpeg's current source logs it (fftools/ffmpeg_dec.c: its decoder logs under the input
# stream's context), by a newer one; and an MP4 cut before its index, opened by a newer one.
FFMPEG_5_HOLE = (b"[info] Input #0, mp3, from 'holes.mp3':\n"
                 b"[mp3float @ 0x56546d081980] [error] Header missing\n"
                 b"[error] Error while decoding stream #0:0: Invalid data found when processing input\n")
FFMPEG_7_HOLE = (b"[info] Input #0, mp3, from 'holes.mp3':\n"
                 b"[mp3float @ 0x5618c4a0b2c0] [error] Header missing\n"
                 b"[aist#0:0/mp3 @ 0x5618c49f1e40] [dec:mp3float @ 0x5618c4a09f00] [error] Decoding error: "
                 b"Invalid data found when processing input\n")
FFMPEG_7_CUT = (b"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d0c8e1f100] [error] moov atom not found\n"
                b"[in#0 @ 0x55d0c8e1ee80] [error] Error opening input: Invalid data found when processing input\n"
                b"[error] Error opening input file cut.m4a.\n"
                b"[error] Error opening input files: Invalid data found when processing input\n")


@pytest.mark.parametrize(("log", "reason"), [
    (FFMPEG_5_HOLE, "Header missing; Error while decoding stream #0:0: Invalid data found when processing input"),
    (FFMPEG_7_HOLE, "Header missing; Decoding error: Invalid data found when processing input"),
    (FFMPEG_7_CUT, "moov atom not found; Error opening input files: Invalid data found when processing input"),
])
def test_ffmpeg_errors_of_its_own_fail_an_input_and_a_librarys_lead_the_reason(log: bytes, reason: str) -> None:
    """ffmpeg's own errors, with a context (newer ffmpeg) or without (5.1), are what fail an input;
    a demuxer's or decoder's error alone is not (a damaged frame it skipped), but leads the reason."""
    own = [flag for flag, _text in logged_errors(log)]
    assert own[0] is False and all(own[1:]), own
    assert logged_reason(log, "cut.m4a") == reason
    assert logged_reason(b"[mp3float @ 0x5618c4a0b2c0] [error] Header missing\n", "holes.mp3") is None

