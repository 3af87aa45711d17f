"""Reading a pipe, a named FIFO or standard input as the bytes arrive, one utterance at a time."""

from __future__ import annotations

import os
import select
import stat
import threading
from collections import deque
from collections.abc import Iterator

from ..errors import InputError
from .wavheader import SIGNATURE_SIZE, find_wav_signature

READ_SIZE = 65536
# Read ahead of the consumer at most this much (6 minutes of 22 kHz s16); beyond it the writer waits.
MAX_BUFFERED = 16 << 20
FIFO_CHECK_MS = 250  # how often a FIFO waited on is checked for having been removed or replaced
# Writers of a followed FIFO opened ahead of their turn at most; beyond, the next ones are read as one.
MAX_WAITING_WRITERS = 64


class PipeReader:
    """Reads one open file descriptor until its writer closes it; owns (and closes) the descriptor.

    The bytes come as utterances: what one writer sent. A thread reads the descriptor as fast as
    bytes come (up to ``MAX_BUFFERED`` ahead of the consumer; then the writer waits), so a FIFO's
    end is seen as its writer closes, before a next writer opens it: a TTS process per sentence
    gives an utterance per sentence, raw or compressed. A next writer that opens the FIFO before
    that end was seen (within microseconds, or behind a full buffer) continues the same stream;
    with ``split_wav``, a new RIFF/WAVE header in the stream therefore also ends an utterance,
    and the next one starts with that header.

    :meth:`utterance` yields bytes as soon as any are there (at most ``READ_SIZE`` at a time): it
    never waits for a buffer to fill, so a writer's first bytes move on at once (only the few
    bytes that may begin a WAV header wait for the rest of it). It and :meth:`discard_utterance`
    block while the writer is silent; they may run in two threads. ``utterance_over`` is set
    when the current utterance has been read to its end, ``writer_closed`` when the writer has
    closed, ``ended`` when it has and everything it sent was handed out.
    """

    def __init__(self, fd: int, name: str, split_wav: bool = False) -> None:
        self.fd = fd
        self.name = name
        self.split_wav = split_wav
        self.ended = threading.Event()
        self.writer_closed = threading.Event()
        self.utterance_over = threading.Event()
        self._changed = threading.Condition()
        self._buffer = bytearray()  # read, not handed out yet
        self._writer_closed = False
        self._closing = False
        self.read_error: str | None = None  # why reading stopped, when it was not the writer closing
        self.dropped = False  # set by an interrupt: nothing more of what the writer sends is to play
        self._received = 0  # bytes read from the descriptor
        self._consumed = 0  # bytes taken from the buffer (handed out or dropped)
        self._utterance_start = 0  # where the current utterance began, in bytes received
        self._drop_before = 0  # utterances that began before this byte came before an interrupt
        self._utterance = 0  # which one is current: a late reader of an earlier one gets nothing
        self._fresh = True  # nothing of the current utterance handed out yet
        self._at_next_header = False
        threading.Thread(target=self._fill, name=f"echo-streamer-read {name}", daemon=True).start()

    @classmethod
    def open(cls, path: str, split_wav: bool = False, *, fifo: bool = False) -> PipeReader:
        """Open ``path`` for reading; for a named FIFO this blocks until a writer opens it, or
        until bytes are waiting in it (a writer that came, wrote and went while no reader was
        opening it: a plain blocking open would wait for the writer after it). ``fifo``: it must
        be a named FIFO (one reopened for each writer). Raises :class:`InputError` when it
        cannot be opened (gone, not readable, not a FIFO).
        """
        try:
            if stat.S_ISFIFO(os.stat(path).st_mode):
                return cls(_fifo_with_a_writer(path), path, split_wav)
            if fifo:
                raise InputError(path, "is no longer a named FIFO")
            return cls(os.open(path, os.O_RDONLY), path, split_wav)
        except OSError as error:
            raise InputError(path, f"cannot open it: {error.strerror or error}") from None

    @classmethod
    def stdin(cls, split_wav: bool = False) -> PipeReader:
        """Read standard input, through a duplicate of descriptor 0 set to blocking (which, the file
        status flags being shared, also sets it for whoever else holds that pipe)."""
        try:
            fd = os.dup(0)
        except OSError as error:
            raise InputError("-", f"cannot read it: {error.strerror}") from None
        os.set_blocking(fd, True)  # an inherited O_NONBLOCK would read as the writer closing
        return cls(fd, "-", split_wav)

    def utterance(self) -> Iterator[bytes]:
        """The current utterance's bytes (current now, not when first iterated), as they arrive,
        until its end; raises :class:`InputError` at the end when reading failed (rather than
        the writer closing)."""
        return self._utterance_bytes(self._utterance)

    def _utterance_bytes(self, utterance: int) -> Iterator[bytes]:
        while data := self._next(utterance):
            yield data
        if self.read_error is not None and self.ended.is_set():
            raise InputError(self.name, f"cannot read on: {self.read_error}")

    def discard_utterance(self) -> None:
        """Drop the rest of the current utterance (a cut segment's), as it arrives."""
        utterance = self._utterance
        while self._next(utterance):
            pass

    def discard(self) -> None:
        """Drop everything the writer has sent and sends, until it closes."""
        self.discard_utterance()
        while self.next_utterance():
            self.discard_utterance()

    def drop_received(self) -> None:
        """Mark the utterances that began in what has been received so far as having come before
        an interrupt (:meth:`began_before_drop`); those that begin later have not."""
        with self._changed:
            self._drop_before = self._received

    def began_before_drop(self) -> bool:
        """Whether the current utterance began in bytes received before :meth:`drop_received`."""
        with self._changed:
            return self._utterance_start < self._drop_before

    def next_utterance(self) -> bool:
        """Move on to the utterance that begins where the current one ended at a WAV header;
        False if it ended because the writer closed."""
        with self._changed:
            if not self._at_next_header:
                return False
            self._utterance_start = self._consumed
            self._utterance += 1
            self._fresh, self._at_next_header = True, False
            self.utterance_over.clear()
            return True

    def close(self) -> None:
        """Close the descriptor. While the reading thread still waits on it (the writer has not
        closed), that thread closes it when its read returns: closed now, its number could be
        given to the next open and read by the wrong reader. Closing again does nothing."""
        with self._changed:
            if self._closing:
                return
            self._closing = True
            self._buffer.clear()
            self._changed.notify_all()
            if self._writer_closed:
                os.close(self.fd)

    def _fill(self) -> None:
        """The reading thread: what the writer sends, into the buffer, until it closes."""
        while True:
            with self._changed:
                self._changed.wait_for(lambda: len(self._buffer) < MAX_BUFFERED or self._closing)
            try:
                more = os.read(self.fd, READ_SIZE)
            except OSError as error:  # the end of what can be read, said as it happened
                self.read_error = error.strerror or str(error)
                more = b""
            with self._changed:
                if not self._closing:  # once closed, what the writer still sends is read and dropped
                    self._buffer += more
                self._received += len(more)
                self._writer_closed = not more
                self._changed.notify_all()
                if not more:
                    if self._closing:
                        os.close(self.fd)
                    self.writer_closed.set()
                    return

    def _next(self, utterance: int) -> bytes:
        with self._changed:
            while utterance == self._utterance:
                if data := self._take():
                    self._fresh = False
                    self._changed.notify_all()  # room in the buffer
                    return data
                if self._writer_closed and not self._buffer:
                    self.ended.set()
                    break
                if self._at_next_header:
                    break
                self._changed.wait()
            if utterance == self._utterance:
                self.utterance_over.set()
            return b""

    def _take(self) -> bytes:
        """The buffered bytes that belong to the current utterance and can go out now: at most
        ``READ_SIZE``, and none of a next WAV header (nor of what may be the start of one)."""
        window = bytes(self._buffer[:READ_SIZE + SIGNATURE_SIZE])
        end = len(window)
        found = find_wav_signature(window, 1 if self._fresh else 0) if self.split_wav else None
        if found is not None:
            start, complete = found
            at_the_very_end = len(window) == len(self._buffer) and self._writer_closed
            if complete or not at_the_very_end:
                end = start
                self._at_next_header = start == 0 and complete
        end = min(end, READ_SIZE)
        del self._buffer[:end]
        self._consumed += end
        return window[:end]


class FollowedFifo:
    """A named FIFO read writer after writer: :meth:`next` returns each writer's :class:`PipeReader`
    in turn (blocking until that writer comes).

    Each writer's reader is opened as soon as the writer before it has closed, however far
    playout lags behind, and reads what it sends at once; so writers that come one after another
    (a TTS process per sentence, each done long before its sentence has played) stay apart.
    Were the last reader left open past its writer's end instead, the writers after it would be
    read as one stream. Up to ``MAX_WAITING_WRITERS`` readers wait for their turn; beyond that,
    the writers that come are read as one. When the FIFO is removed or replaced, :meth:`next`
    raises :class:`InputError` once the readers before have been taken.
    """

    def __init__(self, path: str, split_wav: bool) -> None:
        self.path = path
        self.split_wav = split_wav
        self._waiting: deque[PipeReader | InputError] = deque()
        self._changed = threading.Condition()
        threading.Thread(target=self._open_writers, name=f"echo-streamer-follow {path}", daemon=True).start()

    def next(self) -> PipeReader:
        """The next writer's reader, once it has come; blocks until then."""
        with self._changed:
            self._changed.wait_for(lambda: bool(self._waiting))
            reader = self._waiting.popleft()
            self._changed.notify_all()
        if isinstance(reader, InputError):
            raise reader
        return reader

    def drop_waiting(self) -> None:
        """Drop what the writers opened but not yet taken by :meth:`next` have sent or will send
        (an interrupt that drops what is queued): their readers are marked ``dropped`` and read
        to their end at once, in threads of their own, so that no writer is blocked. :meth:`next`
        still returns them, in turn: closing a reader before the next one is open would lose what
        a writer may have left in the FIFO meanwhile."""
        with self._changed:
            dropped = [reader for reader in self._waiting if isinstance(reader, PipeReader) and not reader.dropped]
            for reader in dropped:
                reader.dropped = True
        for reader in dropped:
            threading.Thread(target=reader.discard, name=f"echo-streamer-drop {self.path}", daemon=True).start()

    def _open_writers(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: len(self._waiting) < MAX_WAITING_WRITERS)
            try:
                reader: PipeReader | InputError = PipeReader.open(self.path, self.split_wav, fifo=True)
            except InputError as error:
                reader = error
            with self._changed:
                self._waiting.append(reader)
                self._changed.notify_all()
            if isinstance(reader, InputError):
                return
            reader.writer_closed.wait()


def _fifo_with_a_writer(path: str) -> int:
    """A descriptor reading FIFO ``path``, once a writer has opened it or has left bytes in it.

    A blocking open returns when a writer opens the FIFO (so a writer's utterance begins with its
    open, before its first bytes); but a writer that came, wrote and went just before it would
    leave the open waiting for the writer after it. So the FIFO is also held open without
    blocking (keeping what such a writer leaves) and watched for bytes; whichever comes first.
    When the bytes do, the blocking open is left to the next writer, and closes what it opens.
    A FIFO removed or replaced meanwhile (no writer could reach it any more) raises
    :class:`InputError` within ``FIFO_CHECK_MS``.
    """
    holding = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    fifo = os.fstat(holding)
    woken_read, woken_write = os.pipe()
    guard = threading.Lock()
    outcome: list[int | OSError] = []
    abandoned = False

    through = os.dup(holding)  # the thread's way to this FIFO, whatever the path names by the time it opens

    def open_blocking() -> None:
        try:
            opened: int | OSError = os.open(f"/proc/self/fd/{through}", os.O_RDONLY)
        except OSError as error:
            opened = error
        finally:
            os.close(through)
        with guard:
            if abandoned and isinstance(opened, int):
                os.close(opened)
            elif not abandoned:
                outcome.append(opened)
        try:
            if not abandoned:
                os.write(woken_write, b"!")
        except OSError:  # the waiting side has gone on already
            pass
        os.close(woken_write)

    threading.Thread(target=open_blocking, name="echo-streamer-fifo-open", daemon=True).start()
    watch = select.poll()
    watch.register(holding, select.POLLIN)
    watch.register(woken_read, select.POLLIN)
    try:
        while not (woke := watch.poll(FIFO_CHECK_MS)) and _same_file(path, fifo):
            pass
        with guard:
            abandoned = not outcome
        if abandoned and not woke:  # gone: let the blocking open return (a writer of our own) and end
            os.close(os.open(f"/proc/self/fd/{holding}", os.O_WRONLY | os.O_NONBLOCK))
            raise InputError(path, "removed or replaced while waiting for a writer")
        if abandoned:  # bytes first: a writer came, wrote and went; read them where they wait
            os.set_blocking(holding, True)
            chosen, holding = holding, -1
            return chosen
        if isinstance(outcome[0], OSError):
            raise outcome[0]
        return outcome[0]
    finally:
        if holding != -1:
            os.close(holding)
        os.close(woken_read)


def _same_file(path: str, opened: os.stat_result) -> bool:
    try:
        return os.path.samestat(os.stat(path), opened)
    except OSError:
        return False
