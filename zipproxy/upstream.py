"""The upstream client: one aiohttp ``ClientSession``, requests only to the configured origin.

aiohttp's client errors are translated here, at one boundary, into :mod:`zipproxy.errors`.
The incoming ``Host`` never chooses the destination: every URL is the configured origin plus the
request's raw path, so zipproxy cannot be used as an open proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from .errors import (
    RequestTimeout,
    UpstreamBodyError,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
)

ERROR_BODY_LIMIT: Final = 64 * 1024
RECV_SIZE: Final = 1024 * 1024  # bytes asked of the socket per read of an upstream body
# aiohttp's read buffer for a body; it pauses reading when twice this is waiting to be read.
READ_BUFFER: Final = 2 * 1024 * 1024


def session_timeout(connect: float, read: float) -> aiohttp.ClientTimeout:
    """Idle timeouts, never totals: a slow but steady upstream must succeed."""
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect, sock_read=read)


def make_session(connect: float, read: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=session_timeout(connect, read),
        auto_decompress=False,  # pass bodies through byte for byte
        cookie_jar=aiohttp.DummyCookieJar(),  # cookies belong to the client, not to the proxy
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
        read_bufsize=READ_BUFFER,
    )


class Upstream:
    """The configured origin."""

    def __init__(self, session: aiohttp.ClientSession, origin: URL) -> None:
        self.session = session
        self.origin = origin

    def url(self, raw_path: str, raw_query: str = "") -> URL:
        """Origin + base path + the request's raw (still percent-encoded) path and query."""
        base = self.origin.raw_path.rstrip("/")
        target = base + raw_path + ("?" + raw_query if raw_query else "")
        return URL(str(self.origin.origin()) + target, encoded=True)

    async def open(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        data: AsyncIterator[bytes] | bytes | None = None,
    ) -> aiohttp.ClientResponse:
        """Send the request and return once the status line and headers arrived."""
        try:
            resp = await self.session.request(
                method, url, headers=headers, data=data, allow_redirects=False,
                compress=None, chunked=None,
            )
        except TimeoutError as exc:  # includes aiohttp's connect/read timeout errors
            reason = f"upstream did not answer in time ({type(exc).__name__})"
            raise UpstreamTimeout(reason) from exc
        except aiohttp.ClientConnectorError as exc:
            reason = f"upstream unreachable: {exc.os_error.strerror or exc}"
            raise UpstreamUnreachable(reason) from exc
        except (aiohttp.ClientError, OSError) as exc:
            reason = f"upstream failed before answering: {type(exc).__name__}"
            raise UpstreamUnreachable(reason) from exc
        _read_more_at_once(resp)
        return resp

    async def upload(self, method: str, url: URL, headers: CIMultiDict[str],
                     body: aiohttp.StreamReader, timeout: float) -> aiohttp.ClientResponse:
        """:meth:`open` with a request body relayed from ``body`` (a client's upload).

        aiohttp's read timeout does not run while it sends a body, so an upstream that stops
        reading would hold the request forever. A lack of progress for ``timeout`` seconds
        ends it instead: the upstream took no bytes (:class:`UpstreamTimeout`, 504), or the
        client sent none (:class:`RequestTimeout`, 408)."""
        loop = asyncio.get_running_loop()
        watch = _UploadWatch(loop.time())

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                watch.wait("client", loop.time())
                chunk = await body.readany()
                if not chunk:
                    watch.wait("", loop.time())  # sent: now the read timeout applies
                    return
                watch.wait("upstream", loop.time())
                yield chunk

        task = asyncio.ensure_future(self.open(method, url, headers, data=chunks()))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=min(1.0, timeout / 4))
                if done:
                    return task.result()
                if watch.waiting and loop.time() - watch.since >= timeout:
                    if watch.waiting == "upstream":
                        raise UpstreamTimeout(f"upstream took no request body bytes for "
                                              f"{timeout:g} s")
                    raise RequestTimeout(f"the client sent no request body bytes for "
                                         f"{timeout:g} s")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def error_from(self, resp: aiohttp.ClientResponse) -> UpstreamStatus:
        """An upstream error status, its WWW-Authenticate and a bounded copy of its body."""
        keep = ("WWW-Authenticate", "Content-Type", "Retry-After")
        headers = {h: resp.headers[h] for h in keep if h in resp.headers}
        try:
            body = await asyncio.wait_for(resp.content.read(ERROR_BODY_LIMIT), timeout=5)
        except (TimeoutError, aiohttp.ClientError, OSError):
            body = b""
        finally:
            resp.close()
        reason = f"upstream answered {resp.status} {resp.reason or ''}".strip()
        return UpstreamStatus(resp.status, reason, headers, body)


def _read_more_at_once(resp: aiohttp.ClientResponse) -> None:
    """Let the body arrive in reads of up to RECV_SIZE: asyncio reads at most 256 KiB a
    time (``_SelectorSocketTransport.max_size``), and every read costs a syscall and a trip
    through aiohttp's parser, the stream reader and our splitter. With a 2 MiB read buffer
    (``read_bufsize``), reading pauses less often too. Measured on bench study A against
    asyncio's 256 KiB: about 0.2 CPU-s/GiB less for a ZIP at 512 KiB, and 0.13 to 0.19 less
    again at 1 MiB (8 alternated rounds of both packages side by side: 1.46-1.51 -> 1.31-1.33
    CPU-s/GiB) for 5 to 10 MiB more peak RSS; 2 MiB saved nothing more."""
    connection = resp.connection
    transport = connection.transport if connection is not None else None
    if transport is not None and hasattr(transport, "max_size"):
        transport.max_size = RECV_SIZE


class _UploadWatch:
    """Whom an upload waits for ("client", "upstream" or "": nobody), and since when."""

    __slots__ = ("since", "waiting")

    def __init__(self, now: float) -> None:
        self.waiting, self.since = "", now

    def wait(self, whom: str, now: float) -> None:
        self.waiting, self.since = whom, now


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None when it is larger than ``limit`` (``read(n)`` alone returns only
    what is buffered)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in body_chunks(resp):
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def body_chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The response body as the network delivers it; failures become UpstreamBodyError."""
    content = resp.content
    idle = _IdleBody.take_over(resp)
    try:
        while True:
            if idle is not None:
                idle.since = idle.loop.time()  # waiting for the upstream from now on
            chunk = await content.readany()
            if idle is not None:
                idle.since = None
            if not chunk:
                return
            yield chunk
    except TimeoutError as exc:
        raise UpstreamBodyError("upstream stalled longer than the read timeout") from exc
    except (aiohttp.ClientError, OSError) as exc:
        reason = f"upstream connection failed mid-body ({type(exc).__name__})"
        raise UpstreamBodyError(reason) from exc
    finally:
        if idle is not None:
            idle.cancel()


class _IdleBody:
    """The read timeout of a body, checked by one timer a second instead of per read.

    aiohttp restarts a timer for every read it receives (a handle made, one cancelled and
    kept on the heap): a read of 1 MiB at a time still makes a thousand a GiB. Here the
    connection's own read timeout is switched off once the headers are in, and a timer that
    runs every ``min(1, timeout / 4)`` seconds fails the body with :class:`TimeoutError`
    when the loop above has waited ``timeout`` seconds for the upstream. Time the consumer
    spends elsewhere (sending to a slow client) does not count, as aiohttp does not count it
    either (reading is paused then)."""

    def __init__(self, content: aiohttp.StreamReader, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.content = content
        self.timeout = timeout
        self.since: float | None = None
        self._every = min(1.0, timeout / 4)
        self._timer: asyncio.TimerHandle | None = self.loop.call_later(self._every, self._check)

    @classmethod
    def take_over(cls, resp: aiohttp.ClientResponse) -> _IdleBody | None:
        connection = resp.connection
        protocol = connection.protocol if connection is not None else None
        timeout = protocol.read_timeout if protocol is not None else None
        if protocol is None or not timeout:
            return None
        protocol.read_timeout = None  # from the next read on (see ResponseHandler)
        return cls(resp.content, timeout)

    def _check(self) -> None:
        since = self.since
        if since is not None and self.loop.time() - since >= self.timeout:
            self._timer = None
            self.content.set_exception(TimeoutError("upstream sent no bytes for "
                                                    f"{self.timeout:g} s"))
            return
        self._timer = self.loop.call_later(self._every, self._check)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
