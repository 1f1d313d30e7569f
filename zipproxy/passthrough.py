"""Everything that is not a ZIP goes to the upstream unchanged, streamed both ways.

Method, raw path, raw query, status and end-to-end headers are kept (the header policy, with
the ``Forwarded`` headers that make the upstream's URLs lead back through the proxy, is
:mod:`zipproxy.forwarding`); bodies are never buffered (a 1 GB STOW-RS upload streams from the
client socket to the upstream socket, a large multipart retrieval the other way).
"""

from __future__ import annotations

from aiohttp import web

from .forwarding import forwarded_headers, response_headers
from .keys import RESPONSE
from .upstream import Upstream, body_chunks
from .zipresponse import BodyWriter


async def forward(request: web.Request, upstream: Upstream,
                  timeout: float) -> web.StreamResponse:
    """Relay the request and its answer. ``timeout`` guards both directions as a lack of
    progress: an upstream that takes no request body bytes, a client that sends none or
    accepts none of the answer (:class:`~zipproxy.zipresponse.BodyWriter`)."""
    url = upstream.url(request.rel_url.raw_path, request.rel_url.raw_query_string)
    headers = forwarded_headers(request)
    if request.body_exists:
        resp = await upstream.upload(request.method, url, headers, request.content, timeout)
    else:
        resp = await upstream.open(request.method, url, headers)
    try:
        out = web.StreamResponse(status=resp.status, reason=resp.reason,
                                 headers=response_headers(resp.headers))
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit():
            out.content_length = int(length)
        request[RESPONSE] = out
        await out.prepare(request)
        if request.method != "HEAD":
            async with BodyWriter(request, out, timeout) as body:
                async for chunk in body_chunks(resp):
                    await body.send((chunk,))
        await out.write_eof()
        return out
    finally:
        resp.close()
