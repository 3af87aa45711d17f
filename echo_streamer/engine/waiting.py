"""Waiting for work unless something stops it first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def unless(stop: asyncio.Event, work: Awaitable[Any], timeout: float | None = None,
                 tick: tuple[float, Callable[[], None]] | None = None) -> bool:
    """Await ``work`` until it finishes (True; its exception, if any, is raised), or until ``stop``
    is set or ``timeout`` seconds pass (False; ``work`` is cancelled and awaited). Cancelling the
    caller cancels ``work`` too.

    ``tick=(seconds, call)`` calls ``call()`` every ``seconds`` while waiting (a progress line).
    """
    loop = asyncio.get_running_loop()
    ends = None if timeout is None else loop.time() + timeout
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while not task.done() and not stop.is_set():
            left = None if ends is None else ends - loop.time()
            if left is not None and left <= 0:
                break
            wait = left if tick is None else tick[0] if left is None else min(tick[0], left)
            await asyncio.wait({task, stopped}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if tick is not None:
                tick[1]()
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopped.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False
