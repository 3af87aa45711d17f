"""Names of the sample formats a byte stream may carry (no numpy here: the command line lists them)."""

from __future__ import annotations

AUTO = "auto"
# Bytes per sample of each raw format, named as ffmpeg names them.
RAW_FORMATS = {"s16le": 2, "s24le": 3, "s32le": 4, "f32le": 4, "f64le": 8, "u8": 1, "mulaw": 1, "alaw": 1}
STREAM_FORMATS = (AUTO, *RAW_FORMATS)
