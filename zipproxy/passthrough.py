"""Everything that is not a ZIP goes to the upstream unchanged, streamed both ways.

Method, raw path, raw query, status and end-to-end headers are kept; bodies are never buffered
(a 1 GB STOW-RS upload streams from the client socket to the upstream socket, a large multipart
retrieval the other way). ``X-Forwarded-For/Proto/Host`` are added.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from .upstream import Upstream, body_chunks, end_to_end

# The prepared response (ZIP or pass-through), and the body bytes handed to the connection.
RESPONSE: Final = web.RequestKey("response", web.StreamResponse)
SENT: Final = web.ResponseKey("sent", int)


def forwarded_headers(request: web.Request, drop: tuple[str, ...] = ()) -> CIMultiDict[str]:
    """The client's end-to-end headers for the upstream, plus X-Forwarded-*."""
    headers = end_to_end(request.headers, drop=("Host", *drop))
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers


def response_headers(upstream_headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    # Content-Length stays when the upstream sent one; otherwise aiohttp chunks the answer.
    return end_to_end(upstream_headers)


async def forward(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    url = upstream.url(request.rel_url.raw_path, request.rel_url.raw_query_string)
    data = request.content if request.body_exists else None
    resp = await upstream.open(request.method, url, forwarded_headers(request), data=data)
    try:
        out = web.StreamResponse(status=resp.status, reason=resp.reason,
                                 headers=response_headers(resp.headers))
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit():
            out.content_length = int(length)
        request[RESPONSE] = out
        await out.prepare(request)
        if request.method != "HEAD":
            sent = 0
            try:
                async for chunk in body_chunks(resp):
                    await out.write(chunk)
                    sent += len(chunk)
            finally:
                out[SENT] = sent
        await out.write_eof()
        return out
    finally:
        resp.close()
