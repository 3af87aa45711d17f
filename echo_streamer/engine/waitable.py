"""Something the event loop can wait for: a segment to finish, an interrupt to be carried out."""

from __future__ import annotations

import asyncio
from typing import Self


class Waitable:
    """``await x.wait()`` returns ``x`` once :meth:`mark_done` has been called on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._done = loop.create_future()

    def done(self) -> bool:
        return self._done.done()

    async def wait(self) -> Self:
        """Wait until done (cancelling the wait leaves the object untouched); return it."""
        await asyncio.shield(self._done)
        return self

    def mark_done(self) -> None:
        """Resolve :meth:`wait`; call it on the event loop."""
        if not self._done.done():
            self._done.set_result(None)
