"""Audio that arrives as bytes over time (a pipe, a FIFO, an HTTP upload), decoded as it comes."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import InputError
from .base import AudioSource, check_format, checked
from .ffmpeg import FfmpegSource
from .formats import AUTO, RAW_FORMATS
from .rawpcm import SampleDecoder
from .wavheader import (SIGNATURE_SIZE, UnsupportedWavFormat, find_wav_signature, read_wav_header,
                        starts_with_wav_signature)

# What a RIFF chunk's id looks like (LIST, id3 , bext, _PMX, ...): four letters, digits,
# underscores or spaces, not all spaces.
_RIFF_CHUNK_ID = re.compile(rb"(?! {4})[A-Za-z0-9_ ]{4}")
# ...and its size: tags, even with a cover picture, stay under this; four audio bytes read as a
# size are almost always over it (8-bit audio's quiet bytes are 0x7F-0x80, or 0xFF in mu-law).
_MAX_TAG_CHUNK = 16 << 20
# ID3 tags that some tools append raw, not in a chunk.
_RAW_TAGS = (b"ID3", b"TAG")
# ffmpeg's output for a compressed stream: small blocks, so audio moves on as soon as it is decoded.
_FFMPEG_BLOCK_SECONDS = 0.02


class ChunkReader:
    """Reads an iterable of byte chunks: exact reads for headers, then the rest as it arrives."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._source = chunks
        self._chunks = iter(chunks)
        self._buffer = b""

    def peek(self, size: int) -> bytes:
        """Up to ``size`` bytes without consuming them (fewer only at the end of the stream)."""
        if len(self._buffer) < size:
            # Joined once: a header chunk to skip (up to 1 MiB) may come a few bytes at a time.
            parts, have = [self._buffer], len(self._buffer)
            while have < size and (chunk := next(self._chunks, None)) is not None:
                parts.append(chunk)
                have += len(chunk)
            self._buffer = b"".join(parts)
        return self._buffer[:size]

    def read(self, size: int) -> bytes:
        data = self.peek(size)
        self._buffer = self._buffer[len(data):]
        return data

    def next_chunk(self) -> bytes | None:
        """The next bytes: what :meth:`peek` or :meth:`unread` left, else the next chunk as soon as
        it arrives; None at the end of the stream."""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        return next(self._chunks, None)

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what is still to be read."""
        self._buffer = data + self._buffer

    def __iter__(self) -> Iterator[bytes]:
        """The remaining bytes, each chunk as soon as it arrives."""
        while (chunk := self.next_chunk()) is not None:
            yield chunk

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


class RawStreamSource:
    """Raw samples (or a WAV's data chunk) from a :class:`ChunkReader`, one block per chunk received.

    Never reads ahead: a block is yielded as soon as its bytes arrive, which is what keeps a pipe's
    latency low. A partial sample left at the end of the stream is dropped. ``data_bytes`` is a
    WAV's data size where it is not a placeholder: when a RIFF chunk (LIST, id3, ...), a raw ID3
    tag or the end of the stream follows that many bytes (and a pad byte), the samples end there;
    otherwise the size was stale and they run on. With ``wav=True`` (the samples are a WAV's),
    another WAV may follow (a TTS that writes one per sentence, sent back to back), right after
    the data or after its chunks: its header is read, not played, and its samples go on in the
    same stream if its format is the same, else :class:`InputError`.
    With ``block_seconds``, for a stream read as fast as it can be, blocks are that long instead
    (the last, and one before a further WAV's header, shorter).
    """

    duration: float | None = None

    def __init__(self, reader: ChunkReader, name: str, sample_format: str, rate: int, channels: int,
                 data_bytes: int | None = None, *, wav: bool = False, block_seconds: float | None = None) -> None:
        check_format(name, rate, channels)
        self._block_bytes = None if block_seconds is None else (
            max(1, round(block_seconds * rate)) * RAW_FORMATS[sample_format] * channels)
        self._data_left = data_bytes
        self._pad = (data_bytes or 0) & 1  # a chunk after odd-sized data starts a byte later
        self._wav = wav
        self._header_next = False
        self.name = name
        self.rate = rate
        self.channels = channels
        self._reader = reader
        self._decoder = SampleDecoder(name, sample_format, channels)

    def blocks(self) -> Iterator[np.ndarray]:
        """Decoded blocks as their bytes arrive; raises :class:`InputError` at the end when not one
        whole sample came (an empty stream, a header alone, a stray byte)."""
        samples = 0
        for block in self._decoded():
            samples += len(block)
            yield block
        if not samples:
            raise InputError(self.name, "empty stream: not one whole sample in it")

    def _decoded(self) -> Iterator[np.ndarray]:
        while (chunk := self._next_chunk()) is not None:
            if self._wav and self._data_left is None:  # a real data size ends the samples itself, below
                chunk = self._up_to_next_wav(chunk)
            at_data_end = self._data_left is not None and len(chunk) >= self._data_left
            if at_data_end:
                assert self._data_left is not None
                self._reader.unread(chunk[self._data_left:])
                chunk, self._data_left = chunk[:self._data_left], None
            elif self._data_left is not None:
                self._data_left -= len(chunk)
            block = self._decoder.push(chunk)
            if len(block):
                yield block
            if self._header_next:
                self._read_next_header()
            # Only now look past the data (the look may wait for bytes): its audio is out already.
            elif at_data_end and not self._samples_go_on():
                return

    def _samples_go_on(self) -> bool:
        """At the end of a WAV's data of a real size: whether samples follow. They do when the
        size was stale (no chunk follows), and when another WAV follows, after the chunks that
        end this one (LIST, id3 , ...), which are skipped; its header is read."""
        pad = self._pad
        skipped = False
        while True:
            after = self._reader.peek(pad + SIGNATURE_SIZE)[pad:]
            if self._wav and starts_with_wav_signature(after):
                self._reader.read(pad)
                self._read_next_header()
                return True
            if not _ends_the_samples(after):
                return not skipped  # after a chunk of this WAV's, bytes that are none are no audio
            if not self._wav or not _RIFF_CHUNK_ID.fullmatch(after[:4]):
                return False  # the end of the stream, or a raw tag
            size = int.from_bytes(after[4:8], "little")
            self._reader.read(pad + 8 + size)
            pad, skipped = size & 1, True

    def _next_chunk(self) -> bytes | None:
        if self._block_bytes is None:
            return self._reader.next_chunk()
        return self._reader.read(self._block_bytes) or None

    def _up_to_next_wav(self, chunk: bytes) -> bytes:
        """``chunk`` up to the signature of a next WAV in it (the rest is put back, and its header
        read next). Bytes at the end that may begin one are put back too, and only when nothing
        else is left is the rest of them waited for (so no audio waits on them)."""
        found = find_wav_signature(chunk)
        if found is None:
            return chunk
        index, whole = found
        self._reader.unread(chunk[index:])
        if index == 0 and not whole:
            if not starts_with_wav_signature(self._reader.peek(SIGNATURE_SIZE)):
                return self._reader.read(len(chunk))  # audio after all
            whole = True
        self._header_next = whole
        return chunk[:index]

    def _read_next_header(self) -> None:
        self._header_next = False
        header = read_wav_header(self._reader, self.name)
        given = (self.rate, self.channels, self._decoder.sample_format)
        found = (header.rate, header.channels, header.sample_format)
        if found != given:
            raise InputError(self.name, "a further WAV in the stream is {} Hz, {} channel(s), {}, not {} Hz, {} "
                                        "channel(s), {}: one format per stream".format(*found, *given))
        self._decoder = SampleDecoder(self.name, header.sample_format, header.channels)
        self._data_left = header.data_bytes
        self._pad = (header.data_bytes or 0) & 1

    def close(self) -> None:
        self._reader.close()


def _ends_the_samples(after: bytes) -> bool:
    """Whether ``after``, the bytes that follow a WAV's data of a real size (its pad byte left out),
    end its samples: a RIFF chunk (an id and a size that tags have), a raw ID3 tag, or the end of
    the stream within a chunk header's reach (a pad byte, debris). Otherwise the size was stale."""
    if len(after) < 8 or after.startswith(_RAW_TAGS):
        return True
    return bool(_RIFF_CHUNK_ID.fullmatch(after[:4])) and int.from_bytes(after[4:8], "little") <= _MAX_TAG_CHUNK


def open_byte_stream(chunks: Iterable[bytes], name: str, sample_format: str = AUTO, rate: int | None = None,
                     channels: int | None = None, *, streaming: bool = True,
                     block_seconds: float = _FFMPEG_BLOCK_SECONDS) -> AudioSource:
    """Open a byte stream for decoding as it arrives; blocks until its first bytes (or header) are in.

    ``sample_format="auto"`` reads a WAV header if there is one (its size fields are not trusted:
    streamed WAVs write placeholders there; :class:`RawStreamSource` has the one exception) and
    hands anything else to ffmpeg (MP3, Ogg, ..., and WAVs of coded samples: ADPCM, GSM). A raw
    format (one of ``formats.RAW_FORMATS``) needs ``rate`` and ``channels``. ffmpeg decodes as
    bytes arrive (``streaming``, in blocks of whatever is decoded) or, for a stream read as fast
    as it can be (standard input to ``render``), with its usual probing, in ``block_seconds``.
    Raises :class:`InputError` naming the stream for an empty stream, a bad header or a format
    ffmpeg cannot decode.
    """
    reader = ChunkReader(chunks)
    unsupported: UnsupportedWavFormat | None = None
    try:
        if sample_format != AUTO:
            if rate is None or channels is None:
                raise InputError(name, f"raw {sample_format} needs a sample rate and a channel count")
            return RawStreamSource(reader, name, sample_format, rate, channels)
        head = reader.peek(SIGNATURE_SIZE)
        if not head:
            raise InputError(name, "empty stream")
        if starts_with_wav_signature(head):  # other RIFF streams (AVI, WebP...) are ffmpeg's
            lookahead = _Lookahead(reader)
            try:
                header = read_wav_header(lookahead, name)
            except UnsupportedWavFormat as error:  # the header is still unread: ffmpeg reads it
                unsupported = error
            else:
                reader.read(lookahead.read_so_far)
                return RawStreamSource(reader, name, header.sample_format, header.rate, header.channels,
                                       header.data_bytes, wav=True, block_seconds=None if streaming else block_seconds)
    except BaseException:
        reader.close()
        raise
    try:  # from here on ffmpeg's feeding thread owns the reader (and closes it)
        return _ffmpeg_stream(reader, name, streaming, block_seconds)
    except InputError:
        if unsupported is None:
            raise
        raise unsupported from None  # ffmpeg's reason for a codec it lacks is vaguer


class _Lookahead:
    """Reads a :class:`ChunkReader` ahead without consuming it (blocking, as its reads do)."""

    def __init__(self, reader: ChunkReader) -> None:
        self._reader = reader
        self.read_so_far = 0

    def read(self, size: int, /) -> bytes:
        data = self._reader.peek(self.read_so_far + size)[self.read_so_far:]
        self.read_so_far += len(data)
        return data


def _ffmpeg_stream(reader: ChunkReader, name: str, streaming: bool, block_seconds: float) -> AudioSource:
    """Decode with ffmpeg, fed from ``reader`` by a thread through a pipe."""
    read_end, write_end = os.pipe()
    pump = _Pump(reader, write_end)
    with os.fdopen(read_end, "rb", buffering=0) as stdin:
        try:
            source = checked(FfmpegSource("-", block_seconds, stdin, name=name, streaming=streaming))
        except InputError:
            pump.raise_failure()
            raise
    return _PumpedSource(source, pump)


class _Pump:
    """Copies ``reader`` into a pipe (ffmpeg's stdin) on a thread of its own, and keeps what
    stopped it early (the stream failed: a read error, an upload lost) for the decoder's reader."""

    def __init__(self, reader: ChunkReader, write_end: int) -> None:
        self.error: Exception | None = None
        self._reader = reader
        self._write_end = write_end
        threading.Thread(target=self._run, name="echo-streamer-ffmpeg-feed", daemon=True).start()

    def _run(self) -> None:
        try:
            with os.fdopen(self._write_end, "wb", buffering=0) as pipe:
                try:
                    for chunk in self._reader:
                        pipe.write(chunk)
                except BrokenPipeError:  # ffmpeg gave up on the stream; it reports why
                    pass
                except Exception as error:  # noted before the pipe closes, so before ffmpeg's output ends
                    self.error = error
        finally:
            self._reader.close()

    def raise_failure(self) -> None:
        """Raise what stopped the stream early, if anything did: it, not ffmpeg's view of an input
        that just ended, is why the decoding stopped."""
        if self.error is not None:
            raise self.error from None


class _PumpedSource:
    """An ffmpeg source fed by a :class:`_Pump`: a failure of the stream itself is raised at its
    end, where ffmpeg only saw its input end (and may have called that damage)."""

    def __init__(self, source: AudioSource, pump: _Pump) -> None:
        self._source = source
        self._pump = pump
        self.name = source.name
        self.rate = source.rate
        self.channels = source.channels
        self.duration = source.duration

    def blocks(self) -> Iterator[np.ndarray]:
        try:
            yield from self._source.blocks()
        except InputError:
            self._pump.raise_failure()
            raise
        self._pump.raise_failure()

    def close(self) -> None:
        self._source.close()
