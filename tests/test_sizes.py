"""zipproxy.sizes: the arithmetic, and the Sizer's choices against origins that misbehave.

The Sizer against a real Orthanc (both sources) is in tests/integration/test_collections.py;
the small aiohttp origins here play only what Orthanc cannot: a non-Orthanc origin, one that
ignores ``offset``, one that refuses ``/system``.
"""

from __future__ import annotations

import pytest
from aiohttp import web
from localserver import serve
from multidict import CIMultiDict

from zipproxy.errors import UpstreamStatus
from zipproxy.qido import PAGE
from zipproxy.sizes import HEADER_ALLOWANCE, Size, Sizer, instance_estimate, orthanc_total
from zipproxy.upstream import Upstream, make_session


def _row(sop: str, **values: object) -> dict[str, object]:
    tags = {"rows": "00280010", "columns": "00280011", "bits": "00280100",
            "frames": "00280008", "samples": "00280002"}
    row: dict[str, object] = {"00080018": {"vr": "UI", "Value": [sop]}}
    for name, value in values.items():
        row[tags[name]] = {"Value": [value]}
    return row


def test_estimate_is_native_pixel_data_plus_the_header_allowance() -> None:
    ct = _row("1", rows=512, columns=512, bits=16)
    assert instance_estimate(ct) == HEADER_ALLOWANCE + 512 * 512 * 2
    rgb_cine = _row("2", rows=480, columns=640, bits=8, samples=3, frames="25")  # IS as a string
    assert instance_estimate(rgb_cine) == HEADER_ALLOWANCE + 480 * 640 * 3 * 25
    mask = _row("3", rows=10, columns=10, bits=1)  # 100 bits are 13 bytes (PS3.5 8.1.1)
    assert instance_estimate(mask) == HEADER_ALLOWANCE + 13
    report = _row("4")  # an SR: no pixels
    assert instance_estimate(report) == HEADER_ALLOWANCE
    assert instance_estimate({"00280010": {"Value": ["garbage"]}}) == HEADER_ALLOWANCE


def test_orthanc_total_reads_string_sizes_and_refuses_a_gap() -> None:
    assert orthanc_total([{"DicomUncompressedSize": "94300", "UncompressedSize": "99999"},
                          {"UncompressedSize": "6"}]) == 94306
    assert orthanc_total([{"DicomUncompressedSize": "1"}, {"CountInstances": 3}]) is None
    assert orthanc_total([None]) is None
    assert orthanc_total([]) == 0


async def _measure(app: web.Application, source: str, uids: list[str],
                   calls: int = 1) -> list[object]:
    results: list[object] = []
    async for server in serve(app):
        session = make_session(5, 5)
        try:
            sizer = Sizer(Upstream(session, server.make_url("/")), source)
            for _ in range(calls):
                try:
                    results.append(await sizer.measure("/dicom-web", None, uids, CIMultiDict()))
                except UpstreamStatus as exc:
                    results.append(exc)
        finally:
            await session.close()
    return results


async def test_an_origin_that_ignores_offset_is_counted_once() -> None:
    requests: list[str] = []
    page = [_row(str(n), rows=2, columns=2, bits=8) for n in range(PAGE)]

    async def instances(request: web.Request) -> web.Response:
        requests.append(request.query_string)
        return web.json_response(page, content_type="application/dicom+json")

    app = web.Application()
    app.router.add_get("/dicom-web/studies/1.2/instances", instances)
    (size,) = await _measure(app, "qido", ["1.2"])
    assert size == Size(PAGE * (HEADER_ALLOWANCE + 4), exact=False)
    assert len(requests) == 2  # the second page repeated the first: the Sizer stopped
    assert "includefield=00280002" in requests[0] and f"offset={PAGE}" in requests[1]


async def test_an_origin_that_caps_its_pages_is_counted_whole() -> None:
    """A server may send fewer matches than ``limit`` asked for and still have more (a cap on
    its result size): the Sizer goes on until a page brings nothing new."""
    rows = [_row(str(n), rows=2, columns=2, bits=8) for n in range(25)]

    async def instances(request: web.Request) -> web.Response:
        offset = int(request.query["offset"])
        return web.json_response(rows[offset:offset + 10], content_type="application/dicom+json")

    app = web.Application()
    app.router.add_get("/dicom-web/studies/1.2/instances", instances)
    (size,) = await _measure(app, "qido", ["1.2"])
    assert size == Size(25 * (HEADER_ALLOWANCE + 4), exact=False)


async def test_auto_falls_back_to_qido_and_remembers_a_definite_answer() -> None:
    probes = 0

    async def system(request: web.Request) -> web.Response:
        nonlocal probes
        probes += 1
        if probes == 1:
            return web.Response(status=401)  # says nothing: asked again next time
        return web.json_response({"Name": "not Orthanc"})

    async def instances(request: web.Request) -> web.Response:
        return web.json_response([_row("9", rows=1, columns=1, bits=16)])

    app = web.Application()
    app.router.add_get("/system", system)
    app.router.add_get("/dicom-web/studies/{study}/instances", instances)
    sizes = await _measure(app, "auto", ["1.2", "1.3"], calls=3)
    assert [getattr(s, "exact", None) for s in sizes] == [False, False, False]
    assert [getattr(s, "total", None) for s in sizes] == [2 * (HEADER_ALLOWANCE + 2)] * 3
    assert probes == 2


async def test_an_instance_search_error_is_the_upstreams_own() -> None:
    async def instances(request: web.Request) -> web.Response:
        return web.Response(status=403, text="not yours")

    app = web.Application()
    app.router.add_get("/dicom-web/studies/{study}/instances", instances)
    (error,) = await _measure(app, "qido", ["1.2"])
    assert isinstance(error, UpstreamStatus) and error.status == 403


async def test_orthanc_that_cannot_size_every_match_is_an_error_when_chosen() -> None:
    async def find(request: web.Request) -> web.Response:
        return web.json_response(["aaaa-1"])  # one ID for two UIDs

    app = web.Application()
    app.router.add_post("/tools/find", find)
    with pytest.raises(Exception, match="did not report the size of every match"):
        await _measure(app, "orthanc", ["1.2", "1.3"])

