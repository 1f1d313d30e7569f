"""retrieve.stream_zip on its own: a handler that calls it, an in-process upstream that serves a
multipart/related body of small instances (or fails), and a real aiohttp client. The
integration tests run the whole proxy against a real Orthanc; this one pins stream_zip's own
contract: what it asks the upstream, when the answer starts, and that a failure after the
start never ends like a complete ZIP."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from dicomfactory import encode, make
from localserver import serve
from multidict import CIMultiDictProxy
from test_multipart import BOUNDARY, build
from yarl import URL

from zipproxy.config import Settings
from zipproxy.errors import UpstreamBodyError, UpstreamStatus, ZipProxyError
from zipproxy.keys import RESPONSE
from zipproxy.negotiation import ZipRequest
from zipproxy.retrieve import Plan, stream_zip
from zipproxy.upstream import Upstream, make_session
from zipproxy.zipresponse import abort

STUDY = "1.2.3"
README = b"readme\r\n"
MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
INSTANCES = [encode(make("CT", seed=f"i{n}", number=n)) for n in range(3)]


@dataclass
class Run:
    """What one download saw, on both sides of stream_zip."""

    mode: str = "ok"  # the upstream: ok, 404, cut
    upstream_headers: list[CIMultiDictProxy[str]] = field(default_factory=list)
    started: int = 0
    error: ZipProxyError | None = None


def _upstream_app(run: Run) -> web.Application:
    async def study(request: web.Request) -> web.StreamResponse:
        run.upstream_headers.append(request.headers)
        if run.mode == "404":
            return web.Response(status=404, text="no such study")
        body = build(INSTANCES)
        out = web.StreamResponse(headers={"Content-Type": MULTIPART})
        await out.prepare(request)
        if run.mode == "cut":  # the first instance, then the connection drops
            await out.write(body[:len(body) // 2])
            assert request.transport is not None
            request.transport.abort()
            return out
        await out.write(body)
        await out.write_eof()
        return out

    app = web.Application()
    app.router.add_get(f"/dw/studies/{STUDY}", study)
    return app


def _proxy_app(run: Run, upstream: Upstream, settings: Settings) -> web.Application:
    plan = Plan((f"/dw/studies/{STUDY}",), "", f"study-{STUDY}.zip", README)

    def on_start() -> None:
        run.started += 1

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await stream_zip(request, plan, ZipRequest("*"), upstream, settings,
                                    on_start=on_start)
        except ZipProxyError as exc:  # what app.errors_and_log does, in short
            run.error = exc
            prepared: web.StreamResponse | None = request.get(RESPONSE)
            if prepared is not None and prepared.prepared:
                abort(request)
                return prepared
            return web.Response(status=exc.status, text=exc.reason)

    app = web.Application()
    app.router.add_route("*", "/zip", handler)
    return app


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[Run, URL]]:
    run = Run()
    async for up in serve(_upstream_app(run)):
        session = make_session(5, 5)
        try:
            upstream = Upstream(session, up.make_url("/"))
            settings = Settings(upstream=up.make_url("/"))
            async for server in serve(_proxy_app(run, upstream, settings)):
                yield run, server.make_url("/zip")
        finally:
            await session.close()


async def test_a_complete_zip(proxy: tuple[Run, URL]) -> None:
    run, url = proxy
    async with aiohttp.ClientSession() as client, client.get(
            url, headers={"Authorization": "Bearer abc", "Accept": "application/zip",
                          "Range": "bytes=0-10"}) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
        assert resp.headers["Content-Disposition"] == f'attachment; filename="study-{STUDY}.zip"'
        data = await resp.read()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[0] == "README.TXT" and zf.read("README.TXT") == README
        assert names[-2:] == ["MANIFEST.CSV", "DICOMDIR"]
        assert [zf.read(n) for n in names[1:-2]] == INSTANCES
    assert run.started == 1 and run.error is None
    (sent,) = run.upstream_headers
    assert sent["Accept"] == ZipRequest("*").upstream_accept()  # not the client's
    assert sent["Authorization"] == "Bearer abc"  # the client's own credentials
    assert "Range" not in sent  # a range of the ZIP is not a range of the multipart


async def test_head_sends_the_headers_only(proxy: tuple[Run, URL]) -> None:
    run, url = proxy
    async with aiohttp.ClientSession() as client, client.head(url) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
        assert await resp.read() == b""
    assert run.started == 1 and run.error is None


async def test_an_upstream_error_before_the_first_byte_is_its_status(
        proxy: tuple[Run, URL]) -> None:
    run, url = proxy
    run.mode = "404"
    async with aiohttp.ClientSession() as client, client.get(url) as resp:
        assert resp.status == 404 and resp.headers["Content-Type"].startswith("text/plain")
    assert isinstance(run.error, UpstreamStatus) and run.error.status == 404
    assert run.started == 0  # never prepared: no ZIP headers went out


async def test_a_failure_after_the_start_never_ends_like_a_complete_zip(
        proxy: tuple[Run, URL]) -> None:
    run, url = proxy
    run.mode = "cut"
    received = bytearray()
    async with aiohttp.ClientSession() as client, client.get(url) as resp:
        assert resp.status == 200  # the ZIP had started: only a cut is left
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_any():
                received += chunk
    assert isinstance(run.error, UpstreamBodyError) and run.started == 1
    with pytest.raises(zipfile.BadZipFile):  # no central directory: no reader opens it
        zipfile.ZipFile(io.BytesIO(bytes(received)))
