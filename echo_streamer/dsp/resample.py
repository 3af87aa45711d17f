"""Sample-rate conversion: a one-shot call and a streaming object, over python-soxr or our own
polyphase FIR (``dsp.polyphase``).

Files use python-soxr at HQ. Audio produced while it plays (pipes, generators) needs a stream that
emits as soon as it can: it uses ``fir``, our polyphase filter with soxr's bandwidth (-3 dB at
95 % of Nyquist), which emits every output sample as soon as its window's input is there. On
speech (``bench/stream_resampler.py``) it holds back 4.3 ms at 79 dB SNR against soxr VHQ at
22050 -> 24000 Hz, 6.0 ms at 70 dB at 16 -> 24 kHz and 6.0 ms at 64 dB at 22050 -> 16000 Hz;
libsamplerate's ``sinc_best`` holds back 6.5 / 9.0 / 9.0 ms at 56 / 47 / 41 dB there (it rolls
off earlier than soxr, 7.5-8 kHz at 16 kHz) for 5 to 10 times the CPU, and soxr's own streams
hold back 37-42 ms at HQ.

Live capture (5 ms blocks) uses ``fir_live``: the polyphase filter with a shorter, cheaper design
(``polyphase.LIVE_SPEC``), at any ratio. Its response, at every ratio from 8 to 96 kHz in:
within +-0.0073 dB up to 5/6 of the lower Nyquist frequency (10 kHz at 24 kHz out), at least
62.6 dB down from that Nyquist frequency up; at 48 -> 24 kHz, on white noise below 10 kHz, it
is 74 dB SNR against the exact result, a gain ripple rather than noise. On speech with full-band
noise (``bench/stream_resampler.py``) it holds back 0.96 ms at 48 -> 24 kHz, 0.92 ms at
44.1 -> 24 kHz and 1.4 ms at 16 kHz (in or out), half as long as libsamplerate's ``sinc_medium``,
which live input used before, at the same SNR against soxr VHQ and a third to a fifth of its
CPU. No other library fits there: soxr's streams emit in bursts, holding back up to 20 ms (LQ)
to 39 ms (MQ, HQ) of 5 ms blocks at 48 -> 24 kHz (QQ does not, but is a cubic interpolator).

Both polyphase filters give way to soxr HQ at a rate whose ratio to the output's is too fine for
a polyphase bank (``polyphase.MAX_PERIOD``: none of the common rates, but 44101 Hz, say): the
output stays right, held back about 40 ms.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import soxr

from .polyphase import LIVE_SPEC, STREAM_SPEC, FilterSpec, PolyphaseResampler, resample_poly, supported

QUALITY = "HQ"  # files
STREAM_QUALITY = "fir"  # audio produced while it plays
LIVE_QUALITY = "fir_live"  # live input
SOXR_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
FIR_SPECS: dict[str, FilterSpec] = {STREAM_QUALITY: STREAM_SPEC, LIVE_QUALITY: LIVE_SPEC}
QUALITIES = SOXR_QUALITIES + tuple(FIR_SPECS)


def resample(samples: np.ndarray, in_rate: int, out_rate: int, quality: str = QUALITY) -> np.ndarray:
    """Resample a whole mono float32 vector at once (the reference the streaming path must equal).

    ``quality`` is a python-soxr preset (``SOXR_QUALITIES``) or one of our polyphase filters
    (``FIR_SPECS``). Rates in Hz.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if in_rate == out_rate:
        return samples
    quality = _effective_quality(quality, in_rate, out_rate)
    if quality in FIR_SPECS:
        return resample_poly(samples, in_rate, out_rate, FIR_SPECS[quality])
    return soxr.resample(samples, in_rate, out_rate, quality=quality)


class StreamResampler:
    """Resamples a mono float32 stream block by block; its filter state carries across blocks.

    The concatenation of every ``process()`` result and the final ``flush()`` equals
    :func:`resample` of the whole signal with the same ``quality``. When the rates are equal,
    the samples pass through untouched.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = QUALITY) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream: _Stream | None = None if in_rate == out_rate else _open_stream(in_rate, out_rate, quality)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample one block (a float32 vector); returns the output the filter can emit so far
        (possibly nothing)."""
        if self._stream is None:
            return samples
        return self._stream.process(samples)

    def flush(self) -> np.ndarray:
        """Emit the filter's tail at the end of the stream."""
        return np.zeros(0, dtype=np.float32) if self._stream is None else self._stream.flush()

    def clear(self) -> None:
        """Forget all state, ready for an unrelated stream."""
        if self._stream is not None:
            self._stream.clear()


def _effective_quality(quality: str, in_rate: int, out_rate: int) -> str:
    """``quality``, except that a polyphase filter gives way to soxr HQ at a ratio too fine for a
    polyphase bank (an odd rate such as 44101 Hz): correct output, held back about 40 ms."""
    if quality not in QUALITIES:
        raise ValueError(f"unknown resampler quality {quality!r}: one of {QUALITIES}")
    return quality if quality not in FIR_SPECS or supported(in_rate, out_rate) else "HQ"


def _open_stream(in_rate: int, out_rate: int, quality: str) -> _Stream:
    quality = _effective_quality(quality, in_rate, out_rate)
    if quality in FIR_SPECS:
        return PolyphaseResampler(in_rate, out_rate, FIR_SPECS[quality])
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
