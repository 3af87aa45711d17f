"""EventFeed: the fan-out behind ``Streamer.events()`` and the daemon's ``/v1/events``."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import arun

from echo_streamer.engine.events import EventFeed


def test_every_subscriber_gets_every_event_in_order_until_closed() -> None:
    async def main() -> list[list[Any]]:
        feed = EventFeed()
        seen: list[list[Any]] = [[], []]

        async def read(into: list[Any]) -> None:
            async for event in feed.subscribe():
                into.append(event["n"])

        readers = [asyncio.ensure_future(read(into)) for into in seen]
        await asyncio.sleep(0)
        assert feed.subscribers == 2
        for n in range(5):
            feed.publish({"t": 0.0, "event": "x", "n": n})
        feed.close(0.0)
        await asyncio.gather(*readers)
        assert feed.subscribers == 0
        return seen

    assert arun(main()) == [[0, 1, 2, 3, 4]] * 2


def test_a_slow_subscriber_loses_its_oldest_events() -> None:
    async def main() -> list[int]:
        feed = EventFeed(backlog=3)
        events = feed.subscribe()
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        for n in range(6):
            feed.publish({"t": 0.0, "event": "x", "n": n})
        got = [(await first)["n"]]  # the reader only runs now: 0, 1 and 2 were dropped for 3, 4 and 5
        feed.close(0.0)  # the end is never lost, even from a full backlog
        got += [event["n"] async for event in events]
        return got

    assert arun(main()) == [3, 4, 5]


def test_keepalive_yields_none_while_nothing_happens() -> None:
    async def main() -> list[Any]:
        feed = EventFeed()
        got: list[Any] = []

        async def read() -> None:
            async for event in feed.subscribe(keepalive_s=0.05):
                got.append(None if event is None else event["event"])

        reader = asyncio.ensure_future(read())
        await asyncio.sleep(0.13)
        feed.publish({"t": 0.0, "event": "x"})
        await asyncio.sleep(0.01)
        feed.close(0.0)
        await reader
        return got

    assert arun(main()) == [None, None, "x"]
