"""Raw sample formats: bytes as they arrive in, float32 samples out (no I/O here)."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .formats import RAW_FORMATS


def _g711_tables() -> dict[str, np.ndarray]:
    """ITU-T G.711 mu-law and A-law expansion to 16-bit values, as float32 at full scale 1.0."""
    codes = np.arange(256)
    mu = ~codes & 0xFF
    exponent, mantissa = (mu >> 4) & 7, mu & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    mulaw = np.where(mu & 0x80, -magnitude, magnitude)
    a = codes ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    alaw = np.where(a & 0x80, magnitude, -magnitude)
    return {"mulaw": (mulaw / 32768).astype(np.float32), "alaw": (alaw / 32768).astype(np.float32)}


_G711 = _g711_tables()


def decode_samples(data: bytes, sample_format: str) -> np.ndarray:
    """Decode whole samples of ``sample_format`` (``len(data)`` a multiple of its width) to float32."""
    if sample_format == "s16le":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768
    if sample_format == "s24le":
        triples = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        value = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        return (np.where(value & 0x800000, value - (1 << 24), value) / float(1 << 23)).astype(np.float32)
    if sample_format == "s32le":
        return (np.frombuffer(data, "<i4") / float(1 << 31)).astype(np.float32)
    if sample_format in ("f32le", "f64le"):
        return np.frombuffer(data, "<f4" if sample_format == "f32le" else "<f8").astype(np.float32, copy=False)
    if sample_format == "u8":
        return (np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128
    return _G711[sample_format][np.frombuffer(data, np.uint8)]


class SampleDecoder:
    """Turns byte chunks of any length into ``(frames, channels)`` float32 blocks.

    Bytes that do not yet make a whole frame (all channels of one sample instant) are kept for
    the next chunk, so odd chunk sizes lose nothing; ``pending`` counts them (what is left at
    the end of the stream is a partial final sample).
    """

    def __init__(self, name: str, sample_format: str, channels: int) -> None:
        if sample_format not in RAW_FORMATS:
            raise InputError(name, f"unknown sample format {sample_format!r} (one of {', '.join(RAW_FORMATS)})")
        self.sample_format = sample_format
        self.channels = channels
        self._frame_bytes = RAW_FORMATS[sample_format] * channels
        self._pending = b""

    @property
    def pending(self) -> int:
        return len(self._pending)

    def push(self, chunk: bytes) -> np.ndarray:
        data = self._pending + chunk if self._pending else chunk
        whole = len(data) - len(data) % self._frame_bytes
        self._pending = data[whole:]
        return decode_samples(data[:whole], self.sample_format).reshape(-1, self.channels)
