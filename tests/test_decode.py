"""Decoders against ffmpeg's own decode: every container and codec, rate and channel count.

Each file is generated from a real stereo fixture with soundfile or ffmpeg, decoded through
``open_audio`` (file path, or ``-`` on stdin) and compared sample by sample with
``ffmpeg_decode`` of the same file. Lossy formats must match too: both sides decode the same
bitstream, so any level, offset, channel-order or length error shows up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import ffmpeg_decode, run, tone, wav_header

from echo_streamer.sources.files import open_audio

# Both decoders land within float32 rounding of each other (0 for PCM, ~4e-7 for Vorbis, where
# libvorbis and ffmpeg's decoder differ); 1e-5 is far below one 16-bit LSB (3e-5) and any real error.
MAX_DIFF = 1e-5

# name -> (file name, how to make it: ("soundfile", subtype) or ("ffmpeg", *encoder args))
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wav-pcm16": ("pcm16.wav", ("soundfile", "PCM_16")),
    "wav-pcm24": ("pcm24.wav", ("soundfile", "PCM_24")),
    "wav-pcm32": ("pcm32.wav", ("soundfile", "PCM_32")),
    "wav-float": ("float.wav", ("soundfile", "FLOAT")),
    "wav-u8": ("u8.wav", ("soundfile", "PCM_U8")),
    "flac": ("audio.flac", ("ffmpeg", "-c:a", "flac")),
    "ogg-vorbis": ("audio.ogg", ("ffmpeg", "-c:a", "libvorbis")),
    "mp3": ("audio.mp3", ("ffmpeg", "-c:a", "libmp3lame")),
    "mp3-no-id3": ("bare.mp3", ("ffmpeg", "-c:a", "libmp3lame", "-id3v2_version", "0")),
    "aiff": ("audio.aiff", ("ffmpeg", "-c:a", "pcm_s16be")),
    "m4a-aac": ("audio.m4a", ("ffmpeg", "-c:a", "aac")),
    "opus": ("audio.opus", ("ffmpeg", "-c:a", "libopus")),
    "webm-opus": ("audio.webm", ("ffmpeg", "-c:a", "libopus")),
    "mp4-aac": ("audio.mp4", ("ffmpeg", "-c:a", "aac")),
}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory, stereo_music: Path) -> Callable[[str], Path]:
    """Make (once per module) the ``stereo_music`` fixture in the named format; return its path."""
    folder = tmp_path_factory.mktemp("formats")
    made: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in made:
            name, (tool, *args) = FORMATS[kind]
            path = folder / name
            if tool == "soundfile":
                samples, rate = soundfile.read(stereo_music, dtype="float32")
                soundfile.write(path, samples, rate, subtype=args[0])
            else:
                run("ffmpeg", "-v", "error", "-i", stereo_music, *args, path)
            made[kind] = path
        return made[kind]

    return make


def decode_all(path: str | Path, stdin_path: Path | None = None, **kwargs: float) -> tuple[list[np.ndarray], int, int]:
    """Decode with ``open_audio`` (``stdin_path`` is fed on stdin as ``-``); return (blocks, rate, channels)."""
    if stdin_path is None:
        source = open_audio(str(path), **kwargs)
        try:
            return list(source.blocks()), source.rate, source.channels
        finally:
            source.close()
    with open(stdin_path, "rb") as stdin:
        source = open_audio("-", stdin=stdin, **kwargs)
        try:
            return list(source.blocks()), source.rate, source.channels
        finally:
            source.close()


def assert_blocks_shape(blocks: list[np.ndarray], channels: int) -> None:
    """Every block is a non-empty float32 ``(frames, channels)`` array."""
    assert blocks, "no blocks decoded"
    for block in blocks:
        assert block.dtype == np.float32
        assert block.ndim == 2 and block.shape[1] == channels and len(block) > 0


def assert_matches_ffmpeg(blocks: list[np.ndarray], rate: int, channels: int, path: Path) -> None:
    """Same rate, channels and length as ffmpeg's decode, and the samples agree within MAX_DIFF."""
    reference, ref_rate = ffmpeg_decode(path)
    assert_blocks_shape(blocks, channels)
    decoded = np.concatenate(blocks)
    assert (rate, channels) == (ref_rate, reference.shape[1])
    assert decoded.shape == reference.shape
    assert np.sqrt(np.mean(reference**2)) > 0.01, "the reference is silent: the comparison would prove nothing"
    assert np.max(np.abs(decoded - reference)) <= MAX_DIFF


@pytest.mark.parametrize("kind", FORMATS)
def test_format_decodes_like_ffmpeg(kind: str, encoded: Callable[[str], Path]) -> None:
    """Each container/codec decodes to exactly what ffmpeg decodes from the same file."""
    path = encoded(kind)
    blocks, rate, channels = decode_all(path)
    assert channels == 2
    assert_matches_ffmpeg(blocks, rate, channels, path)


@pytest.mark.parametrize("kind", FORMATS)
def test_declared_duration_is_close(kind: str, encoded: Callable[[str], Path]) -> None:
    """``duration`` (all these containers declare a length) is within 50 ms of the decoded length."""
    path = encoded(kind)
    source = open_audio(str(path))
    try:
        duration = source.duration
        decoded_seconds = sum(len(block) for block in source.blocks()) / source.rate
    finally:
        source.close()
    assert duration is not None
    assert duration == pytest.approx(decoded_seconds, abs=0.05)
    assert duration == pytest.approx(3.0, abs=0.05)  # the fixture is 3 s long


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050])
def test_short_low_rate_mp3_declares_what_it_decodes(rate: int, tmp_path: Path) -> None:
    """A 1 s MP3 at a telephone or TTS rate decodes in full and is not called truncated: ffmpeg's
    ``Duration`` counts the encoder delay the decoder trims (its ``start``, 0.14 s at 8 kHz) and
    whole frames of 576 samples at these rates (72 ms at 8 kHz), the last one's padding included."""
    path = tmp_path / "short.mp3"
    run("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-ar", str(rate), path)
    source = open_audio(str(path))
    try:
        blocks = list(source.blocks())
        duration = source.duration
    finally:
        source.close()
    assert_matches_ffmpeg(blocks, rate, 1, path)
    assert sum(len(block) for block in blocks) == rate
    assert duration is not None and 1.0 <= duration <= 1.0 + 576 / rate


def test_an_mpeg_ts_declares_its_span(tmp_path: Path) -> None:
    """An MPEG-TS starts 1.4 s into its timestamps; ffmpeg's ``Duration`` is the span already (no
    encoder delay in it to take off, as for an MP3), so the duration is the audio's length."""
    path = tmp_path / "audio.ts"
    run("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "mp2", "-f", "mpegts", path)
    source = open_audio(str(path))
    try:
        decoded_seconds = sum(len(block) for block in source.blocks()) / source.rate
        assert source.duration == pytest.approx(decoded_seconds, abs=0.05)
    finally:
        source.close()


def video_with_shorter_sound(path: Path) -> Path:
    """5 s of video with 2 s of sound: the container's ``Duration`` is the video's."""
    run("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=5:size=64x48:rate=10", "-f", "lavfi",
        "-i", "sine=duration=2", "-c:v", "mpeg4", "-c:a", "aac", path)
    return path


def m4a_sound_starting_late(path: Path) -> Path:
    """3 s of AAC whose timestamps begin 1.5 s in: the MP4's ``Duration`` is its end, 4.5 s."""
    plain = path.with_name("plain.m4a")
    run("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=3", "-c:a", "aac", plain)
    run("ffmpeg", "-v", "error", "-itsoffset", "1.5", "-i", plain, "-c", "copy", path)
    return path


@pytest.mark.parametrize("make", [video_with_shorter_sound, m4a_sound_starting_late],
                         ids=["video-longer-than-its-sound", "m4a-sound-starting-late"])
def test_intact_media_whose_duration_is_not_the_sounds_are_not_truncated(make: Callable[[Path], Path],
                                                                         tmp_path: Path) -> None:
    """ffmpeg's ``Duration`` is the container's: a longer video's, or the end of a sound that
    begins late. Neither file is truncated: every sample decodes, as ffmpeg decodes it, with no
    error (both were "truncated: the header declares 5.00 s / 4.50 s")."""
    path = make(tmp_path / "media.mp4")
    blocks, rate, channels = decode_all(path)
    assert_matches_ffmpeg(blocks, rate, channels, path)


@pytest.mark.parametrize("extra", [1, 417])
def test_an_mp3_with_zero_bytes_after_its_last_frame_is_whole(extra: int, tmp_path: Path) -> None:
    """Bytes after an MP3's last frame (a stray byte, a tool's padding) make ffmpeg log an error of
    its own, which no decoder message explains, once every frame has decoded: the file is whole,
    not "corrupt audio data" (garbage in the middle still is: tests/test_bad_input.py)."""
    path = tmp_path / "padded.mp3"
    run("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", path)
    path.write_bytes(path.read_bytes() + bytes(extra))
    blocks, rate, channels = decode_all(path)
    assert_matches_ffmpeg(blocks, rate, channels, path)


def test_a_tag_that_reads_like_a_duration_is_not_taken_for_one(tmp_path: Path) -> None:
    """ffmpeg prints tags before the real ``Duration`` line: a comment "Duration: 00:10:00.00"
    neither sets the length nor makes the file look truncated."""
    path = tmp_path / "tagged.mp3"
    run("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", "-metadata", "comment=Duration: 00:10:00.00",
        path)
    source = open_audio(str(path))
    try:
        blocks = list(source.blocks())
        assert source.duration == pytest.approx(1.0, abs=0.05)
    finally:
        source.close()
    assert sum(len(block) for block in blocks) == pytest.approx(44100, abs=100)


@pytest.mark.parametrize("kind", ["mp3", "m4a-aac", "wav-pcm16"])
def test_a_name_with_a_colon_is_a_file_name(kind: str, encoded: Callable[[str], Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """"take:1.mp3", given relative as users type it, is the file, not ffmpeg's protocol "take"."""
    (tmp_path / f"take:1{encoded(kind).suffix}").write_bytes(encoded(kind).read_bytes())
    monkeypatch.chdir(tmp_path)
    blocks, rate, channels = decode_all(f"take:1{encoded(kind).suffix}")
    assert_matches_ffmpeg(blocks, rate, channels, encoded(kind))


@pytest.mark.parametrize("data_size", [0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000, 0x7FFFFFF0])
def test_a_wav_file_with_a_streaming_writers_size_plays_in_full(data_size: int, tmp_path: Path) -> None:
    """A WAV saved from a stream keeps the writer's placeholder size (just under 2^31, or all
    ones): as a file it plays every sample, as it does from a pipe, and is not called truncated."""
    pcm = (tone(16_000, 0.5)[:, 0] * 32767).astype("<i2")
    path = tmp_path / "saved.wav"
    path.write_bytes(wav_header(rate=16_000, data_bytes=data_size) + pcm.tobytes())
    blocks, rate, channels = decode_all(path)
    assert (rate, channels) == (16_000, 1)
    np.testing.assert_array_equal(np.rint(np.concatenate(blocks)[:, 0] * 32768).astype(np.int16), pcm)


def test_adts_aac_whose_length_ffmpeg_guesses_decodes_in_full(speech: Path, tmp_path: Path) -> None:
    """A raw ADTS AAC stream declares no length: ffmpeg estimates one from the bitrate (for this
    sentence at 24 kbit/s, 4.95 s of 4.23), which is no sign of a truncated file."""
    path = tmp_path / "speech.aac"
    run("ffmpeg", "-v", "error", "-i", speech, "-c:a", "aac", "-b:a", "24k", path)
    blocks, rate, channels = decode_all(path)
    assert_matches_ffmpeg(blocks, rate, channels, path)


@pytest.mark.parametrize("via_stdin", [False, True], ids=["file", "stdin"])
@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("rate", [8000, 11025, 44100, 96000, 192000])
def test_rates_and_channels(rate: int, channels: int, via_stdin: bool, make_wav: Callable[..., Path]) -> None:
    """Every supported input rate and channel count decodes with that rate and channel count, in order."""
    path = make_wav(tone(rate, 0.3, channels=channels), rate)  # channel k at level 1/(k+1): order shows
    blocks, got_rate, got_channels = decode_all(path, stdin_path=path if via_stdin else None)
    assert (got_rate, got_channels) == (rate, channels)
    assert_matches_ffmpeg(blocks, got_rate, got_channels, path)


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twenty seconds of 48 kHz stereo noise and tone, made by sox."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    synth = ("synth", "20", "sine", "300", "whitenoise", "vol", "0.3")
    run("sox", "-n", "-r", "48000", "-c", "2", "-b", "16", path, *synth)
    return path


@pytest.mark.parametrize("via_stdin", [False, True], ids=["file", "stdin"])
def test_long_file_streams_in_blocks(via_stdin: bool, long_wav: Path) -> None:
    """A 20 s file arrives as many blocks of at most ``block_seconds``, never the whole file at once."""
    path = long_wav
    blocks, rate, channels = decode_all(path, stdin_path=path if via_stdin else None)
    assert_blocks_shape(blocks, channels)
    total = sum(len(block) for block in blocks)
    assert total >= 20 * rate
    assert len(blocks) >= 20  # 0.5 s blocks by default
    assert max(len(block) for block in blocks) <= round(0.5 * rate)
    assert_matches_ffmpeg(blocks, rate, channels, path)


@pytest.mark.parametrize("via_stdin", [False, True], ids=["file", "stdin"])
def test_block_seconds_is_honoured(via_stdin: bool, long_wav: Path) -> None:
    """``block_seconds`` bounds every block's length (and only the last may be shorter)."""
    blocks, rate, _channels = decode_all(long_wav, stdin_path=long_wav if via_stdin else None, block_seconds=0.1)
    sizes = [len(block) for block in blocks]
    assert max(sizes) == round(0.1 * rate)
    assert all(size == round(0.1 * rate) for size in sizes[:-1])
