"""The HTTP side of ``zipproxy fetch``: one aiohttp session, the user's credentials on every
request, and server answers turned into :mod:`zipproxy.fetch.errors`.

Reasons quote at most a short, printable excerpt of a server's body: it reaches a terminal, so
control characters (escape sequences) are replaced, and credentials never appear in it
(:class:`zipproxy.fetch.report.Redactor` scrubs every printed line as well).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import TracebackType
from typing import Final, Self

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ..errors import UpstreamBodyError
from ..upstream import read_bounded
from .errors import DownloadFailed, SearchFailed

QIDO_LIMIT: Final = 64 * 1024 * 1024  # bytes of one QIDO-RS page read at most
EXCERPT: Final = 200  # characters of a server's error body quoted in a reason
# 4xx answers that another attempt cannot change; 408 and 429 can, like every 5xx.
PERMANENT: Final = frozenset({400, 401, 403, 404, 405, 406, 410, 413, 414, 415, 422})


def printable(text: str, limit: int = EXCERPT) -> str:
    """One line of at most ``limit`` characters, every control character replaced by a space."""
    line = "".join(ch if ch.isprintable() else " " for ch in text)
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (RFC 9110 10.2.3); the HTTP-date form is ignored."""
    value = headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class Client:
    """``async with Client(headers, jobs) as http``: ``headers`` go on every request."""

    def __init__(self, headers: CIMultiDict[str], jobs: int, read_timeout: float) -> None:
        self.headers = headers
        self._jobs = jobs
        self._read_timeout = read_timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            headers=self.headers,
            # No total timeout: a large study may take hours; an idle socket may not.
            timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=self._read_timeout),
            connector=aiohttp.TCPConnector(limit=self._jobs + 1),
        )
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use Client in `async with`"
        return self._session

    async def qido(self, url: URL) -> list[object]:
        """One QIDO-RS page (PS3.18 10.6): the JSON array, ``[]`` for 204 No Content."""
        try:
            async with self.session.get(
                url, headers={"Accept": "application/dicom+json"}, allow_redirects=True
            ) as resp:
                if resp.status == 204:
                    return []
                if resp.status != 200:
                    raise SearchFailed(status_reason(resp.status, resp.reason,
                                                     await resp.content.read(4096)), resp.status)
                body = await read_bounded(resp, QIDO_LIMIT)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SearchFailed(f"the search failed: {describe(exc)}") from exc
        except UpstreamBodyError as exc:
            raise SearchFailed(f"the search failed: {exc.reason}") from exc
        if body is None:
            raise SearchFailed("a search page is larger than 64 MiB: lower --page-size")
        try:
            found = json.loads(body or b"[]")
        except ValueError as exc:
            raise SearchFailed("the search answer is not JSON (is SEARCH_URL a QIDO-RS search "
                               f"of studies or series?): {printable(repr(body[:80]))}",
                               200) from exc
        if not isinstance(found, list):
            raise SearchFailed("the search answer is not a JSON array", 200)
        return found


def status_reason(status: int, phrase: str | None, body: bytes) -> str:
    """``HTTP 404 Not Found: <excerpt of the body>``."""
    text = printable(body[: EXCERPT * 4].decode("utf-8", "replace"))
    head = f"HTTP {status} {phrase or ''}".rstrip()
    return f"{head}: {text}" if text else head


def describe(exc: BaseException) -> str:
    """A transport failure in a few words, without the URL aiohttp may put in its message."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({printable(str(exc.os_error))})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the body was cut short"
    return type(exc).__name__


def download_error(status: int, phrase: str | None, headers: Mapping[str, str],
                   body: bytes) -> DownloadFailed:
    return DownloadFailed(status_reason(status, phrase, body), status,
                          retryable=status not in PERMANENT, retry_after=retry_after(headers))
