"""Reading a RIFF/WAVE header from a forward-only stream (a pipe), trusting no size field."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO

from ..errors import InputError

_FORMAT_PCM = 1
_FORMAT_FLOAT = 3
_FORMAT_EXTENSIBLE = 0xFFFE
_MAX_SKIPPED_CHUNK = 1 << 20


@dataclass(frozen=True)
class WavHeader:
    rate: int
    channels: int
    is_float: bool
    bits: int


def _read_exact(stream: IO[bytes], size: int, name: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise InputError(name, "stream ended inside the WAV header")
    return data


def read_wav_header(stream: IO[bytes], name: str) -> WavHeader:
    """Read up to the start of the ``data`` chunk and return the sample format.

    The RIFF and data sizes are ignored: streamed WAVs (ffmpeg to a pipe, ``espeak-ng --stdout``)
    write placeholders there, so the data simply runs to the end of the stream.
    """
    riff = _read_exact(stream, 12, name)
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise InputError(name, "not a WAV stream (no RIFF/WAVE header)")
    header: WavHeader | None = None
    while True:
        chunk_id, size = struct.unpack("<4sI", _read_exact(stream, 8, name))
        if chunk_id == b"data":
            if header is None:
                raise InputError(name, "WAV data chunk before its fmt chunk")
            return header
        if chunk_id == b"fmt ":
            if not 16 <= size <= 1024:
                raise InputError(name, f"WAV fmt chunk of absurd size {size}")
            header = _parse_fmt(_read_exact(stream, size + (size & 1), name), name)
        elif size > _MAX_SKIPPED_CHUNK:
            raise InputError(name, f"WAV chunk {chunk_id!r} of absurd size {size}")
        else:
            _read_exact(stream, size + (size & 1), name)


def _parse_fmt(fmt: bytes, name: str) -> WavHeader:
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _FORMAT_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag not in (_FORMAT_PCM, _FORMAT_FLOAT):
        raise InputError(name, f"unsupported WAV sample format tag {tag:#x}")
    return WavHeader(rate=rate, channels=channels, is_float=tag == _FORMAT_FLOAT, bits=bits)
