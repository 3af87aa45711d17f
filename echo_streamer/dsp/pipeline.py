"""The conditioning pipeline: decoded blocks in, exact PCM16 mono frames at the output rate out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .convert import downmix, to_pcm16
from .framer import Framer
from .pauses import PauseDetector
from .resample import QUALITY, StreamResampler

OUTPUT_RATES = (16_000, 24_000)
FRAME_MS_CHOICES = (10, 20)


@dataclass(frozen=True)
class OutputFormat:
    """What the SDK receives: mono PCM16 at ``rate`` Hz, in frames of ``frame_ms`` milliseconds."""

    rate: int = 24_000
    frame_ms: int = 10

    def __post_init__(self) -> None:
        if self.rate not in OUTPUT_RATES:
            raise ValueError(f"output rate must be one of {OUTPUT_RATES}, not {self.rate}")
        if self.frame_ms not in FRAME_MS_CHOICES:
            raise ValueError(f"frame length must be one of {FRAME_MS_CHOICES} ms, not {self.frame_ms}")

    @property
    def frame_samples(self) -> int:
        return self.rate * self.frame_ms // 1000

    @property
    def frame_bytes(self) -> int:
        return 2 * self.frame_samples


class Conditioner:
    """Downmixes, resamples, converts and frames one stream of decoded blocks.

    ``push()`` takes a float ``(frames, channels)`` block of ``channels`` channels and returns
    the whole frames completed so far as a ``(count, frame_samples)`` int16 array; ``finish()``
    flushes the resampler and pads the last frame. ``samples`` counts real (unpadded) output
    samples, ``clipped`` the samples clipped at full scale. ``quality`` picks the resampler (see
    ``dsp.resample``: files, streams and live input each have their own). NaN or infinite
    samples raise :class:`InputError` naming ``name``: from the call whose output they reach,
    which a resampler that holds input back makes a later one (``finish()`` at the latest).
    """

    def __init__(self, name: str, in_rate: int, channels: int, output: OutputFormat, *,
                 quality: str = QUALITY) -> None:
        self.name = name
        self.channels = channels
        self.output = output
        self._resampler = StreamResampler(in_rate, output.rate, quality)
        self._framer = Framer(output.frame_samples)
        self.samples = 0
        self.clipped = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"{self.name}: a block of shape {block.shape} in a stream of {self.channels} channels")
        # Infinities make NaN in the sums, which numpy would warn about on stderr; to_pcm16 tells them.
        with np.errstate(invalid="ignore", over="ignore"):
            return self._frame(self._resampler.process(downmix(block)))

    def finish(self) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            frames = self._frame(self._resampler.flush())
        padded, _real = self._framer.flush()
        return np.concatenate((frames, padded)) if len(padded) else frames

    def _frame(self, mono: np.ndarray) -> np.ndarray:
        try:
            pcm, clipped = to_pcm16(mono)
        except ValueError:
            raise InputError(self.name, "contains NaN or infinite samples") from None
        self.samples += len(pcm)
        self.clipped += clipped
        return self._framer.push(pcm)


def condition(blocks: Iterable[np.ndarray], conditioner: Conditioner) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Run every block through ``conditioner``; yield ``(frames, pauses)`` for each non-empty run.

    ``frames`` is a ``(count, frame_samples)`` int16 array; ``pauses`` marks which of them are
    interrupt points inside the audio (see :class:`~echo_streamer.dsp.pauses.PauseDetector`).
    Input that turns out damaged (an :class:`InputError` from ``blocks``) still yields all it
    decoded before the damage, the resampler's tail included, then raises.
    """
    pauses = PauseDetector(conditioner.output.frame_ms)
    source = iter(blocks)
    damage: InputError | None = None
    while True:
        try:
            block = next(source)
        except StopIteration:
            break
        except InputError as error:  # the source's own, not the conditioner's (NaN): that tail would fail too
            damage = error
            break
        frames = conditioner.push(block)
        if len(frames):
            yield frames, pauses.mark(frames)
    last = conditioner.finish()
    if len(last):
        yield last, pauses.mark(last)
    if damage is not None:
        raise damage
