"""qido.py: DICOM JSON values (PS3.18 F.2) and the paged search against an in-process server."""

from __future__ import annotations

import pytest
from aiohttp import web
from localserver import serve
from multidict import CIMultiDict

from zipproxy import qido
from zipproxy.errors import TooLarge, UpstreamBodyError, UpstreamStatus
from zipproxy.upstream import Upstream, make_session

SOP = "00080018"


def _item(sop: object) -> dict[str, object]:
    return {SOP: {"vr": "UI", "Value": [sop]}}


def test_values() -> None:
    item = {"00201208": {"vr": "IS", "Value": [" 12 "]}, "00280010": {"vr": "US", "Value": [512]},
            "00280008": {"vr": "IS", "Value": ["many"]}, "00100010": {"vr": "PN"},
            "0020000D": {"vr": "UI", "Value": ["1.02"]}, "00080016": {"Value": [True]}}
    assert qido.number(item, "00201208") == 12  # IS comes as a string
    assert qido.number(item, "00280010") == 512
    assert qido.number(item, "00280008") is None
    assert qido.number(item, "00080016") is None  # a JSON true is not a number
    assert qido.value(item, "00100010") is None  # present, empty
    assert qido.value(item, "99999999") is None
    assert qido.value(["not", "an", "object"], SOP) is None
    assert qido.text(item, "0020000D") == "1.02"
    assert qido.uid(item, "0020000D") is None  # not a valid UID: never goes into a URL
    assert qido.uid(_item("1.2.3"), SOP) == "1.2.3"


async def _pages(handler: web.RequestHandler | object, query: str = "") -> list[list[object]]:
    app = web.Application()
    app.router.add_get("/dw/instances", handler)  # type: ignore[arg-type]
    found: list[list[object]] = []
    async for server in serve(app):
        session = make_session(5, 5)
        try:
            upstream = Upstream(session, server.make_url("/"))
            async for page in qido.pages(upstream, "/dw/instances", query, CIMultiDict(), SOP):
                found.append(page)
        finally:
            await session.close()
    return found


async def test_pages_follow_a_capped_server_and_stop_on_a_repeated_page() -> None:
    rows = [_item(f"1.{n}") for n in range(25)]
    asked: list[str] = []

    async def capped(request: web.Request) -> web.Response:
        asked.append(request.query_string)
        offset = int(request.query["offset"])
        return web.json_response(rows[offset:offset + 10])

    pages = await _pages(capped, "includefield=00280008")
    assert [len(p) for p in pages] == [10, 10, 5]
    assert asked[0] == f"includefield=00280008&limit={qido.PAGE}&offset=0"
    assert len(asked) == 4 and asked[-1].endswith("offset=25")

    async def ignores_offset(request: web.Request) -> web.Response:
        return web.json_response(rows[:10])

    assert [len(p) for p in await _pages(ignores_offset)] == [10]

    async def nothing(request: web.Request) -> web.Response:
        return web.Response(status=204)

    assert await _pages(nothing) == []


@pytest.mark.parametrize(("answer", "error"), [
    (web.Response(status=403, text="no"), UpstreamStatus),
    (web.Response(body=b"{not json", content_type="application/dicom+json"), UpstreamBodyError),
    (web.json_response({"an": "object"}), UpstreamBodyError),
    (web.Response(body=b"[" + b" " * qido.JSON_LIMIT + b"]"), TooLarge),
])
async def test_search_errors(answer: web.Response, error: type[Exception]) -> None:
    async def handler(request: web.Request) -> web.Response:
        return answer

    with pytest.raises(error):
        await _pages(handler)
