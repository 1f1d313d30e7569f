"""What a request asks for: the resource or search it names, whether it wants a ZIP, and the
ZIP's per-request options. No I/O; every handler decides from these.

A ZIP is negotiated only for a request that mentions zip (in Accept or in the ``accept`` query
parameter, PS3.18 8.3.3.1): anything else stays transparent, even an odd Accept header the
upstream may tolerate. :func:`zip_route` is the one place that negotiates, once per request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from aiohttp import web

from .aes import check_password
from .config import Settings, manifest_choice
from .errors import BadRequest
from .negotiation import ZipRequest, accept_query_values, is_valid_uid, negotiate

_RESOURCE: Final = re.compile(
    r"^(?P<prefix>(?:/[^/]+)*?)/studies/(?P<study>[^/]+)"
    r"(?:/series/(?P<series>[^/]+)(?:/instances/(?P<instance>[^/]+))?)?$"
)
_SEARCH: Final = re.compile(
    r"^(?P<prefix>(?:/[^/]+)*?)/studies(?:/(?P<study>[^/]+)/series)?$"
)
RENDERED: Final = "/rendered"
# Query parameters the proxy consumes: never forwarded to a retrieve.
CONSUMED: Final = ("accept", "zp-link", "manifest", "password")


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


@dataclass(frozen=True)
class Search:
    """A QIDO-RS search of studies, or of the series of one study (PS3.18 10.6)."""

    prefix: str
    study: str | None  # set for a series search within one study

    @property
    def level(self) -> str:
        return "series" if self.study else "studies"


def _uid(raw: str, what: str) -> str:
    uid = unquote(raw)
    if not is_valid_uid(uid):
        shown = uid[:64].encode("ascii", "backslashreplace").decode()
        raise BadRequest(f"{what} UID {shown!r} is not a valid UID (PS3.5 9.1: digits and "
                         "dots, at most 64 characters)")
    return uid


def match_resource(raw_path: str) -> Resource | None:
    """The resource a path names, or None; raises BadRequest for a malformed UID."""
    match = _RESOURCE.match(raw_path)
    if match is None:
        return None
    uids = {key: _uid(match.group(key), key) for key in ("study", "series", "instance")
            if match.group(key) is not None}
    return Resource(match.group("prefix"), **uids)


def match_search(raw_path: str) -> Search | None:
    """The search a path names (``…/studies`` or ``…/studies/{study}/series``), or None."""
    match = _SEARCH.match(raw_path)
    if match is None:
        return None
    study = match.group("study")
    return Search(match.group("prefix"), _uid(study, "study") if study is not None else None)


@dataclass(frozen=True)
class ZipRoute:
    """A request answered with a ZIP: what was negotiated, and the one target it names."""

    zipreq: ZipRequest
    resource: Resource | None = None  # a retrieve: …/studies/{study}[/series/…[/instances/…]]
    search: Search | None = None  # a collection: …/studies?filters, …/studies/{s}/series?…
    rendered: Resource | None = None  # …/studies/{study}[/series/{series}]/rendered


def _mentions_zip(header: str, params: list[str]) -> bool:
    return "zip" in header.lower() or any("zip" in p.lower() for p in params)


def zip_route(request: web.Request, settings: Settings) -> ZipRoute | None:
    """The ZIP a request asks for, or None when it passes through.

    1. Only GET and HEAD of a path under ``/studies`` that mentions zip are negotiated.
    2. Negotiation (PS3.18 8.3.3.1, :func:`~zipproxy.negotiation.negotiate`) picks
       application/zip, or not (None), or refuses the request (400/406).
    3. The path names a resource, a search, or the renderings of a study or series."""
    raw_path = request.rel_url.raw_path
    if request.method not in ("GET", "HEAD") or "/studies" not in raw_path:
        return None
    header = request.headers.get("Accept")
    params = accept_query_values(request.rel_url.raw_query_string)
    if not _mentions_zip(header or "", params):
        return None
    zipreq = negotiate(header, params, prefer_zip_on_tie=settings.prefer_zip_on_tie)
    if zipreq is None:
        return None
    if (resource := match_resource(raw_path)) is not None:
        return ZipRoute(zipreq, resource=resource)
    if (search := match_search(raw_path)) is not None:
        return ZipRoute(zipreq, search=search)
    if raw_path.endswith(RENDERED):
        target = match_resource(raw_path.removesuffix(RENDERED))
        if target is not None and target.instance is None:
            return ZipRoute(zipreq, rendered=target)
    return None


def query_without(raw_query: str, names: tuple[str, ...] = CONSUMED) -> str:
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
