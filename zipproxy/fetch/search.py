"""SEARCH_URL: the QIDO-RS search of studies (or of one study's series), every page of it.

The search goes to the zipproxy, which passes it through to its upstream (PS3.18 10.6). The
command pages with ``limit``/``offset`` itself (PS3.18 8.3.4.4): servers cap pages (Orthanc's
``LimitFindResults``, dcm4chee's ``QIDOMaxNumberOfResults``) without saying so, and some ignore
``offset``, so paging goes on until a page brings no match not already seen. A ``limit`` or
``offset`` in SEARCH_URL itself is honoured as a slice of the whole result.

Each match carries the instance count the search reports, asked with ``includefield``:
Number of Study Related Instances (0020,1208) for studies, Number of Series Related Instances
(0020,1209) for series. A server that leaves it out is asked for the match's instances
(``…/instances``, paged the same way) instead: a ZIP is only verified against a count.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from yarl import URL

from .. import qido
from ..collection import SERIES_INSTANCES, SERIES_UID, STUDY_INSTANCES, STUDY_UID
from ..errors import ZipProxyError
from ..qido import PAGE
from ..routes import match_search
from .errors import SearchFailed, UsageError

SOP_UID: Final = "00080018"  # (0008,0018) SOP Instance UID
# Parameters of a collection-ZIP URL that are not QIDO filters: a SEARCH_URL copied from a
# collection link still works. limit/offset are read as the slice to fetch.
CONSUMED: Final = ("accept", "manifest", "password", "zp-link", "limit", "offset")

Qido = Callable[[URL], Awaitable[list[object]]]


@dataclass(frozen=True)
class Match:
    """One study (or series) found by the search: what to download and how many instances."""

    uid: str
    study_uid: str
    instances: int | None
    path: str  # raw WADO-RS path of the retrieve: …/studies/{uid}[/series/{uid}]
    kind: str  # "study" or "series"

    @property
    def name(self) -> str:
        """``study-<uid>``: the proxy's own Content-Disposition name, UIDs only."""
        return f"{self.kind}-{self.uid}"


@dataclass(frozen=True)
class Target:
    """SEARCH_URL taken apart: where to search, with which filters, which slice."""

    origin: URL  # scheme, host and port, no credentials
    prefix: str  # raw path in front of /studies
    study: str | None  # a search of this study's series
    filters: tuple[str, ...]  # raw "name=value" query parts, forwarded unchanged
    offset: int = 0
    limit: int | None = None

    @property
    def kind(self) -> str:
        return "series" if self.study else "study"

    @property
    def count_key(self) -> str:
        return SERIES_INSTANCES if self.study else STUDY_INSTANCES

    @property
    def search_path(self) -> str:
        base = f"{self.prefix}/studies"
        return f"{base}/{self.study}/series" if self.study else base

    def url(self, raw_path: str, parts: list[str]) -> URL:
        return self.origin.with_path(raw_path, encoded=True).with_query("&".join(parts))

    def shown(self) -> str:
        """SEARCH_URL without credentials, for output."""
        return str(self.url(self.search_path, list(self.filters)))


def parse_target(search_url: str) -> Target:
    """SEARCH_URL as a :class:`Target`; :class:`UsageError` says what is wrong with it."""
    url = URL(search_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError("SEARCH_URL must be an http(s) URL with a host")
    try:
        search = match_search(url.raw_path.rstrip("/"))
    except ZipProxyError as exc:
        raise UsageError(f"SEARCH_URL: {exc.reason}") from exc
    if search is None:
        raise UsageError("SEARCH_URL must be a QIDO-RS search of studies (…/studies?filters) "
                         "or of one study's series (…/studies/{uid}/series?filters)")
    filters, slicing = [], {}
    for part in url.raw_query_string.split("&"):
        name = unquote(part.split("=", 1)[0])
        if name in ("limit", "offset"):
            slicing[name] = _natural(name, unquote(part.partition("=")[2]))
        elif part and name not in CONSUMED:
            filters.append(part)
    origin = url.with_user(None).with_path("/").with_query(None).with_fragment(None)
    return Target(origin, search.prefix, search.study, tuple(filters),
                  slicing.get("offset", 0), slicing.get("limit"))


def _natural(name: str, value: str) -> int:
    if not value.isdigit():
        raise UsageError(f"SEARCH_URL: {name} must be a whole number, got {value!r}")
    return int(value)


async def list_matches(qido: Qido, target: Target, page: int = PAGE) -> list[Match]:
    """Every match of the search, in the server's order, each UID once."""
    key = SERIES_UID if target.study else STUDY_UID
    items = await read_pages(qido, target, target.search_path, [f"includefield={target.count_key}"],
                             page, target.offset, target.limit, key)
    return [_match(target, uid, _count(item, target.count_key)) for uid, item in items.items()]


async def read_pages(qido: Qido, target: Target, raw_path: str, extra: list[str], page: int,
                     offset: int, limit: int | None, key: str) -> dict[str, dict[str, object]]:
    """The items of every page by their ``key`` UID, in order. Steps:

    1. ask ``limit=min(page, left)`` at ``offset``;
    2. stop when the page brings no UID not seen before: it is empty, or the server ignores
       ``offset`` and sent the first page again;
    3. otherwise go on at ``offset + len(page)``: a server may send fewer than asked (a cap)
       and still have more."""
    found: dict[str, dict[str, object]] = {}
    while limit is None or len(found) < limit:
        ask = page if limit is None else min(page, limit - len(found))
        parts = [*target.filters, *extra, f"limit={ask}", f"offset={offset}"]
        items = await qido(target.url(raw_path, parts))
        new = 0
        for item in items:
            if not isinstance(item, dict):
                raise SearchFailed("a search result is not a JSON object")
            uid = _uid(item, key)
            if uid not in found and (limit is None or len(found) < limit):
                found[uid] = item
                new += 1
        if not new:
            break
        offset += len(items)
    return found


async def count_instances(qido: Qido, target: Target, match: Match, page: int = PAGE) -> int:
    """Instances of one match from an instance-level search, for a server whose study or series
    search leaves the count out."""
    bare = Target(target.origin, target.prefix, None, ())
    items = await read_pages(qido, bare, f"{match.path}/instances", [], page, 0, None, SOP_UID)
    return len(items)


def _uid(item: dict[str, object], key: str) -> str:
    if qido.value(item, key) is None:
        raise SearchFailed(f"a search result lacks ({key[:4]},{key[4:]})")
    uid = qido.uid(item, key)
    if uid is None:
        raise SearchFailed(f"a search result holds an invalid UID in ({key[:4]},{key[4:]})")
    return uid


def _count(item: dict[str, object], key: str) -> int | None:
    value = qido.number(item, key)
    return value if value is not None and value >= 0 else None


def _match(target: Target, uid: str, instances: int | None) -> Match:
    if target.study:
        path = f"{target.prefix}/studies/{target.study}/series/{uid}"
        return Match(uid, target.study, instances, path, "series")
    return Match(uid, uid, instances, f"{target.prefix}/studies/{uid}", "study")
