"""A fault-injecting fake DICOMweb upstream for zipproxy's integration tests.

An aiohttp web app on a free ``127.0.0.1`` port, run by its own event loop in a background
thread of the test process (so its clock is the tests' ``time.monotonic()``). Behaviour is chosen
per *scenario*: the first path segment names a :class:`Plan` registered with :meth:`add`, so a
single proxy in front of the fake can exercise every fault::

    fake.add("dup", Plan(segments=multipart_segments([a, a]), pause=0.3))
    curl {proxy}/dup/studies/{uid}?accept=application/zip   # proxy asks {fake}/dup/studies/{uid}

Every request is recorded (:class:`Seen`: method, raw path and query, headers, body, and how the
exchange ended -- including when the fake noticed that the proxy closed the connection).

Bodies are real multipart bodies: :func:`dicom_part` / :func:`multipart_segments` wrap Part-10
files (from :func:`zipproxy.demo.samples.make_study`) the way Orthanc does, one
``Content-Length`` per part. A plan sends its ``segments`` one by one (optionally ``pause``
seconds apart, so the proxy sees them in separate reads, or ``trickle``-d a few bytes at a time)
and then ends the response in one of these ways (``ending``):

``"eof"``     end the HTTP body properly (last chunk / all of Content-Length)
``"close"``   close the TCP connection gracefully (FIN) without ending the HTTP body
``"reset"``   SO_LINGER 0 and close: the proxy gets a TCP RST
``"stall"``   send nothing more for ``stall`` seconds (or until the proxy gives up), then close

``hang=True`` never sends a status line at all. Every response carries ``Connection: close``,
so the proxy keeps no pooled upstream connections (file descriptor counts stay comparable).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

__all__ = [
    "BOUNDARY",
    "DICOM_MULTIPART",
    "FakeUpstream",
    "Plan",
    "Seen",
    "closing_delimiter",
    "dicom_part",
    "multipart_segments",
]

BOUNDARY = "fake-upstream-boundary-7c1d0e"
DICOM_MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def dicom_part(
    data: bytes,
    *,
    first: bool,
    boundary: str = BOUNDARY,
    content_type: str | None = "application/dicom",
    with_length: bool = True,
) -> bytes:
    """One part: its boundary line (with the delimiter's leading CRLF unless ``first``),
    its headers and its body."""
    head = ("" if first else "\r\n") + f"--{boundary}\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    if with_length:
        head += f"Content-Length: {len(data)}\r\n"
    return head.encode("ascii") + b"\r\n" + data


def closing_delimiter(boundary: str = BOUNDARY) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("ascii")


def multipart_segments(
    items: Iterable[bytes | Path],
    *,
    boundary: str = BOUNDARY,
    close: bool = True,
    content_type: str | None = "application/dicom",
) -> list[bytes]:
    """One segment per part, then (``close``) the closing delimiter as its own segment."""
    out = []
    for index, item in enumerate(items):
        data = item.read_bytes() if isinstance(item, Path) else item
        out.append(dicom_part(data, first=index == 0, boundary=boundary, content_type=content_type))
    if close:
        out.append(closing_delimiter(boundary))
    return out


@dataclass
class Plan:
    """What the fake answers for one scenario."""

    status: int = 200
    content_type: str | None = DICOM_MULTIPART
    headers: dict[str, str] = field(default_factory=dict)
    segments: Sequence[bytes] = ()
    #: seconds to sleep after each segment (each is flushed to the socket before the sleep)
    pause: float = 0.0
    #: (bytes, seconds): write each segment in pieces of this size, sleeping between pieces
    trickle: tuple[int, float] | None = None
    #: declared Content-Length; None sends the body chunked
    content_length: int | None = None
    ending: str = "eof"  # "eof" | "close" | "reset" | "stall"
    hang: bool = False  # never send the status line and headers
    stall: float = 10.0  # how long "hang" / "stall" last at most


@dataclass
class Seen:
    """One request the fake received and how the exchange went."""

    scenario: str
    method: str
    path_qs: str
    headers: list[tuple[str, str]]
    body: bytes
    started: float
    finished: float | None = None
    #: "pending", "complete", "closed" (ending close), "reset", "stalled", "hung",
    #: "peer-closed" (the proxy closed the connection while the fake still had more to do)
    outcome: str = "pending"
    peer_closed_at: float | None = None
    bytes_sent: int = 0

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if values else None


class _PeerGone(Exception):
    pass


class FakeUpstream:
    """Start with :meth:`start` (returns self), stop with :meth:`stop`; ``url`` is the origin."""

    def __init__(self) -> None:
        self.plans: dict[str, Plan | Callable[[], Plan]] = {}
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0

    # -- test-side API -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, name: str, plan: Plan | Callable[[], Plan]) -> str:
        """Register a scenario; returns its path prefix (``/name``)."""
        assert "/" not in name and name not in self.plans, name
        self.plans[name] = plan
        return f"/{name}"

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def seen(self, scenario: str) -> list[Seen]:
        return [s for s in self.requests if s.scenario == scenario]

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def start(self) -> FakeUpstream:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        assert self.port, "fake upstream did not start"
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._stopping is not None and self._runner is not None
            self._stopping.set()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=20)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        self._loop = None

    # -- server side ---------------------------------------------------------------------

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        scenario = request.rel_url.raw_path.lstrip("/").split("/", 1)[0]
        body = await request.read()
        seen = Seen(
            scenario,
            request.method,
            request.rel_url.raw_path_qs,
            list(request.headers.items()),
            body,
            time.monotonic(),
        )
        with self._lock:
            self._seen.append(seen)
        plan = self.plans.get(scenario)
        if callable(plan):
            plan = plan()
        if plan is None:
            seen.outcome, seen.finished = "complete", time.monotonic()
            resp = web.Response(status=404, text=f"fake upstream: no scenario {scenario!r}\n")
            resp.force_close()
            return resp
        try:
            return await self._play(request, plan, seen)
        except _PeerGone:
            seen.outcome = "peer-closed"
            return web.Response(status=499)  # never reaches anyone: the connection is gone
        finally:
            seen.finished = time.monotonic()

    def _peer_gone(self, request: web.Request) -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    async def _idle(self, request: web.Request, seconds: float, seen: Seen) -> None:
        """Send nothing for ``seconds``; raise _PeerGone as soon as the proxy closes."""
        assert self._stopping is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stopping.is_set():
            if self._peer_gone(request):
                seen.peer_closed_at = time.monotonic()
                raise _PeerGone
            await asyncio.sleep(0.01)

    async def _write(
        self, resp: web.StreamResponse, data: bytes, seen: Seen, request: web.Request
    ) -> None:
        if self._peer_gone(request):
            seen.peer_closed_at = time.monotonic()
            raise _PeerGone
        try:
            await resp.write(data)
        except ConnectionError as exc:
            seen.peer_closed_at = time.monotonic()
            raise _PeerGone from exc
        seen.bytes_sent += len(data)

    async def _play(self, request: web.Request, plan: Plan, seen: Seen) -> web.StreamResponse:
        if plan.hang:
            await self._idle(request, plan.stall, seen)
            seen.outcome = "hung"
            late = web.Response(status=599, text="fake upstream: too late\n")
            late.force_close()
            return late
        resp = web.StreamResponse(status=plan.status)
        for name, value in plan.headers.items():
            resp.headers[name] = value
        if plan.content_type is not None:
            resp.headers["Content-Type"] = plan.content_type
        if plan.content_length is not None:
            resp.content_length = plan.content_length
        resp.force_close()
        await resp.prepare(request)
        for segment in plan.segments:
            if plan.trickle is None:
                await self._write(resp, segment, seen, request)
            else:
                size, interval = plan.trickle
                for start in range(0, len(segment), size):
                    await self._write(resp, segment[start : start + size], seen, request)
                    await asyncio.sleep(interval)
            if plan.pause:
                await self._idle(request, plan.pause, seen)
        transport = request.transport
        if plan.ending == "eof":
            try:
                await resp.write_eof()
            except ConnectionError as exc:
                seen.peer_closed_at = time.monotonic()
                raise _PeerGone from exc
            seen.outcome = "complete"
        elif plan.ending == "close":
            if transport is not None:
                transport.close()
            seen.outcome = "closed"
        elif plan.ending == "reset":
            if transport is not None:
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            seen.outcome = "reset"
        elif plan.ending == "stall":
            await self._idle(request, plan.stall, seen)
            seen.outcome = "stalled"
            if transport is not None:
                transport.close()
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(f"unknown ending {plan.ending!r}")
        return resp
