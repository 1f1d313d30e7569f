"""Verify one downloaded DICOM ZIP before it is renamed into place.

A ZIP counts as verified only when all of these hold (steps of :func:`verify_zip`):

1. it opens as a complete ZIP: its central directory is there (a cut download has none);
2. MANIFEST.CSV has ``path``, ``size`` and at least one checksum column, ``crc32`` (the
   entry's CRC-32 as 8 hex digits) and/or ``sha256``; it lists every ``DICOM/`` entry once;
3. every entry reads back with its CRC-32 (PKWARE APPNOTE 4.4.7; :mod:`zipfile` checks it at
   the end of each entry), and every manifest row's size and checksums match the bytes;
4. the DICOMDIR (PS3.10 8.6, PS3.3 F.3) references every ``DICOM/`` entry exactly once by its
   Referenced File ID, and nothing else; where a record names the SOP Instance UID in the file
   it is the manifest's;
5. the rows belong to the study (or series) that was asked for;
6. the number of instances equals the search's count: a server that splits a study, or
   leaves instances out, fails here instead of passing as a smaller study.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from ..records import pydicom_quietly
from .errors import VerifyFailed
from .search import Match

CHECKSUMS: Final = ("crc32", "sha256")
CHUNK: Final = 1 << 20
DICOM_PREFIX: Final = "DICOM/"


@dataclass(frozen=True)
class Verified:
    """A verified ZIP: its manifest (header order kept) and what was checked."""

    columns: list[str]
    rows: list[dict[str, str]]
    checksums: tuple[str, ...]  # the checksum columns that were verified
    size: int  # bytes of the ZIP file


def verify_zip(path: Path, match: Match, expected: int, *, sha256: bool = False) -> Verified:
    """Check the ZIP at ``path`` (steps in the module docstring); :class:`VerifyFailed` names
    the first problem. ``sha256`` demands a ``sha256`` column (``--checksum sha256``)."""
    try:
        with zipfile.ZipFile(path) as zf:  # 1.
            entries = _dicom_entries(zf)
            columns, rows = _manifest(zf, entries, sha256)  # 2.
            checksums = tuple(c for c in CHECKSUMS if c in columns)
            _read_every_entry(zf, {row["path"]: row for row in rows}, checksums)  # 3.
            _dicomdir(zf, entries, rows)  # 4.
    except zipfile.BadZipFile as exc:
        raise VerifyFailed(f"not a complete ZIP: {exc}") from exc
    _belongs(match, rows)  # 5.
    if len(entries) != expected:  # 6.
        raise VerifyFailed(f"the ZIP holds {len(entries)} instances, the search counted "
                           f"{expected}: the server left some out or split the {match.kind}")
    return Verified(columns, rows, checksums, path.stat().st_size)


def _dicom_entries(zf: zipfile.ZipFile) -> list[str]:
    names = zf.namelist()
    twice = [n for n, c in collections.Counter(names).items() if c > 1]
    if twice:
        raise VerifyFailed(f"the ZIP holds {twice[0]!r} twice")
    return [n for n in names if n.startswith(DICOM_PREFIX) and not n.endswith("/")]


def _manifest(zf: zipfile.ZipFile, entries: list[str],
              sha256: bool) -> tuple[list[str], list[dict[str, str]]]:
    try:
        text = zf.read("MANIFEST.CSV").decode("utf-8")
    except KeyError as exc:
        raise VerifyFailed("the ZIP has no MANIFEST.CSV (is the proxy's --manifest off?)") from exc
    except UnicodeDecodeError as exc:
        raise VerifyFailed("MANIFEST.CSV is not UTF-8") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = list(reader.fieldnames or [])
    rows = list(reader)
    missing = [c for c in ("path", "size") if c not in columns]
    if missing:
        raise VerifyFailed(f"MANIFEST.CSV has no {missing[0]} column")
    if not any(c in columns for c in CHECKSUMS):
        raise VerifyFailed("MANIFEST.CSV has no checksum column (crc32 or sha256)")
    if sha256 and "sha256" not in columns:
        raise VerifyFailed("MANIFEST.CSV has no sha256 column although --checksum sha256 asked "
                           "for one (does this zipproxy know ?manifest=sha256?)")
    listed = collections.Counter(row["path"] for row in rows)
    if listed != collections.Counter(entries):
        extra = sorted(set(listed) - set(entries)) or [p for p, c in listed.items() if c > 1]
        unlisted = sorted(set(entries) - set(listed))
        what = f"lists {extra[0]!r}" if extra else f"does not list {unlisted[0]!r}"
        raise VerifyFailed(f"MANIFEST.CSV {what} (rows must match the DICOM/ entries, once each)")
    return columns, rows


def _read_every_entry(zf: zipfile.ZipFile, rows: dict[str, dict[str, str]],
                      checksums: tuple[str, ...]) -> None:
    for info in zf.infolist():
        row = rows.get(info.filename)
        digest = hashlib.sha256() if row is not None and "sha256" in checksums else None
        size = 0
        with zf.open(info) as entry:  # raises BadZipFile on a CRC mismatch at the end
            while chunk := entry.read(CHUNK):
                size += len(chunk)
                if digest is not None:
                    digest.update(chunk)
        if row is None:
            continue
        if row["size"] != str(size):
            raise VerifyFailed(f"{info.filename}: {size} bytes, MANIFEST.CSV says {row['size']}")
        # The manifest's CRC-32 is the entry's; zipfile has just checked the bytes against it.
        if "crc32" in checksums and row["crc32"].lower() != f"{info.CRC:08x}":
            raise VerifyFailed(f"{info.filename}: CRC-32 {info.CRC:08x}, MANIFEST.CSV says "
                               f"{row['crc32']}")
        if digest is not None and row["sha256"].lower() != digest.hexdigest():
            raise VerifyFailed(f"{info.filename}: SHA-256 differs from MANIFEST.CSV")


def _dicomdir(zf: zipfile.ZipFile, entries: list[str], rows: list[dict[str, str]]) -> None:
    try:
        with zf.open("DICOMDIR") as raw, pydicom_quietly():
            dicomdir = pydicom.dcmread(io.BytesIO(raw.read()))
            records = list(dicomdir.get("DirectoryRecordSequence", []))
    except KeyError as exc:
        raise VerifyFailed("the ZIP has no DICOMDIR") from exc
    except (InvalidDicomError, ValueError, EOFError) as exc:
        raise VerifyFailed(f"the DICOMDIR does not parse: {exc}") from exc
    sop_of = {row["path"]: row.get("SOPInstanceUID") for row in rows}
    referenced: collections.Counter[str] = collections.Counter()
    for record in records:
        if "ReferencedFileID" not in record:
            continue
        value = record.ReferencedFileID
        file_id = "/".join(value) if isinstance(value, list | MultiValue) else str(value)
        referenced[file_id] += 1
        sop = record.get("ReferencedSOPInstanceUIDInFile")
        if sop and sop_of.get(file_id) and str(sop) != sop_of[file_id]:
            raise VerifyFailed(f"the DICOMDIR names SOP Instance {sop} for {file_id}, "
                               "MANIFEST.CSV another")
    if referenced != collections.Counter(entries):
        twice = [f for f, c in referenced.items() if c > 1]
        unlisted = sorted(set(entries) - set(referenced))
        extra = sorted(set(referenced) - set(entries))
        what = (f"references {twice[0]} twice" if twice else
                f"does not reference {unlisted[0]}" if unlisted else
                f"references {extra[0]}, which is not in the ZIP")
        raise VerifyFailed(f"the DICOMDIR {what}")


def _belongs(match: Match, rows: list[dict[str, str]]) -> None:
    key = "SeriesInstanceUID" if match.kind == "series" else "StudyInstanceUID"
    for row in rows:
        if key in row and row[key] != match.uid:
            raise VerifyFailed(f"the ZIP holds an instance of {key} {row[key]}, not {match.uid}")
        if row.get("StudyInstanceUID", match.study_uid) != match.study_uid:
            raise VerifyFailed(f"the ZIP holds an instance of study {row['StudyInstanceUID']}")
