"""What bounds the proxy's work over time: the stream slots and the SIGTERM drain."""

from __future__ import annotations

import asyncio

from .errors import TooManyStreams


class StreamSlots:
    """At most ``limit`` concurrent ZIP streams in this process; the next one gets 503."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def __enter__(self) -> StreamSlots:
        if self.active >= self.limit:
            raise TooManyStreams(f"{self.limit} ZIP downloads are already running; retry shortly")
        self.active += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.active -= 1


class Lifecycle:
    """The requests in progress, so that SIGTERM can end them after the grace period.

    aiohttp's own ``shutdown_timeout`` waits twice (once for handlers, once more after nudging
    them) before it cancels, so a ZIP would get twice the grace; zipproxy cancels them itself.
    """

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()
        self.draining = False
        self.timer: asyncio.Task[None] | None = None

    async def drain(self, grace: float) -> None:
        self.draining = True
        await asyncio.sleep(grace)
        for task in list(self.tasks):
            task.cancel()  # aborted: the chunked body never gets its last chunk
