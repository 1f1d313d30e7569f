"""The header policy: which of the client's headers go upstream, which of the upstream's come
back, and the public address the proxy names (for the upstream's URLs and README.TXT).

Three kinds of upstream request, one policy each:

- the pass-through (:func:`forwarded_headers`): every end-to-end header (RFC 9110 7.6.1), plus
  where the client reached the proxy. The upstream writes URLs into its answers (QIDO
  RetrieveURL (0008,1190), metadata BulkDataURIs, PS3.18 F.2.6) that must lead back through the
  proxy: ``X-Forwarded-For`` is appended to, ``X-Forwarded-Proto/Host`` and ``Forwarded``
  (RFC 7239) are set from ``--public-url`` or from the request's own scheme and Host. The
  client's own ``Forwarded`` and ``X-Forwarded-Proto/Host`` are not trusted and not passed on;
- the GETs the proxy makes on the client's behalf for a ZIP, a search or a link check
  (:func:`upstream_headers`): the same, minus what describes the client's own request
  (Accept, conditionals, ranges, body headers), the proxy setting Accept itself; with a signed
  link, the proxy's own upstream credentials instead of the client's;
- answers relayed back (:func:`response_headers`): end-to-end headers only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .keys import PUBLIC_URL

# RFC 9110 7.6.1: connection-specific fields are not forwarded.
HOP_BY_HOP: Final = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
        "TE", "Trailer", "Transfer-Encoding", "Upgrade",
    )
)
# What describes the client's own request, not the upstream requests the proxy makes for it.
OWN_REQUEST: Final = ("Accept", "Accept-Encoding", "Range", "If-Range", "If-None-Match",
                      "If-Modified-Since", "Content-Length", "Content-Type")
# A host[:port] that needs no quoting: Orthanc's DICOMweb plugin reads Forwarded values verbatim
# (a quoted host would end up, quotes and all, in its URLs).
_PLAIN_HOST: Final = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def end_to_end(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], drop: Iterable[str] = ()
) -> CIMultiDict[str]:
    """Copy headers minus hop-by-hop ones, those named by Connection, and ``drop``."""
    connection = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    skip = HOP_BY_HOP | connection | {d.lower() for d in drop}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in skip:
            out.add(name, value)
    return out


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


def upstream_headers(request: web.Request, authorization: str | None = None) -> CIMultiDict[str]:
    """The client's end-to-end headers for upstream GETs the proxy makes on its behalf.

    ``authorization`` (a signed link) replaces the client's Authorization and Cookie headers
    with the proxy's own upstream credentials ("" = none)."""
    drop = OWN_REQUEST + (("Authorization", "Cookie") if authorization is not None else ())
    headers = forwarded_headers(request, drop=drop)
    if authorization:
        headers["Authorization"] = authorization
    return headers


def response_headers(upstream_headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    # Content-Length stays when the upstream sent one; otherwise aiohttp chunks the answer.
    return end_to_end(upstream_headers)
