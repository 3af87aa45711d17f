"""Errors that reach the user as one line each."""

from __future__ import annotations

_LINE_BREAKS = str.maketrans({"\n": "\\n", "\r": "\\r"})


class InputError(Exception):
    """An input that cannot be streamed: missing, unreadable, corrupt, or out of range.

    ``str(error)`` is the one-line message shown to users: ``"<input>: <reason>"``.
    """

    def __init__(self, source: str, reason: str) -> None:
        # A line break in a file name would make two lines of the message: written escaped.
        super().__init__(f"{source.translate(_LINE_BREAKS)}: {reason}")
        self.source = source
        self.reason = reason


class JoinError(Exception):
    """The Daily room could not be joined (bad URL, network, timeout)."""
