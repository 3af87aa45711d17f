"""Byte streams: raw sample formats, streaming WAV headers, ``echo-streamer pipe`` with real pipes and FIFOs.

Raw formats are checked against ffmpeg's own decode of the same bytes. End to end, audio at 24 kHz
(the output rate, so the resampler passes it through untouched) makes the capture comparable bit
for bit; real espeak-ng output checks the usual 22050 Hz case.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import (arun, cli_command, frames_of, handles, killed_at_exit, locate, offline_env, read_events,
                      read_pcm, run, tone, wait_for_event, wav_header)
from hypothesis import given, settings
from hypothesis import strategies as st

from echo_streamer import Streamer, StreamerConfig
from echo_streamer.errors import InputError
from echo_streamer.sources.bytestream import open_byte_stream
from echo_streamer.sources.formats import RAW_FORMATS
from echo_streamer.sources.pipe import PipeReader
from echo_streamer.sources.rawpcm import SampleDecoder, decode_samples

RATE = 24000
Cli = Callable[..., subprocess.CompletedProcess[str]]


# -- helpers -------------------------------------------------------------------------------


def pcm16_tone(seconds: float, freq: float) -> np.ndarray:
    return np.rint(tone(RATE, seconds, freq)[:, 0] * 32767).astype("<i2")


def stopped_after(process: subprocess.Popen[bytes], events: Path, name: str, count: int = 1) -> bytes:
    """Wait for ``count`` events ``name``, then SIGTERM ``process`` and return its stderr once it exits."""
    wait_for_event(events, name, process, count=count)
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=10)[1]


def pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    start, index = 0, 0
    while start < len(data):
        size = max(1, sizes[index % len(sizes)]) if sizes else len(data)
        yield data[start:start + size]
        start += size
        index += 1


def decode_all(chunks: Iterator[bytes], name: str = "stream", **kwargs: object) -> tuple[np.ndarray, int, int]:
    source = open_byte_stream(chunks, name, **kwargs)  # type: ignore[arg-type]
    try:
        blocks = list(source.blocks())
    finally:
        source.close()
    return (np.concatenate(blocks) if blocks else np.zeros((0, source.channels), np.float32)), source.rate, \
        source.channels


# -- raw sample formats --------------------------------------------------------------------


@pytest.mark.parametrize("sample_format", sorted(RAW_FORMATS))
def test_raw_formats_decode_as_ffmpeg_decodes_them(sample_format: str, make_wav: Callable[..., Path],
                                                   tmp_path: Path) -> None:
    """ffmpeg encodes a tone with noise to each raw format; our decode of those bytes equals ffmpeg's."""
    rng = np.random.default_rng(7)
    samples = (tone(RATE, 0.2, 440.0)[:, 0] * 1.6 + rng.uniform(-0.2, 0.2, 4800)).clip(-1, 1).astype(np.float32)
    source = make_wav(samples, RATE, subtype="FLOAT")
    raw = run("ffmpeg", "-v", "error", "-i", source, "-f", sample_format, "-")
    reference = np.frombuffer(run("ffmpeg", "-v", "error", "-f", sample_format, "-ar", str(RATE), "-ac", "1",
                                  "-i", "-", "-f", "f32le", "-", stdin=raw), np.float32)
    ours = decode_samples(raw, sample_format)
    assert ours.dtype == np.float32 and len(ours) == len(reference) == 4800
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-7)


@settings(max_examples=60, deadline=None)
@given(sample_format=st.sampled_from(sorted(RAW_FORMATS)), channels=st.integers(1, 3),
       sizes=st.lists(st.integers(1, 40), min_size=1, max_size=10), extra=st.integers(0, 20))
def test_any_chunking_decodes_the_same(sample_format: str, channels: int, sizes: list[int], extra: int) -> None:
    """Odd byte counts anywhere: the blocks join up to the one-shot decode; a partial frame at the
    end stays pending (it is not a sample)."""
    frame_bytes = RAW_FORMATS[sample_format] * channels
    data = np.random.default_rng(len(sizes)).integers(0, 256, 30 * frame_bytes + extra % frame_bytes, np.uint8)
    data = data.tobytes()
    if sample_format.startswith("f"):  # random bytes make NaNs there; use real floats
        width = RAW_FORMATS[sample_format]
        values = np.linspace(-1, 1, 30 * channels).astype("<f4" if width == 4 else "<f8")
        data = values.tobytes() + data[:extra % frame_bytes]
    decoder = SampleDecoder("stream", sample_format, channels)
    blocks = [decoder.push(chunk) for chunk in pieces(data, sizes)]
    whole = len(data) // frame_bytes * frame_bytes
    np.testing.assert_array_equal(np.concatenate(blocks), decode_samples(data[:whole], sample_format).reshape(-1,
                                                                                                              channels))
    assert decoder.pending == len(data) - whole


# -- streaming WAV headers and the auto format ----------------------------------------------


@pytest.mark.parametrize("data_size", [0, 0xFFFFFFFF, 0x7FFFF000, 1000], ids=["zero", "all-ones", "espeak", "short"])
def test_wav_size_fields_are_not_trusted(data_size: int) -> None:
    """Streaming writers put placeholders (0, 0xFFFFFFFF, just under 2^31) or stale values in the
    size fields: the data runs to the end of the stream anyway, read one byte at a time here."""
    pcm = pcm16_tone(0.1, 440.0)
    stream = wav_header(rate=RATE, data_bytes=data_size) + pcm.tobytes()
    samples, rate, channels = decode_all(pieces(stream, [1]))
    assert (rate, channels) == (RATE, 1)
    np.testing.assert_array_equal(np.rint(samples[:, 0] * 32768).astype(np.int16), pcm)


@pytest.mark.parametrize("pad", [0, 1], ids=["even-data", "odd-data"])
def test_a_chunk_after_the_data_is_not_played(pad: int) -> None:
    """A WAV with its real data size and a LIST chunk after the data (as editors write them):
    the samples end with the data, the chunk is not played as a click. (A stale size with
    samples after it runs on: the test above.)"""
    pcm = pcm16_tone(0.1, 440.0).tobytes() + b"\x07" * pad
    tags = b"LIST" + struct.pack("<I", 26) + b"INFOISFT" + struct.pack("<I", 14) + b"Lavf60.16.100\0"
    stream = wav_header(rate=RATE, data_bytes=len(pcm)) + pcm + b"\0" * pad + tags
    samples, _rate, _channels = decode_all(pieces(stream, [7, 300]))
    np.testing.assert_array_equal(np.rint(samples[:, 0] * 32768).astype(np.int16), pcm16_tone(0.1, 440.0))


@pytest.mark.parametrize("pad", [0, 1], ids=["even-data", "odd-data"])
def test_wavs_back_to_back_with_chunks_after_their_data_all_play(pad: int) -> None:
    """WAVs of real sizes, each with a LIST chunk after its data (ffmpeg writes them so), sent
    one after another on one stream: every WAV's samples play, no chunk is heard, and a second
    chunk after the first is skipped too."""
    tags = b"LIST" + struct.pack("<I", 26) + b"INFOISFT" + struct.pack("<I", 14) + b"Lavf60.16.100\0"
    odd_chunk = b"junk" + struct.pack("<I", 3) + b"abc\0"
    tones = [pcm16_tone(0.1, freq) for freq in (440.0, 660.0, 880.0)]
    stream = b""
    for index, pcm in enumerate(tones):
        data = pcm.tobytes() + b"\x07" * pad
        stream += wav_header(rate=RATE, data_bytes=len(data)) + data + b"\0" * pad + tags
        stream += odd_chunk if index == 1 else b""
    samples, _rate, _channels = decode_all(pieces(stream, [7, 300]))
    # An odd-sized data chunk's stray byte is half a sample: dropped with its WAV.
    np.testing.assert_array_equal(np.rint(samples[:, 0] * 32768).astype(np.int16), np.concatenate(tones))


def test_a_stale_size_in_8_bit_audio_runs_on_past_letter_like_bytes() -> None:
    """u8 samples that happen to read as letters right where a stale data size ends (0x61-0x7A are
    ordinary samples there) are not taken for a chunk: its size field would be absurd."""
    first = np.full(1000, 0x90, np.uint8).tobytes()
    rest = b"abcd" + np.full(999, 0x80, np.uint8).tobytes()
    stream = wav_header(rate=RATE, bits=8, data_bytes=len(first)) + first + rest
    decoded, _rate, _channels = decode_all(pieces(stream, [7, 300]))
    assert len(decoded) == len(first) + len(rest)


@pytest.mark.parametrize("tag", [b"ID3\x03\x00\x00\x00\x00\x00\x0aTIT2", b"TAG" + b"\x00" * 125],
                         ids=["id3v2", "id3v1"])
def test_a_raw_id3_tag_after_the_data_is_not_played(tag: bytes) -> None:
    pcm = pcm16_tone(0.1, 440.0)
    stream = wav_header(rate=RATE, data_bytes=len(pcm.tobytes())) + pcm.tobytes() + tag
    samples, _rate, _channels = decode_all(pieces(stream, [7, 300]))
    np.testing.assert_array_equal(np.rint(samples[:, 0] * 32768).astype(np.int16), pcm)


@pytest.mark.parametrize("ending", [b"", b"\0", b"\0\0\0"], ids=["no-pad", "pad-byte", "debris"])
def test_an_odd_sized_8_bit_wav_ends_with_its_data(ending: bytes) -> None:
    """A u8 WAV with an odd sample count and its real size, ending in the pad byte the format asks
    for (or a few stray bytes): those bytes are not played (0x00 in u8 is a full-scale click)."""
    samples = np.full(1001, 0x90, np.uint8).tobytes()
    stream = wav_header(rate=RATE, bits=8, data_bytes=len(samples)) + samples + ending
    decoded, _rate, _channels = decode_all(pieces(stream, [7, 300]))
    assert len(decoded) == 1001 and np.all(decoded == np.float32(0x10 / 128))


def test_a_compressed_stream_that_fails_reports_its_own_error(make_wav: Callable[..., Path]) -> None:
    """An MP3 whose stream fails halfway (a read error, an upload lost): the decoder ends with that
    error, not with ffmpeg's view of a stream that just stopped, and no thread dies with a traceback."""
    mp3 = run("ffmpeg", "-v", "error", "-i", make_wav(tone(44100, 2.0), 44100), "-f", "mp3", "-")
    failed: list[BaseException] = []
    hook, threading.excepthook = threading.excepthook, lambda args: failed.append(args.exc_value)

    def chunks() -> Iterator[bytes]:
        yield from pieces(mp3[:len(mp3) // 2], [500])
        raise InputError("tts.mp3", "cannot read on: Input/output error")

    try:
        with pytest.raises(InputError, match="cannot read on: Input/output error"):
            decode_all(chunks(), "tts.mp3")
    finally:
        threading.excepthook = hook
    assert failed == []


@pytest.mark.parametrize("data_size", [0x7FFFF000, None], ids=["placeholder-sizes", "real-sizes"])
@pytest.mark.parametrize("sizes", [[1], [7, 300], [4096]], ids=["bytes", "odd-pieces", "whole"])
def test_wavs_sent_back_to_back_play_as_one_stream(data_size: int | None, sizes: list[int]) -> None:
    """Three WAVs in one stream (a TTS that writes one per sentence, its output sent on as it
    comes): the later headers are read, not played as a click, and every sample of each plays."""
    tones = [pcm16_tone(0.05, freq) for freq in (440.0, 660.0, 880.0)]
    stream = b"".join(wav_header(rate=RATE, data_bytes=len(pcm.tobytes()) if data_size is None else data_size)
                      + pcm.tobytes() for pcm in tones)
    samples, _rate, _channels = decode_all(pieces(stream, sizes))
    np.testing.assert_array_equal(np.rint(samples[:, 0] * 32768).astype(np.int16), np.concatenate(tones))


def test_real_espeak_stdout_twice_is_one_stream() -> None:
    first, second = run("espeak-ng", "--stdout", "One."), run("espeak-ng", "--stdout", "Two.")

    def data(wav: bytes) -> np.ndarray:
        start = wav.index(b"data") + 8
        return np.frombuffer(wav[start:start + (len(wav) - start) // 2 * 2], "<i2")

    samples, rate, _channels = decode_all(pieces(first + second, [4096]))
    assert rate == 22050
    np.testing.assert_array_equal(np.rint(samples[:, 0] * 32768).astype(np.int16),
                                  np.concatenate((data(first), data(second))))


def test_a_further_wav_of_another_format_is_an_error() -> None:
    stream = (wav_header(rate=RATE, data_bytes=0) + pcm16_tone(0.05, 440.0).tobytes()
              + wav_header(rate=16000, data_bytes=0) + bytes(320))
    with pytest.raises(InputError) as caught:
        decode_all(pieces(stream, [500]), "tts")
    assert str(caught.value) == ("tts: a further WAV in the stream is 16000 Hz, 1 channel(s), s16le, not 24000 Hz, "
                                 "1 channel(s), s16le: one format per stream")


def test_real_espeak_stdout_is_read_whole() -> None:
    """espeak-ng --stdout: a streaming WAV at 22050 Hz, decoded to the same samples as the file it writes."""
    streamed = run("espeak-ng", "--stdout", "Testing the pipe.")
    assert streamed[:4] == b"RIFF"
    samples, rate, _channels = decode_all(pieces(streamed, [4096]))
    data_start = streamed.index(b"data") + 8
    expected = np.frombuffer(streamed[data_start:data_start + (len(streamed) - data_start) // 2 * 2], "<i2")
    assert rate == 22050
    np.testing.assert_array_equal(np.rint(samples[:, 0] * 32768).astype(np.int16), expected)


def test_compressed_streams_go_through_ffmpeg(make_wav: Callable[..., Path]) -> None:
    """An MP3 arriving in small chunks decodes (through ffmpeg) to about its length."""
    mp3 = run("ffmpeg", "-v", "error", "-i", make_wav(tone(44100, 1.0), 44100), "-f", "mp3", "-")
    samples, rate, _channels = decode_all(pieces(mp3, [500]), "tts.mp3")
    assert rate == 44100 and abs(len(samples) / rate - 1.0) < 0.06


@pytest.mark.parametrize(("stream", "reason"), [
    (b"", "empty stream"),
    (b"this is not audio at all, just some text that a broken TTS wrote" * 20, "cannot decode"),
    (wav_header(rate=1, data_bytes=0) + bytes(100), "sample rate 1 Hz is outside"),
    # MP3 in a WAV goes to ffmpeg (which decodes a real one); these 100 zero bytes are no MP3.
    (wav_header(rate=RATE, data_bytes=0, tag=0x55) + bytes(100), "corrupt audio data"),
    (wav_header(rate=RATE, data_bytes=0, tag=0x1234) + bytes(100), "unsupported WAV sample format (tag 0x1234"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "stream ended inside the WAV header"),
], ids=["empty", "garbage", "absurd-rate", "mp3-in-wav-tag", "unknown-tag", "cut-header"])
def test_bad_streams_give_one_clear_error(stream: bytes, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        decode_all(pieces(stream, [7]), "tts-out")
    assert str(caught.value).startswith("tts-out: ") and reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unknown_wav_coding_is_reported_while_its_writer_still_writes() -> None:
    """ffmpeg gives up on the header while the writer is still busy (its feeding thread waits in the
    stream for more, the first 32 KiB in the pipe): the reason is still the unsupported format."""
    more = threading.Event()

    def writer() -> Iterator[bytes]:
        yield wav_header(rate=RATE, data_bytes=0, tag=0x1234) + bytes(32768)
        more.wait(10)

    try:
        with pytest.raises(InputError, match=r"^tts-out: unsupported WAV sample format \(tag 0x1234"):
            decode_all(writer(), "tts-out", streaming=True)
    finally:
        more.set()


def test_stream_bytes_checks_its_arguments() -> None:
    async def session() -> None:
        async with Streamer(StreamerConfig()) as streamer:
            with pytest.raises(ValueError, match="needs rate and channels"):
                streamer.stream_bytes([b""], sample_format="s16le")
            with pytest.raises(ValueError, match="sample_format must be"):
                streamer.stream_bytes([b""], sample_format="pcm", rate=RATE, channels=1)
            with pytest.raises(ValueError, match="with 'auto' they come from the stream"):
                streamer.stream_bytes([b""], rate=RATE)

    arun(session())


# -- utterances: WAVs back to back in one stream -------------------------------------------


def write_in_a_thread(write_end: int, data: bytes, sizes: list[int]) -> None:
    """Write ``data`` to the pipe ``write_end`` in pieces of ``sizes`` from a thread, then close it."""
    def write() -> None:
        with os.fdopen(write_end, "wb", buffering=0) as pipe:
            for piece in pieces(data, sizes):
                pipe.write(piece)

    threading.Thread(target=write, daemon=True).start()


def written_to_a_pipe(data: bytes, sizes: list[int], split_wav: bool = True) -> PipeReader:
    """A PipeReader over a real pipe that a thread fills with ``data`` in pieces of ``sizes``."""
    read_end, write_end = os.pipe()
    write_in_a_thread(write_end, data, sizes)
    return PipeReader(read_end, "pipe", split_wav)


def utterances(reader: PipeReader) -> list[bytes]:
    found = [b"".join(reader.utterance())]
    while reader.next_utterance():
        found.append(b"".join(reader.utterance()))
    assert reader.ended.is_set()
    reader.close()
    return found


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=8), count=st.integers(1, 4))
def test_wavs_back_to_back_are_one_utterance_each(sizes: list[int], count: int) -> None:
    """Streamed WAVs written one after another (a FIFO whose next writer opened before the last
    one's end was read; several commands into one pipe), read in any pieces, come apart again at
    their headers, byte for byte; a signature's start at the very end of a read waits for the rest."""
    wavs = [wav_header(rate=RATE, data_bytes=0xFFFFFFFF) + pcm16_tone(0.02 * (n + 1), 300.0 + 100 * n).tobytes() + b"RI"
            for n in range(count)]
    assert utterances(written_to_a_pipe(b"".join(wavs), sizes)) == wavs


def test_raw_streams_are_never_split() -> None:
    """Without split_wav (a raw format), bytes that look like a WAV header are just samples."""
    data = bytes(100) + wav_header(rate=RATE, data_bytes=0) + bytes(100)
    assert utterances(written_to_a_pipe(data, [33], split_wav=False)) == [data]


def test_opening_a_fifo_finds_what_a_writer_left_while_no_one_was_opening_it(tmp_path: Path) -> None:
    """With --follow, the previous reader is still open when a quick writer comes, writes and
    goes; the next open must not wait for a writer after it (which may never come)."""
    fifo = tmp_path / "say"
    os.mkfifo(fifo)
    previous = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the reader of the writer before
    with open(fifo, "wb") as writer:
        writer.write(b"left behind")
    opened: list[PipeReader] = []
    opener = threading.Thread(target=lambda: opened.append(PipeReader.open(str(fifo))), daemon=True)
    opener.start()
    opener.join(2)
    os.close(previous)
    assert opened, "the open waited for another writer"
    assert utterances(opened[0]) == [b"left behind"]


@pytest.mark.parametrize("replaced", [False, True], ids=["removed", "replaced"])
def test_a_fifo_removed_while_waiting_for_its_writer_is_one_clear_error(replaced: bool, tmp_path: Path) -> None:
    """--follow waits for the FIFO's next writer: the FIFO removed (or replaced by a new one, which
    its writers then open) meanwhile ends the wait with an error naming it, not a wait for ever;
    nothing is left blocked behind."""
    fifo = tmp_path / "say"
    os.mkfifo(fifo)
    before = set(threading.enumerate())
    failure: list[BaseException] = []
    opener = threading.Thread(target=lambda: failure.append(pytest.raises(InputError, PipeReader.open, str(fifo),
                                                                          fifo=True).value), daemon=True)
    opener.start()
    time.sleep(0.3)
    fifo.unlink()
    if replaced:
        os.mkfifo(fifo)
    opener.join(2)
    assert failure and str(failure[0]) == f"{fifo}: removed or replaced while waiting for a writer"
    time.sleep(0.2)
    assert not [thread for thread in set(threading.enumerate()) - before if thread.name == "echo-streamer-fifo-open"]


def test_discarding_an_utterance_stops_at_the_next_header() -> None:
    """After a cut, the rest of the current utterance is dropped, the next one is kept whole, and a
    late read for the dropped utterance gets nothing from the next: also one whose reading had
    not begun yet (a segment dropped before its decoder's first read)."""
    first, second = (wav_header(rate=RATE, data_bytes=0) + pcm16_tone(0.05, freq).tobytes() for freq in (330.0, 550.0))
    read_end, write_end = os.pipe()
    os.write(write_end, first[:100])
    reader = PipeReader(read_end, "pipe", split_wav=True)
    stale, unread = reader.utterance(), reader.utterance()
    assert next(stale) == first[:100]
    write_in_a_thread(write_end, first[100:] + second, [])
    reader.discard_utterance()
    assert reader.utterance_over.is_set() and reader.next_utterance()
    assert list(stale) == [] and list(unread) == []
    assert b"".join(reader.utterance()) == second


# -- echo-streamer pipe ----------------------------------------------------------------------


def test_espeak_stdout_pipe_as_in_the_readme(tmp_path: Path) -> None:
    """`espeak-ng --stdout "Hello there" | echo-streamer pipe`: exit 0, one segment of the right
    length, its audio in the capture."""
    events, capture = tmp_path / "events.jsonl", tmp_path / "capture.wav"
    command = f"espeak-ng --stdout 'Hello there' | {sys.executable} -m echo_streamer pipe --events {events} " \
              f"--capture {capture}"
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60, env=offline_env())
    assert result.returncode == 0, result.stderr
    logged = read_events(events)
    finished = [e for e in logged if e["event"] == "item_finished"]
    assert len(finished) == 1 and finished[0]["item"] == "-" and finished[0]["interrupted"] is False
    speech_ms = 1000 * len(run("espeak-ng", "--stdout", "Hello there")[44:]) / 2 / 22050
    assert abs(finished[0]["position_ms"] - speech_ms) < 30
    assert np.abs(read_pcm(capture)).max() > 3000


def test_wavs_one_after_another_into_a_pipe_as_in_the_readme(tmp_path: Path) -> None:
    """`(espeak-ng --stdout "One."; espeak-ng --stdout "Two.") | echo-streamer pipe`: two segments,
    each as long as its speech, the second header not played as audio."""
    events = tmp_path / "events.jsonl"
    command = f'(espeak-ng --stdout "One."; espeak-ng --stdout "Two.") | {sys.executable} -m echo_streamer pipe ' \
              f'--events {events}'
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60, env=offline_env())
    assert result.returncode == 0, result.stderr
    finished = [e for e in read_events(events) if e["event"] == "item_finished"]
    assert [e["interrupted"] for e in finished] == [False, False]
    for event, text in zip(finished, ["One.", "Two."], strict=True):
        speech_ms = 1000 * len(run("espeak-ng", "--stdout", text)[44:]) / 2 / 22050
        assert abs(event["position_ms"] - speech_ms) < 15


def slow_writer(data: bytes, path: Path, sizes: list[int], stall_after: int, stall_s: float,
                chunk_s: float, events: Path) -> subprocess.Popen[bytes]:
    """A subprocess writing ``data`` to its stdout pipe in pieces of ``sizes`` (cycled), one every
    ``chunk_s`` seconds, stalling ``stall_s`` before piece ``stall_after`` (-1: never). It starts
    once ``events`` reports stream_started, so that nothing piles up in the pipe before."""
    path.write_bytes(data)
    script = (
        "import os, sys, time\n"
        f"while not (os.path.exists({str(events)!r}) and 'stream_started' in open({str(events)!r}).read()):\n"
        "    time.sleep(0.01)\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        f"sizes, start, index = {sizes!r}, 0, 0\n"
        "while start < len(data):\n"
        f"    if index == {stall_after}: time.sleep({stall_s})\n"
        "    size = sizes[index % len(sizes)]\n"
        "    sys.stdout.buffer.write(data[start:start + size]); sys.stdout.buffer.flush()\n"
        "    start, index = start + size, index + 1\n"
        f"    time.sleep({chunk_s})\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)


def test_a_slow_raw_writer_with_a_stall_streams_in_order(tmp_path: Path) -> None:
    """Raw s16le at 24 kHz written in 20 ms pieces as it is made, with odd byte counts and a 300 ms
    stall: every sample reaches the SDK in order (silence filling the stall, one underrun event),
    and the segment ends when the writer closes."""
    pcm = pcm16_tone(1.0, 440.0).tobytes() + b"\x01"  # a partial final sample
    events, capture = tmp_path / "events.jsonl", tmp_path / "capture.wav"
    # 20 ms of audio every 15 ms: a little faster than real time, as TTS engines write.
    writer = slow_writer(pcm, tmp_path / "tone.raw", [961, 959], 20, 0.3, 0.015, events)
    result = subprocess.run(cli_command("pipe", "--format", "s16le", "--input-rate", RATE, "--events", events,
                                         "--capture", capture), stdin=writer.stdout, capture_output=True, text=True,
                            timeout=60, env=offline_env())
    writer.wait()
    assert result.returncode == 0, result.stderr
    logged = read_events(events)
    assert [e["event"] for e in logged].count("underrun") == 1
    finished = next(e for e in logged if e["event"] == "item_finished")
    assert finished["samples"] == RATE and finished["interrupted"] is False
    played = read_pcm(capture)
    audio = played[played != 0]
    np.testing.assert_array_equal(audio, pcm16_tone(1.0, 440.0)[pcm16_tone(1.0, 440.0) != 0])
    span = np.flatnonzero(played)
    # The writer is at most 100 ms ahead when it stalls for 300 ms: at least 200 ms of silence.
    assert (span[-1] - span[0]) / RATE > 1.15, "the stall did not show as silence inside the segment"


@pytest.mark.parametrize(("raw", "pause_s", "input_rate", "seconds"),
                         [(False, 0.5, RATE, 0.3), (False, 0.0, RATE, 0.3), (True, 0.05, RATE, 0.3),
                          (True, 0.05, 8000, 1.5)],
                         ids=["wav-writers-apart", "wav-back-to-back", "raw-writers-50-ms-apart",
                              "raw-writers-done-long-before-they-play"])
def test_fifo_follow_makes_one_segment_per_writer(raw: bool, pause_s: float, input_rate: int, seconds: float,
                                                  tmp_path: Path) -> None:
    """--follow on a named FIFO: three writers in turn give three segments, in order (bit-exact,
    with at least --gap-ms of silence between them, where nothing is resampled). Streaming WAVs
    also when each writer opens the FIFO before the last one's end has been read (all three are
    in the pipe at once), where a new WAV header is what tells them apart; raw writers (no
    header) when each opens the FIFO 50 ms after the last one closed, while its audio still
    plays (a shell loop running a TTS per sentence), where the writer's end is what tells them
    apart: also when each is done long before its audio has played (1.5 s at 8 kHz sits whole in
    the FIFO), the writers after it opening the FIFO meanwhile (before, the second and third were
    read as one)."""
    fifo = tmp_path / "say"
    os.mkfifo(fifo)
    events, capture = tmp_path / "events.jsonl", tmp_path / "capture.wav"
    tones = [np.rint(tone(input_rate, seconds, freq)[:, 0] * 32767).astype("<i2") for freq in (330.0, 550.0, 770.0)]
    raw_args = ["--format", "s16le", "--input-rate", input_rate] if raw else []
    process = subprocess.Popen(cli_command("pipe", "--input", fifo, "--follow", *raw_args, "--gap-ms", 200,
                                           "--events", events, "--capture", capture),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=offline_env())
    with killed_at_exit(process):
        for pcm in tones:
            with open(fifo, "wb") as writer:
                writer.write((b"" if raw else wav_header(rate=input_rate, data_bytes=0xFFFFFFFF)) + pcm.tobytes())
            time.sleep(pause_s)
        stderr = stopped_after(process, events, "item_finished", count=3)
    assert process.returncode == 0, stderr
    finished = [e for e in read_events(events) if e["event"] == "item_finished"]
    assert [(e["item"], e["samples"]) for e in finished] == [(str(fifo), len(pcm) * RATE // input_rate)
                                                             for pcm in tones], finished
    if input_rate == RATE:  # bit-exact, and the gaps measured, where nothing is resampled
        starts = locate(read_pcm(capture), tones, 240)
        for earlier, later, pcm in zip(starts, starts[1:], tones, strict=False):
            assert later - (earlier + len(pcm)) >= 200 * RATE // 1000


def test_an_interrupt_drops_the_writers_that_came_before_it(tmp_path: Path) -> None:
    """A TTS process per sentence has written four sentences into the followed FIFO (the last
    ones waiting for their turn) when SIGUSR1 comes during the first: the first is cut, none of
    the others plays, and a writer that comes after the interrupt (the reply) plays whole."""
    fifo = tmp_path / "say"
    os.mkfifo(fifo)
    events = tmp_path / "events.jsonl"
    sentences = [wav_header(rate=RATE, data_bytes=0xFFFFFFFF) + pcm16_tone(seconds, 440.0).tobytes()
                 for seconds in (2.0, 0.4, 0.4, 0.4)]
    reply = pcm16_tone(0.5, 660.0)
    process = subprocess.Popen(cli_command("pipe", "--input", fifo, "--follow", "--gap-ms", 100, "--events", events),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=offline_env())

    def tts() -> None:
        for sentence in sentences:
            with open(fifo, "wb") as writer:
                writer.write(sentence)
            time.sleep(0.05)

    writers = threading.Thread(target=tts)
    with killed_at_exit(process):
        writers.start()
        wait_for_event(events, "item_started", process)
        time.sleep(0.6)  # the four are written by now: all but the first wait for their turn
        process.send_signal(signal.SIGUSR1)
        wait_for_event(events, "interrupt_done", process)
        writers.join(10)
        assert not writers.is_alive(), "a writer was left blocked"
        with open(fifo, "wb") as writer:
            writer.write(wav_header(rate=RATE, data_bytes=0xFFFFFFFF) + reply.tobytes())
        stderr = stopped_after(process, events, "item_finished", count=2)
    assert process.returncode == 0, stderr
    finished = [e for e in read_events(events) if e["event"] == "item_finished"]
    assert [(e["interrupted"], e["samples"] if not e["interrupted"] else None) for e in finished] == [
        (True, None), (False, len(reply))], finished


def test_an_interrupt_drops_the_wavs_one_writer_sent_before_it(tmp_path: Path) -> None:
    """One writer on standard input sends three WAVs at once (a TTS ahead of playout), and one
    more after SIGUSR1 comes during the first: the first is cut, the two that came before the
    interrupt never play, the one that came after it (the reply) plays whole."""
    events = tmp_path / "events.jsonl"
    process = subprocess.Popen(cli_command("pipe", "--gap-ms", 100, "--events", events), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=offline_env())
    assert process.stdin is not None
    reply = pcm16_tone(0.5, 660.0)
    with killed_at_exit(process):
        for seconds in (2.0, 0.4, 0.4):
            process.stdin.write(wav_header(rate=RATE, data_bytes=0xFFFFFFFF) + pcm16_tone(seconds, 440.0).tobytes())
        process.stdin.flush()
        wait_for_event(events, "item_started", process)
        time.sleep(0.5)
        process.send_signal(signal.SIGUSR1)
        wait_for_event(events, "interrupt_done", process)
        process.stdin.write(wav_header(rate=RATE, data_bytes=0xFFFFFFFF) + reply.tobytes())
        process.stdin.close()
        process.wait(timeout=20)
    assert process.stderr is not None
    assert process.returncode == 0, process.stderr.read()
    finished = [e for e in read_events(events) if e["event"] == "item_finished"]
    assert [(e["interrupted"], e["samples"] if not e["interrupted"] else None) for e in finished] == [
        (True, None), (False, len(reply))], finished


def test_hard_interrupt_drops_the_rest_of_what_the_writer_sends(tmp_path: Path) -> None:
    """SIGUSR1 while a writer is still sending: the audio fades out, nothing it sends later is
    played, the writer is never blocked (it finishes), and pipe exits 0 once the writer closes."""
    events, capture = tmp_path / "events.jsonl", tmp_path / "capture.wav"
    writer = slow_writer(pcm16_tone(3.0, 440.0).tobytes(), tmp_path / "tone.raw", [960], -1, 0, 0.015, events)
    process = subprocess.Popen(cli_command("pipe", "--format", "s16le", "--input-rate", RATE, "--events", events,
                                            "--capture", capture), stdin=writer.stdout, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=offline_env())
    assert writer.stdout is not None
    writer.stdout.close()
    with killed_at_exit(process, writer):
        wait_for_event(events, "item_started", process)
        time.sleep(0.5)
        process.send_signal(signal.SIGUSR1)
        _stdout, stderr = process.communicate(timeout=20)
        writer.wait(timeout=10)
    assert process.returncode == 0, stderr
    assert writer.returncode == 0
    done = next(e for e in read_events(events) if e["event"] == "interrupt_done")
    assert done["cut"] == "now" and 400 <= done["position_ms"] < 2000
    frames = frames_of(read_pcm(capture), 240)
    audible = np.flatnonzero(frames.any(axis=1))
    assert len(audible) * 10 == pytest.approx(done["position_ms"], abs=10)



def test_an_interrupt_while_pipe_starts_cuts_nothing(tmp_path: Path) -> None:
    """SIGUSR1 while pipe is still starting (held up here opening an --events FIFO) is carried out
    before its first segment: it finds nothing to cut, and what standard input brings plays whole
    (unlike play, whose held interrupt cuts the files it was given)."""
    fifo, capture, source = tmp_path / "events.fifo", tmp_path / "capture.wav", tmp_path / "tone.wav"
    os.mkfifo(fifo)
    sent = pcm16_tone(0.3, 440.0)
    source.write_bytes(wav_header(rate=RATE, data_bytes=sent.nbytes) + sent.tobytes())
    with open(source, "rb") as stdin:
        process = subprocess.Popen(cli_command("pipe", "--events", fifo, "--capture", capture), stdin=stdin,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=offline_env())
    with killed_at_exit(process):
        while not handles(process.pid, signal.SIGUSR1):
            time.sleep(0.01)
        process.send_signal(signal.SIGUSR1)
        with open(fifo, encoding="utf-8") as feed:  # the start goes on once the events file opens
            logged = [json.loads(line) for line in feed]
        _stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    names = [event["event"] for event in logged]
    assert names.index("interrupt_done") < names.index("item_started"), names
    done = logged[names.index("interrupt_done")]
    assert done["cut"] is None and done["dropped"] == [], done
    assert logged[names.index("item_finished")]["interrupted"] is False
    played = read_pcm(capture)
    np.testing.assert_array_equal(played[played != 0], sent[sent != 0])


def test_interrupt_before_the_first_bytes_cancels_that_writers_utterance(tmp_path: Path) -> None:
    """Barge-in during a TTS engine's first-byte latency: with --follow, a writer has opened the
    FIFO (its segment is current) but sent nothing yet when SIGUSR1 comes. Nothing was playing,
    so nothing is cut (cut: null), but that utterance is cancelled: dropped, and what the writer
    then sends is never played. The next writer plays as usual."""
    fifo = tmp_path / "say"
    os.mkfifo(fifo)
    events, capture = tmp_path / "events.jsonl", tmp_path / "capture.wav"
    cancelled, next_one = pcm16_tone(0.3, 330.0), pcm16_tone(0.3, 550.0)
    process = subprocess.Popen(cli_command("pipe", "--input", fifo, "--follow", "--events", events,
                                            "--capture", capture), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=offline_env())
    with killed_at_exit(process):
        wait_for_event(events, "stream_started", process)
        with open(fifo, "wb") as writer:
            time.sleep(0.3)
            process.send_signal(signal.SIGUSR1)
            wait_for_event(events, "interrupt_done", process)
            writer.write(wav_header(rate=RATE, data_bytes=0xFFFFFFFF) + cancelled.tobytes())
        with open(fifo, "wb") as writer:
            writer.write(wav_header(rate=RATE, data_bytes=0xFFFFFFFF) + next_one.tobytes())
        stderr = stopped_after(process, events, "item_finished")
    assert process.returncode == 0, stderr
    recorded = read_events(events)
    (requested,) = [e for e in recorded if e["event"] == "interrupt_requested"]
    (done,) = [e for e in recorded if e["event"] == "interrupt_done"]
    assert requested["id"] == "seg-1" and requested["position_ms"] == 0, requested
    assert done["cut"] is None and done["noop"] is False and done["dropped"] == ["seg-1"], done
    assert [e["id"] for e in recorded if e["event"] == "item_dropped"] == ["seg-1"]
    assert [e["id"] for e in recorded if e["event"] == "item_finished"] == ["seg-2"]
    played = read_pcm(capture)
    audible = played[played != 0]
    np.testing.assert_array_equal(audible, next_one[next_one != 0])


@pytest.mark.parametrize(("args", "stdin", "complaint"), [
    ((), b"garbage that is not audio, not even close" * 50, "-: cannot decode"),
    (("--format", "f32le", "--input-rate", "24000"), np.full(4800, np.nan, "<f4").tobytes(), "-: "),
    ((), b"", "-: empty stream"),
    (("--format", "s16le", "--input-rate", "22050"), b"", "-: empty stream: not one whole sample"),
    (("--format", "s16le", "--input-rate", "22050"), b"a", "-: empty stream: not one whole sample"),
    ((), wav_header(rate=RATE, data_bytes=0), "-: empty stream: not one whole sample"),
], ids=["garbage", "nan-floats", "empty", "raw-empty", "raw-one-byte", "wav-header-alone"])
def test_bad_pipe_input_is_one_line_and_exit_1(args: tuple[str, ...], stdin: bytes, complaint: str,
                                               cli: Cli) -> None:
    result = cli("pipe", *args, stdin=stdin, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if "offline" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"echo-streamer: {complaint}"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "complaint"), [
    (("--format", "s16le"), "--format s16le needs --input-rate"),
    (("--follow",), "--follow needs --input PATH"),
    (("--input", "/dev/null", "--follow"), "/dev/null: --follow needs a named FIFO (mkfifo), not a device"),
    (("--input-rate", "22050"), "--input-rate and --channels describe raw input"),
    (("--channels", "2"), "--input-rate and --channels describe raw input"),
], ids=["raw-without-rate", "follow-stdin", "follow-a-device", "auto-with-rate", "auto-with-channels"])
def test_pipe_option_errors(args: tuple[str, ...], complaint: str, cli: Cli) -> None:
    result = cli("pipe", *args, stdin=b"")
    assert result.returncode == 2 and complaint in result.stderr


@pytest.mark.parametrize(("path", "complaint"), [
    ("/nonexistent/fifo", "/nonexistent/fifo: cannot open it: No such file or directory"),
    ("/", "/: is a directory"),
], ids=["missing", "directory"])
def test_an_input_that_cannot_be_read_is_one_line_and_exit_1(path: str, complaint: str, cli: Cli) -> None:
    """As for play's files (and for --follow's FIFO gone between two writers): bad input, not a usage error."""
    result = cli("pipe", "--input", path, stdin=b"")
    assert (result.returncode, result.stderr) == (1, f"echo-streamer: {complaint}\n")


@pytest.mark.parametrize("command", [["pipe"], ["play", "-"], ["render", "-", "-o", "out.wav"]],
                         ids=["pipe", "play", "render"])
def test_a_terminal_on_standard_input_is_one_line_and_exit_1(command: list[str], tmp_path: Path) -> None:
    """Run by hand with nothing piped in, each command that reads standard input would wait on the
    keyboard (and hand what is typed to ffmpeg): it says what it needs instead."""
    import pty

    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(cli_command(*command), stdin=terminal, capture_output=True, text=True,
                                env=offline_env(), timeout=30, cwd=tmp_path)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("echo-streamer: -: standard input is a terminal: pipe audio in (") and \
        result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out.wav").exists()


def test_follow_refuses_a_regular_file(cli: Cli, tmp_path: Path) -> None:
    regular = tmp_path / "file.raw"
    regular.write_bytes(b"\x00" * 100)
    result = cli("pipe", "--input", regular, "--follow")
    assert result.returncode == 2 and "needs a named FIFO" in result.stderr


def test_follow_refuses_an_anonymous_pipe(cli: Cli) -> None:
    """/dev/stdin on a shell's pipe is a FIFO too, but one that, once its writer is gone, is at
    its end however often it is reopened: --follow on it would spin."""
    result = cli("pipe", "--input", "/dev/stdin", "--follow", stdin=b"\0" * 100, timeout=30)
    assert result.returncode == 2 and "not an anonymous pipe" in result.stderr, result.stderr


def test_opening_what_is_no_fifo_any_more_is_one_clear_error(tmp_path: Path) -> None:
    """--follow reopens its FIFO for each writer: one removed, or replaced by a regular file (which
    would be replayed for ever), between two writers is an error naming it."""
    path = tmp_path / "say"
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: cannot open it: No such file or directory$"):
        PipeReader.open(str(path), fifo=True)
    path.write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: is no longer a named FIFO$"):
        PipeReader.open(str(path), fifo=True)
    reader = PipeReader.open(str(path))  # without --follow a regular file is read once
    try:
        assert b"".join(reader.utterance()) == b"\0" * 100
    finally:
        reader.close()


def test_closed_standard_input_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(["bash", "-c", 'exec "$@" <&-', "-", *map(str, cli_command("pipe"))],
                            capture_output=True, text=True, env=offline_env(), timeout=60)
    lines = [line for line in result.stderr.splitlines() if "offline" not in line]
    assert result.returncode == 1 and lines == ["echo-streamer: -: standard input is closed"], result.stderr


def test_a_non_blocking_standard_input_is_read_as_it_comes(tmp_path: Path) -> None:
    """A writer that set O_NONBLOCK on the pipe it hands over (the flag is shared): the first
    empty read is no end of the stream."""
    events = tmp_path / "events.jsonl"
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    process = subprocess.Popen(cli_command("pipe", "--format", "s16le", "--input-rate", RATE, "--events", events),
                               stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=offline_env())
    os.close(read_end)
    with os.fdopen(write_end, "wb") as writer:
        time.sleep(0.5)
        writer.write(pcm16_tone(0.2, 440.0).tobytes())
    _stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert [e["samples"] for e in read_events(events) if e["event"] == "item_finished"] == [4800]


def test_raw_22050_s16le_pipe_as_in_the_readme(tmp_path: Path) -> None:
    """The README's raw example: espeak-ng's speech converted by sox to headerless 22050 Hz s16le
    (the shape piper --output-raw writes) and piped in: exit 0, one segment of the right length."""
    events = tmp_path / "events.jsonl"
    command = (f"espeak-ng --stdout 'Hello there' | sox -t wav - -t raw -e signed -b 16 - | "
               f"{sys.executable} -m echo_streamer pipe --format s16le --input-rate 22050 --events {events}")
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60, env=offline_env())
    assert result.returncode == 0, result.stderr
    finished = [e for e in read_events(events) if e["event"] == "item_finished"]
    speech_ms = 1000 * len(run("espeak-ng", "--stdout", "Hello there")[44:]) / 2 / 22050
    assert len(finished) == 1 and abs(finished[0]["position_ms"] - speech_ms) < 30


def test_start_ms_holds_a_segment_until_enough_is_ready(tmp_path: Path) -> None:
    """--start-ms 60: the first frame goes to the SDK only once 60 ms of the stream are there, so
    a writer that trickles 20 ms pieces gets no underrun at the start; an utterance shorter than
    that still plays once the writer closes."""
    events = tmp_path / "events.jsonl"
    writer = slow_writer(pcm16_tone(0.4, 440.0).tobytes(), tmp_path / "tone.raw", [960], -1, 0, 0.02, events)
    result = subprocess.run(cli_command("pipe", "--format", "s16le", "--input-rate", RATE, "--start-ms", 60, "--events",
                                         events), stdin=writer.stdout, capture_output=True, text=True, timeout=60,
                            env=offline_env())
    writer.wait()
    assert result.returncode == 0, result.stderr
    logged = read_events(events)
    assert "underrun" not in [e["event"] for e in logged]
    short = run(sys.executable, "-m", "echo_streamer", "pipe", "--format", "s16le", "--input-rate", str(RATE),
                "--start-ms", "500", "--events", tmp_path / "short.jsonl", stdin=pcm16_tone(0.05, 440.0).tobytes())
    assert short == b""
    finished = [e for e in read_events(tmp_path / "short.jsonl") if e["event"] == "item_finished"]
    assert len(finished) == 1 and finished[0]["position_ms"] == 50.0


@pytest.mark.parametrize(("container", "codec"), [("mp3", "libmp3lame"), ("ogg", "libopus"), ("ogg", "libvorbis"),
                                                  ("flac", "flac"), ("adts", "aac"), ("webm", "libopus"),
                                                  ("avi", "pcm_s16le")])
def test_compressed_pipes_decode_through_ffmpeg(container: str, codec: str, cli: Cli, tmp_path: Path) -> None:
    """`--format auto` hands what is not a WAV to a streaming ffmpeg decoder: one segment of the
    stream's length, whatever the container (AVI too, a RIFF file that is not WAVE)."""
    events = tmp_path / "events.jsonl"
    encoded = run("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=1", "-ar", "48000", "-c:a", codec,
                  "-f", container, "-")
    result = cli("pipe", "--events", events, stdin=encoded, timeout=60)
    assert result.returncode == 0, result.stderr
    finished = [e for e in read_events(events) if e["event"] == "item_finished"]
    assert len(finished) == 1 and abs(finished[0]["position_ms"] - 1000) < 60
