"""echo-streamer: stream audio into a Daily room as a microphone, for Tavus microphone echo mode.

The public API is :class:`Streamer` (play files, stream your own audio, interrupt it, watch events) and
:func:`render` (the same pipeline without pacing). Both are imported lazily so that
``echo-streamer --help`` does not pay for numpy, soundfile or daily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["InputError", "Interruption", "JoinError", "Segment", "Streamer", "StreamerConfig", "__version__", "render"]

if TYPE_CHECKING:
    from .engine.interrupt import Interruption
    from .engine.segment import Segment
    from .engine.streamer import Streamer, StreamerConfig
    from .errors import InputError, JoinError
    from .renderer import render

_LAZY = {
    "InputError": "errors",
    "JoinError": "errors",
    "Interruption": "engine.interrupt",
    "Segment": "engine.segment",
    "Streamer": "engine.streamer",
    "StreamerConfig": "engine.streamer",
    "render": "renderer",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'echo_streamer' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
