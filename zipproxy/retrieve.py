"""WADO-RS retrieve as a DICOM ZIP: ask the upstream for the plan's sources, stream the ZIP.

Failure rules (README "Failure behaviour"):

- Before the first ZIP byte (upstream refused, timed out, answered an error, sent no parts or a
  first part that is not DICOM) the client gets an HTTP error with a reason and no ZIP.
- After it, any failure aborts the client connection: the chunked body never gets its last chunk
  and the ZIP never gets its central directory, so no client holds a ZIP that opens as complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from multidict import CIMultiDict

from . import readme
from .archive import Buffer
from .assembler import ZipAssembler
from .config import Settings
from .errors import MultipartError
from .forwarding import upstream_headers
from .keys import ASSEMBLER
from .multipart import MultipartSplitter, boundary_from_content_type
from .negotiation import ZipRequest
from .routes import Resource, manifest_wanted, query_without
from .upstream import Upstream, body_chunks
from .zipresponse import BodyWriter, start_zip

TAIL_INLINE: Final = 2000  # a larger ZIP's tail is read and deflated in a worker thread


@dataclass(frozen=True)
class Plan:
    """What one ZIP holds: the upstream retrieves to run, one after another, and its names."""

    sources: tuple[str, ...]  # raw upstream paths: …/studies/{uid}[/series/{uid}[/instances/…]]
    query: str  # raw query string forwarded with every retrieve
    filename: str  # Content-Disposition filename (UIDs or counts only, never patient data)
    readme: bytes


def single_plan(request: web.Request, resource: Resource, zipreq: ZipRequest,
                origin: str, encrypted: bool = False) -> Plan:
    return Plan((request.rel_url.raw_path,), query_without(request.rel_url.raw_query_string),
                resource.filename(), readme.for_resource(resource, zipreq, origin, encrypted))


async def _zip_pieces(plan: Plan, upstream: Upstream, headers: CIMultiDict[str],
                      assembler: ZipAssembler) -> AsyncGenerator[list[Buffer], None]:
    """The ZIP, in pieces: every source's multipart body split and assembled as it arrives,
    then the tail. A thin async loop around the sans-I/O splitter and assembler."""
    for path in plan.sources:
        resp = await upstream.open("GET", upstream.url(path, plan.query), headers)
        try:
            if resp.status != 200:
                raise await upstream.error_from(resp)
            boundary, params = boundary_from_content_type(resp.headers.get("Content-Type"))
            if params.get("type", "application/dicom").lower() != "application/dicom":
                raise MultipartError(f"upstream multipart type is {params['type'][:60]!r}, "
                                     "not application/dicom")
            splitter = MultipartSplitter(boundary)
            async for chunk in body_chunks(resp):
                events = splitter.feed(chunk)
                if assembler.heavy:
                    # AES and deflate release the GIL: in a worker thread they overlap with
                    # the event loop receiving the next bytes and sending these (and an
                    # AES entry's key may have to wait for its PBKDF2).
                    yield await asyncio.to_thread(assembler.feed, events)
                else:
                    yield assembler.feed(events)
            splitter.eof()
        finally:
            resp.close()
    # MANIFEST.CSV, DICOMDIR (last entry) and the central directory, read from the spools.
    tail = assembler.finish()
    big = assembler.instances > TAIL_INLINE
    while batch := (await asyncio.to_thread(_take, tail) if big else _take(tail)):
        yield batch


def _take(pieces: Iterator[Buffer], size: int = 256 * 1024) -> list[Buffer]:
    """The next ``size`` bytes or so of ``pieces``."""
    out: list[Buffer] = []
    total = 0
    for piece in pieces:
        out.append(piece)
        total += len(piece)
        if total >= size:
            break
    return out


def _assembler(request: web.Request, plan: Plan, settings: Settings,
               password: bytes | None) -> ZipAssembler:
    assembler = ZipAssembler(
        plan.readme,
        header_limit=settings.header_limit, hold_limit=settings.hold_limit,
        deflate_level=settings.deflate_level,
        manifest=manifest_wanted(request, settings.manifest),
        password=password, spool_dir=settings.spool_dir or None,
    )
    request[ASSEMBLER] = assembler
    return assembler


async def stream_zip(
    request: web.Request,
    plan: Plan,
    zipreq: ZipRequest,
    upstream: Upstream,
    settings: Settings,
    on_start: Callable[[], None] = lambda: None,
    authorization: str | None = None,
    password: bytes | None = None,
) -> web.StreamResponse:
    """Stream the plan's sources as one DICOM ZIP (AES-256 encrypted when ``password``)."""
    headers = upstream_headers(request, authorization)
    headers["Accept"] = zipreq.upstream_accept()
    assembler = _assembler(request, plan, settings, password)
    pieces = _zip_pieces(plan, upstream, headers, assembler)
    try:
        # 1. Until the first entry opened, every failure is a plain HTTP error.
        first: list[Buffer] = []
        async for batch in pieces:
            first += batch
            if assembler.started:
                break
        out = await start_zip(request, plan.filename)
        on_start()
        if request.method == "HEAD":
            return out
        # 2. From here on a failure aborts the connection (see app.errors_and_log).
        async with BodyWriter(request, out, settings.read_timeout) as body:
            await body.send(first)
            async for batch in pieces:
                await body.send(batch)
        await out.write_eof()
        return out
    finally:
        await pieces.aclose()
        assembler.close()
