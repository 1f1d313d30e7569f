"""Rendered ZIPs: the pure helpers, the request matching, and the stream against an in-process
fake upstream (ordering under uneven delays, the concurrency bound, failure before and after the
first ZIP byte)."""

from __future__ import annotations

import asyncio
import csv
import io
import zipfile
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from localserver import serve
from yarl import URL

from zipproxy.app import create_app
from zipproxy.concurrency import ordered_map
from zipproxy.config import Settings
from zipproxy.errors import BadRequest, UpstreamBodyError
from zipproxy.rendered import (
    COLUMNS,
    Instance,
    RenderedRequest,
    image_type,
    manifest_csv,
    parse_instance,
    plan_renders,
    rendered_request,
)
from zipproxy.routes import zip_route

STUDY = "1.2.3"
SETTINGS = Settings(upstream=URL("http://upstream.invalid"))


def test_image_type() -> None:
    assert image_type([]) == "image/png"
    assert image_type(["image/JPEG "]) == "image/jpeg"
    for bad in (["image/gif"], ["image/png", "image/png"], ["png"], ["image/*"]):
        with pytest.raises(BadRequest, match="image/png"):
            image_type(bad)


def test_parse_instance_reads_qido_json_leniently_but_checks_uids() -> None:
    item = {"0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
            "00080018": {"vr": "UI", "Value": ["1.2.3.4.5"]},
            "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
            "00280008": {"vr": "IS", "Value": ["12"]},  # IS as a string: some servers do that
            "00200011": {"vr": "IS", "Value": [3]}, "00200013": {"vr": "IS"}}
    assert parse_instance(item, None) == Instance("1.2.3.4", "1.2.3.4.5",
                                                  "1.2.840.10008.5.1.4.1.1.2", 12, 3, None)
    bare = {"00080018": {"Value": ["9.9"]}, "00280008": {"Value": ["junk"]},
            "00080016": {"Value": ["../x"]}}
    assert parse_instance(bare, "8.8") == Instance("8.8", "9.9")  # series from the path
    for bad in ({"00080018": {"Value": ["1.2/../3"]}}, {"00080018": {"Value": ["1.2"]}}, []):
        with pytest.raises(UpstreamBodyError):
            parse_instance(bad, None if bad != [] else "1.2")


def test_plan_renders_sorts_and_names_by_counters() -> None:
    found = [
        Instance("2.2", "5.1", instance_number=1),          # unnumbered series: after series 1
        Instance("1.1", "4.2", series_number=1, instance_number=2, frames=3),
        Instance("1.1", "4.1", series_number=1, instance_number=1),
        Instance("1.1", "4.0", series_number=1),            # unnumbered instance: last
    ]
    plan = plan_renders(found, "image/jpeg")
    assert [(r.instance.sop, r.frame, r.name) for r in plan] == [
        ("4.1", None, "IMAGES/ST000001/SE000001/IM000001.jpg"),
        ("4.2", 1, "IMAGES/ST000001/SE000001/IM000002_F0001.jpg"),
        ("4.2", 2, "IMAGES/ST000001/SE000001/IM000002_F0002.jpg"),
        ("4.2", 3, "IMAGES/ST000001/SE000001/IM000002_F0003.jpg"),
        ("4.0", None, "IMAGES/ST000001/SE000001/IM000003.jpg"),
        ("5.1", None, "IMAGES/ST000001/SE000002/IM000001.jpg"),
    ]
    frame = "/dw/studies/7.7/series/1.1/instances/4.2/frames/1/rendered"
    assert plan[1].path("/dw", "7.7") == frame
    assert plan[0].path("", "7.7") == "/studies/7.7/series/1.1/instances/4.1/rendered"
    wide = plan_renders([Instance("1", "2", frames=12345)], "image/png")
    assert wide[0].name.endswith("IM000001_F00001.png") and len(wide) == 12345


def test_manifest_csv() -> None:
    rows = list(csv.reader(io.StringIO(manifest_csv([["a", 1, ""]]).decode())))
    assert rows == [list(COLUMNS), ["a", "1", ""]]


async def test_ordered_map_keeps_order_and_bounds_concurrency() -> None:
    running = peak = 0

    async def work(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep((7 * n % 5) / 500)  # uneven: later items often finish first
        running -= 1
        return n

    assert [n async for n in ordered_map(range(20), work, 4)] == list(range(20))
    assert peak == 4


async def test_ordered_map_closing_cancels_the_window() -> None:
    started: list[int] = []

    async def work(n: int) -> int:
        started.append(n)
        await asyncio.sleep(0 if n == 0 else 10)
        return n

    results = ordered_map(range(100), work, 3)
    assert await anext(results) == 0
    await asyncio.sleep(0.01)
    assert started == [0, 1, 2, 3]  # the window refilled to 3, nothing beyond it started
    await results.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left running


def rendered_zip_request(request: web.Request, settings: Settings) -> RenderedRequest | None:
    """What the app does with a request: route it once, then read the rendered ZIP's options."""
    route = zip_route(request, settings)
    if route is None or route.rendered is None:
        return None
    return rendered_request(request, route, settings)


def _request(path: str, accept: str | None = None) -> web.Request:
    return make_mocked_request("GET", path, headers={"Accept": accept} if accept else {})


def test_rendered_zip_request_matching() -> None:
    series = f"/dw/studies/{STUDY}/series/4.5/rendered"
    req = rendered_zip_request(
        _request(series + "?accept=application/zip&type=image/jpeg&viewport=64,64&manifest=1"),
        SETTINGS)
    assert req is not None
    assert (req.prefix, req.study, req.series, req.media_type, req.query) == (
        "/dw", STUDY, "4.5", "image/jpeg", "viewport=64,64")
    header = rendered_zip_request(_request(f"/studies/{STUDY}/rendered", "application/zip"),
                                  SETTINGS)
    assert header is not None and header.series is None and header.media_type == "image/png"
    zip_query = "?accept=application/zip"
    for passes in (_request(f"/studies/{STUDY}/rendered", "image/png"),  # no zip
                   _request(f"/studies/{STUDY}/rendered", "image/png, application/zip"),  # tie
                   _request(f"/studies/{STUDY}/series/4/instances/5/rendered{zip_query}"),
                   _request(f"/studies/{STUDY}/series/4{zip_query}"),
                   make_mocked_request("POST", f"/studies/{STUDY}/rendered{zip_query}")):
        assert rendered_zip_request(passes, SETTINGS) is None
    for refused in (f"/studies/{STUDY}/rendered{zip_query},image/png",  # PS3.18 8.3.3.1
                    f"/studies/{STUDY}/rendered{zip_query}&type=image/gif",
                    f"/studies/01.2/rendered{zip_query}"):
        with pytest.raises(BadRequest):
            rendered_zip_request(_request(refused), SETTINGS)
    with pytest.raises(BadRequest, match="transfer-syntax"):
        rendered_zip_request(_request(f"/studies/{STUDY}/rendered",
                                      "application/zip; transfer-syntax=*"), SETTINGS)


# --- the stream, against an in-process fake upstream -------------------------------------------
# The app keeps per-request state under string keys (RESPONSE, IS_ZIP), which aiohttp 3.14 warns
# about; with filterwarnings=error that warning would be a 500 here (never in a real process).
stream_test = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100


def _qido(count: int) -> list[dict[str, object]]:
    return [{"0020000E": {"Value": ["4.5"]}, "00080018": {"Value": [f"6.{n}"]},
             "00200013": {"Value": [n]}} for n in range(1, count + 1)]


async def _run(render: Handler, count: int,
               check: Callable[[aiohttp.ClientResponse], Awaitable[None]]) -> None:
    async def qido(request: web.Request) -> web.Response:
        offset = int(request.query["offset"])
        return web.json_response(_qido(count)[offset:], content_type="application/dicom+json")

    upstream = web.Application()
    upstream.router.add_get(f"/studies/{STUDY}/instances", qido)
    upstream.router.add_get(f"/studies/{STUDY}/series/4.5/instances/{{sop}}/rendered", render)
    async for up in serve(upstream):
        async for proxy in serve(create_app(Settings(upstream=up.make_url("/"),
                                                      read_timeout=5))):
            async with aiohttp.ClientSession() as session, session.get(
                proxy.make_url(f"/studies/{STUDY}/rendered?accept=application/zip")
            ) as resp:
                await check(resp)


@stream_test
async def test_stream_orders_entries_and_bounds_renders_in_flight() -> None:
    running = peak = 0

    async def render(request: web.Request) -> web.Response:
        nonlocal running, peak
        n = int(request.match_info["sop"].split(".")[1])
        running += 1
        peak = max(peak, running)
        await asyncio.sleep((7 * n % 5) / 200)
        running -= 1
        if n == 3:
            return web.Response(status=415, text="no")
        return web.Response(body=PNG + bytes([n]), content_type="image/png")

    async def check(resp: aiohttp.ClientResponse) -> None:
        assert resp.status == 200
        zf = zipfile.ZipFile(io.BytesIO(await resp.read()))
        assert zf.testzip() is None
        rows = list(csv.DictReader(io.StringIO(zf.read("MANIFEST.CSV").decode())))
        assert [r["SOPInstanceUID"] for r in rows] == [f"6.{n}" for n in range(1, 13)]
        assert rows[2]["path"] == "" and rows[2]["status"] == "415"
        for n, row in enumerate(rows, 1):
            if n != 3:
                assert zf.read(row["path"]) == PNG + bytes([n])
        assert zf.comment == b"zipproxy rendered ZIP: 11 images, 1 not rendered"

    await _run(render, 12, check)
    assert peak == 4


@stream_test
async def test_stream_failure_before_the_first_byte_is_an_http_error() -> None:
    async def render(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()  # no status line at all
        return web.Response()

    async def check(resp: aiohttp.ClientResponse) -> None:
        assert resp.status == 502, await resp.text()

    await _run(render, 3, check)


@stream_test
async def test_stream_failure_after_the_first_byte_aborts() -> None:
    async def render(request: web.Request) -> web.StreamResponse:
        if request.match_info["sop"] != "6.4":
            return web.Response(body=PNG, content_type="image/png")
        out = web.StreamResponse(headers={"Content-Type": "image/png", "Content-Length": "999"})
        await out.prepare(request)
        await out.write(PNG[:10])
        assert request.transport is not None
        request.transport.abort()  # body cut short
        return out

    async def check(resp: aiohttp.ClientResponse) -> None:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()

    await _run(render, 8, check)
