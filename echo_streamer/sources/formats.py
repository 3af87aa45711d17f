"""Names of the sample formats a byte stream may carry (no numpy here: the command line lists them)."""

from __future__ import annotations

AUTO = "auto"
# Bytes per sample of each raw format, named as ffmpeg names them.
RAW_FORMATS = {"s16le": 2, "s24le": 3, "s32le": 4, "f32le": 4, "f64le": 8, "u8": 1, "mulaw": 1, "alaw": 1}
STREAM_FORMATS = (AUTO, *RAW_FORMATS)


def check_stream_format(sample_format: str, rate: int | None, channels: int | None) -> None:
    """:class:`ValueError` unless these describe a byte stream the pipeline takes: ``"auto"`` (the
    stream says its rate and channels), or a raw format with its rate and channel count."""
    from ..errors import InputError
    from .base import check_format

    if sample_format == AUTO:
        if rate is not None or channels is not None:
            raise ValueError("rate and channels describe raw samples: with 'auto' they come from the stream")
        return
    if sample_format not in RAW_FORMATS:
        raise ValueError(f"sample_format must be 'auto' or one of {', '.join(RAW_FORMATS)}, not {sample_format!r}")
    if rate is None or channels is None:
        raise ValueError(f"raw {sample_format} needs rate and channels")
    try:
        check_format(sample_format, rate, channels)
    except InputError as error:
        raise ValueError(error.reason) from None
