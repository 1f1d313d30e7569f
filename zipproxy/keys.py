"""The typed keys of app, request and response state (``web.AppKey``, ``RequestKey``,
``ResponseKey``): one home, so that any module can read what another one stored."""

from __future__ import annotations

from typing import Final

from aiohttp import web

# The prepared response (ZIP or pass-through), and the body bytes handed to the connection.
RESPONSE: Final = web.RequestKey("response", web.StreamResponse)
SENT: Final = web.ResponseKey("sent", int)
# --public-url ("" = none).
PUBLIC_URL: Final = web.AppKey("public_url", str)
# Set when a client was cut for accepting nothing for --read-timeout (zipresponse.BodyWriter).
STALLED: Final = web.RequestKey("stalled", bool)
