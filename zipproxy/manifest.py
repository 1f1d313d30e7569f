"""MANIFEST.CSV: one row per instance, so ``pandas.read_csv`` plus the paths is a training index.

PS3.12 Annex V allows files that the DICOMDIR does not reference; ``MANIFEST.CSV`` is an 8.3
name. Each row ends with the entry's ``size`` and ``crc32``: the CRC-32 the ZIP computes anyway
(8 lowercase hex digits, ``f"{zlib.crc32(data):08x}"``), which catches any corruption in
transit or on disk at no cost. ``?manifest=sha256`` adds a ``sha256`` column for those who
need a cryptographic digest (to compare with a hash kept elsewhere, or against tampering); it
costs about 0.6 CPU-s per GiB. Rows are spooled (:mod:`zipproxy.spool`), not kept in RAM.
"""

from __future__ import annotations

import hashlib
import re
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
_FORMULA_START: Final = (b"=", b"+", b"-", b"@", b"\t", b"\r")
_FLUSH: Final = 64 * 1024
_SPECIAL: Final = re.compile(rb'[",\r\n]')  # what makes a CSV cell need quotes
_TAGS: Final = tuple(tag_of(kw) for kw in KEY_COLUMNS if kw != "TransferSyntaxUID")
_NUMBERS: Final = frozenset({tag_of("Rows"), tag_of("Columns")})
_PATIENT_ID: Final = tag_of("PatientID")
# Where a column comes from when the data set lacks it: the File Meta Information.
_META_FALLBACK: Final = {tag_of("SOPClassUID"): 0x00020002, tag_of("SOPInstanceUID"): 0x00020003}


def columns(sha256: bool) -> tuple[str, ...]:
    return ("path", *KEY_COLUMNS, "size", "crc32", *(("sha256",) if sha256 else ()))


def _csv(cell: bytes) -> bytes:
    """RFC 4180 quoting, as Python's csv module does it (QUOTE_MINIMAL)."""
    if b'"' in cell or b"," in cell or b"\n" in cell or b"\r" in cell:
        return b'"' + cell.replace(b'"', b'""') + b'"'
    return cell


def _cells(scan: Scan) -> list[bytes]:
    """The key columns of one instance, UTF-8, from the scanner's raw values."""
    elements, meta = scan.elements, scan.meta
    out = []
    for tag in _TAGS:
        elem = elements.get(tag)
        if tag in _NUMBERS:  # Rows, Columns: US, little endian as the scanner keeps numbers
            value = elem.value if elem is not None else b""
            out.append(b"%d" % int.from_bytes(value[:2], "little") if len(value) >= 2 else b"")
            continue
        raw = elem.value.strip(b" \x00") if elem is not None else b""
        if not raw and tag in _META_FALLBACK:
            raw = meta.get(_META_FALLBACK[tag], b"").strip(b" \x00")
        if not raw.isascii():  # a PatientID in the instance's character set (PS3.5 6.1)
            names = charset(scan).decode("ascii", "replace").split("\\")
            raw = decode_bytes(raw, names or ["ISO_IR 6"], set()).encode("utf-8")
        if tag == _PATIENT_ID:  # the one free-text column (LO); the rest are UI, CS, IS
            raw = _csv(b"'" + raw if raw.startswith(_FORMULA_START) else raw)
        elif not raw.isalnum() and _SPECIAL.search(raw):  # a malformed value, quoted
            raw = _csv(raw)
        out.append(raw)
    return out


class Manifest:
    """Rows in, MANIFEST.CSV out: ``start()``, ``update()`` with every byte of the entry
    (only hashed when SHA-256 was asked for), ``end()``; ``render()`` after the last."""

    def __init__(self, sha256: bool = False, spool_dir: str | None = None) -> None:
        self.sha256 = sha256
        self._spool = Spool(spool_dir)
        self._rows = bytearray(b",".join(c.encode() for c in columns(sha256)) + b"\r\n")
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
        syntax = scan.meta.get(0x00020010, b"").strip(b" \x00")
        if _SPECIAL.search(syntax):
            syntax = _csv(syntax)
        row = [path.encode(), *cells[:8], syntax, *cells[8:], b"%d" % size,
               b"%08x" % crc]
        if self._hash is not None:
            row.append(self._hash.hexdigest().encode())
            self._hash = None
        self._rows += b",".join(row) + b"\r\n"
        self.rows += 1
        if len(self._rows) >= _FLUSH:
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
        self._spool.append(bytes(self._rows))
        self._rows.clear()
