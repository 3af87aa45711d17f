"""Downsampling by an integer factor M with a linear-phase FIR low-pass: a one-shot call and a stream.

The filter is a Kaiser-windowed sinc designed for the output rate: flat within 0.1 dB up to 5/6
of the output's Nyquist frequency (10 kHz at 24 kHz out), at least 60 dB down from the output's
Nyquist frequency up (12 kHz at 24 kHz out), so nothing folds into the output band louder than
-60 dB. It has an odd number of taps N, so its delay D = (N - 1) / 2 is a whole number of input
samples and the output lines up with the input exactly; a stream holds back D input samples
(about 1 ms at 24 kHz out, 1.4 ms at 16 kHz out), and keeping only every M-th output means
computing only those: one matrix-vector product per block.
"""

from __future__ import annotations

import math

import numpy as np

PASSBAND = 5 / 6  # passband edge, as a fraction of the output's Nyquist frequency
ATTENUATION_DB = 63.0  # Kaiser design target; the design reaches >= 62.7 dB for factors 2 to 8


def decimation_factor(in_rate: int, out_rate: int) -> int:
    """``in_rate / out_rate`` (both in Hz) if it is a whole number of at least 2, else ValueError."""
    if out_rate <= 0 or in_rate <= out_rate or in_rate % out_rate:
        raise ValueError(f"the FIR decimator needs an input rate 2 or more whole times the output rate, "
                         f"not {in_rate} -> {out_rate} Hz")
    return in_rate // out_rate


def lowpass(factor: int) -> np.ndarray:
    """The anti-aliasing filter for downsampling by ``factor``: float32 taps, odd in number,
    symmetric (linear phase), at unity gain at DC.

    Frequencies in cycles per input sample: the passband ends at ``PASSBAND / (2 factor)``, the
    stopband starts at the output's Nyquist frequency ``1 / (2 factor)``; the cutoff is midway.
    Length and window from Kaiser's estimates for ``ATTENUATION_DB`` over that transition.
    """
    stop = 1 / (2 * factor)
    edge = PASSBAND * stop
    width = 2 * math.pi * (stop - edge)  # transition width, radians per input sample
    length = math.ceil((ATTENUATION_DB - 8) / (2.285 * width)) | 1  # odd: a whole-sample delay
    beta = 0.1102 * (ATTENUATION_DB - 8.7)
    n = np.arange(length) - (length - 1) / 2
    cutoff = (edge + stop) / 2
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(length, beta)
    taps = (taps + taps[::-1]) / 2  # exactly symmetric, whatever the rounding in sinc and kaiser
    return (taps / taps.sum()).astype(np.float32)


def decimate(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Downsample a whole mono vector from ``in_rate`` to ``out_rate`` Hz at once (float32 out).

    Output sample n is the filter centred on input sample ``M n``: ``ceil(len / M)`` samples,
    aligned with the input. The reference that :class:`Decimator` equals block by block.
    """
    factor = decimation_factor(in_rate, out_rate)
    samples = np.asarray(samples, dtype=np.float32)
    if not len(samples):
        return np.zeros(0, dtype=np.float32)
    taps = lowpass(factor)
    delay = (len(taps) - 1) // 2
    return np.convolve(samples, taps)[delay : delay + len(samples) : factor].copy()


class Decimator:
    """Downsamples a mono float32 stream by an integer factor, block by block.

    The concatenation of every :meth:`process` result and the final :meth:`flush` equals
    :func:`decimate` of the whole signal (within float32 rounding: the sums run in another
    order). Each block costs a concatenation and one matrix-vector product over the outputs
    it completes; the input still needed waits in a buffer of at most N - 1 samples.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.factor = decimation_factor(in_rate, out_rate)
        taps = lowpass(self.factor)
        self.delay = (len(taps) - 1) // 2  # input samples held back
        self._kernel = np.ascontiguousarray(taps[::-1])  # dot products with it are the convolution
        self.clear()

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Take one block; return every output sample whose filter window it completes (maybe none)."""
        self._taken += len(samples)
        return self._emit(np.concatenate((self._buffer, np.asarray(samples, dtype=np.float32))))

    def flush(self) -> np.ndarray:
        """Emit the outputs still held back (their windows end in silence), then start afresh."""
        missing = -(-self._taken // self.factor) - self._emitted  # to make ceil(input / M) in all
        padding = np.zeros(self.delay + self.factor - 1, dtype=np.float32)  # completes the last window
        tail = self._emit(np.concatenate((self._buffer, padding)))[:missing]
        self.clear()
        return tail

    def clear(self) -> None:
        """Forget all input: the history is D samples of silence, as before the first sample."""
        self._buffer = np.zeros(self.delay, dtype=np.float32)
        self._taken = 0
        self._emitted = 0

    def _emit(self, buffer: np.ndarray) -> np.ndarray:
        """Filter every complete window of ``buffer`` (a fresh contiguous array) at steps of M; keep the rest."""
        length, step = len(self._kernel), self.factor
        count = (len(buffer) - length) // step + 1
        if count <= 0:
            self._buffer = buffer
            return np.zeros(0, dtype=np.float32)
        # Row n is buffer[M n : M n + N] (a view: the rows overlap); one matrix-vector product.
        windows = np.ndarray((count, length), np.float32, buffer, 0, (step * buffer.itemsize, buffer.itemsize))
        out = np.dot(windows, self._kernel)
        self._buffer = buffer[count * step :]
        self._emitted += count
        return out
