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
    values), and in a single task throughout (an ``asyncio.timeout()`` or task group spanning the
    iterable's ``yield`` works). It reads an item only when ``next()`` asks for one, so it never
    runs ahead. An error the iterable raises is raised by ``next()``; so is a ``CancelledError``
    that :meth:`close` did not cause, as :class:`RuntimeError` (the iterable was cut short).

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
        self._closed = False

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
        if self._closed:
            answer.set_result(_END)
            return
        if self._reader is None:
            self._reader = self._loop.create_task(self._read(), context=self._context)
        self._asked.put_nowait(answer)

    def _close_soon(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reader is None:
            self._reader = self._loop.create_task(self._aclose(), context=self._context)
        else:
            self._reader.cancel()

    async def _read(self) -> None:
        answer: Answer[Any] | None = None
        try:
            answer = await self._asked.get()
            async for item in self._items:
                answer.set_result(item)
                answer = None
                answer = await self._asked.get()
        except asyncio.CancelledError:
            if answer is not None and not self._closed:
                answer.set_exception(RuntimeError("CancelledError, not from the streamer: it was cut short"))
        except Exception as error:
            if answer is not None:
                answer.set_exception(error)
        finally:
            self._closed = True
            if answer is not None and not answer.done():
                answer.set_result(_END)
            while not self._asked.empty():  # asked for after the end: there is nothing more
                self._asked.get_nowait().set_result(_END)
            await self._aclose()

    async def _aclose(self) -> None:
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):  # the caller's finally failing is no longer the stream's concern
                await aclose()
