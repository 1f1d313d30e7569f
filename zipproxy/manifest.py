"""MANIFEST.CSV: one row per instance, so ``pandas.read_csv`` plus the paths is a training index.

PS3.12 Annex V allows files that the DICOMDIR does not reference; ``MANIFEST.CSV`` is an 8.3
name. Each row ends with the entry's ``size`` and ``crc32``: the CRC-32 the ZIP computes anyway
(8 lowercase hex digits, ``f"{zlib.crc32(data):08x}"``), which catches any corruption in
transit or on disk at no cost. ``?manifest=sha256`` adds a ``sha256`` column for those who
need a cryptographic digest (to compare with a hash kept elsewhere, or against tampering); it
costs about 0.6 CPU-s per GiB. Rows are spooled (:mod:`zipproxy.spool`), not kept in RAM.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from typing import Final

from pydicom.charset import decode_bytes

from .dicomscan import Scan
from .records import charset, tag_of
from .spool import Spool

KEY_COLUMNS: Final = (
    "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
    "Modality", "SeriesNumber", "InstanceNumber", "TransferSyntaxUID", "Rows", "Columns",
    "NumberOfFrames",
)
CHECKSUMS: Final = ("crc32", "sha256")  # what ?manifest= may ask for (and true/false)
# OWASP CSV injection: a spreadsheet must not read a text value as a formula.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_FLUSH: Final = 64 * 1024
_TAGS: Final = tuple((kw, tag_of(kw)) for kw in KEY_COLUMNS if kw != "TransferSyntaxUID")
# Where a column comes from when the data set lacks it: the File Meta Information.
_META_FALLBACK: Final = {"SOPClassUID": 0x00020002, "SOPInstanceUID": 0x00020003}


def columns(sha256: bool) -> tuple[str, ...]:
    return ("path", *KEY_COLUMNS, "size", "crc32", *(("sha256",) if sha256 else ()))


def _cells(scan: Scan) -> list[str]:
    """The key columns of one instance, from the scanner's raw values."""
    elements = scan.elements
    out = []
    for keyword, tag in _TAGS:
        elem = elements.get(tag)
        if keyword in ("Rows", "Columns"):  # US, little endian as the scanner keeps numbers
            value = elem.value if elem is not None else b""
            out.append(str(int.from_bytes(value[:2], "little")) if len(value) >= 2 else "")
            continue
        raw = elem.value.strip(b" \x00") if elem is not None else b""
        if not raw:
            raw = scan.meta.get(_META_FALLBACK.get(keyword, -1), b"").strip(b" \x00")
        if raw.isascii():
            text = raw.decode("ascii")
        else:  # a PatientID in the instance's character set (PS3.5 6.1)
            names = charset(scan).decode("ascii", "replace").split("\\")
            text = decode_bytes(raw, names or ["ISO_IR 6"], set())
        if keyword == "PatientID" and text.startswith(_FORMULA_START):
            text = "'" + text
        out.append(text)
    return out


class Manifest:
    """Rows in, MANIFEST.CSV out: ``start()``, ``update()`` with every byte of the entry
    (only hashed when SHA-256 was asked for), ``end()``; ``render()`` after the last."""

    def __init__(self, sha256: bool = False, spool_dir: str | None = None) -> None:
        self.sha256 = sha256
        self._spool = Spool(spool_dir)
        self._text = io.StringIO()
        self._writer = csv.writer(self._text, lineterminator="\r\n")
        self._writer.writerow(columns(sha256))
        self._hash: hashlib._Hash | None = None
        self.rows = 0

    def start(self) -> None:
        if self.sha256:
            self._hash = hashlib.sha256()

    def update(self, data: bytes | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)

    def end(self, path: str, scan: Scan, size: int, crc: int) -> None:
        cells = _cells(scan)
        syntax = scan.meta.get(0x00020010, b"").strip(b" \x00").decode("ascii", "replace")
        row = [path, *cells[:8], syntax, *cells[8:], str(size), f"{crc:08x}"]
        if self._hash is not None:
            row.append(self._hash.hexdigest())
            self._hash = None
        self._writer.writerow(row)
        self.rows += 1
        if self._text.tell() >= _FLUSH:
            self._flush()

    def render(self) -> tuple[int, Iterator[bytes]]:
        """The CSV's size in bytes and its bytes, in pieces. Reads the spool: call it last."""
        self._flush()
        return self._spool.size, self._pieces()

    def _pieces(self) -> Iterator[bytes]:
        yield from self._spool.pieces()
        self._spool.close()

    def close(self) -> None:
        self._spool.close()

    def _flush(self) -> None:
        self._spool.append(self._text.getvalue().encode("utf-8"))
        self._text.seek(0)
        self._text.truncate()
