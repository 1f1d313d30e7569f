"""The one QIDO-RS client (PS3.18 10.6): bounded reads, paging, and DICOM JSON values.

Every search the proxy makes for a client (a collection's matches, a rendered ZIP's instances,
a collection's sizes, a link's access check) goes through here, with the client's headers
(:func:`~zipproxy.forwarding.upstream_headers`), so a caller learns nothing it could not ask.
An answer is read whole but never past :data:`JSON_LIMIT` bytes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
from multidict import CIMultiDict

from .errors import TooLarge, UpstreamBodyError
from .negotiation import is_valid_uid
from .upstream import Upstream, read_bounded

JSON_LIMIT: Final = 16 * 1024 * 1024  # bytes of one JSON answer read at most
PAGE: Final = 1000  # matches asked per request of a paged search (limit/offset)
DICOM_JSON: Final = "application/dicom+json"
NARROW: Final = "narrow the search or page with limit and offset"


def value(item: object, tag: str) -> object:
    """The first value of attribute ``tag`` (``"0020000D"``) of a DICOM JSON object (PS3.18
    F.2), or None when it is absent or empty."""
    element = item.get(tag) if isinstance(item, dict) else None
    values = element.get("Value") if isinstance(element, dict) else None
    return values[0] if isinstance(values, list) and values else None


def number(item: object, tag: str) -> int | None:
    """An integer value: US/UL come as JSON numbers, IS as strings (PS3.18 F.2.3)."""
    found = value(item, tag)
    if isinstance(found, bool):
        return None
    if isinstance(found, int):
        return found
    if isinstance(found, float) and found.is_integer():
        return int(found)
    if isinstance(found, str):
        try:
            return int(found.strip())
        except ValueError:
            return None
    return None


def text(item: object, tag: str) -> str | None:
    found = value(item, tag)
    return found if isinstance(found, str) else None


def uid(item: object, tag: str) -> str | None:
    """A UID value that is valid (PS3.5 9.1), so that it may go into a URL; else None."""
    found = text(item, tag)
    return found if found is not None and is_valid_uid(found) else None


async def read_json(resp: aiohttp.ClientResponse, what: str = "answer") -> object:
    """A JSON body read whole, at most JSON_LIMIT bytes (TooLarge); an empty body is None."""
    body = await read_bounded(resp, JSON_LIMIT)
    if body is None:
        raise TooLarge(f"upstream {what} is larger than {JSON_LIMIT} bytes: {NARROW}")
    try:
        return json.loads(body) if body else None
    except ValueError as exc:
        raise UpstreamBodyError(f"upstream {what} is not JSON") from exc


async def search(upstream: Upstream, path: str, query: str,
                 headers: CIMultiDict[str]) -> list[object]:
    """One QIDO-RS request: its matches (none for 204 or an empty body). An error status is
    raised as the upstream's own (:meth:`~zipproxy.upstream.Upstream.error_from`)."""
    send = CIMultiDict(headers)
    send["Accept"] = DICOM_JSON
    resp = await upstream.open("GET", upstream.url(path, query), send)
    try:
        if resp.status == 204:
            return []
        if resp.status != 200:
            raise await upstream.error_from(resp)
        found = await read_json(resp, "QIDO answer")
    finally:
        resp.close()
    if found is None:
        return []
    if not isinstance(found, list):
        raise UpstreamBodyError("upstream QIDO answer is not a JSON array")
    return found


async def pages(upstream: Upstream, path: str, query: str, headers: CIMultiDict[str],
                key: str) -> AsyncIterator[list[object]]:
    """Every match of a search, PAGE at a time (``limit``/``offset``), each match once (by the
    value of ``key``); it ends when a page brings nothing new: a server may cap its pages below
    PAGE, and some ignore ``offset`` and repeat their first page."""
    seen: set[str | None] = set()
    offset = 0
    while True:
        paged = "&".join(q for q in (query, f"limit={PAGE}&offset={offset}") if q)
        page = await search(upstream, path, paged, headers)
        offset += len(page)
        fresh = []
        for item in page:
            ident = text(item, key)
            if ident is None or ident not in seen:
                seen.add(ident)
                fresh.append(item)
        if not fresh:
            return
        yield fresh
