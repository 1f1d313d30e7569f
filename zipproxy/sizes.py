"""The byte size of a collection, asked of the upstream before the first ZIP byte.

DICOMweb (PS3.18) reports no sizes, so ``--max-collection-bytes`` needs another source:

1. ``orthanc``: Orthanc's own REST API, which sits beside its DICOMweb plugin on the same origin.
   ``POST /tools/find`` maps the matched UIDs to Orthanc IDs in one request (list matching with
   ``\\``, PS3.4 C.2.2.2.3), then ``GET /{studies|series}/{id}/statistics`` gives
   ``DicomUncompressedSize``: the exact bytes of the stored files, which a ``transfer-syntax=*``
   ZIP holds byte for byte.
2. ``qido``: any DICOMweb origin. Instance-level QIDO-RS returns Rows, Columns, Bits Allocated and
   Number of Frames by default (PS3.18 Table 10.6.3-5), and Samples per Pixel when asked; their
   product is the native Pixel Data, plus a header allowance per instance. An estimate: above the
   truth for compressed storage, below it for objects whose bulk data is not pixels.
3. ``auto``: ``orthanc`` when ``GET /system`` answers as Orthanc does, else ``qido``. The answer
   is remembered once it is definite (a 200), so the probe costs one request per process.

Every request carries the client's own credentials: a caller learns nothing it could not ask.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from multidict import CIMultiDict

from . import qido
from .concurrency import map_all
from .errors import TooLarge, UpstreamBodyError
from .upstream import Upstream

SIZE_SOURCES: Final = ("auto", "orthanc", "qido")
CONCURRENCY: Final = 4  # size requests in flight for one collection
# Header bytes counted per instance besides its pixels: a CT or MR header is 1 to 4 KiB.
HEADER_ALLOWANCE: Final = 4096
SOP_INSTANCE_UID: Final = "00080018"
# PS3.18 Table 10.6.3-5 (instance level), and (0028,0002) asked with includefield.
ROWS, COLUMNS, BITS_ALLOCATED, FRAMES, SAMPLES = (
    "00280010", "00280011", "00280100", "00280008", "00280002")


@dataclass(frozen=True)
class Size:
    """What the matches weigh: ``exact`` stored bytes (orthanc) or an estimate (qido)."""

    total: int
    exact: bool

    def describe(self) -> str:
        how = "stored bytes, as the upstream reports them" if self.exact else (
            "bytes, estimated from QIDO-RS Rows, Columns, Bits Allocated and Number of Frames")
        return f"{self.total} {how}"


def _int(row: object, tag: str, default: int) -> int:
    found = qido.number(row, tag)
    return default if found is None else found


def instance_estimate(row: object) -> int:
    """Header allowance plus native Pixel Data bytes (PS3.5 8.1.1: Rows x Columns x Samples per
    Pixel x Bits Allocated per frame) for one instance-level QIDO-RS result."""
    pixels = (_int(row, ROWS, 0) * _int(row, COLUMNS, 0) * _int(row, SAMPLES, 1)
              * max(_int(row, FRAMES, 1), 1))
    return HEADER_ALLOWANCE + (pixels * _int(row, BITS_ALLOCATED, 8) + 7) // 8


def orthanc_total(statistics: Sequence[object]) -> int | None:
    """The sum of Orthanc's per-resource statistics, or None if one lacks a size.

    ``DicomUncompressedSize`` (Orthanc 1.9.1 and later) counts only the DICOM files, not other
    attachments; ``UncompressedSize`` is the older, close name."""
    total = 0
    for item in statistics:
        if not isinstance(item, dict):
            return None
        value = item.get("DicomUncompressedSize", item.get("UncompressedSize"))
        try:
            total += int(str(value))  # Orthanc writes 64-bit sizes as strings
        except (TypeError, ValueError):
            return None
    return total


class Sizer:
    """Measures collections for one upstream, with the source chosen by ``--collection-sizes``."""

    def __init__(self, upstream: Upstream, source: str = "auto") -> None:
        if source not in SIZE_SOURCES:
            raise ValueError(f"unknown size source {source!r}")
        self.upstream = upstream
        self.source = source
        self._orthanc: bool | None = {"orthanc": True, "qido": False}.get(source)

    async def measure(
        self, prefix: str, study: str | None, uids: Sequence[str], headers: CIMultiDict[str]
    ) -> Size:
        """The size of the studies ``uids`` (or the series ``uids`` of ``study``)."""
        if await self._is_orthanc(headers):
            total = await self._orthanc_size(study, uids, headers)
            if total is not None:
                return Size(total, exact=True)
            if self.source == "orthanc":
                raise UpstreamBodyError("Orthanc did not report the size of every match")
        return Size(await self._qido_size(prefix, study, uids, headers), exact=False)

    async def _json(self, method: str, path: str, headers: CIMultiDict[str],
                    body: bytes | None = None) -> tuple[int, object]:
        """(status, parsed JSON body) of an Orthanc REST request; the body is None unless the
        status is 200."""
        send = CIMultiDict(headers)
        send["Accept"] = "application/json"
        if body is not None:
            send["Content-Type"] = "application/json"
        resp = await self.upstream.open(method, self.upstream.url(path), send, body)
        try:
            if resp.status != 200:
                return resp.status, None
            return 200, await qido.read_json(resp, f"answer to {path}")
        finally:
            resp.close()

    async def _is_orthanc(self, headers: CIMultiDict[str]) -> bool:
        if self._orthanc is None:
            try:
                status, system = await self._json("GET", "/system", headers)
            except (UpstreamBodyError, TooLarge):
                status, system = 200, None
            looks = isinstance(system, dict) and {"ApiVersion", "DicomAet"} <= system.keys()
            if status == 200:  # 401/403/5xx say nothing definite: ask again next time
                self._orthanc = looks
            return looks
        return self._orthanc

    async def _orthanc_size(
        self, study: str | None, uids: Sequence[str], headers: CIMultiDict[str]
    ) -> int | None:
        level, key = ("Series", "SeriesInstanceUID") if study else ("Study", "StudyInstanceUID")
        query = {key: "\\".join(uids)}
        if study:
            query["StudyInstanceUID"] = study
        body = json.dumps({"Level": level, "Query": query}).encode()
        status, found = await self._json("POST", "/tools/find", headers, body=body)
        if (status != 200 or not isinstance(found, list) or len(found) < len(uids)
                or not all(isinstance(i, str) and i.replace("-", "").isalnum() for i in found)):
            return None
        kind = "series" if study else "studies"

        async def statistics(index: int) -> int:
            code, stats = await self._json("GET", f"/{kind}/{found[index]}/statistics", headers)
            total = orthanc_total([stats]) if code == 200 else None
            return -1 if total is None else total

        sizes = await map_all(range(len(found)), statistics, CONCURRENCY)
        return None if min(sizes) < 0 else sum(sizes)

    async def _qido_size(
        self, prefix: str, study: str | None, uids: Sequence[str], headers: CIMultiDict[str]
    ) -> int:
        async def one(index: int) -> int:
            path = (f"{prefix}/studies/{study}/series/{uids[index]}/instances" if study
                    else f"{prefix}/studies/{uids[index]}/instances")
            total = 0
            async for rows in qido.pages(self.upstream, path, f"includefield={SAMPLES}", headers,
                                         SOP_INSTANCE_UID):
                total += sum(instance_estimate(row) for row in rows
                             if qido.text(row, SOP_INSTANCE_UID) is not None)
            return total

        return sum(await map_all(range(len(uids)), one, CONCURRENCY))
