"""Events fanned out to asyncio subscribers, each with a bounded backlog."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator
from typing import Any

Event = dict[str, Any]

CLOSED = "closed"


class EventFeed:
    """Hands every published event to each subscriber of :meth:`subscribe`.

    Publish on the event loop's thread; it never blocks. A subscriber that falls more than
    ``backlog`` events behind loses its oldest ones.
    """

    def __init__(self, backlog: int = 1000) -> None:
        self._backlog = backlog
        # Weak: a subscription made and dropped without being iterated leaves nothing behind.
        self._subscribers: weakref.WeakSet[asyncio.Queue[Event]] = weakref.WeakSet()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> None:
        for subscriber in self._subscribers:
            if subscriber.full():
                subscriber.get_nowait()
            subscriber.put_nowait(event)

    def close(self, t: float) -> None:
        """End every subscription (an event named ``closed`` ends them), and those made later at
        once; closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.publish({"t": t, "event": CLOSED})

    def subscribe(self, keepalive_s: float | None = None) -> AsyncGenerator[Event | None, None]:
        """Events from this call on (not from the first iteration) until the feed is closed; with
        ``keepalive_s``, also None whenever nothing has come for that long (so a caller can keep a
        connection alive)."""
        subscriber: asyncio.Queue[Event] = asyncio.Queue(maxsize=self._backlog)
        if self._closed:
            subscriber.put_nowait({"event": CLOSED})
        else:
            self._subscribers.add(subscriber)
        return self._follow(subscriber, keepalive_s)

    async def _follow(self, subscriber: asyncio.Queue[Event],
                      keepalive_s: float | None) -> AsyncGenerator[Event | None, None]:
        try:
            while True:
                try:
                    event = await asyncio.wait_for(subscriber.get(), keepalive_s)
                except TimeoutError:
                    yield None
                    continue
                if event["event"] == CLOSED:
                    return
                yield event
        finally:
            self._subscribers.discard(subscriber)
