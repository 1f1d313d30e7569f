"""Everything that is not a ZIP goes to the upstream unchanged, streamed both ways.

Method, raw path, raw query, status and end-to-end headers are kept; bodies are never buffered
(a 1 GB STOW-RS upload streams from the client socket to the upstream socket, a large multipart
retrieval the other way).

The proxy tells the upstream where clients reach it, so that the URLs the upstream writes into
its answers (QIDO RetrieveURL (0008,1190), metadata BulkDataURIs, PS3.18 F.2.6) lead back through
the proxy: ``X-Forwarded-For`` is appended to, ``X-Forwarded-Proto/Host`` and ``Forwarded``
(RFC 7239) are set from ``--public-url`` or from the request's own scheme and Host. The
client's own ``Forwarded`` and ``X-Forwarded-Proto/Host`` are not trusted and not passed on.
"""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .keys import PUBLIC_URL, RESPONSE
from .upstream import Upstream, body_chunks, end_to_end
from .zipresponse import BodyWriter

# A host[:port] that needs no quoting: Orthanc's DICOMweb plugin reads Forwarded values verbatim
# (a quoted host would end up, quotes and all, in its URLs).
_PLAIN_HOST: Final = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def public_origin(request: web.Request) -> tuple[str, str]:
    """(scheme, host[:port]) clients use to reach the proxy: --public-url, else the request's."""
    public = request.app.get(PUBLIC_URL, "")
    if public:
        url = URL(public)
        return url.scheme, url.raw_authority
    return request.scheme, request.host


def public_base(request: web.Request) -> str:
    """The URL clients reach the proxy at, for README.TXT: ``--public-url``, else the
    request's scheme and a Host of plain characters; never the upstream (internal topology)."""
    public = request.app.get(PUBLIC_URL, "")
    if public:
        return str(public)
    scheme, host = public_origin(request)
    if _PLAIN_HOST.fullmatch(host):
        return f"{scheme}://{host}"
    return "(the address this ZIP was downloaded from)"


def forwarded_headers(request: web.Request, drop: tuple[str, ...] = ()) -> CIMultiDict[str]:
    """The client's end-to-end headers for the upstream, plus where the client reached us."""
    headers = end_to_end(request.headers, drop=("Host", "Forwarded", *drop))
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    scheme, host = public_origin(request)
    headers["X-Forwarded-Proto"] = scheme
    headers["X-Forwarded-Host"] = host
    # RFC 7239 4: one element of our own. Orthanc's DICOMweb plugin builds its URLs from it when
    # its DicomWeb.Host is unset (it ignores X-Forwarded-*).
    if _PLAIN_HOST.fullmatch(host):
        headers["Forwarded"] = f"proto={scheme};host={host}"
    return headers


def response_headers(upstream_headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    # Content-Length stays when the upstream sent one; otherwise aiohttp chunks the answer.
    return end_to_end(upstream_headers)


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
