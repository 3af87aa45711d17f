"""An async iterable read from a worker thread: its items awaited by one task on the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
from collections.abc import AsyncIterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_END = object()
Answer = concurrent.futures.Future  # what a next() waits on: an item, _END, or the iterable's error


class AwaitedIterator(Iterator[T], Generic[T]):
    """Iterates ``items`` (an async iterable, such as an async generator) from a thread other than
    ``loop``'s: ``next()`` asks for the next item and blocks until it is there.

    One task on ``loop`` reads ``items``, as ``async for`` would: in the context the iterator was
    made in (context variables set before it are seen, and those the iterable sets keep their
    values), and in a single task throughout, so an ``asyncio.timeout()`` or task group spanning
    the iterable's ``yield`` works. It reads an item only when ``next()`` asks for one, so it never
    runs ahead. An error the iterable raises is raised by ``next()``. A cancellation that
    :meth:`close` did not cause (the iterable's own timeout, spanning its ``yield``) is thrown
    into the iterable where it waits, so that ``next()`` raises what the iterable makes of it
    (``TimeoutError``); one the iterable lets through, as :class:`RuntimeError` (cut short).

    :meth:`close` (from any thread; it does not wait) ends the iteration at once, also one waiting
    for its next item: that wait is cancelled (``CancelledError`` is raised where the iterable
    awaits, so its ``finally`` runs), a ``next()`` blocked on it raises ``StopIteration``, and
    ``items`` is then closed (``aclose()``), whether or not iteration had begun.
    """

    def __init__(self, items: AsyncIterable[T], loop: asyncio.AbstractEventLoop) -> None:
        self._items = aiter(items)
        self._loop = loop
        self._context = contextvars.copy_context()
        self._asked: asyncio.Queue[Answer[Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None  # started by the first next()
        self._closing: asyncio.Task[None] | None = None
        self._over = False  # the reader has ended, or close() was called
        self._error: BaseException | None = None  # what ended it, for the next ask

    def __next__(self) -> T:
        answer: Answer[Any] = concurrent.futures.Future()
        try:
            self._loop.call_soon_threadsafe(self._ask, answer)
        except RuntimeError:  # the loop is closed
            raise StopIteration from None
        item = answer.result()
        if item is _END:
            raise StopIteration
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close_soon)

    def _ask(self, answer: Answer[Any]) -> None:
        if self._over:
            self._answer_end(answer)
            return
        if self._reader is None:
            self._reader = self._loop.create_task(self._read(), context=self._context)
        self._asked.put_nowait(answer)

    def _answer_end(self, answer: Answer[Any]) -> None:
        """Once it is over: the error that ended it (once), then the end."""
        error, self._error = self._error, None
        if error is None:
            answer.set_result(_END)
        else:
            answer.set_exception(error)

    def _release_asked(self) -> None:
        while not self._asked.empty():
            self._answer_end(self._asked.get_nowait())

    def _close_soon(self) -> None:
        if self._closing is not None:
            return
        was_over, self._over, self._error = self._over, True, None
        # Answered here, not by the reader: a reader cancelled before its first step never runs.
        self._release_asked()
        reader = self._reader
        if reader is not None and not was_over:
            reader.cancel()
        self._closing = self._loop.create_task(self._aclose_after(reader), context=self._context)

    async def _read(self) -> None:
        answer: Answer[Any] | None = None
        try:
            answer = await self._asked.get()
            async for item in self._items:
                answer.set_result(item)
                answer = None
                answer = await self._asked.get()
        except asyncio.CancelledError as cancel:
            if self._closing is None:  # not close(): the iterable's own timeout, or the loop's shutdown
                error = _cut_short() if answer is not None else await self._thrown_in(cancel)
                if self._closing is None:
                    self._error = error
        except Exception as error:
            self._error = error
        finally:
            self._over = True
            if answer is not None and not answer.done():
                self._answer_end(answer)
            self._release_asked()

    async def _thrown_in(self, cancel: asyncio.CancelledError) -> BaseException:
        """Throw ``cancel``, which came while the iterable waited at a ``yield``, in there; return
        what it raises (an ``asyncio.timeout()`` spanning the ``yield`` makes ``TimeoutError``)."""
        athrow = getattr(self._items, "athrow", None)
        try:
            if athrow is not None:
                await athrow(cancel)
        except asyncio.CancelledError:
            pass
        except Exception as error:
            return error
        await self._aclose()  # it went on (or cannot be thrown into): it ends here all the same
        return _cut_short()

    async def _aclose_after(self, reader: asyncio.Task[None] | None) -> None:
        if reader is not None:
            await asyncio.wait({reader})
        await self._aclose()

    async def _aclose(self) -> None:
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):  # the caller's finally failing is no longer the stream's concern
                await aclose()


def _cut_short() -> RuntimeError:
    return RuntimeError("CancelledError, not from the streamer: it was cut short")
