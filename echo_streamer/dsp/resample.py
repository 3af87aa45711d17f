"""Sample-rate conversion: a one-shot call and a streaming object, over python-soxr or libsamplerate.

Files use python-soxr at HQ. Audio produced while it plays (pipes, generators) uses
libsamplerate's ``sinc_best``, which holds back about 6 ms of input where soxr's HQ stream holds
back about 40 ms; it is 55.9 dB SNR against soxr VHQ on speech at 22050 -> 24000 Hz
(``bench/stream_resampler.py``). Live capture uses ``sinc_medium``: it holds back about 2 ms,
less than one 5 ms capture block (``sinc_best`` holds back more than one, which delays every
live frame by a block), costs a third of the CPU, and is within 123 dB of soxr VHQ below 90 %
of the output's Nyquist frequency (10.8 kHz at 24 kHz), rolling off above.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import samplerate
import soxr

QUALITY = "HQ"
LOW_LATENCY_QUALITY = "sinc_best"
LIVE_QUALITY = "sinc_medium"
SOXR_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
LIBSAMPLERATE_CONVERTERS = ("sinc_best", "sinc_medium", "sinc_fastest")


def resample(samples: np.ndarray, in_rate: int, out_rate: int, quality: str = QUALITY) -> np.ndarray:
    """Resample a whole mono float32 vector at once (the reference the streaming path must equal).

    ``quality`` is a python-soxr preset (``SOXR_QUALITIES``) or a libsamplerate converter
    (``LIBSAMPLERATE_CONVERTERS``).
    """
    samples = np.asarray(samples, dtype=np.float32)
    if in_rate == out_rate:
        return samples
    if _check_quality(quality) in LIBSAMPLERATE_CONVERTERS:
        return samplerate.resample(samples, out_rate / in_rate, quality).astype(np.float32, copy=False)
    return soxr.resample(samples, in_rate, out_rate, quality=quality)


class StreamResampler:
    """Resamples a mono float32 stream block by block; its filter state carries across blocks.

    The concatenation of every ``process()`` result and the final ``flush()`` equals
    :func:`resample` of the whole signal with the same ``quality``. When the rates are equal,
    samples pass through untouched.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = QUALITY) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream: _Stream | None = None
        if in_rate != out_rate:
            backend = _LibsamplerateStream if _check_quality(quality) in LIBSAMPLERATE_CONVERTERS else _SoxrStream
            self._stream = backend(in_rate, out_rate, quality)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample one block; returns what the filter can emit so far (possibly nothing)."""
        return samples if self._stream is None else self._stream.process(samples)

    def flush(self) -> np.ndarray:
        """Emit the filter's tail at the end of the stream."""
        return np.zeros(0, dtype=np.float32) if self._stream is None else self._stream.flush()

    def clear(self) -> None:
        """Forget all state, ready for an unrelated stream."""
        if self._stream is not None:
            self._stream.clear()


def _check_quality(quality: str) -> str:
    if quality not in SOXR_QUALITIES + LIBSAMPLERATE_CONVERTERS:
        raise ValueError(f"unknown resampler quality {quality!r}: one of {SOXR_QUALITIES + LIBSAMPLERATE_CONVERTERS}")
    return quality


class _Stream(Protocol):
    def process(self, samples: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...

    def clear(self) -> None: ...


class _SoxrStream:
    def __init__(self, in_rate: int, out_rate: int, quality: str) -> None:
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)

    def process(self, samples: np.ndarray) -> np.ndarray:
        return self._stream.resample_chunk(samples)

    def flush(self) -> np.ndarray:
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def clear(self) -> None:
        self._stream.clear()


class _LibsamplerateStream:
    """libsamplerate emits its held-back tail only along with input marked as the last: the flush
    feeds silence and keeps exactly the samples the one-shot call would have produced."""

    def __init__(self, in_rate: int, out_rate: int, converter: str) -> None:
        self._in_rate = in_rate
        self._out_rate = out_rate
        self._ratio = out_rate / in_rate
        self._resampler = samplerate.Resampler(converter, channels=1)
        self._taken = 0
        self._emitted = 0

    def process(self, samples: np.ndarray) -> np.ndarray:
        out = self._resampler.process(np.asarray(samples, dtype=np.float32), self._ratio, end_of_input=False)
        self._taken += len(samples)
        self._emitted += len(out)
        return out.astype(np.float32, copy=False)

    def flush(self) -> np.ndarray:
        tail = self._resampler.process(np.zeros(self._in_rate // 10, dtype=np.float32), self._ratio,
                                       end_of_input=True)
        total = self._taken * self._out_rate // self._in_rate
        tail = tail[:max(0, total - self._emitted)].astype(np.float32, copy=False)
        self.clear()
        return tail

    def clear(self) -> None:
        self._resampler.reset()
        self._taken = 0
        self._emitted = 0
