"""An HTTP request body, read on the event loop, handed to the decode worker as it arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterator

from aiohttp import web

from ..engine.segment import Segment
from ..errors import InputError

# Body bytes waiting for the decoder at most (a chunk is taken whole): a third of a second of
# 48 kHz stereo PCM16, seconds of MP3. Beyond it the client is held back by TCP flow control.
WAITING_BYTES = 64 << 10


class UploadError(Exception):
    """The upload broke a limit, or its body cannot be read; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UploadLost(Exception):
    """The client went away before its body ended; what arrived still plays, then the segment fails."""


class Upload:
    """A bounded bridge: :meth:`pump` reads the body on the loop, :meth:`chunks` yields it in the worker.

    At most ``max_waiting`` bytes wait in between (the chunk that crosses it taken whole), so a
    client uploading faster than real time is held back by TCP flow control rather than buffered
    here. Once the segment is done (cut,
    dropped, failed) the worker is released at once and the rest of the body is read and thrown
    away, so the client is not left hanging. An upload that breaks a limit fails its segment:
    what the worker has read plays, then :meth:`chunks` raises.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_waiting: int = WAITING_BYTES) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | InputError | None] = asyncio.Queue()
        self._waiting = 0  # bytes in the queue
        self._max_waiting = max_waiting
        self._room = asyncio.Event()
        self._room.set()
        self._ended = False
        self.received = 0

    def chunks(self) -> Iterator[bytes]:
        """The body's chunks as they come; blocks the calling (worker) thread while none is waiting.
        Raises :class:`InputError` naming the segment when the upload broke a limit."""
        while (chunk := asyncio.run_coroutine_threadsafe(self._take(), self._loop).result()) is not None:
            if isinstance(chunk, InputError):
                raise chunk
            yield chunk

    async def pump(self, body: AsyncIterable[bytes], segment: Segment, max_bytes: int, idle_s: float) -> None:
        """Read ``body`` to its end, passing it on while the segment lasts.

        Raises :class:`UploadError` (413) past ``max_bytes``, (408) when nothing arrives for
        ``idle_s`` seconds and (400) for a body that cannot be read (its ``Content-Encoding``
        does not decode it), throwing away what the worker has not read and failing the segment
        with the same reason; and :class:`UploadLost` when the connection is lost, the segment
        failing with that reason once what arrived has played.
        """
        watcher = asyncio.ensure_future(segment.wait())
        watcher.add_done_callback(lambda _: self._abort())
        iterator = aiter(body)
        lost = False
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(anext(iterator), idle_s)
                except StopAsyncIteration:
                    break
                except ConnectionResetError:
                    lost = True
                    break
                except TimeoutError:
                    raise self._fail(segment, UploadError(408, f"no bytes for {idle_s:g} s")) from None
                except web.RequestPayloadError as error:  # a body its Content-Encoding does not decode
                    raise self._fail(segment, UploadError(400, f"the body cannot be read: {error}")) from None
                self.received += len(chunk)
                if self.received > max_bytes:
                    raise self._fail(segment, UploadError(413, f"the body is larger than {max_bytes} bytes"))
                await self._room.wait()  # an _abort meanwhile makes room (and ends the stream)
                if not self._ended:
                    self._put(chunk)
            if not self._ended:
                self._put(InputError(segment.name, f"the connection was lost after {self.received} bytes; "
                                                   "what arrived played") if lost else None)
                self._ended = True
        except BaseException:
            self._abort()
            raise
        finally:
            watcher.cancel()
        if lost:
            raise UploadLost(f"the connection was lost after {self.received} bytes")

    def _put(self, chunk: bytes | InputError | None) -> None:
        self._queue.put_nowait(chunk)
        self._waiting += len(chunk) if isinstance(chunk, bytes) else 0
        if self._waiting >= self._max_waiting:
            self._room.clear()

    async def _take(self) -> bytes | InputError | None:
        chunk = await self._queue.get()
        if isinstance(chunk, bytes):
            self._waiting -= len(chunk)
            if self._waiting < self._max_waiting:
                self._room.set()
        return chunk

    def _fail(self, segment: Segment, error: UploadError) -> UploadError:
        """End the worker's stream now with ``error`` (unless it has ended), throwing away what it has not read."""
        self._abort(InputError(segment.name, str(error)))
        return error

    def _abort(self, error: InputError | None = None) -> None:
        """End the worker's stream now (with ``error``, raised there), throwing away what it has not read."""
        if self._ended:
            return
        self._ended = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._waiting = 0
        self._room.set()
        self._queue.put_nowait(error)
