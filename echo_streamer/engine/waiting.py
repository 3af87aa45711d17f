"""Waiting for work unless something stops it first; blocking calls that must not hold up the exit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


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


def in_daemon_thread(function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run a blocking call in a daemon thread of its own, for calls that may block for ever (a
    pipe no one writes, a sound server that hangs): unlike ``asyncio.to_thread``, whose threads
    the interpreter waits for at exit, it never holds up the exit. Cancelling the future leaves
    the call running; its outcome is then dropped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        outcome: tuple[Callable[[Any], None], Any]
        try:
            outcome = (future.set_result, function(*args))
        except BaseException as error:  # handed to the awaiting task
            outcome = (future.set_exception, error)
        try:
            loop.call_soon_threadsafe(_settle, future, *outcome)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass

    threading.Thread(target=run, daemon=True).start()
    return future


def _settle(future: asyncio.Future[Any], setter: Callable[[Any], None], value: Any) -> None:
    if not future.done():
        setter(value)
