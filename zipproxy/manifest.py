"""MANIFEST.CSV: one row per instance, so ``pandas.read_csv`` plus the paths is a training index.

PS3.12 Annex V allows files that the DICOMDIR does not reference; ``MANIFEST.CSV`` is an 8.3
name. The SHA-256 and size of each entry let a pipeline check its extracted files.
"""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Final

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement

from .dicomheader import pydicom_quietly

COLUMNS: Final = (
    "path", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
    "SOPClassUID", "Modality", "SeriesNumber", "InstanceNumber", "TransferSyntaxUID",
    "Rows", "Columns", "NumberOfFrames", "size", "sha256",
)
_KEYWORDS: Final = COLUMNS[1:13]
# OWASP CSV injection: a spreadsheet must not read a text value as a formula.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


_TAGS: Final = {k: tag_for_keyword(k) for k in _KEYWORDS}


def _text(header: Dataset, keyword: str, little_endian: bool) -> str:
    """A value as text, from the raw bytes when it is still raw (decoding through pydicom's
    value conversion costs ~13 µs per element, most of a manifest row)."""
    if keyword == "TransferSyntaxUID":
        meta = getattr(header, "file_meta", None)
        return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    tag = _TAGS[keyword]
    if tag is None or tag not in header:
        return ""
    elem = header.get_item(tag)
    if isinstance(elem, RawDataElement) and elem.value is not None:
        raw = elem.value
        if keyword in ("Rows", "Columns"):  # US
            return str(int.from_bytes(raw[:2], "little" if little_endian else "big"))
        if raw.isascii():  # UI, CS, IS and a plain PatientID: no character set involved
            text = raw.rstrip(b"\0 ").lstrip(b" ").decode("ascii")
            return _guard(keyword, text)
    value = header.get(keyword, "")
    return _guard(keyword, "" if value is None else str(value))


def _guard(keyword: str, text: str) -> str:
    if keyword == "PatientID" and text.startswith(_FORMULA_START):
        return "'" + text
    return text


class Manifest:
    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")
        self._writer.writerow(COLUMNS)
        self._current: list[str] | None = None
        self._sha = hashlib.sha256()
        self._size = 0
        self.rows = 0

    def start(self, path: str, header: Dataset) -> None:
        with pydicom_quietly():  # odd values are written as pydicom reads them
            little = header.original_encoding[1] is not False
            self._current = [path, *(_text(header, k, little) for k in _KEYWORDS)]
        self._sha = hashlib.sha256()
        self._size = 0

    def update(self, data: bytes | memoryview) -> None:
        self._sha.update(data)
        self._size += len(data)

    def end(self) -> None:
        assert self._current is not None
        self._writer.writerow([*self._current, str(self._size), self._sha.hexdigest()])
        self._current = None
        self.rows += 1

    def render(self) -> bytes:
        return self._buffer.getvalue().encode("utf-8")
