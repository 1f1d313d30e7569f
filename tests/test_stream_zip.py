"""retrieve.stream_zip called directly from the handler of a tiny aiohttp app, against an
in-process aiohttp upstream that serves ``multipart/related; type="application/dicom"``.

A unit test of stream_zip (headers, phases, failures before and after the first ZIP byte), not a
stand-in for Orthanc: the integration tests run a real one.
"""

from __future__ import annotations

import asyncio
import io
import re
import zipfile
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from dicomfactory import encode, make
from pydicom.fileset import FileSet
from test_assembler import spool_files
from yarl import URL

from zipproxy.config import Settings
from zipproxy.errors import MultipartError, StreamError, UpstreamBodyError, UpstreamStatus
from zipproxy.keys import RESPONSE
from zipproxy.negotiation import ZipRequest
from zipproxy.retrieve import Plan, stream_zip
from zipproxy.spool import Spool
from zipproxy.upstream import Upstream, make_session

BOUNDARY = "stream-zip-test"
STUDY_PATH = "/dicom-web/studies/1.2.3"
README = b"README of the stream_zip test\r\n"
FILENAME = "study-1.2.3.zip"
AUTHORIZATION = "Bearer client-token"
CLIENT = {"Authorization": AUTHORIZATION, "Range": "bytes=0-99", "X-Client-Header": "kept"}
ZIPREQ = ZipRequest("1.2.840.10008.1.2.1")
INSTANCES = [
    encode(make("CT", seed="s1", study="A", series="1", number=1)),
    encode(make("CT", seed="s2", study="A", series="1", number=2)),
    encode(make("SR", seed="s3", study="A", series="2", number=1)),
]
NAMES = ["DICOM/ST000001/SE000001/IM000001", "DICOM/ST000001/SE000001/IM000002",
         "DICOM/ST000001/SE000002/IM000001"]


def part(data: bytes) -> bytes:
    return (b"--%s\r\nContent-Type: application/dicom\r\nContent-Length: %d\r\n\r\n%s\r\n"
            % (BOUNDARY.encode(), len(data), data))


CLOSE = b"--%s--\r\n" % BOUNDARY.encode()




@dataclass
class State:
    """What the upstream is told to do and saw; what the proxy's handler saw."""

    mode: str = "ok"  # ok | error | short | truncated | unclosed | reset
    upstream_requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    on_start_calls: int = 0
    error: BaseException | None = None
    prepared_at_error: bool | None = None
    spool_dir: str = ""
    spools_while_streaming: list[str] = field(default_factory=list)
    spools_after: list[str] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the proxy's handler ended

    async def finished(self) -> None:
        """Wait for the proxy's handler (the client may have its bytes before it returns)."""
        await asyncio.wait_for(self.done.wait(), timeout=30)


async def upstream_handler(request: web.Request) -> web.StreamResponse:
    state: State = request.app[STATE]
    state.upstream_requests.append((request.method, request.path_qs, dict(request.headers)))
    if state.mode == "error":
        return web.Response(status=503, text="upstream busy", headers={"Retry-After": "7"})
    resp = web.StreamResponse(headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'})
    await resp.prepare(request)
    if state.mode == "ok":
        await resp.write(b"".join(part(i) for i in INSTANCES) + CLOSE)
        await resp.write_eof()
        return resp
    if state.mode == "short":  # the body ends before the first instance's UIDs
        await resp.write(part(INSTANCES[0])[:120])
        await resp.write_eof()
        return resp
    # Cut after the first part, once the proxy has started its answer (on_start): so the
    # failure is deterministically one after the first ZIP byte.
    if state.mode == "unclosed":
        await resp.write(part(INSTANCES[0]) + part(INSTANCES[1]))
    else:
        await resp.write(part(INSTANCES[0]) + part(INSTANCES[1])[:300])
    await asyncio.wait_for(state.started.wait(), timeout=30)
    state.spools_while_streaming = spool_files(state.spool_dir)
    if state.mode in ("truncated", "unclosed"):  # a clean HTTP end, the multipart body cut
        await resp.write_eof()
        return resp
    assert state.mode == "reset"
    assert request.transport is not None
    request.transport.abort()  # the connection drops mid-body
    raise asyncio.CancelledError  # as aiohttp ends a handler whose client is gone


STATE = web.AppKey("state", State)


def proxy_app(state: State, upstream: Upstream, settings: Settings) -> web.Application:
    plan = Plan((STUDY_PATH,), "", FILENAME, README)

    def on_start() -> None:
        state.on_start_calls += 1
        state.started.set()

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await stream_zip(request, plan, ZIPREQ, upstream, settings, on_start=on_start)
        except Exception as exc:
            state.error = exc
            prepared: web.StreamResponse | None = request.get(RESPONSE)
            state.prepared_at_error = prepared is not None and prepared.prepared
            if prepared is not None and prepared.prepared:
                # What app.errors_and_log does: cut, never end the answer like a whole one.
                assert request.transport is not None
                request.transport.abort()
                return prepared
            return web.Response(status=599, text=type(exc).__name__)
        finally:
            state.spools_after = spool_files(state.spool_dir)
            state.done.set()

    app = web.Application()
    app.router.add_route("*", STUDY_PATH, handler)
    return app


Env = tuple[State, TestClient[web.Request, web.Application]]


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    # Every spool moves to a file at its first byte, so the fds show whether they were closed.
    monkeypatch.setattr(Spool.__init__, "__defaults__", (None, 1))
    spools = tmp_path / "spool"
    spools.mkdir()
    state = State(spool_dir=str(spools))
    upstream_app = web.Application()
    upstream_app[STATE] = state
    upstream_app.router.add_get(STUDY_PATH, upstream_handler)
    upstream_server = TestServer(upstream_app)
    await upstream_server.start_server()
    settings = Settings(upstream=URL(str(upstream_server.make_url(""))), spool_dir=str(spools))
    session = make_session(settings.connect_timeout, settings.read_timeout)
    client = TestClient(TestServer(proxy_app(state, Upstream(session, settings.upstream),
                                             settings)))
    await client.start_server()
    try:
        yield state, client
    finally:
        await client.close()
        await session.close()
        await upstream_server.close()


def check_upstream_request(state: State) -> None:
    ((method, path, headers),) = state.upstream_requests
    assert (method, path) == ("GET", STUDY_PATH)
    assert headers["Accept"] == ZIPREQ.upstream_accept()
    assert headers["Accept"] == (
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1')
    assert headers["Authorization"] == AUTHORIZATION
    assert "Range" not in headers  # the client's Range is for the ZIP, not the multipart
    assert headers["X-Client-Header"] == "kept"  # other end-to-end headers pass on
    assert state.spools_after == [], "stream_zip left spools open"


async def test_complete_zip(env: Env, tmp_path: Path) -> None:
    state, client = env
    async with client.get(STUDY_PATH, headers={**CLIENT, "Accept": "application/zip"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/zip"
        assert resp.headers["Content-Disposition"] == f'attachment; filename="{FILENAME}"'
        assert re.fullmatch(r'attachment; filename="[a-z]+-[0-9.]+\.zip"',
                            resp.headers["Content-Disposition"])
        data = await resp.read()
    await state.finished()
    assert state.error is None and state.on_start_calls == 1
    check_upstream_request(state)

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == ["README.TXT", *NAMES, "MANIFEST.CSV", "DICOMDIR"]
        assert zf.read("README.TXT") == README
        assert [zf.read(n) for n in NAMES] == INSTANCES
        rows = zf.read("MANIFEST.CSV").decode().splitlines()[1:]
        assert [r.split(",")[0] for r in rows] == NAMES
        assert [r.split(",")[-1] for r in rows] == [f"{zlib.crc32(i):08x}" for i in INSTANCES]
        assert zf.comment.startswith(b"DICOM ZIP by zipproxy: 3 instances in 2 series")
        extracted = tmp_path / "out"
        zf.extractall(extracted)
    fs = FileSet(extracted / "DICOMDIR")
    try:
        assert sorted(Path(i.path).relative_to(extracted).as_posix() for i in fs) == NAMES
    finally:
        fs._stage["t"].cleanup()  # FileSet's staging directory warns when collected


async def test_manifest_query_parameter(env: Env) -> None:
    state, client = env
    async with client.get(STUDY_PATH + "?manifest=false",
                          headers=CLIENT) as resp:
        data = await resp.read()
    await state.finished()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["README.TXT", *NAMES, "DICOMDIR"]
    assert state.on_start_calls == 1


async def test_head_gives_headers_and_no_body(env: Env) -> None:
    state, client = env
    async with client.head(STUDY_PATH, headers=CLIENT) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/zip"
        assert resp.headers["Content-Disposition"] == f'attachment; filename="{FILENAME}"'
        assert await resp.read() == b""
    await state.finished()
    assert state.error is None and state.on_start_calls == 1
    check_upstream_request(state)  # a HEAD is a GET upstream: the ZIP must be known to start


async def test_upstream_error_status_before_the_first_byte(env: Env) -> None:
    state, client = env
    state.mode = "error"
    async with client.get(STUDY_PATH, headers=CLIENT) as resp:
        assert resp.status == 599  # the handler's own answer: stream_zip prepared nothing
        assert await resp.text() == "UpstreamStatus"
    await state.finished()
    assert isinstance(state.error, UpstreamStatus)
    assert state.error.status == 503 and state.error.body == b"upstream busy"
    assert state.error.headers["Retry-After"] == "7"
    assert state.prepared_at_error is False and state.on_start_calls == 0
    check_upstream_request(state)


async def test_body_ending_before_the_first_instance(env: Env) -> None:
    """Bytes came, but no instance was named yet: still an HTTP error, nothing prepared."""
    state, client = env
    state.mode = "short"
    async with client.get(STUDY_PATH, headers=CLIENT) as resp:
        assert resp.status == 599
        assert await resp.text() == "MultipartError"
    await state.finished()
    assert isinstance(state.error, MultipartError)
    assert state.prepared_at_error is False and state.on_start_calls == 0
    check_upstream_request(state)


@pytest.mark.parametrize(("mode", "error"), [("truncated", MultipartError),
                                             ("unclosed", MultipartError),
                                             ("reset", UpstreamBodyError)])
async def test_upstream_cut_after_the_first_part(env: Env, mode: str,
                                                 error: type[StreamError]) -> None:
    """The answer has started: stream_zip raises, the client never gets a complete ZIP."""
    state, client = env
    state.mode = mode
    async with client.get(STUDY_PATH, headers=CLIENT) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
        received = bytearray()
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_any():
                received += chunk
    await state.finished()
    assert len(state.spools_while_streaming) >= 2  # central directory, DICOMDIR records
    assert isinstance(state.error, error)
    assert state.prepared_at_error is True and state.on_start_calls == 1
    assert received.startswith(b"PK\x03\x04")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(received)))
    check_upstream_request(state)
