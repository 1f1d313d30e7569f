"""MANIFEST.CSV: one row per instance, so ``pandas.read_csv`` plus the paths is a training index.

PS3.12 Annex V allows files that the DICOMDIR does not reference; ``MANIFEST.CSV`` is an 8.3
name. Each row ends with the entry's ``size`` and ``crc32``: the CRC-32 the ZIP computes anyway
(8 lowercase hex digits, ``f"{zlib.crc32(data):08x}"``), which catches any corruption in
transit or on disk at no cost. ``?manifest=sha256`` adds a ``sha256`` column for those who
need a cryptographic digest (to compare with a hash kept elsewhere, or against tampering); it
costs about 0.8 to 1.1 CPU-s per GiB more (README "Performance"). Rows are spooled
(:mod:`zipproxy.spool`), not kept in RAM.

A row costs a few microseconds: of its key columns only SOPInstanceUID and InstanceNumber are
the instance's own as a rule; the rest are its series', rendered again only when the elements
they come from change (they are the cache key, so no instance ever gets another's values).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Final

from .dicomscan import Element, Scan
from .records import charset, stripped_at, tag_of, to_utf8
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
# A row is path, the key columns, size and checksums. Of the key columns an instance has two
# of its own, SOPInstanceUID and InstanceNumber; the others are its series' (and the Transfer
# Syntax, as a rule): rendered once per series, with the elements they came from as the key.
_BEFORE: Final = tuple(map(tag_of, ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")))
_SOP_INSTANCE: Final = tag_of("SOPInstanceUID")
_BETWEEN: Final = tuple(map(tag_of, ("SOPClassUID", "Modality", "SeriesNumber")))
_INSTANCE_NUMBER: Final = tag_of("InstanceNumber")
_NUMBER_TAGS: Final = (tag_of("Rows"), tag_of("Columns"))
_NUMBER_OF_FRAMES: Final = tag_of("NumberOfFrames")
_SHARED_TAGS: Final = (*_BEFORE, *_BETWEEN, *_NUMBER_TAGS, _NUMBER_OF_FRAMES,
                       tag_of("SpecificCharacterSet"))
_PLAIN: Final = re.compile(rb'[^",\r\n\x80-\xff]*')  # ASCII that needs no quotes
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


def _shared_cells(scan: Scan) -> tuple[bytes, bytes, bytes]:
    """The columns an instance shares with the rest of its series, CSV-ready, in the three runs
    that the row puts around its own SOPInstanceUID and InstanceNumber."""
    get = scan.elements.get

    def cell(tag: int) -> bytes:
        return _cell(scan, tag, stripped_at(scan.elements, tag))

    syntax = scan.meta.get(0x00020010, b"").strip(b" \x00")
    return (b",".join(map(cell, _BEFORE)), b",".join(map(cell, _BETWEEN)),
            b",".join([_csv(syntax) if _SPECIAL.search(syntax) else syntax,
                       *(_number(get(tag)) for tag in _NUMBER_TAGS), cell(_NUMBER_OF_FRAMES)]))


def _own_cell(scan: Scan, tag: int) -> bytes:
    """SOPInstanceUID or InstanceNumber: plain ASCII as a rule, else the rules of _cell."""
    raw = stripped_at(scan.elements, tag)
    return raw if raw and _PLAIN.fullmatch(raw) else _cell(scan, tag, raw)


def _cell(scan: Scan, tag: int, raw: bytes) -> bytes:
    if not raw and tag in _META_FALLBACK:
        raw = scan.meta.get(_META_FALLBACK[tag], b"").strip(b" \x00")
    if not raw.isascii():  # a PatientID in the instance's character set (PS3.5 6.1)
        raw = to_utf8(raw, charset(scan))
    if tag == _PATIENT_ID:  # the one free-text column (LO); the rest are UI, CS, IS
        return _csv(b"'" + raw if raw.startswith(_FORMULA_START) else raw)
    if not raw.isalnum() and _SPECIAL.search(raw):  # a malformed value, quoted
        return _csv(raw)
    return raw


def _number(elem: Element | None) -> bytes:
    """Rows, Columns: US, little endian as the scanner keeps numbers; b"" when missing."""
    if elem is None or len(elem.value) < 2:
        return b""
    return b"%d" % int.from_bytes(elem.value[:2], "little")


class Manifest:
    """Rows in, MANIFEST.CSV out: ``start()``, ``update()`` with every byte of the entry
    (only hashed when SHA-256 was asked for), ``end()``; ``render()`` after the last."""

    def __init__(self, sha256: bool = False, spool_dir: str | None = None) -> None:
        self.sha256 = sha256
        self._spool = Spool(spool_dir)
        self._rows = bytearray(b",".join(c.encode() for c in columns(sha256)) + b"\r\n")
        self._hash: hashlib._Hash | None = None
        self._key: tuple[object, ...] = ()  # what the shared cells were rendered from
        self._shared = (b"", b"", b"")
        self.rows = 0

    def start(self) -> None:
        if self.sha256:
            self._hash = hashlib.sha256()

    def update(self, data: bytes | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)

    def end(self, path: str, scan: Scan, size: int, crc: int) -> None:
        meta = scan.meta
        key = (*map(scan.elements.get, _SHARED_TAGS), meta.get(0x00020002),
               meta.get(0x00020010))
        if key != self._key:
            self._key, self._shared = key, _shared_cells(scan)
        before, between, after = self._shared
        self._rows += b"%b,%b,%b,%b,%b,%b,%d,%08x" % (
            path.encode(), before, _own_cell(scan, _SOP_INSTANCE), between,
            _own_cell(scan, _INSTANCE_NUMBER), after, size, crc)
        if self._hash is not None:
            self._rows += b",%b" % self._hash.hexdigest().encode()
            self._hash = None
        self._rows += b"\r\n"
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
