"""Rendered ZIPs: every instance of a study or series as the upstream renders it, in one ZIP.

``GET …/studies/{study}[/series/{series}]/rendered`` with ``accept=application/zip`` (or an Accept
header that picks application/zip) and ``type=image/png`` (default) or ``type=image/jpeg``. Sup 211
dropped this (question 16); each image is a PS3.18 rendered resource (10.4.1.1.3):

1. QIDO-RS (PS3.18 10.6) lists the instances with NumberOfFrames (0028,0008), page by page.
2. ``…/instances/{i}/rendered``, or ``…/instances/{i}/frames/{n}/rendered`` per frame of a
   multi-frame instance, with the client's credentials and rendering parameters (viewport,
   window, quality…), WIDTH in flight, written in a fixed order (series and instance numbers).
3. Entries: README.TXT, ``IMAGES/ST000001/SEnnnnnn/IMnnnnnn[_Fnnnn].png|jpg``, MANIFEST.CSV. No
   DICOMDIR: nothing in it is DICOM.

The image type comes from ``type``, never from ``accept``: PS3.18 8.3.3.1 forbids mixing
application/zip with rendered types in one accept parameter (negotiate() answers 400). A render the
upstream refuses (SR, KO, PDF…) becomes a MANIFEST.CSV row with its status and no entry. Listing
failures are HTTP errors; a transport failure (unreachable, timeout, cut body) is an HTTP error
before the first ZIP byte and aborts the connection after it, as in retrieve.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from multidict import CIMultiDict

from . import qido, readme
from .archive import ArchiveWriter, Buffer
from .concurrency import ordered_map
from .config import Settings
from .errors import BadRequest, NoInstances, TooLarge, UpstreamBodyError
from .forwarding import public_base, upstream_headers
from .routes import CONSUMED, ZipRoute, query_without, zip_password
from .upstream import Upstream, read_bounded
from .zipresponse import BodyWriter, start_zip

EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg"}
WIDTH: Final = 4  # renders in flight per ZIP
MAX_INSTANCES: Final = 100_000
RENDER_LIMIT: Final = 64 * 1024 * 1024  # a larger rendering becomes an error row
THREAD_MIN: Final = 64 * 1024  # a rendered image at least this big is stored off the loop
COLUMNS: Final = ("path", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                  "SOPClassUID", "frame", "media_type", "size", "sha256", "status", "error")


@dataclass(frozen=True)
class RenderedRequest:
    prefix: str
    study: str
    series: str | None
    media_type: str
    query: str  # raw query forwarded to every render
    password: bytes | None = field(default=None, repr=False)

    @property
    def level(self) -> str:
        return "series" if self.series else "study"


@dataclass(frozen=True)
class Instance:
    series: str
    sop: str
    sop_class: str = ""
    frames: int = 1
    series_number: int | None = None
    instance_number: int | None = None


@dataclass(frozen=True)
class Render:
    """One image: an instance, or frame ``frame`` (1-based) of a multi-frame instance."""

    instance: Instance
    frame: int | None
    name: str  # entry name in the ZIP

    def path(self, prefix: str, study: str) -> str:
        i, frame = self.instance, f"/frames/{self.frame}" if self.frame else ""
        return f"{prefix}/studies/{study}/series/{i.series}/instances/{i.sop}{frame}/rendered"


@dataclass(frozen=True)
class Result:
    render: Render
    status: int
    data: bytes | None  # None: not rendered, see error
    error: str = ""


def image_type(values: list[str]) -> str:
    """The ``type`` query parameter: image/png (default) or image/jpeg."""
    if not values:
        return "image/png"
    if len(values) == 1 and values[0].strip().lower() in EXTENSIONS:
        return values[0].strip().lower()
    raise BadRequest(f"type={','.join(values)[:60]!a} is not supported for a rendered ZIP: "
                     "give image/png (the default) or image/jpeg")


def rendered_request(request: web.Request, route: ZipRoute,
                     settings: Settings) -> RenderedRequest:
    """The rendered ZIP a request routed to renderings (:func:`~zipproxy.routes.zip_route`)
    asks for: its image type, and the query forwarded to every render."""
    assert route.rendered is not None
    if route.zipreq.transfer_syntax is not None:
        raise BadRequest("transfer-syntax does not apply to a rendered ZIP; use type=image/png "
                         "or type=image/jpeg")
    target = route.rendered
    return RenderedRequest(target.prefix, target.study, target.series,
                           image_type(request.rel_url.query.getall("type", [])),
                           query_without(request.rel_url.raw_query_string, (*CONSUMED, "type")),
                           zip_password(request, route.zipreq, settings))


def parse_instance(item: object, series: str | None) -> Instance:
    """One QIDO-RS JSON match (PS3.18 F.2); the UIDs that go into URLs are validated."""
    if not isinstance(item, dict):
        raise UpstreamBodyError("upstream QIDO answer holds a match that is not an object")
    series_uid = qido.uid(item, "0020000E") if qido.value(item, "0020000E") else series
    sop = qido.uid(item, "00080018")
    if series_uid is None or sop is None:
        raise UpstreamBodyError("upstream QIDO answer holds a match without valid UIDs")
    return Instance(series_uid, sop, qido.uid(item, "00080016") or "",
                    max(qido.number(item, "00280008") or 1, 1),
                    qido.number(item, "00200011"), qido.number(item, "00200013"))


def plan_renders(instances: Iterable[Instance], media_type: str) -> list[Render]:
    """Sort (series number, series UID, instance number, SOP UID; unnumbered last) and name by
    counters: ``IMAGES/ST000001/SEnnnnnn/IMnnnnnn.ext``, ``…_Fnnnn.ext`` per frame."""
    def key(i: Instance) -> tuple[object, ...]:
        return (i.series_number is None, i.series_number or 0, i.series,
                i.instance_number is None, i.instance_number or 0, i.sop)

    ext, series_index, counts = EXTENSIONS[media_type], dict[str, int](), dict[str, int]()
    renders: list[Render] = []
    for inst in sorted(instances, key=key):
        se = series_index.setdefault(inst.series, len(series_index) + 1)
        counts[inst.series] = im = counts.get(inst.series, 0) + 1
        stem = f"IMAGES/ST000001/SE{se:06d}/IM{im:06d}"
        if inst.frames == 1:
            renders.append(Render(inst, None, f"{stem}.{ext}"))
        else:
            digits = max(4, len(str(inst.frames)))
            renders += [Render(inst, n, f"{stem}_F{n:0{digits}d}.{ext}")
                        for n in range(1, inst.frames + 1)]
    return renders


async def list_instances(req: RenderedRequest, upstream: Upstream,
                         headers: CIMultiDict[str]) -> list[Instance]:
    """Every instance of the study or series, with its NumberOfFrames (0028,0008)."""
    path = f"{req.prefix}/studies/{req.study}"
    path += f"/series/{req.series}/instances" if req.series else "/instances"
    found: dict[str, Instance] = {}
    async for page in qido.pages(upstream, path, "includefield=00280008", headers, "00080018"):
        for item in page:
            inst = parse_instance(item, req.series)
            found.setdefault(inst.sop, inst)
        if len(found) > MAX_INSTANCES:
            raise TooLarge(f"more than {MAX_INSTANCES} instances: ask for one series at a time")
    if not found:
        raise NoInstances(f"no instances found in this {req.level}")
    return list(found.values())


async def fetch(upstream: Upstream, req: RenderedRequest, headers: CIMultiDict[str],
                render: Render) -> Result:
    """One rendering; an error status or a wrong media type is a Result, not an exception."""
    url = upstream.url(render.path(req.prefix, req.study), req.query)
    resp = await upstream.open("GET", url, headers)
    try:
        if resp.status != 200:
            reason = (resp.reason or "").encode("ascii", "replace").decode()[:80]
            return Result(render, resp.status, None, f"upstream answered {resp.status} {reason}")
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != req.media_type:
            return Result(render, resp.status, None, f"upstream sent {ctype[:60]!a}")
        data = await read_bounded(resp, RENDER_LIMIT)
        if data is None:
            return Result(render, 200, None,
                          f"upstream rendering is larger than {RENDER_LIMIT} bytes")
        return Result(render, 200, data)
    finally:
        resp.close()


async def stream_rendered(request: web.Request, req: RenderedRequest, upstream: Upstream,
                          settings: Settings,
                          on_start: Callable[[], None] = lambda: None) -> web.StreamResponse:
    """List, render and stream; the failure rules are in the module docstring."""
    headers = upstream_headers(request)
    renders = plan_renders(await list_instances(req, upstream, headers), req.media_type)
    headers["Accept"] = req.media_type
    results = ordered_map(renders, lambda r: fetch(upstream, req, headers, r), WIDTH)
    async with contextlib.aclosing(results):
        # Until the first rendering (or its failure) is in, errors are plain HTTP answers.
        first = await anext(results) if request.method != "HEAD" else None
        out = await start_zip(request, f"rendered-{req.level}-{req.series or req.study}.zip")
        on_start()
        if first is None:
            return out  # HEAD
        # From here on a failure aborts the connection (app.errors_and_log).
        writer = ArchiveWriter(hold_limit=settings.hold_limit, password=req.password,
                               spool_dir=settings.spool_dir or None)
        try:
            async with BodyWriter(request, out, settings.read_timeout) as body:
                text = readme.for_rendered(req.level, [u for u in (req.study, req.series) if u],
                                           req.media_type, public_base(request),
                                           req.password is not None)
                await body.send(writer.add("README.TXT", text, plain=True))
                rows = [await _add(body, writer, req, first)]
                async for result in results:
                    rows.append(await _add(body, writer, req, result))
                await body.send(writer.add("MANIFEST.CSV", manifest_csv(rows)))
                written = sum(1 for row in rows if row[0])
                comment = (f"zipproxy rendered ZIP: {written} images, "
                           f"{len(rows) - written} not rendered")
                await body.send(writer.tail([], comment))
        finally:
            writer.close_spool()
    await out.write_eof()
    return out


def manifest_csv(rows: list[list[object]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows([COLUMNS, *rows])
    return text.getvalue().encode()


def _entry(writer: ArchiveWriter, name: str, data: bytes) -> tuple[list[Buffer], str]:
    return writer.add(name, data), hashlib.sha256(data).hexdigest()


async def _add(body: BodyWriter, writer: ArchiveWriter, req: RenderedRequest,
               result: Result) -> list[object]:
    """Write a result's entry, if it has one; return its manifest row (COLUMNS)."""
    render, inst, data = result.render, result.render.instance, result.data
    cells = [req.study, inst.series, inst.sop, inst.sop_class, render.frame or "", req.media_type]
    if data is None:
        return ["", *cells, "", "", result.status, result.error]
    pieces, sha = (await asyncio.to_thread(_entry, writer, render.name, data)
                   if len(data) >= THREAD_MIN or req.password is not None
                   else _entry(writer, render.name, data))  # AES: a key may wait for PBKDF2
    await body.send(pieces)
    return [render.name, *cells, len(data), sha, result.status, ""]
