"""Rational resampling by L/M with a linear-phase FIR low-pass: a one-shot call and a stream.

Upsampling by L (zeros between the samples), filtering, then keeping every M-th sample; only the
kept samples are computed. The filter is a Kaiser-windowed sinc at L times the input rate whose
band edges are given as fractions of the lower of the two Nyquist frequencies (:class:`FilterSpec`).
It has an odd number of taps N, so its delay D = (N - 1) / 2 is a whole number of samples at
L times the input rate and the output lines up with the input exactly.

The output comes in periods of L samples, each computed from a window of input that moves by M
samples: a matrix product computes every complete period of a block (in batches), and the first outputs of
a period whose input is already there come out at once. A stream therefore holds back no more
than the filter's half length (D / L input samples), whatever the ratio.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FilterSpec:
    """Band edges as fractions of the lower Nyquist frequency of input and output, and the
    stopband attenuation (Kaiser design target) in dB."""

    passband: float
    stopband: float
    attenuation_db: float


# Live input, at any ratio: flat up to 5/6 of the lower Nyquist frequency, some 63 dB down from
# it up (the measured figures: dsp.resample); short (about 1 ms held back) and cheap.
LIVE_SPEC = FilterSpec(passband=5 / 6, stopband=1.0, attenuation_db=63.0)
# Streams: soxr's bandwidth (its -3 dB point at 95 % of Nyquist, as for its MQ to VHQ recipes),
# 90 dB down from 98.5 % of Nyquist up, so every image and alias lands in the stopband.
STREAM_SPEC = FilterSpec(passband=0.925, stopband=0.985, attenuation_db=90.0)


# The longest period (L or M) a polyphase bank is built for: every common rate to 16 or 24 kHz
# needs 640 at most (11025 -> 16000 Hz: a 2.5 MB bank, designed in about 25 ms). An odd rate
# such as 44101 Hz would need L = 24000, M = 44101: two million taps and a bank of gigabytes.
MAX_PERIOD = 1000
# Input windows per matrix product, in samples (float64): 2 MB, whatever the block's length.
_BATCH_VALUES = 1 << 18


def ratio(in_rate: int, out_rate: int) -> tuple[int, int]:
    """``(L, M)``: ``out_rate / in_rate`` (both in Hz, positive) in lowest terms."""
    if in_rate <= 0 or out_rate <= 0:
        raise ValueError(f"rates must be positive, not {in_rate} -> {out_rate} Hz")
    common = math.gcd(in_rate, out_rate)
    return out_rate // common, in_rate // common


def supported(in_rate: int, out_rate: int) -> bool:
    """Whether this module resamples ``in_rate`` to ``out_rate`` Hz: a period of at most ``MAX_PERIOD``."""
    return max(ratio(in_rate, out_rate)) <= MAX_PERIOD


def lowpass(up: int, down: int, spec: FilterSpec) -> np.ndarray:
    """The filter for resampling by ``up / down``: float32 taps at ``up`` times the input rate,
    odd in number, symmetric (linear phase), with a DC gain of ``up`` (which the zeros between
    the input samples take away again).

    Length and window from Kaiser's estimates for ``spec.attenuation_db`` over the transition
    band; the cutoff is midway between the band edges.
    """
    nyquist = 1 / (2 * max(up, down))  # the lower Nyquist frequency, cycles per upsampled sample
    edge, stop = spec.passband * nyquist, spec.stopband * nyquist
    width = 2 * math.pi * (stop - edge)  # transition width, radians per upsampled sample
    length = math.ceil((spec.attenuation_db - 8) / (2.285 * width)) | 1  # odd: a whole-sample delay
    beta = 0.1102 * (spec.attenuation_db - 8.7)
    n = np.arange(length) - (length - 1) / 2
    cutoff = (edge + stop) / 2
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(length, beta)
    taps = (taps + taps[::-1]) / 2  # exactly symmetric, whatever the rounding in sinc and kaiser
    return (up * taps / taps.sum()).astype(np.float32)


def output_length(samples: int, up: int, down: int) -> int:
    """Output samples for ``samples`` input samples: ``ceil(samples * up / down)``."""
    return -(-samples * up // down)


def resample_poly(samples: np.ndarray, in_rate: int, out_rate: int, spec: FilterSpec) -> np.ndarray:
    """Resample a whole mono vector from ``in_rate`` to ``out_rate`` Hz at once (float32 out).

    Output sample n is the filter centred on the upsampled signal's sample ``M n``, so the output
    is aligned with the input; :func:`output_length` samples. Computed straight from that
    definition, sample by sample (vectorised, in batches): the reference that
    :class:`PolyphaseResampler` equals.
    """
    up, down = ratio(in_rate, out_rate)
    samples = np.asarray(samples, dtype=np.float64)
    taps = lowpass(up, down, spec).astype(np.float64)
    delay = (len(taps) - 1) // 2
    reach = np.arange(-(-len(taps) // up))  # how far back from its newest input sample a window goes
    out = np.zeros(output_length(len(samples), up, down), dtype=np.float32)
    for begin in range(0, len(out), 4096):
        centre = down * np.arange(begin, min(begin + 4096, len(out)))[:, None] + delay  # upsampled index
        index = centre // up - reach  # input sample under each tap of each window
        tap = centre - up * index
        valid = (index >= 0) & (index < len(samples)) & (tap < len(taps))
        products = samples[np.clip(index, 0, len(samples) - 1)] * taps[np.clip(tap, 0, len(taps) - 1)]
        out[begin : begin + len(centre)] = np.where(valid, products, 0).sum(axis=1)
    return out


@functools.lru_cache(maxsize=16)
def _polyphase_bank(up: int, down: int, spec: FilterSpec) -> tuple[np.ndarray, np.ndarray, int]:
    """The filter rearranged for :class:`PolyphaseResampler`, designed once per ratio and spec
    (up to 15 ms at 22050 -> 16000 Hz, which would delay the start of every stream): the bank
    (span x L, read-only), the input samples each of a period's outputs needs, and the silence
    (in samples) before the first input sample that the first windows reach."""
    taps = lowpass(up, down, spec)
    delay = (len(taps) - 1) // 2
    # Output n = j L + r is the sum over s of x[M j + s] * taps[M r + D - L s]. Column r of the
    # bank holds those taps for s from `first` (the oldest input any phase reaches) on.
    first = -(delay // up)
    last = (down * (up - 1) + delay) // up
    index = down * np.arange(up)[:, None] + delay - up * np.arange(first, last + 1)[None, :]
    valid = (index >= 0) & (index < len(taps))
    bank = np.ascontiguousarray(np.where(valid, taps[np.clip(index, 0, len(taps) - 1)], 0).T, dtype=np.float64)
    bank.flags.writeable = False
    # Input samples, from the start of its period's window, that output r of a period needs.
    needed = (down * np.arange(up) + delay) // up - first + 1
    needed.flags.writeable = False
    return bank, needed, -first


class PolyphaseResampler:
    """Resamples a mono float32 stream by L/M, block by block, emitting each output sample as soon
    as the input its window ends on has arrived.

    The concatenation of every :meth:`process` result and the final :meth:`flush` equals
    :func:`resample_poly` of the whole signal within float32 rounding (the sums run
    in another order). The sums run in float64, so that how the stream is cut into blocks, which
    changes how the matrix library orders them, does not change one float32 output sample in
    practice. The input still needed waits in a buffer of at most a window's length.
    """

    def __init__(self, in_rate: int, out_rate: int, spec: FilterSpec) -> None:
        self.up, self.down = ratio(in_rate, out_rate)
        self._bank, self._needed, self._history = _polyphase_bank(self.up, self.down, spec)
        self.clear()

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Take one block (a vector); return every output sample whose window it completes (maybe none)."""
        self._taken += len(samples)
        return self._emit(np.concatenate((self._buffer, samples), dtype=np.float64))

    def flush(self) -> np.ndarray:
        """Emit the outputs still held back (their windows end in silence), then start afresh."""
        missing = output_length(self._taken, self.up, self.down) - self._emitted
        padding = np.zeros(len(self._bank) + self.down)  # completes the last window
        tail = self._emit(np.concatenate((self._buffer, padding)))[:missing]
        self.clear()
        return tail

    def clear(self) -> None:
        """Forget all input: the history is silence, as before the first sample."""
        self._buffer = np.zeros(self._history)
        self._row = 0  # outputs of the current period already emitted
        self._taken = 0
        self._emitted = 0

    def _emit(self, buffer: np.ndarray) -> np.ndarray:
        """Compute every output whose window ``buffer`` (a fresh contiguous array, starting at the
        current period's window) completes; keep the input still needed."""
        parts: list[np.ndarray] = []
        if self._row:  # finish the period the last block began, as far as this one reaches
            self._add_rows(parts, buffer, self._row)
            if self._row < self.up:
                self._buffer = buffer
                return self._joined(parts)
            buffer, self._row = buffer[self.down :], 0
        span, step = len(self._bank), self.down
        count = max(0, (len(buffer) - span) // step + 1)
        batch = max(1, _BATCH_VALUES // span)
        for begin in range(0, count, batch):
            # Row j is buffer[M j : M j + span] (a view: the rows overlap), which the matrix
            # product copies out whole: in batches, so the copy stays small whatever the block.
            rows = min(batch, count - begin)
            windows = np.ndarray((rows, span), np.float64, buffer, begin * step * buffer.itemsize,
                                 (step * buffer.itemsize, buffer.itemsize))
            parts.append(np.dot(windows, self._bank).reshape(-1))
        buffer = buffer[count * step :]
        self._add_rows(parts, buffer, 0)  # the next period's first outputs, if their input is here
        self._buffer = buffer
        return self._joined(parts)

    def _add_rows(self, parts: list[np.ndarray], buffer: np.ndarray, start: int) -> None:
        """Add to ``parts`` the current period's outputs from ``start`` on that ``buffer`` has the
        input for, if any; the window beyond it counts as silence, which those outputs' taps never
        reach."""
        if len(buffer) < self._needed[start]:
            return
        end = int(np.searchsorted(self._needed, len(buffer), side="right"))
        window = buffer[: len(self._bank)]
        if len(window) < len(self._bank):
            window = np.concatenate((window, np.zeros(len(self._bank) - len(window))))
        self._row = end
        parts.append(window @ self._bank[:, start:end])

    def _joined(self, parts: list[np.ndarray]) -> np.ndarray:
        if not parts:
            return np.zeros(0, np.float32)
        out = (parts[0] if len(parts) == 1 else np.concatenate(parts)).astype(np.float32)
        self._emitted += len(out)
        return out
