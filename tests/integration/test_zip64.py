"""ZIP64: an instance larger than 4 GiB, and a ZIP of more than 65,535 entries.

A real ``python -m zipproxy`` (default settings) in front of :class:`FakeUpstream`, which makes
the instances while it sends them (nothing of the 4 GiB exists in memory or on disk before the
proxy writes its ZIP). Each ZIP is downloaded with curl to disk and must open in 7-Zip
(``7zz t``), Info-ZIP (``unzip -t``) and Python's ``zipfile`` (every CRC), and its DICOMDIR
must reference every instance. Slow by nature (``-m slow``); each test prints its durations.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import struct
import subprocess
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pydicom
import pytest
from conftest import Proxy, StartProxy
from fakeupstream import (
    MIB,
    FakeUpstream,
    GeneratedBody,
    Plan,
    TinySeries,
    generated_frames_instance,
    generated_uid,
)
from zipcheck import check_7zz, check_python_zipfile, check_unzip

pytestmark = pytest.mark.slow

ZIP = "application/zip"
GIB = 1 << 30
ZIP64_LIMIT = 0xFFFFFFFF
#: 3,840 frames of 1024 x 1024 bytes (0xF0000000 bytes: what one element length can say, with
#: room) plus 384 MiB of Data Set Trailing Padding: 4.125 GiB of pixel bytes in one instance.
BIG_FRAMES = 3840
BIG_PADDING = 384 * MIB
MANY = 66_000  # > 65,535 entries: the ZIP needs the ZIP64 end of central directory
T = TypeVar("T")


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, start_proxy: StartProxy) -> Proxy:
    return start_proxy(fake.url)


def download(url: str, out: Path) -> float:
    """curl to disk; returns the seconds it took."""
    started = time.monotonic()
    proc = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "--max-time", "900", "-o", str(out),
         "-H", f"Accept: {ZIP}", url],
        capture_output=True, text=True, timeout=960, check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, (proc.returncode, proc.stderr, out.read_bytes()[:300])
    return elapsed


def timed(fn: Callable[[Path], T], path: Path) -> tuple[T, float]:
    """``fn(path)`` and the seconds it took."""
    started = time.monotonic()
    result = fn(path)
    return result, time.monotonic() - started


def dicomdir_leaves(zf: zipfile.ZipFile) -> tuple[Counter[str], list[str], list[str]]:
    """(record types, SOP Instance UIDs, File IDs as entry names) of the DICOMDIR."""
    dicomdir = pydicom.dcmread(io.BytesIO(zf.read("DICOMDIR")))
    types: Counter[str] = Counter()
    uids, files = [], []
    for record in dicomdir.DirectoryRecordSequence:
        types[str(record.DirectoryRecordType).strip()] += 1
        if "ReferencedSOPInstanceUIDInFile" in record:
            uids.append(str(record.ReferencedSOPInstanceUIDInFile))
            files.append("/".join(record.ReferencedFileID))
    return types, uids, files


def manifest_rows(zf: zipfile.ZipFile) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(zf.read("MANIFEST.CSV").decode("utf-8"))))


def end_records(path: Path) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """The end of central directory record and, when present, the ZIP64 one it points to."""
    size = path.stat().st_size
    with path.open("rb") as fp:
        fp.seek(max(0, size - 70_000))
        tail = fp.read()
        at = tail.rfind(b"PK\x05\x06")
        assert at >= 0, "no end of central directory record"
        eocd = struct.unpack("<4sHHHHIIH", tail[at : at + 22])
        locator = tail[at - 20 : at]
        if locator[:4] != b"PK\x06\x07":
            return eocd, None
        _, _, zip64_offset, _ = struct.unpack("<4sIQI", locator)
        fp.seek(zip64_offset)
        zip64 = struct.unpack("<4sQHHIIQQQQ", fp.read(56))
        assert zip64[0] == b"PK\x06\x06", zip64
        return eocd, zip64


def need_disk(folder: Path, nbytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < nbytes:
        pytest.fail(f"{folder}: {free / GIB:.1f} GiB free, this test needs {nbytes / GIB:.1f} GiB",
                    pytrace=False)


def test_instance_larger_than_4_gib(fake: FakeUpstream, proxy: Proxy, tmp_path: Path) -> None:
    instance = generated_frames_instance("zip64-big", 1, BIG_FRAMES, padding_length=BIG_PADDING)
    assert instance.size > ZIP64_LIMIT + 100 * MIB
    need_disk(tmp_path, instance.size + GIB)
    fake.add("zip64-big", Plan(segments=GeneratedBody(1, lambda _: instance)))
    out = tmp_path / "big.zip"
    try:
        seconds = {"download": download(f"{proxy.url}/zip64-big/studies/1.2.3?manifest=sha256",
                                        out)}
        assert out.stat().st_size > instance.size
        _, seconds["7zz t"] = timed(check_7zz, out)
        _, seconds["unzip -t"] = timed(check_unzip, out)

        started = time.monotonic()
        expected, crc = hashlib.sha256(), 0
        for chunk in instance.chunks():
            expected.update(chunk)
            crc = zlib.crc32(chunk, crc)
        seconds["expected sha256"] = time.monotonic() - started

        started = time.monotonic()
        with zipfile.ZipFile(out) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            assert names[0] == "README.TXT" and names[-2:] == ["MANIFEST.CSV", "DICOMDIR"], names
            (big,) = [i for i in infos if i.filename.startswith("DICOM/")]
            assert big.file_size == instance.size, (big.file_size, instance.size)
            assert big.compress_size > ZIP64_LIMIT
            # Every entry read whole: zipfile checks each CRC-32 at the end of the entry
            # (BadZipFile otherwise); the big one is also hashed and compared.
            got = hashlib.sha256()
            for info in infos:
                with zf.open(info) as fp:
                    while block := fp.read(4 * MIB):
                        if info is big:
                            got.update(block)
            assert got.hexdigest() == expected.hexdigest()
            with zf.open(big) as fp:
                header = pydicom.dcmread(fp, stop_before_pixels=True)
            assert header.SOPInstanceUID == generated_uid("zip64-big", "instance", 1)
            assert int(header.NumberOfFrames) == BIG_FRAMES
            (row,) = manifest_rows(zf)
            assert row["path"] == big.filename
            assert int(row["size"]) == instance.size
            assert row["sha256"] == expected.hexdigest() and row["crc32"] == f"{crc:08x}"
            types, uids, files = dicomdir_leaves(zf)
            assert types == Counter({"PATIENT": 1, "STUDY": 1, "SERIES": 1, "IMAGE": 1}), types
            assert uids == [str(header.SOPInstanceUID)] and files == [big.filename]
        seconds["python zipfile (every CRC)"] = time.monotonic() - started
        print(f"\nZIP64 big instance: {instance.size / GIB:.3f} GiB entry, ZIP "
              f"{out.stat().st_size / GIB:.3f} GiB; "
              + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    finally:
        out.unlink(missing_ok=True)  # 4 GiB: never kept for pytest's tmp_path retention


def test_more_than_65535_entries(fake: FakeUpstream, proxy: Proxy, tmp_path: Path) -> None:
    series = TinySeries("zip64-many", MANY)
    fake.add("zip64-many", Plan(segments=GeneratedBody(series.count, series.instance)))
    out = tmp_path / "many.zip"
    seconds = {"download": download(f"{proxy.url}/zip64-many/studies/{series.study_uid}", out)}
    _, seconds["7zz t"] = timed(check_7zz, out)
    _, seconds["unzip -t"] = timed(check_unzip, out)
    infos, seconds["python zipfile testzip"] = timed(check_python_zipfile, out)

    names = [i.filename for i in infos]
    dicom = [n for n in names if n.startswith("DICOM/")]
    assert len(names) == MANY + 3 and len(set(names)) == len(names)
    assert names[0] == "README.TXT" and names[-2:] == ["MANIFEST.CSV", "DICOMDIR"]
    assert len(dicom) == MANY
    # One series: DICOM/ST000001/SE000001/IM000001 ... IM066000, in the order sent.
    assert dicom[0] == "DICOM/ST000001/SE000001/IM000001"
    assert dicom[-1] == f"DICOM/ST000001/SE000001/IM{MANY:06d}"
    eocd, zip64 = end_records(out)
    assert zip64 is not None, "no ZIP64 end of central directory record"
    assert eocd[4] == 0xFFFF, eocd  # "see the ZIP64 record"
    assert zip64[6] == zip64[7] == MANY + 3, zip64  # entries on this disk, in total

    started = time.monotonic()
    with zipfile.ZipFile(out) as zf:
        types, uids, files = dicomdir_leaves(zf)
        rows = manifest_rows(zf)
    seconds["DICOMDIR + MANIFEST"] = time.monotonic() - started
    assert types == Counter({"PATIENT": 1, "STUDY": 1, "SERIES": 1, "IMAGE": MANY}), types
    assert len(uids) == MANY and set(uids) == set(series.sop_uids)
    assert len(files) == MANY and set(files) == set(dicom)
    assert [r["path"] for r in rows] == dicom
    assert [r["SOPInstanceUID"] for r in rows] == series.sop_uids
    print(f"\nZIP64 {MANY} entries: ZIP {out.stat().st_size / MIB:.1f} MiB; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
