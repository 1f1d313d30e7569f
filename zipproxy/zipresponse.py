"""Responses that stream: starting a ZIP answer, writing any long body to a client, and
aborting an answer that has started (:func:`abort`).

:class:`BodyWriter` awaits every ``write()`` (that is the backpressure), coalesces small
pieces, and tells a slow client from a stalled one. A client is cut only when it has accepted
no bytes for ``timeout`` seconds while bytes wait for it: a phone reading 20 KB/s keeps its
download, however long one write takes to drain; a client that stops reading loses it, and its
stream slot is freed. "Accepted" is what the kernel took from the transport: the bytes handed
to the transport minus those still queued in it or unacknowledged in the kernel's send queue. A
timer checks that once per
``timeout / 4`` (at most once a second), so the cost does not depend on the number of writes.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from collections.abc import Iterable
from typing import Final

from aiohttp import web
from aiohttp.http_writer import StreamWriter

from .archive import Buffer
from .errors import ClientStalled
from .keys import RESPONSE, SENT, STALLED
from .upstream import READ_BUFFER, RECV_SIZE

SEND_BUFFER: Final = 1024 * 1024  # bytes the transport may queue before write() waits
WRITE_MIN: Final = 512 * 1024  # pieces are joined into writes of at most about this size
# What one stream's I/O may hold at once: the upstream's body waiting to be read (up to twice
# aiohttp's read buffer) and the read under way, the client's queue and the write under way.
# The held instance and the header budget come on top (--hold-limit, --header-limit).
STREAM_BUFFERS: Final = 2 * READ_BUFFER + RECV_SIZE + SEND_BUFFER + WRITE_MIN


async def start_zip(request: web.Request, filename: str) -> web.StreamResponse:
    """Send the status line and headers of a ZIP download (``filename``: UIDs or counts, no
    patient data, no ``"`` or ``\\``)."""
    out = web.StreamResponse(status=200, headers={
        "Content-Type": "application/zip",
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    })
    request[RESPONSE] = out
    await out.prepare(request)
    if request.transport is not None:
        # Let the kernel drain a few MiB while the next chunk is processed; 64 KiB (the
        # asyncio default) makes every write wait for the client.
        request.transport.set_write_buffer_limits(high=SEND_BUFFER)
    return out


def abort(request: web.Request) -> None:
    """Abort the connection: no last chunk, no central directory, the client sees a failed
    transfer, never a complete-looking ZIP."""
    if request.transport is not None:
        request.transport.abort()


class BodyWriter:
    """Write a prepared response's body, as ``async with BodyWriter(...) as body:``; then
    ``write_eof()``."""

    def __init__(self, request: web.Request, response: web.StreamResponse,
                 timeout: float) -> None:
        self._out = response
        self._request = request
        self._transport = request.transport
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._pending: list[Buffer] = []
        self._pending_bytes = 0
        self.sent = 0
        self._accepted = 0
        self._progress = self._loop.time()
        self.stalled = False
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(self._every, self._check)
        # RFC 9112 7.1: for a chunked answer, each write is framed here, in the one join that
        # gathers its pieces; aiohttp would join every piece with its framing once more.
        payload = response._payload_writer
        self._framed = isinstance(payload, StreamWriter) and payload.chunked
        if isinstance(payload, StreamWriter) and self._framed:
            payload.chunked = False

    @property
    def _every(self) -> float:
        return min(1.0, self._timeout / 4)

    async def __aenter__(self) -> BodyWriter:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """On a clean exit, the rest and the last chunk (never after a failure: a cut answer
        must not end like a whole one); the timer stops either way."""
        try:
            if exc_type is None:
                await self.end()
        finally:
            self.close()

    async def send(self, pieces: Iterable[Buffer]) -> None:
        """Write ``pieces`` now, joined (one copy) into writes of about WRITE_MIN at most."""
        for piece in pieces:
            self._pending.append(piece)
            self._pending_bytes += len(piece)
            if self._pending_bytes >= WRITE_MIN:
                await self.flush()
        await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        pieces, size = self._pending, self._pending_bytes
        self._pending, self._pending_bytes = [], 0
        if self._framed:
            data: Buffer = b"".join([b"%x\r\n" % size, *pieces, b"\r\n"])
        else:
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        await self._write(data, size)

    async def end(self) -> None:
        """The last chunk of a chunked answer; then ``write_eof()`` (RFC 9112 7.1)."""
        await self.flush()
        if self._framed:
            await self._out.write(b"0\r\n\r\n")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _write(self, data: Buffer, size: int) -> None:
        self.sent += size  # handed to the transport: counted before drain() waits
        try:
            await self._out.write(data)
        except ConnectionResetError as exc:  # aiohttp's ClientConnectionResetError too
            if self.stalled:
                raise ClientStalled(f"client accepted nothing for {self._timeout:g} s") from exc
            raise
        finally:
            self._out[SENT] = self.sent

    def _check(self) -> None:
        """The timer: note progress, or cut the connection after ``timeout`` without any."""
        transport = self._transport
        if transport is None or transport.is_closing():
            self._timer = None
            return
        now = self._loop.time()
        queued = transport.get_write_buffer_size() + _unacknowledged(transport)
        accepted = self.sent - queued
        if queued == 0 or accepted > self._accepted:
            self._progress = now
        self._accepted = max(self._accepted, accepted)
        if now - self._progress >= self._timeout:
            self.stalled = True
            self._request[STALLED] = True  # for the log, which sees a cancelled handler
            self._timer = None
            transport.abort()  # the write waiting in drain() fails: see _write
            return
        self._timer = self._loop.call_later(self._every, self._check)


def _unacknowledged(transport: asyncio.BaseTransport) -> int:
    """Bytes in the kernel's send queue that the client has not acknowledged (Linux SIOCOUTQ).

    The kernel takes bytes from the transport in bursts (when half its buffer is free), so the
    transport's own buffer can stand still for seconds while a slow client reads steadily; the
    kernel queue shrinks with every acknowledgement. 0 where the call is not available."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        answer = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", answer)[0])
