"""Reading a pipe, a named FIFO or standard input as the bytes arrive, one utterance at a time."""

from __future__ import annotations

import fcntl
import os
import stat
import sys
import termios
import threading
from collections.abc import Iterator

from .wavheader import find_wav_signature

READ_SIZE = 65536
# How often a reader waiting for a FIFO's next writer looks for bytes a writer left while it was not looking.
_WRITER_POLL_S = 0.05


class PipeReader:
    """Reads one open file descriptor until its writer closes it; owns (and closes) the descriptor.

    The bytes come as utterances: what one writer sent. A FIFO shows the end of a writer only if
    the next one has not opened it yet, so writers that follow each other closely (a TTS process
    per sentence) arrive as one stream. With ``split_wav``, a new RIFF/WAVE header in the stream
    therefore also ends an utterance, and the next one starts with that header.

    :meth:`utterance` yields whatever each read returns, as soon as any bytes are there: it never
    waits for a buffer to fill, so a writer's first bytes move on at once (only the few bytes that
    may begin a WAV header wait for the rest of it). It and :meth:`discard_utterance` block while
    the writer is silent; they are meant for two threads, and every read goes through one lock.
    ``utterance_over`` is set when the current utterance has been read to its end, ``ended`` when
    the writer has closed.
    """

    def __init__(self, fd: int, name: str, split_wav: bool = False) -> None:
        self.fd = fd
        self.name = name
        self.split_wav = split_wav
        self.ended = threading.Event()
        self.utterance_over = threading.Event()
        self._lock = threading.Lock()
        self._buffer = b""  # read, not yet handed out
        self._utterance = 0  # which one is current: a late reader of an earlier one gets nothing
        self._fresh = True  # nothing of the current utterance handed out yet
        self._at_next_header = False

    @classmethod
    def open(cls, path: str, split_wav: bool = False) -> PipeReader:
        """Open ``path`` for reading; for a named FIFO this blocks until a writer opens it, or
        until bytes are waiting in it (a writer that came, wrote and went while no reader was
        opening it: a plain blocking open would wait for the writer after it)."""
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            return cls(os.open(path, os.O_RDONLY), path, split_wav)
        return cls(_fifo_with_a_writer(path), path, split_wav)

    def utterance(self) -> Iterator[bytes]:
        """The current utterance's bytes, as they arrive, until its end."""
        utterance = self._utterance
        while data := self._next(utterance):
            yield data

    def discard_utterance(self) -> None:
        """Read and drop the rest of the current utterance, so that the writer is never blocked on a full pipe."""
        utterance = self._utterance
        while self._next(utterance):
            pass

    def next_utterance(self) -> bool:
        """Move on to the utterance that begins where the current one ended at a WAV header;
        False if it ended because the writer closed."""
        with self._lock:
            if not self._at_next_header:
                return False
            self._utterance += 1
            self._fresh, self._at_next_header = True, False
            self.utterance_over.clear()
            return True

    def close(self) -> None:
        os.close(self.fd)

    def _next(self, utterance: int) -> bytes:
        with self._lock:
            while utterance == self._utterance:
                if data := self._take():
                    self._fresh = False
                    return data
                if self._at_next_header or self.ended.is_set():
                    break
                more = os.read(self.fd, READ_SIZE)
                if not more:
                    self.ended.set()
                self._buffer += more
            if utterance == self._utterance:
                self.utterance_over.set()
            return b""

    def _take(self) -> bytes:
        """The buffered bytes that belong to the current utterance and can go out now."""
        found = find_wav_signature(self._buffer, 1 if self._fresh else 0) if self.split_wav else None
        if found is None or (not found[1] and self.ended.is_set()):
            data, self._buffer = self._buffer, b""
            return data
        start, complete = found
        if start == 0 and complete:
            self._at_next_header = True
        data, self._buffer = self._buffer[:start], self._buffer[start:]
        return data


def _fifo_with_a_writer(path: str) -> int:
    """A descriptor reading FIFO ``path`` once a writer has opened it or left bytes in it."""
    # Never blocks, and keeps what a writer leaves in the FIFO while the blocking open waits.
    holding = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    opened: list[int] = []
    opener = threading.Thread(target=lambda: opened.append(os.open(path, os.O_RDONLY)), daemon=True)
    opener.start()
    while opener.is_alive():
        opener.join(_WRITER_POLL_S)
        if opener.is_alive() and _bytes_waiting(holding):
            # Let the blocking open return (a writer that writes nothing), then read what was left.
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            opener.join()
            os.close(opened[0])
            os.set_blocking(holding, True)
            return holding
    os.close(holding)
    return opened[0]


def _bytes_waiting(fd: int) -> int:
    waiting = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, waiting)
    return int.from_bytes(waiting, sys.byteorder)
