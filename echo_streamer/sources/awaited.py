"""An async iterable read from a worker thread: each item awaited on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()


class AwaitedIterator(Iterator[T], Generic[T]):
    """Iterates ``items`` (an async iterable, such as an async generator) from a thread other than
    ``loop``'s: ``next()`` awaits the next item on ``loop`` and blocks until it is there.

    :meth:`close` closes ``items`` (``aclose()``, scheduled on the loop without waiting for it),
    whether or not iteration has begun.
    """

    def __init__(self, items: AsyncIterable[T], loop: asyncio.AbstractEventLoop) -> None:
        self._items = aiter(items)
        self._loop = loop

    def __next__(self) -> T:
        item = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
        if item is _END:
            raise StopIteration
        return item  # type: ignore[return-value]

    def close(self) -> None:
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.create_task, aclose())

    async def _next(self) -> T | object:
        try:
            return await anext(self._items)
        except StopAsyncIteration:
            return _END
