"""Check a downloaded ZIP from its file on disk: is it the whole study, and does MANIFEST.CSV
say the truth about every entry?

1. ``zipfile`` reads the central directory: entries = instances + 3 (README.TXT, DICOMDIR,
   MANIFEST.CSV) or + 2 with ``?manifest=false``; names unique.
2. Every entry is read to its end: ``zipfile`` checks each CRC-32. An encrypted ZIP (WinZip
   AE-2 has no CRC) is extracted by 7-Zip (``7zz x``, which checks each entry's HMAC) and the
   extracted files are read instead.
3. DICOMDIR (pydicom): one leaf record (a record with Referenced File ID) per instance, each
   naming an entry of the ZIP.
4. MANIFEST.CSV: one row per instance; each row's path is an entry, its ``size`` the entry's
   size, and each checksum column present (``sha256``; ``crc32``: 8 lowercase hex digits of
   ``zlib.crc32``) equals the digest computed here from the entry's bytes.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import re
import shutil
import subprocess
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CHUNK = 1 << 20
CHECKSUMS = ("sha256", "crc32")
_CRC32 = re.compile(r"[0-9a-f]{8}")


@dataclass(frozen=True)
class Expect:
    instances: int
    manifest: bool = True
    sha256: bool = False  # ?manifest=sha256: the sha256 column must be there
    password: str | None = None


@dataclass
class Verdict:
    ok: bool = False
    note: str = ""
    problems: list[str] = field(default_factory=list)


Opener = Callable[[str], IO[bytes]]


def verify_zip(path: Path, expect: Expect) -> Verdict:
    """Run the checks above; any failure is a verdict, not a crash."""
    try:
        return _verify(path, expect)
    except Exception as exc:
        return Verdict(False, f"{type(exc).__name__}: {exc}"[:300])


def _verify(path: Path, expect: Expect) -> Verdict:
    problems: list[str] = []
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        extra = 3 if expect.manifest else 2
        if len(names) != expect.instances + extra:
            problems.append(f"{len(names)} entries for {expect.instances} instances + {extra}")
        if len(set(names)) != len(names):
            problems.append("duplicate entry names")
        required = ["README.TXT", "DICOMDIR"] + (["MANIFEST.CSV"] if expect.manifest else [])
        problems += [f"no {n}" for n in required if n not in names]
        zip64 = any(i.file_size >= 0xFFFFFFFF or i.header_offset >= 0xFFFFFFFF for i in infos)
        with _entries(zf, path, expect, problems) as opener:
            if problems:
                return Verdict(False, "; ".join(problems), problems)
            records = _check_dicomdir(opener, set(names), expect.instances, problems)
            columns = _check_entries(zf, opener, expect, problems)
    if problems:
        return Verdict(False, "; ".join(problems[:5]), problems)
    sums = f"manifest {'+'.join(columns)} ok" if columns else "no MANIFEST.CSV"
    kind = "AES-256, 7zz x ok, " if expect.password else "CRCs ok, "
    return Verdict(True, f"{len(names)} entries = {expect.instances} + {extra}, {kind}"
                         f"DICOMDIR leaf records {records}, {sums}" + (", ZIP64" if zip64 else ""))


@contextlib.contextmanager
def _entries(zf: zipfile.ZipFile, path: Path, expect: Expect,
             problems: list[str]) -> Iterator[Opener]:
    """How to read an entry's plain bytes: from the ZIP, or from 7-Zip's extraction."""
    if expect.password is None:
        yield zf.open
        return
    for info in zf.infolist()[1:]:
        if not info.flag_bits & 1 or info.compress_type != 99:  # 99: AE-x (APPNOTE 4.4.5)
            problems.append(f"{info.filename} is not AES-encrypted")
            break
    seven = shutil.which("7zz")
    if seven is None:
        problems.append("7zz not installed: cannot check the encrypted entries")
        yield zf.open
        return
    with tempfile.TemporaryDirectory(prefix="verify-", dir=path.parent) as tmp:
        done = subprocess.run([seven, "x", "-y", "-bso0", "-bsp0", f"-p{expect.password}",
                               f"-o{tmp}", str(path)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            problems.append(f"7zz x failed ({done.returncode}): {done.stderr.strip()[:200]}")
        root = Path(tmp)
        yield lambda name: root.joinpath(*name.split("/")).open("rb")


def _check_dicomdir(opener: Opener, names: set[str], instances: int,
                    problems: list[str]) -> int:
    import pydicom

    with opener("DICOMDIR") as f:
        ds = pydicom.dcmread(io.BytesIO(f.read()))
    leaves = [r.ReferencedFileID for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r]
    ids = ["/".join([v] if isinstance(v, str) else list(v)) for v in leaves]
    if len(ids) != instances:
        problems.append(f"DICOMDIR has {len(ids)} leaf records")
    missing = [i for i in ids if i not in names]
    if missing:
        problems.append(f"DICOMDIR references {len(missing)} missing entries, e.g. {missing[0]}")
    return len(ids)


def _manifest_rows(opener: Opener) -> tuple[list[str], dict[str, dict[str, str]]]:
    with opener("MANIFEST.CSV") as f:
        reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", newline=""))
        rows = {row["path"]: row for row in reader}
        return list(reader.fieldnames or []), rows


def _check_entries(zf: zipfile.ZipFile, opener: Opener, expect: Expect,
                   problems: list[str]) -> list[str]:
    """Read every entry to its end; compare with its MANIFEST.CSV row. The checksum columns."""
    rows: dict[str, dict[str, str]] = {}
    columns: list[str] = []
    if expect.manifest:
        fields, rows = _manifest_rows(opener)
        columns = [c for c in CHECKSUMS if c in fields]
        if not columns:
            problems.append(f"MANIFEST.CSV has no checksum column ({fields})")
        if expect.sha256 and "sha256" not in columns:
            problems.append("?manifest=sha256 but no sha256 column")
        if len(rows) != expect.instances:
            problems.append(f"MANIFEST.CSV has {len(rows)} rows")
    for info in zf.infolist():
        row = rows.pop(info.filename, None)
        sha = hashlib.sha256() if row is not None and "sha256" in columns else None
        crc, size = 0, 0
        with opener(info.filename) as f:  # zipfile raises BadZipFile on a CRC mismatch at EOF
            while block := f.read(CHUNK):
                crc = zlib.crc32(block, crc)
                size += len(block)
                if sha is not None:
                    sha.update(block)
        if row is not None:
            _compare(info.filename, row, size, crc, sha, problems)
    if rows:
        problems.append(f"{len(rows)} manifest rows name no entry, e.g. {next(iter(rows))}")
    return columns


def _compare(name: str, row: dict[str, str], size: int, crc: int,
             sha: hashlib._Hash | None, problems: list[str]) -> None:
    if row.get("size") != str(size):
        problems.append(f"{name}: manifest size {row.get('size')} != {size}")
    if sha is not None and row["sha256"] != sha.hexdigest():
        problems.append(f"{name}: manifest sha256 differs")
    if "crc32" in row:
        value = row["crc32"]
        if not _CRC32.fullmatch(value) or int(value, 16) != crc:
            problems.append(f"{name}: manifest crc32 {value!r} != {crc:08x}")
