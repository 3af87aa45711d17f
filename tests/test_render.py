"""``echo-streamer render`` end to end, in a real subprocess, against a one-shot reference."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import cli_command, ffmpeg_decode, handles, run, tone, wav_header

from echo_streamer.dsp.convert import to_pcm16
from echo_streamer.dsp.pipeline import OutputFormat
from echo_streamer.dsp.resample import resample
from echo_streamer.renderer import render

Cli = Callable[..., subprocess.CompletedProcess[str]]


def reference_pcm(path: Path, rate: int) -> tuple[np.ndarray, int]:
    """ffmpeg's decode -> mean of channels -> one-shot resample -> PCM16; returns (pcm, clipped)."""
    decoded, in_rate = ffmpeg_decode(path)
    mono = decoded.astype(np.float64).mean(axis=1).astype(np.float32)
    return to_pcm16(resample(mono, in_rate, rate))


def read_output(path: Path, rate: int) -> np.ndarray:
    """Read a rendered WAV, checking it is mono PCM16 at ``rate``; return its int16 samples."""
    info = soundfile.info(path)
    assert (info.channels, info.samplerate, info.subtype) == (1, rate, "PCM_16")
    samples, _ = soundfile.read(path, dtype="int16")
    return samples


def assert_frames_match(out: np.ndarray, ref: np.ndarray, frame_samples: int) -> None:
    """``out`` is ``ref`` within 1 LSB, then zeros up to a whole number of frames: nothing lost or duplicated."""
    assert len(out) == math.ceil(len(ref) / frame_samples) * frame_samples
    assert np.max(np.abs(out[: len(ref)].astype(np.int32) - ref)) <= 1
    assert not out[len(ref) :].any()


def render_cli(
    cli: Cli, source: str | Path, out: Path, rate: int = 24000, frame_ms: int = 10, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``echo-streamer render`` and require it to succeed silently."""
    result = cli("render", source, "-o", out, "--rate", str(rate), "--frame-ms", str(frame_ms), stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "Traceback" not in result.stdout
    return result


@pytest.fixture(scope="module")
def music_48k(tmp_path_factory: pytest.TempPathFactory, stereo_music: Path) -> Path:
    """The stereo fixture converted by ffmpeg to 48 kHz stereo PCM16."""
    path = tmp_path_factory.mktemp("music48") / "music48.wav"
    run("ffmpeg", "-v", "error", "-i", stereo_music, "-ar", "48000", path)
    return path


@pytest.fixture(scope="module")
def music_mp3(tmp_path_factory: pytest.TempPathFactory, stereo_music: Path) -> Path:
    """The stereo fixture encoded to MP3 by ffmpeg (with its ID3 tag and LAME gapless header)."""
    path = tmp_path_factory.mktemp("mp3") / "music.mp3"
    run("ffmpeg", "-v", "error", "-i", stereo_music, "-c:a", "libmp3lame", path)
    return path


@pytest.mark.parametrize("frame_ms", [10, 20])
@pytest.mark.parametrize("rate", [16000, 24000])
@pytest.mark.parametrize("source", ["44k1", "48k"])
def test_render_equals_reference(
    source: str, rate: int, frame_ms: int, stereo_music: Path, music_48k: Path, cli: Cli, tmp_path: Path
) -> None:
    """Rendered stereo input is the one-shot reference in mono PCM16 at the rate, whole frames, zero-padded."""
    path = stereo_music if source == "44k1" else music_48k
    out = tmp_path / "out.wav"
    render_cli(cli, path, out, rate, frame_ms)
    ref, _ = reference_pcm(path, rate)
    assert abs(len(ref) - 3 * rate) <= 2  # the fixture is 3 s long
    assert_frames_match(read_output(out, rate), ref, rate * frame_ms // 1000)


@pytest.mark.parametrize(("rate", "frame_ms"), [(24000, 10), (16000, 20)])
def test_same_rate_is_bit_exact(rate: int, frame_ms: int, cli: Cli, tmp_path: Path) -> None:
    """Mono PCM16 already at the output rate comes out bit for bit, then zero padding."""
    pcm = np.random.default_rng(rate).integers(-32768, 32768, size=rate + 77, dtype=np.int16)
    pcm[:2] = (-32768, 32767)  # both extremes survive
    source = tmp_path / "in.wav"
    soundfile.write(source, pcm, rate, subtype="PCM_16")
    out = tmp_path / "out.wav"
    render_cli(cli, source, out, rate, frame_ms)
    got = read_output(out, rate)
    frame_samples = rate * frame_ms // 1000
    assert len(got) == math.ceil(len(pcm) / frame_samples) * frame_samples
    assert np.array_equal(got[: len(pcm)], pcm)
    assert not got[len(pcm) :].any()


@pytest.mark.parametrize("kind", ["wav", "mp3"])
def test_stdin_equals_file(kind: str, stereo_music: Path, music_mp3: Path, cli: Cli, tmp_path: Path) -> None:
    """``render - -o out.wav`` with the file's bytes on stdin gives what rendering the file gives.

    MP3 is the documented exception: on a pipe ffmpeg cannot check the file size its gapless
    header relies on, so it keeps the encoder's end padding (at most one 1152-sample MP3 frame).
    Everything before that tail must still match.
    """
    path = stereo_music if kind == "wav" else music_mp3
    from_file, from_stdin = tmp_path / "file.wav", tmp_path / "stdin.wav"
    render_cli(cli, path, from_file)
    render_cli(cli, "-", from_stdin, stdin=path.read_bytes())
    want, got = read_output(from_file, 24000), read_output(from_stdin, 24000)
    if kind == "wav":
        assert len(got) == len(want)
        compared = len(want)
    else:
        padding_limit = 1152 * 24000 // soundfile.info(str(stereo_music)).samplerate + 240
        assert len(want) <= len(got) <= len(want) + padding_limit
        compared = len(want) - 240  # the resampler's last few ms see padding instead of the end
    assert np.max(np.abs(got[:compared].astype(np.int32) - want[:compared])) <= 1


def test_a_named_pipe_is_read_as_stdin_is(stereo_music: Path, cli: Cli, tmp_path: Path) -> None:
    """A FIFO (or /dev/stdin, or a shell's <(...)) has no size and can be read once: it is
    decoded as it comes, as stdin is, not refused as an empty file."""
    import os
    import threading

    fifo, from_file, from_fifo = tmp_path / "in.fifo", tmp_path / "file.wav", tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(stereo_music.read_bytes(),), daemon=True)
    writer.start()
    render_cli(cli, fifo, from_fifo)
    writer.join(10)
    render_cli(cli, stereo_music, from_file)
    assert np.array_equal(read_output(from_fifo, 24000), read_output(from_file, 24000))


def test_wavs_back_to_back_on_stdin_render_as_one_stream(cli: Cli, tmp_path: Path) -> None:
    """Two espeak-ng WAVs written one after the other (a TTS run per sentence) render as their
    samples joined, as ``pipe`` plays them: the second header is not heard as a click; a WAV of
    another format after the first is one line and status 1, not silently dropped."""
    one, two = (run("espeak-ng", "--stdout", text) for text in ("One.", "Two."))
    joined = tmp_path / "joined.wav"
    samples = [soundfile.read(io.BytesIO(data), dtype="int16")[0] for data in (one, two)]
    soundfile.write(joined, np.concatenate(samples), 22050, subtype="PCM_16")
    from_stdin, from_file = tmp_path / "stdin.wav", tmp_path / "file.wav"
    render_cli(cli, "-", from_stdin, stdin=one + two)
    render_cli(cli, joined, from_file)
    assert np.array_equal(read_output(from_stdin, 24000), read_output(from_file, 24000))
    other = io.BytesIO()
    soundfile.write(other, np.zeros(4800, np.int16), 48000, format="WAV", subtype="PCM_16")
    result = cli("render", "-", "-o", tmp_path / "mixed.wav", stdin=one + other.getvalue())
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "one format per stream" in result.stderr


@pytest.mark.parametrize("via", ["render -", "pipe"])
def test_a_wav_of_coded_samples_on_a_stream_goes_to_ffmpeg(via: str, cli: Cli, tmp_path: Path) -> None:
    """IMA ADPCM (or GSM) in a WAV is no PCM to decode ourselves: on a stream ffmpeg decodes it
    (the reference: ffmpeg's decode of it, rendered; libsndfile, which decodes the file, rounds
    ADPCM differently)."""
    source = tmp_path / "tone.wav"
    soundfile.write(source, tone(16000, 1.0), 16000, subtype="PCM_16")
    adpcm, decoded = tmp_path / "adpcm.wav", tmp_path / "decoded.wav"
    run("ffmpeg", "-v", "error", "-i", source, "-c:a", "adpcm_ima_wav", adpcm)
    run("ffmpeg", "-v", "error", "-i", adpcm, "-c:a", "pcm_s16le", decoded)
    from_file, streamed = tmp_path / "file.wav", tmp_path / "streamed.wav"
    render_cli(cli, decoded, from_file)
    if via == "render -":
        render_cli(cli, "-", streamed, stdin=adpcm.read_bytes())
    else:
        result = cli("pipe", "--capture", streamed, "--gap-ms", "10", stdin=adpcm.read_bytes(), timeout=30)
        assert result.returncode == 0, result.stderr
    want, got = read_output(from_file, 24000), read_output(streamed, 24000)
    if via == "render -":
        assert len(got) == len(want) and np.max(np.abs(got.astype(np.int32) - want)) <= 1
    else:  # streams have their own low-latency resampler: the same signal, not the same LSBs
        audible = got[np.flatnonzero(got)[0]:][:len(want) - 480].astype(np.float64)
        error = audible - want[:len(audible)]
        assert len(audible) == len(want) - 480 and 10 * np.log10(np.sum(audible ** 2) / np.sum(error ** 2)) > 40


def test_render_function(speech: Path, tmp_path: Path) -> None:
    """``render()`` called directly writes the reference frames and reports frames, samples and clipping."""
    out = tmp_path / "speech-16k.wav"
    output = OutputFormat(16000, 20)
    result = render(str(speech), str(out), output)
    ref, _ = reference_pcm(speech, 16000)
    got = read_output(out, 16000)
    assert_frames_match(got, ref, output.frame_samples)
    assert result.frames == len(got) // output.frame_samples
    assert result.samples == len(ref)
    assert result.clipped == 0


def test_clipping_is_counted_and_reported(make_wav: Callable[..., Path], cli: Cli, tmp_path: Path) -> None:
    """An over-full-scale float input renders clipped, and the CLI reports the count in one line."""
    source = make_wav(tone(48000, 0.5, level=1.5), 48000, subtype="FLOAT")
    ref, clipped = reference_pcm(source, 24000)
    assert clipped > 0
    result = render(str(source), str(tmp_path / "direct.wav"), OutputFormat())
    assert result.clipped == clipped
    out = tmp_path / "cli.wav"
    completed = cli("render", source, "-o", out)
    assert completed.returncode == 0
    assert completed.stderr.splitlines() == [f"echo-streamer: {source}: {clipped} samples clipped at full scale"]
    assert_frames_match(read_output(out, 24000), ref, 240)


def test_points_mark_the_pauses_of_real_speech(speech: Path, cli: Cli, tmp_path: Path) -> None:
    """--points on an espeak-ng sentence: at least the two phrase pauses, each quiet in the output
    (every 10 ms frame more than 30 dB under the loudest one) from 90 ms before its point to its
    end, in order, and the end point last at the output's length."""
    out, points_path = tmp_path / "out.wav", tmp_path / "points.json"
    result = cli("render", speech, "-o", out, "--points", points_path)
    assert result.returncode == 0, result.stderr
    points = json.loads(points_path.read_text(encoding="utf-8"))
    pcm = read_output(out, 24000)
    assert points[-1] == {"ms": len(pcm) // 24, "kind": "end", "until_ms": len(pcm) // 24}
    pauses = points[:-1]
    assert len(pauses) >= 2 and {point["kind"] for point in pauses} == {"pause"}
    rms = np.sqrt(np.mean(np.square(pcm.reshape(-1, 240), dtype=np.float64), axis=1))
    for point in pauses:
        assert point["until_ms"] > point["ms"]
        quiet = rms[(point["ms"] - 90) // 10:point["until_ms"] // 10]
        assert quiet.max() < rms.max() * 10 ** (-30 / 20), f"pause at {point['ms']} ms is not quiet"
    starts = [point["ms"] for point in points]
    assert starts == sorted(starts)


def test_points_of_a_tone_are_only_its_end(make_wav: Callable[..., Path], cli: Cli, tmp_path: Path) -> None:
    points_path = tmp_path / "points.json"
    result = cli("render", make_wav(tone(48000, 1.234), 48000), "-o", tmp_path / "out.wav", "--rate", "16000",
                 "--frame-ms", "20", "--points", points_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(points_path.read_text(encoding="utf-8")) == [{"ms": 1240, "kind": "end", "until_ms": 1240}]


# -- the output file -----------------------------------------------------------------------


def test_a_failed_render_leaves_the_output_path_as_it_was(make_wav: Callable[..., Path], cli: Cli,
                                                          tmp_path: Path) -> None:
    """A render that fails (NaN samples) touches neither an existing output nor, through a
    symlink, its target; one that succeeds writes through the symlink, as cp would."""
    nan = make_wav(np.full((1000, 1), np.nan, np.float32), 16000, subtype="FLOAT", name="nan.wav")
    target = tmp_path / "target.txt"
    target.write_text("keep me")
    link = tmp_path / "out.wav"
    link.symlink_to(target)
    result = cli("render", nan, "-o", link)
    assert result.returncode == 1 and "NaN" in result.stderr, result.stderr
    assert link.is_symlink() and target.read_text() == "keep me"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["nan.wav", "out.wav", "target.txt"]
    result = cli("render", make_wav(tone(16000, 0.5), 16000, name="tone.wav"), "-o", link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and len(read_output(target, 24000)) == 12000


def test_an_existing_output_keeps_its_mode_and_links(make_wav: Callable[..., Path], tmp_path: Path) -> None:
    """Its contents are replaced in place, not the file: a private file stays private, and a
    hard link to it sees the new WAV."""
    out, other_name = tmp_path / "out.wav", tmp_path / "same-file.wav"
    out.write_bytes(b"old")
    out.chmod(0o600)
    os.link(out, other_name)
    render(str(make_wav(tone(16000, 0.5), 16000)), str(out))
    assert (out.stat().st_mode & 0o777, out.stat().st_nlink) == (0o600, 2)
    assert len(read_output(other_name, 24000)) == 12000


def test_an_existing_output_is_replaced_at_once_keeping_its_mode_and_owner(make_wav: Callable[..., Path],
                                                                           tmp_path: Path) -> None:
    """With no other hard link, the new WAV is renamed over it (a new inode: a reader of the old
    file never sees a mix), given the old file's mode and owner (which needs root, as CI runs)."""
    out = tmp_path / "out.wav"
    out.write_bytes(b"old")
    out.chmod(0o640)
    os.chown(out, 1234, 4321)
    old_inode = out.stat().st_ino
    with open(out, "rb") as reader:
        render(str(make_wav(tone(16000, 0.5), 16000)), str(out))
        assert reader.read() == b"old"
    status = out.stat()
    assert status.st_ino != old_inode
    assert (status.st_mode & 0o777, status.st_uid, status.st_gid) == (0o640, 1234, 4321)
    assert len(read_output(out, 24000)) == 12000
    assert not [path.name for path in tmp_path.iterdir() if path.name.endswith(".partial")]


def test_a_stop_while_a_hard_linked_output_is_rewritten_says_so(tmp_path: Path) -> None:
    """A hard-linked output is rewritten in place, the last step of a render; a stop (a real
    SIGINT) part way through that copy raises PartlyWritten, whose cause is the stop."""
    from echo_streamer.renderer import PartlyWritten, _overwrite

    out = tmp_path / "out.wav"
    out.write_bytes(b"o" * 3_000_000)
    new = tmp_path / "new.bin"
    new.write_bytes(b"n" * 3_000_000)

    class StoppedOnItsSecondRead(io.FileIO):
        reads = 0

        def read(self, size: int = -1) -> bytes:
            self.reads += 1
            if self.reads == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return super().read(size)

    with StoppedOnItsSecondRead(new, "r") as source, pytest.raises(PartlyWritten) as raised:
        _overwrite(str(out), source)  # type: ignore[arg-type]
    assert isinstance(raised.value.__cause__, KeyboardInterrupt)
    written = out.read_bytes()
    assert written.startswith(b"n") and written.endswith(b"o"), "the stop landed before or after the copy"


def test_the_render_function_refuses_an_output_that_is_not_a_regular_file(make_wav: Callable[..., Path],
                                                                         tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        render(str(make_wav(tone(16000, 0.1), 16000)), str(fifo))
    assert fifo.is_fifo()


@pytest.mark.parametrize("output", ["-", "/dev/stdout", "/dev/null"])
def test_a_wav_output_must_be_a_regular_file(output: str, make_wav: Callable[..., Path], cli: Cli) -> None:
    """Not standard output, a device or a pipe: the WAV header is written last, in place."""
    result = cli("render", make_wav(tone(16000, 0.1), 16000), "-o", output)
    assert result.returncode == 2 and "not a regular file" in result.stderr, result.stderr
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_two_outputs_naming_one_file_is_a_usage_error(make_wav: Callable[..., Path], cli: Cli,
                                                      tmp_path: Path) -> None:
    same = tmp_path / "same.wav"
    result = cli("render", make_wav(tone(16000, 0.1), 16000), "-o", same, "--points", same)
    assert result.returncode == 2 and "--output and --points name the same file" in result.stderr, result.stderr
    assert not same.exists()


@pytest.mark.parametrize("stage", ["before-the-header", "mid-data"])
def test_sigterm_while_render_waits_on_a_pipe_leaves_the_output_as_it_was(stage: str, tmp_path: Path) -> None:
    """SIGTERM (as Ctrl-C) while render waits on a writer that stalls: one line, status 130 within
    about a second (the decoder blocked in its read is left to the exit, which does not wait for
    it), and the output as it was: an existing file unchanged, no partial file beside it."""
    out = tmp_path / "out.wav"
    out.write_bytes(b"what was there")
    process = subprocess.Popen(cli_command("render", "-", "-o", out), stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdin is not None
    if stage == "mid-data":
        process.stdin.write(wav_header(rate=16_000, data_bytes=0xFFFFFFFF) + bytes(32_000))
        process.stdin.flush()
    deadline = time.monotonic() + 20
    while not handles(process.pid, signal.SIGTERM):
        assert time.monotonic() < deadline and process.poll() is None, "render never got going"
        time.sleep(0.02)
    time.sleep(0.3)  # into its wait for the pipe
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=10)
    took = time.monotonic() - began
    assert process.returncode == 130 and took < 2.0, (process.returncode, took, stderr)
    assert stderr.decode().splitlines() == [f"echo-streamer: -: render interrupted; {out} is as it was"], stderr
    assert out.read_bytes() == b"what was there" and list(tmp_path.iterdir()) == [out]


def test_an_output_that_cannot_be_written_is_one_line_while_the_input_stalls(tmp_path: Path) -> None:
    """The output file cannot grow (a file size limit: as a full disk, EFBIG) while the writer on
    standard input has stalled: one line, status 1, at once (not a traceback, nor a hang on the
    decoder blocked in its read), and no partial file left."""
    import resource

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp_path / "out.wav"
    process = subprocess.Popen(cli_command("render", "-", "-o", out), stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=limited)
    assert process.stdin is not None
    process.stdin.write(wav_header(rate=24_000, data_bytes=0xFFFFFFFF) + bytes(96_000))  # 2 s
    process.stdin.flush()
    try:
        process.wait(timeout=20)  # stdin still open: the writer has stalled, not closed
    finally:
        process.stdin.close()
    assert process.stderr is not None
    stderr = process.stderr.read()
    assert process.returncode == 1, stderr
    assert stderr.decode().splitlines() == [f"echo-streamer: {out}: cannot write it: File too large; "
                                            "it is as it was"], stderr
    assert list(tmp_path.iterdir()) == []
