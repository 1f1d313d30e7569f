"""Collections: every study a QIDO-RS search finds, in one DICOM ZIP with one DICOMDIR.

``GET …/studies?{filters}&accept=application/zip`` (or ``…/studies/{study}/series?{filters}``)
runs the same search at the upstream (PS3.18 10.6), then retrieves the matches one after another
into a single ZIP: several PATIENT records where needed, File IDs unique across the collection.
A search that matches more than ``--max-collection`` studies (or series), more than
``--max-collection-instances`` instances or more than ``--max-collection-bytes`` bytes gets 413
with the count and the limit before any ZIP byte; ``limit``/``offset`` pass through, so a client
can take a large cohort in slices.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

from .errors import BadRequest, NoInstances, TooLarge, UpstreamBodyError
from .negotiation import is_valid_uid
from .retrieve import ENCRYPTED_NOTE, Plan, query_without
from .sizes import Sizer
from .upstream import Upstream, read_bounded

_COLLECTION: Final = re.compile(
    r"^(?P<prefix>(?:/[^/]+)*?)/studies(?:/(?P<study>[^/]+)/series)?$"
)
STUDY_UID: Final = "0020000D"
SERIES_UID: Final = "0020000E"
# (0020,1208) Number of Study Related Instances / (0020,1209) Number of Series Related Instances
STUDY_INSTANCES: Final = "00201208"
SERIES_INSTANCES: Final = "00201209"
QIDO_LIMIT: Final = 16 * 1024 * 1024  # bytes of QIDO JSON read at most


@dataclass(frozen=True)
class Limits:
    """What one collection ZIP may hold; 0 bytes = no byte limit."""

    items: int  # studies, or series of one study (--max-collection)
    instances: int  # --max-collection-instances
    bytes: int = 0  # --max-collection-bytes


@dataclass(frozen=True)
class Search:
    prefix: str
    study: str | None  # set for a series search within one study

    @property
    def level(self) -> str:
        return "series" if self.study else "studies"


def match_search(raw_path: str) -> Search | None:
    match = _COLLECTION.match(raw_path)
    if match is None:
        return None
    study = match.group("study")
    if study is not None:
        study = unquote(study)
        if not is_valid_uid(study):
            raise BadRequest("study UID is not a valid UID (PS3.5 9.1)")
    return Search(match.group("prefix"), study)


def _instances(found: list[object], key: str) -> int | None:
    """The total of the per-match instance counts, or None when the upstream left one out."""
    total = 0
    for item in found:
        try:
            value = item[key]["Value"][0]  # type: ignore[index]
            total += int(value)
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return total


def _uids(found: object, key: str) -> list[str]:
    if not isinstance(found, list):
        raise UpstreamBodyError("upstream QIDO answer is not a JSON array")
    uids: list[str] = []
    for item in found:
        try:
            uid = item[key]["Value"][0]
        except (KeyError, IndexError, TypeError) as exc:
            raise UpstreamBodyError(f"upstream QIDO answer lacks ({key[:4]},{key[4:]})") from exc
        if not isinstance(uid, str) or not is_valid_uid(uid):
            raise UpstreamBodyError("upstream QIDO answer holds an invalid UID")
        if uid not in uids:
            uids.append(uid)
    return uids


async def plan_search(
    request: web.Request, search: Search, upstream: Upstream, headers: CIMultiDict[str],
    limits: Limits, sizer: Sizer, encrypted: bool = False,
) -> Plan:
    """Run the search at the upstream with the client's filters and credentials, and check the
    matches against ``limits`` before the first ZIP byte (413 with the count and the limit):

    1. the number of matches;
    2. their instances, where the upstream fills (0020,1208)/(0020,1209) (PS3.18 10.6.3);
    3. their bytes, when a byte limit is set: DICOMweb reports no sizes, so ``sizer`` asks the
       upstream's own API or estimates them (:mod:`zipproxy.sizes`)."""
    count_key = SERIES_INSTANCES if search.study else STUDY_INSTANCES
    raw_query = query_without(request.rel_url.raw_query_string)
    raw_query = "&".join(q for q in (raw_query, f"includefield={count_key}") if q)
    qido_headers = CIMultiDict(headers)
    qido_headers["Accept"] = "application/dicom+json"
    resp = await upstream.open("GET", upstream.url(request.rel_url.raw_path, raw_query),
                               qido_headers)
    try:
        if resp.status == 204:
            found: object = []
        elif resp.status != 200:
            raise await upstream.error_from(resp)
        else:
            body = await read_bounded(resp, QIDO_LIMIT)
            if body is None:
                raise TooLarge("the search answer is too large; narrow it or use limit/offset")
            try:
                found = json.loads(body or b"[]")
            except ValueError as exc:
                raise UpstreamBodyError("upstream QIDO answer is not JSON") from exc
    finally:
        resp.close()
    key = SERIES_UID if search.study else STUDY_UID
    uids = _uids(found, key)
    if not uids:
        raise NoInstances(f"the search matched no {search.level}")
    narrow = "narrow the search or page with limit and offset"
    if len(uids) > limits.items:
        raise TooLarge(f"the search matched {len(uids)} {search.level}; at most {limits.items} "
                       f"fit one ZIP (--max-collection): {narrow}")
    instances = _instances(found, count_key) if isinstance(found, list) else None
    if instances is not None and instances > limits.instances:
        raise TooLarge(f"the search matched {instances} instances in {len(uids)} {search.level}; "
                       f"at most {limits.instances} fit one ZIP (--max-collection-instances): "
                       f"{narrow}")
    if limits.bytes:
        size = await sizer.measure(search.prefix, search.study, uids, headers)
        if size.total > limits.bytes:
            raise TooLarge(f"the search matched {len(uids)} {search.level} of {size.describe()}; "
                           f"at most {limits.bytes} bytes fit one ZIP (--max-collection-bytes): "
                           f"{narrow}")
    if search.study:
        sources = tuple(f"{search.prefix}/studies/{search.study}/series/{u}" for u in uids)
    else:
        sources = tuple(f"{search.prefix}/studies/{u}" for u in uids)
    readme = _readme(search, len(uids), encrypted)
    filename = f"{search.level}-{len(uids)}.zip"
    # The retrieves get no query: the client's parameters were QIDO filters.
    return Plan(sources, "", filename, readme)


def _readme(search: Search, count: int, encrypted: bool) -> bytes:
    what = (f"{count} series of study {search.study}" if search.study
            else f"{count} studies")
    text = "\r\n".join([
        "DICOM ZIP file-set (PS3.12 Annex V), written by zipproxy following DICOM Supplement 211.",
        "",
        f"A collection: {what} found by a QIDO-RS search, retrieved one after another.",
        "DICOMDIR (the last entry) indexes every instance; MANIFEST.CSV lists them with SHA-256.",
        "Instances are under DICOM/ as STnnnnnn/SEnnnnnn/IMnnnnnn (study, series, instance).",
        "",
        "This archive contains medical images: keep it as confidential as the images themselves.",
        "",
        *(ENCRYPTED_NOTE if encrypted else []),
    ])
    return text.encode("ascii", "replace")
