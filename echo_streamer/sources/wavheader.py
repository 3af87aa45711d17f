"""Reading a RIFF/WAVE header from a forward-only stream (a pipe), trusting no size field."""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Protocol

from ..errors import InputError

_FORMAT_PCM = 1
_FORMAT_FLOAT = 3
_FORMAT_ALAW = 6
_FORMAT_MULAW = 7
_FORMAT_EXTENSIBLE = 0xFFFE
_MAX_SKIPPED_CHUNK = 1 << 20
# Data sizes from here up are what streaming writers put there (espeak-ng: 0x7FFFF000).
_PLACEHOLDER_SIZES = 0x7FFF0000
SIGNATURE_SIZE = 12  # b"RIFF", the RIFF size, b"WAVE"

# (format tag, bits per sample) -> the raw sample format of the data chunk.
_SAMPLE_FORMATS = {(_FORMAT_PCM, 8): "u8", (_FORMAT_PCM, 16): "s16le", (_FORMAT_PCM, 24): "s24le",
                   (_FORMAT_PCM, 32): "s32le", (_FORMAT_FLOAT, 32): "f32le", (_FORMAT_FLOAT, 64): "f64le",
                   (_FORMAT_MULAW, 8): "mulaw", (_FORMAT_ALAW, 8): "alaw"}


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class UnsupportedWavFormat(InputError):
    """A WAV whose samples are coded (ADPCM, GSM, ...) rather than PCM, float or G.711."""


@dataclass(frozen=True)
class WavHeader:
    rate: int
    channels: int
    sample_format: str  # a name in rawpcm.RAW_FORMATS
    # The data chunk's size, or None when it is a streaming writer's placeholder.
    data_bytes: int | None = None


def _read_exact(stream: Readable, size: int, name: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise InputError(name, "stream ended inside the WAV header")
    return data


def read_wav_header(stream: Readable, name: str) -> WavHeader:
    """Read up to the start of the ``data`` chunk and return the sample format.

    The RIFF size is ignored, and so is a data size that is a placeholder (0, or 0xFFFFFFFF and
    just under it, as ffmpeg to a pipe and ``espeak-ng --stdout`` write it): such data runs to
    the end of the stream. A real data size is kept (``data_bytes``): what follows it (a LIST
    chunk, say) is not audio.
    """
    if not starts_with_wav_signature(_read_exact(stream, SIGNATURE_SIZE, name)):
        raise InputError(name, "not a WAV stream (no RIFF/WAVE header)")
    header: WavHeader | None = None
    while True:
        chunk_id, size = struct.unpack("<4sI", _read_exact(stream, 8, name))
        if chunk_id == b"data":
            if header is None:
                raise InputError(name, "WAV data chunk before its fmt chunk")
            return dataclasses.replace(header, data_bytes=None if is_placeholder_size(size) else size)
        if chunk_id == b"fmt ":
            if not 16 <= size <= 1024:
                raise InputError(name, f"WAV fmt chunk of absurd size {size}")
            header = _parse_fmt(_read_exact(stream, size + (size & 1), name), name)
        elif size > _MAX_SKIPPED_CHUNK:
            raise InputError(name, f"WAV chunk {chunk_id!r} of absurd size {size}")
        else:
            _read_exact(stream, size + (size & 1), name)


def is_placeholder_size(size: int) -> bool:
    """Whether a data size field holds what streaming writers put there (0, 0xFFFFFFFF, just
    under 2^31) rather than the data's size."""
    return size == 0 or size >= _PLACEHOLDER_SIZES


def _parse_fmt(fmt: bytes, name: str) -> WavHeader:
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _FORMAT_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]
    sample_format = _SAMPLE_FORMATS.get((tag, bits))
    if sample_format is None:
        raise UnsupportedWavFormat(name, f"unsupported WAV sample format (tag {tag:#x}, {bits} bits)")
    return WavHeader(rate=rate, channels=channels, sample_format=sample_format)


def starts_with_wav_signature(data: bytes) -> bool:
    """Whether ``data`` begins with a whole RIFF/WAVE signature."""
    return data[:4] == b"RIFF" and data[8:SIGNATURE_SIZE] == b"WAVE"


def _is_signature_start(data: bytes) -> bool:
    """Whether ``data`` (at most a signature long) is how a RIFF/WAVE signature begins."""
    return b"RIFF".startswith(data[:4]) and b"WAVE".startswith(data[8:12])


def find_wav_signature(data: bytes, start: int = 0) -> tuple[int, bool] | None:
    """Where the first RIFF/WAVE signature at or after ``start`` begins, and whether all of it is
    in ``data`` (False: ``data`` ends with the start of one); None if there is none."""
    index = data.find(b"RIFF", start)
    while index != -1 and index + SIGNATURE_SIZE <= len(data):
        if starts_with_wav_signature(data[index:index + SIGNATURE_SIZE]):
            return index, True
        index = data.find(b"RIFF", index + 1)
    for index in range(max(start, len(data) - SIGNATURE_SIZE + 1), len(data)):
        if _is_signature_start(data[index:]):
            return index, False
    return None
