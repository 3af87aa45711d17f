"""Sample-rate conversion: a one-shot call and a streaming object, over python-soxr, libsamplerate
or our own polyphase FIR (``dsp.polyphase``).

Files use python-soxr at HQ. Audio produced while it plays (pipes, generators) needs a stream that
emits as soon as it can: it uses ``fir``, our polyphase filter with soxr's bandwidth (-3 dB at
95 % of Nyquist), which emits every output sample as soon as its window's input is there. On
speech (``bench/stream_resampler.py``) it holds back 4.3 ms at 79 dB SNR against soxr VHQ at
22050 -> 24000 Hz, 6.0 ms at 70 dB at 16 -> 24 kHz and 6.0 ms at 64 dB at 22050 -> 16000 Hz;
libsamplerate's ``sinc_best`` holds back 6.5 / 9.0 / 9.0 ms at 56 / 47 / 41 dB there (it rolls
off earlier than soxr, 7.5-8 kHz at 16 kHz) for 5 to 10 times the CPU, and soxr's own streams
hold back 37-42 ms at HQ.

Live capture (5 ms blocks) picks its converter with :func:`live_quality`. When the card's rate is
a whole multiple of the output rate (48 or 96 kHz -> 24 or 16 kHz), it is ``fir_live``: the
polyphase filter with a shorter, cheaper design (``polyphase.LIVE_SPEC``). It costs about 7 us
per block in a hot loop where ``sinc_medium`` costs about 30 us (``sinc_medium`` was the largest
single item of the live CPU budget), and holds back 0.96 ms at 24 kHz out, 1.44 ms at 16 kHz out
(``sinc_medium``: 1.9 and 2.9 ms). Its response: within +-0.007 dB up to 5/6 of the output's
Nyquist frequency (10 kHz at 24 kHz), at least 62.7 dB down from that Nyquist frequency up; on
white noise below 10 kHz it is 74 dB SNR against the exact result, a gain ripple rather than
noise (``sinc_medium``: 123 dB). No library fits there: soxr's streams emit in bursts, holding
back up to 20 ms (LQ) to 39 ms (MQ, HQ) of 5 ms blocks at 48 -> 24 kHz (QQ does not, but is a
cubic interpolator), and libsamplerate runs a sinc interpolator for any fractional ratio. Other
ratios (44.1 kHz -> 24 kHz) keep libsamplerate's ``sinc_medium``: it holds back about 2 ms,
less than one capture block (``sinc_best`` holds back more than one, which delays every live
frame by a block), costs a third of ``sinc_best``'s CPU, and is within 123 dB of soxr VHQ below
90 % of the output's Nyquist frequency (10.8 kHz at 24 kHz), rolling off above.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import samplerate
import soxr

from .polyphase import LIVE_SPEC, STREAM_SPEC, FilterSpec, PolyphaseResampler, resample_poly

QUALITY = "HQ"  # files
STREAM_QUALITY = "fir"  # audio produced while it plays
LIVE_FIR_QUALITY = "fir_live"  # live input at a whole ratio
LIVE_FALLBACK_QUALITY = "sinc_medium"  # live input at any other ratio
SOXR_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
LIBSAMPLERATE_CONVERTERS = ("sinc_best", "sinc_medium", "sinc_fastest")
FIR_SPECS: dict[str, FilterSpec] = {STREAM_QUALITY: STREAM_SPEC, LIVE_FIR_QUALITY: LIVE_SPEC}
QUALITIES = SOXR_QUALITIES + LIBSAMPLERATE_CONVERTERS + tuple(FIR_SPECS)


def live_quality(in_rate: int, out_rate: int) -> str:
    """The converter for live capture from ``in_rate`` to ``out_rate`` Hz: the short polyphase FIR
    when ``in_rate`` is 2 or more whole times ``out_rate``, else libsamplerate's ``sinc_medium``."""
    return LIVE_FIR_QUALITY if in_rate > out_rate and in_rate % out_rate == 0 else LIVE_FALLBACK_QUALITY


def resample(samples: np.ndarray, in_rate: int, out_rate: int, quality: str = QUALITY) -> np.ndarray:
    """Resample a whole mono float32 vector at once (the reference the streaming path must equal).

    ``quality`` is a python-soxr preset (``SOXR_QUALITIES``), a libsamplerate converter
    (``LIBSAMPLERATE_CONVERTERS``) or one of our polyphase filters (``FIR_SPECS``). Rates in Hz.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if in_rate == out_rate:
        return samples
    if _check_quality(quality) in FIR_SPECS:
        return resample_poly(samples, in_rate, out_rate, FIR_SPECS[quality])
    if quality in LIBSAMPLERATE_CONVERTERS:
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
        self._stream: _Stream | None = None if in_rate == out_rate else _open_stream(in_rate, out_rate, quality)

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
    if quality not in QUALITIES:
        raise ValueError(f"unknown resampler quality {quality!r}: one of {QUALITIES}")
    return quality


def _open_stream(in_rate: int, out_rate: int, quality: str) -> _Stream:
    if _check_quality(quality) in FIR_SPECS:
        return PolyphaseResampler(in_rate, out_rate, FIR_SPECS[quality])
    if quality in LIBSAMPLERATE_CONVERTERS:
        return _LibsamplerateStream(in_rate, out_rate, quality)
    return _SoxrStream(in_rate, out_rate, quality)


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
