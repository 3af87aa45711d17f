"""Opening a file (or standard input) for decoding, with whichever decoder suits it."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import InputError
from .base import AudioSource, check_format, checked
from .bytestream import open_byte_stream
from .ffmpeg import FfmpegSource
from .libsndfile import NotForLibsndfile, SoundFileSource
from .wavheader import read_wav_header, starts_with_wav_signature

BLOCK_SECONDS = 0.5
# Standard input and FIFOs are read in reads of at most this many bytes.
STREAM_CHUNK = 1 << 16


def open_audio(path: str, *, stdin: BinaryIO | None = None, block_seconds: float = BLOCK_SECONDS) -> AudioSource:
    """Open ``path`` for streamed decoding; ``"-"`` decodes ``stdin`` (default: the process's stdin).

    libsndfile decodes what it recognises (WAV, FLAC, Ogg/Vorbis, MP3, AIFF, ...); ffmpeg decodes
    everything else. Blocks of ``block_seconds`` are read, so memory stays flat for any length.
    Raises :class:`InputError` naming the input and the reason when it cannot be decoded or its
    sample rate or channel count is outside what the pipeline supports.
    """
    return checked(_open_decoder(path, stdin, block_seconds))


def _open_decoder(path: str, stdin: BinaryIO | None, block_seconds: float) -> AudioSource:
    if path == "-":
        if stdin is None and sys.stdin is None:
            raise InputError(path, "standard input is closed")
        return _stream_decoder(stdin or sys.stdin.buffer, path, block_seconds, close=False)
    head = _check_file(path)
    if head is None:  # a FIFO, /dev/stdin, a <(process substitution): read once, as it comes, like stdin
        try:
            stream = open(path, "rb")
        except OSError as error:  # a socket, a FIFO not readable to us
            raise InputError(path, error.strerror or str(error)) from None
        return _stream_decoder(stream, path, block_seconds, close=True)
    if _prefers_ffmpeg(path, head):
        return FfmpegSource(path, block_seconds)
    try:
        return SoundFileSource(path, block_seconds)
    except NotForLibsndfile:
        pass
    try:
        return FfmpegSource(path, block_seconds)
    except InputError as error:
        fault = _wav_header_fault(path) if starts_with_wav_signature(head) else None
        raise fault or error from None


def _stream_decoder(stream: BinaryIO, name: str, block_seconds: float, *, close: bool) -> AudioSource:
    """Standard input or a FIFO, read once as it comes (and closed at its end if ``close``), as
    ``pipe`` reads it: a WAV by us (WAVs of one format sent back to back too, their headers not
    played), anything else by ffmpeg fed through a pipe."""
    return open_byte_stream(_chunks(stream, close), name, streaming=False, block_seconds=block_seconds)


def _chunks(stream: BinaryIO, close: bool) -> Iterator[bytes]:
    read = getattr(stream, "read1", stream.read)
    try:
        while chunk := read(STREAM_CHUNK):
            yield chunk
    finally:
        if close:
            stream.close()


def _wav_header_fault(path: str) -> InputError | None:
    """What is wrong with the header of the WAV file ``path``, which neither decoder could open.

    ffmpeg's reason for such a file is about its decoder ("Invalid argument", "codec none"); the
    header's own fields (0 channels, an unknown format tag) say what the user can fix.
    """
    try:
        with open(path, "rb") as file:
            header = read_wav_header(file, path)
        check_format(path, header.rate, header.channels)
    except InputError as fault:
        return fault
    except OSError:
        pass
    return None


def _prefers_ffmpeg(path: str, head: bytes) -> bool:
    """MP3 (by its content or its name) and Ogg Opus go to ffmpeg although libsndfile opens them.

    libsndfile's MP3 decoder (mpg123) prints warnings straight to stderr on damaged files (or
    anything named .mp3) and does not report truncation; its Opus decoder picks an output rate
    of its own, so its result differs from ffmpeg's decode of the same file.
    """
    is_mp3 = (head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
              or path.lower().endswith(".mp3"))
    is_ogg_opus = head.startswith(b"OggS") and b"OpusHead" in head
    return is_mp3 or is_ogg_opus


def _check_file(path: str) -> bytes | None:
    """Reject what is plainly not an audio file; return its first bytes for sniffing, or None
    when it is not a regular file (a pipe or a device: no size, and it can be read only once)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as error:
        raise InputError(path, error.strerror or str(error)) from None
    if stat.S_ISDIR(status.st_mode):
        raise InputError(path, "is a directory, not an audio file")
    if not stat.S_ISREG(status.st_mode):
        return None
    if status.st_size == 0:
        raise InputError(path, "empty file")
    try:
        with open(path, "rb") as file:
            return file.read(64)
    except OSError as error:
        raise InputError(path, error.strerror or str(error)) from None
