"""What every decoder hands to the pipeline."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from ..errors import InputError

if TYPE_CHECKING:
    import numpy as np

MIN_RATE = 8_000
MAX_RATE = 192_000
MAX_CHANNELS = 64


class AudioSource(Protocol):
    """Decoded audio, delivered in blocks.

    ``blocks()`` yields float32 arrays of shape ``(frames, channels)`` at ``rate`` Hz, full scale
    = 1.0. It blocks while decoding and raises :class:`InputError` on bad data. ``duration`` is in
    seconds when the container declares it, else ``None``. ``close()`` releases files and
    processes and may be called more than once.
    """

    name: str
    rate: int
    channels: int
    duration: float | None

    def blocks(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


def check_format(name: str, rate: int, channels: int) -> None:
    """Reject sample rates and channel counts outside what the pipeline supports (or not whole
    numbers: a caller's own, through the Python API)."""
    if not (_whole(rate) and _whole(channels)):
        raise InputError(name, f"rate and channels must be whole numbers, not {rate!r} and {channels!r}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(name, f"sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise InputError(name, f"{channels} channels is outside 1..{MAX_CHANNELS}")


def _whole(number: object) -> bool:
    return isinstance(number, numbers.Real) and not isinstance(number, bool) and float(number).is_integer()


def checked(source: AudioSource) -> AudioSource:
    """Return ``source`` if the pipeline supports its rate and channel count; else close it and raise."""
    try:
        check_format(source.name, source.rate, source.channels)
    except InputError:
        source.close()
        raise
    return source


def check_complete(name: str, decoded_seconds: float, declared_seconds: float | None, *,
                   padding_seconds: float = 0.0) -> None:
    """Raise if the stream ended well before the length its header declared (a truncated file):
    more than 1 % + 50 ms short, and ``padding_seconds`` more for a codec whose declared length
    may count padding its decoder trims."""
    if declared_seconds is not None and decoded_seconds < declared_seconds * 0.99 - 0.05 - padding_seconds:
        raise InputError(
            name, f"truncated: the header declares {declared_seconds:.2f} s, the data ends at {decoded_seconds:.2f} s"
        )
