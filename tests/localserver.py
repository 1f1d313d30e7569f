"""One small aiohttp app served on a loopback port for a unit test (``async for server in …``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestServer


async def serve(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()
