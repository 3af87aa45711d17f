"""An async iterable read from a worker thread: each item awaited on the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_END = object()


class AwaitedIterator(Iterator[T], Generic[T]):
    """Iterates ``items`` (an async iterable, such as an async generator) from a thread other than
    ``loop``'s: ``next()`` awaits the next item on ``loop`` and blocks until it is there.

    :meth:`close` (from any thread; it does not wait) ends the iteration at once, also one waiting
    for its next item: that wait is cancelled (``CancelledError`` is raised where the generator
    awaits, so its ``finally`` runs), a ``next()`` blocked on it raises ``StopIteration``, and
    ``items`` is then closed (``aclose()``), whether or not iteration had begun.
    """

    def __init__(self, items: AsyncIterable[T], loop: asyncio.AbstractEventLoop) -> None:
        self._items = aiter(items)
        self._loop = loop
        self._waiting: asyncio.Task[Any] | None = None  # the next item's, on the loop
        self._closing: asyncio.Task[None] | None = None

    def __next__(self) -> T:
        try:
            item = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
        except concurrent.futures.CancelledError:  # closed while it waited
            raise StopIteration from None
        if item is _END:
            raise StopIteration
        return item  # type: ignore[return-value]

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close_soon)

    def _close_soon(self) -> None:
        if self._closing is None:
            self._closing = self._loop.create_task(self._close())

    async def _next(self) -> T | object:
        if self._closing is not None:
            return _END
        self._waiting = asyncio.current_task()
        try:
            return await anext(self._items)
        except StopAsyncIteration:
            return _END
        finally:
            self._waiting = None

    async def _close(self) -> None:
        waiting = self._waiting
        if waiting is not None:
            waiting.cancel()
            await asyncio.wait({waiting})
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):  # the caller's finally failing is no longer the stream's concern
                await aclose()
