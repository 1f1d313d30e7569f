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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from multidict import CIMultiDict

from . import qido, readme
from .errors import NoInstances, TooLarge, UpstreamBodyError
from .retrieve import Plan
from .routes import Search, query_without
from .sizes import Sizer
from .upstream import Upstream

STUDY_UID: Final = "0020000D"
SERIES_UID: Final = "0020000E"
# (0020,1208) Number of Study Related Instances / (0020,1209) Number of Series Related Instances
STUDY_INSTANCES: Final = "00201208"
SERIES_INSTANCES: Final = "00201209"


@dataclass(frozen=True)
class Limits:
    """What one collection ZIP may hold; 0 bytes = no byte limit."""

    items: int  # studies, or series of one study (--max-collection)
    instances: int  # --max-collection-instances
    bytes: int = 0  # --max-collection-bytes


def _instances(found: Sequence[object], key: str) -> int | None:
    """The total of the per-match instance counts, or None when the upstream left one out."""
    total = 0
    for item in found:
        count = qido.number(item, key)
        if count is None:
            return None
        total += count
    return total


def _uids(found: Sequence[object], key: str) -> list[str]:
    """The matches' UIDs, each once, in the upstream's order; every match must carry one."""
    uids: dict[str, None] = {}
    for item in found:
        value = qido.value(item, key)
        if value is None:
            raise UpstreamBodyError(f"upstream QIDO answer lacks ({key[:4]},{key[4:]})")
        uid = qido.uid(item, key)
        if uid is None:
            raise UpstreamBodyError("upstream QIDO answer holds an invalid UID")
        uids.setdefault(uid)
    return list(uids)


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
    query = "&".join(q for q in (query_without(request.rel_url.raw_query_string),
                                 f"includefield={count_key}") if q)
    found = await qido.search(upstream, request.rel_url.raw_path, query, headers)
    uids = _uids(found, SERIES_UID if search.study else STUDY_UID)
    if not uids:
        raise NoInstances(f"the search matched no {search.level}")
    _check_counts(search, len(uids), _instances(found, count_key), limits)
    if limits.bytes:
        size = await sizer.measure(search.prefix, search.study, uids, headers)
        if size.total > limits.bytes:
            raise TooLarge(f"the search matched {len(uids)} {search.level} of {size.describe()}; "
                           f"at most {limits.bytes} bytes fit one ZIP (--max-collection-bytes): "
                           f"{qido.NARROW}")
    if search.study:
        sources = tuple(f"{search.prefix}/studies/{search.study}/series/{u}" for u in uids)
    else:
        sources = tuple(f"{search.prefix}/studies/{u}" for u in uids)
    # The retrieves get no query: the client's parameters were QIDO filters.
    return Plan(sources, "", f"{search.level}-{len(uids)}.zip",
                readme.for_collection(search, len(uids), encrypted))


def _check_counts(search: Search, matches: int, instances: int | None, limits: Limits) -> None:
    if matches > limits.items:
        raise TooLarge(f"the search matched {matches} {search.level}; at most {limits.items} "
                       f"fit one ZIP (--max-collection): {qido.NARROW}")
    if instances is not None and instances > limits.instances:
        raise TooLarge(f"the search matched {instances} instances in {matches} {search.level}; "
                       f"at most {limits.instances} fit one ZIP (--max-collection-instances): "
                       f"{qido.NARROW}")
