"""The ranges of the numeric settings, shared by the Python API's checks and the CLI's and the
daemon's options, and the API's check against them. Light on imports, so that ``--help`` stays fast."""

from __future__ import annotations

import math
import numbers
from typing import Any

GAP_MS = (0, 60_000)
BUFFER_MS = (1, None)
LEAD_MS = (1, 200)
STREAM_START_MS = (0, 1000)
BITRATE = (6_000, 510_000)  # bit/s: what Opus encodes
JOIN_TIMEOUT_S = (0.1, 600.0)
MAX_WAIT_MS = (0, 60_000)  # how long a soft interrupt may wait for a pause


def checked(name: str, value: object, limits: tuple[float, float | None], unit: str, *, whole: bool = True) -> Any:
    """``value`` as a plain int (or, unless ``whole``, float) if it is one within ``limits``
    (inclusive; None: no upper limit); else :class:`ValueError` naming ``name``."""
    least, most = limits
    kind = numbers.Integral if whole else numbers.Real
    number = float(value) if isinstance(value, kind) and not isinstance(value, bool) else math.nan  # type: ignore[arg-type]
    if not least <= number <= (math.inf if most is None else most):  # NaN: not a number of that kind
        bounds = f"at least {least}" if most is None else f"from {least} to {most}"
        raise ValueError(f"{name} must be {'a whole' if whole else 'a'} number of {unit}, {bounds}, not {value!r}")
    return int(number) if whole else number
