"""Which files ``/v1/play`` may read: those that resolve inside the ``--allow-dir`` roots."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError


class PathRefused(Exception):
    """The path is outside every allowed root (or no root is allowed)."""


class PathInvalid(ValueError):
    """The path is not one a file can have (empty, a NUL in it, too long, a symlink loop), or it
    names a directory, a FIFO, a device or a socket."""


class AllowedPaths:
    """Resolves request paths (symlinks included) and refuses any outside ``roots``.

    Relative paths are taken relative to the first root. Raises ``FileNotFoundError`` for a root
    that does not exist.
    """

    def __init__(self, roots: Iterable[str]) -> None:
        self.roots = tuple(Path(root).resolve(strict=True) for root in roots)
        for root in self.roots:
            if not root.is_dir():
                raise NotADirectoryError(f"{root} is not a directory")

    def resolve(self, path: str) -> Path:
        """The real path of ``path``; raises :class:`PathRefused` when it is not inside a root,
        :class:`PathInvalid` when it cannot name a file, ``FileNotFoundError`` when it does not exist."""
        if not self.roots:
            raise PathRefused("no --allow-dir was given, so no path may be played: upload the audio to /v1/stream")
        if not path or "\0" in path:
            raise PathInvalid(f"{path!r} is not a valid path")
        try:
            real = (self.roots[0] / path).resolve()
            exists, is_dir, is_file = real.exists(), real.is_dir(), real.is_file()
        except (OSError, RuntimeError, ValueError) as error:  # too long, a symlink loop, not encodable
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise PathInvalid(f"{path!r} cannot be resolved: {reason}") from None
        if not any(real.is_relative_to(root) for root in self.roots):
            raise PathRefused(f"{path} is outside the allowed directories")
        if not exists:
            raise FileNotFoundError(f"{path}: no such file")
        if is_dir:
            raise PathInvalid(f"{path} is a directory")
        if not is_file:  # a FIFO would hold the decoder until a writer comes: streams go to /v1/stream
            raise PathInvalid(f"{path} is not a regular file (a FIFO, a device or a socket): upload streams to "
                              "/v1/stream")
        if not os.access(real, os.R_OK):
            raise PathRefused(f"{path} is not readable")
        return real

    @staticmethod
    def check_unchanged(real: Path) -> None:
        """Raise :class:`InputError` if ``real`` (from :meth:`resolve`) no longer resolves to itself:
        a directory on its way was swapped for a symlink since, which could lead outside the
        roots. Called just before the file is opened; what is left is the moment between."""
        try:
            now = real.resolve()
        except (OSError, RuntimeError) as error:
            raise InputError(str(real), f"cannot be resolved any more: {error}") from None
        if now != real:
            raise InputError(str(real), f"changed since it was queued: it leads to {now} now")
