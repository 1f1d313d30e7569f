"""Bounded concurrency: upstream requests made for one client, at most ``width`` at a time.

One ordered window (:func:`ordered_map`): results come in the items' order, the next item
starts when the oldest result is handed out, and leaving early -- the first failure, the client
going away, ``aclose()`` -- cancels what is still running *and waits for it*, so no request
outlives the download that made it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable
from itertools import islice
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def ordered_map(items: Iterable[T], fn: Callable[[T], Coroutine[Any, Any, R]],
                      width: int) -> AsyncGenerator[R, None]:
    """``fn`` over ``items``, at most ``width`` running, results in the items' order; closing
    cancels the rest."""
    todo = iter(items)
    pending: deque[asyncio.Task[R]] = deque()
    try:
        pending.extend(asyncio.create_task(fn(item)) for item in islice(todo, width))
        while pending:
            result = await pending.popleft()
            pending.extend(asyncio.create_task(fn(item)) for item in islice(todo, 1))
            yield result
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def map_all(items: Iterable[T], fn: Callable[[T], Coroutine[Any, Any, R]],
                  width: int) -> list[R]:
    """Every result of :func:`ordered_map`, as a list; the first failure is raised after the
    others were cancelled and awaited."""
    results = ordered_map(items, fn, width)
    try:
        return [result async for result in results]
    finally:
        await results.aclose()
