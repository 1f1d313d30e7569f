"""WADO-RS retrieve as a DICOM ZIP: match the resource, ask the upstream, stream the ZIP.

Failure rules (README "Failure behaviour"):

- Before the first ZIP byte (upstream refused, timed out, answered an error, sent no parts or a
  first part that is not DICOM) the client gets an HTTP error with a reason and no ZIP.
- After it, any failure aborts the client connection: the chunked body never gets its last chunk
  and the ZIP never gets its central directory, so no client holds a ZIP that opens as complete.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

from . import __version__
from .aes import check_password
from .archive import Buffer
from .assembler import ZipAssembler
from .config import Settings, manifest_choice
from .errors import BadRequest, MultipartError
from .multipart import MultipartSplitter, boundary_from_content_type
from .negotiation import ZipRequest, is_valid_uid
from .passthrough import forwarded_headers
from .upstream import Upstream, body_chunks
from .zipresponse import BodyWriter, start_zip

_RESOURCE: Final = re.compile(
    r"^(?P<prefix>(?:/[^/]+)*?)/studies/(?P<study>[^/]+)"
    r"(?:/series/(?P<series>[^/]+)(?:/instances/(?P<instance>[^/]+))?)?$"
)
ENCRYPTED_NOTE: Final = [
    "Every entry except this README is encrypted with AES-256 (WinZip AE-2). Open it with",
    "7-Zip, WinZip, Keka or The Unarchiver and the password you chose when downloading;",
    "Windows Explorer and macOS Archive Utility cannot open AES-encrypted ZIP files.",
    "",
]
ASSEMBLER: Final = web.RequestKey("assembler", ZipAssembler)  # its counts go in the log
THREAD_MIN: Final = 64 * 1024  # a rendered image at least this big is stored off the loop
TAIL_INLINE: Final = 2000  # a larger ZIP's tail is read and deflated in a worker thread


@dataclass(frozen=True)
class Resource:
    """A WADO-RS study, series or instance resource (PS3.18 10.4.1)."""

    prefix: str
    study: str
    series: str | None = None
    instance: str | None = None

    @property
    def level(self) -> str:
        return "instance" if self.instance else "series" if self.series else "study"

    @property
    def uids(self) -> tuple[str, ...]:
        return tuple(u for u in (self.study, self.series, self.instance) if u)

    def filename(self) -> str:
        """UIDs only, never patient data; safe in a quoted Content-Disposition (no ``"\\``)."""
        return f"{self.level}-{self.uids[-1]}.zip"


def match_resource(raw_path: str) -> Resource | None:
    """The resource a path names, or None; raises BadRequest for a malformed UID."""
    match = _RESOURCE.match(raw_path)
    if match is None:
        return None
    uids = {}
    for key in ("study", "series", "instance"):
        raw = match.group(key)
        if raw is None:
            continue
        uid = unquote(raw)
        if not is_valid_uid(uid):
            shown = uid[:64].encode("ascii", "backslashreplace").decode()
            raise BadRequest(f"{key} UID {shown!r} is not a valid UID (PS3.5 9.1: digits and "
                             "dots, at most 64 characters)")
        uids[key] = uid
    return Resource(match.group("prefix"), **uids)


def query_without(
    raw_query: str, names: tuple[str, ...] = ("accept", "zp-link", "manifest", "password")
) -> str:
    """The raw query string minus the parameters the proxy consumes."""
    kept = [p for p in raw_query.split("&") if p and unquote(p.split("=", 1)[0]) not in names]
    return "&".join(kept)


def manifest_wanted(request: web.Request, default: str) -> str | None:
    """``?manifest=false|true|crc32|sha256`` overrides ``--manifest`` for one request; the
    checksum column MANIFEST.CSV gets, or None for no MANIFEST.CSV."""
    values = request.rel_url.query.getall("manifest", [])
    if not values:
        return default or None
    choice = manifest_choice(values[0]) if len(values) == 1 else None
    if choice is None:
        raise BadRequest("manifest takes one value: true (crc32), sha256 or false")
    return choice or None


def zip_password(request: web.Request, zipreq: ZipRequest, settings: Settings) -> bytes | None:
    """The password of an encrypted ZIP: the ``password`` media-type parameter (Sup 211 draft),
    or ``?password=`` when the operator allowed it. Never logged, never echoed."""
    query = request.rel_url.query.getall("password", [])
    if query and not settings.password_query:
        raise BadRequest("the password query parameter is disabled on this proxy (URLs end up "
                         "in browser histories and server logs); send it in the Accept header: "
                         'application/zip; password="..."')
    if len(query) > 1 or (query and zipreq.password is not None):
        raise BadRequest("give the password once")
    password = zipreq.password if zipreq.password is not None else (query[0] if query else None)
    if password is None:
        return None
    return check_password(password, settings.password_min_length)


def readme_text(resource: Resource, zipreq: ZipRequest, origin: str,
                encrypted: bool = False) -> bytes:
    """README.TXT (IHE PDI style): nothing in it comes from patient data or the client's headers.

    Every variable part is a validated UID, a validated transfer syntax or the proxy's public
    address (:func:`~zipproxy.passthrough.public_base`: never the upstream's internal URL), so
    neither CR/LF nor quotes can be injected.
    """
    ts = {None: "upstream default (Explicit VR Little Endian per PS3.18)",
          "*": "as stored by the upstream"}.get(zipreq.transfer_syntax, zipreq.transfer_syntax)
    lines = [
        "DICOM ZIP file-set (PS3.12 Annex V), written by zipproxy following DICOM Supplement 211.",
        "",
        "DICOMDIR (the last entry) is the index of every DICOM instance in this archive; the",
        "instances are under DICOM/ as STnnnnnn/SEnnnnnn/IMnnnnnn (study, series, instance).",
        "Open it with any DICOM viewer that reads DICOMDIR or media (Weasis, Horos, OsiriX,",
        "RadiAnt, 3D Slicer, pydicom.fileset), after extracting the archive.",
        "",
        f"Source server:   {origin}",
        f"Resource:        {resource.level} {'/'.join(resource.uids)}",
        f"Transfer syntax: {ts}",
        f"Created (UTC):   {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')}",
        f"Software:        zipproxy {__version__}",
        "Counts:          in the ZIP archive comment and in DICOMDIR.",
        "",
        "This archive contains medical images: keep it as confidential as the images themselves.",
        "",
    ]
    if encrypted:
        lines += ENCRYPTED_NOTE
    text = "\r\n".join(lines)
    return text.encode("ascii", "replace")


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
                resource.filename(), readme_text(resource, zipreq, origin, encrypted))


def upstream_headers(request: web.Request, authorization: str | None) -> CIMultiDict[str]:
    """The client's end-to-end headers for upstream GETs the proxy makes on its behalf.

    ``authorization`` (a signed link) replaces the client's Authorization and Cookie headers
    with the proxy's own upstream credentials ("" = none)."""
    drop = ["Accept", "Accept-Encoding", "Range", "If-Range", "If-None-Match",
            "If-Modified-Since", "Content-Length", "Content-Type"]
    if authorization is not None:
        drop += ["Authorization", "Cookie"]
    headers = forwarded_headers(request, drop=tuple(drop))
    if authorization:
        headers["Authorization"] = authorization
    return headers


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


def _take(pieces: Iterator[Buffer], size: int = 1 << 20) -> list[Buffer]:
    """The next ``size`` bytes or so of ``pieces``."""
    out: list[Buffer] = []
    total = 0
    for piece in pieces:
        out.append(piece)
        total += len(piece)
        if total >= size:
            break
    return out


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
    assembler = ZipAssembler(
        plan.readme,
        header_limit=settings.header_limit, hold_limit=settings.hold_limit,
        deflate_level=settings.deflate_level,
        manifest=manifest_wanted(request, settings.manifest),
        password=password, spool_dir=settings.spool_dir or None,
    )
    request[ASSEMBLER] = assembler
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
