"""What ``zipproxy fetch`` refuses to call verified, on real ZIPs from zipproxy (then spoiled).

Each case takes the proxy's ZIP of the mixed sample study (CT, multi-frame XA, SR, KO, PDF),
changes one thing with :mod:`zipfile`, and checks :func:`verify_zip` names the problem. The
manifest's checksum columns are whatever this proxy writes (``sha256`` today, ``crc32`` soon):
a case that needs a column it lacks rewrites the manifest with one, computed from the bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from conftest import Proxy

from zipproxy.demo.orthanc import SampleUpstream
from zipproxy.demo.samples import StudyInfo
from zipproxy.fetch.errors import VerifyFailed
from zipproxy.fetch.search import Match
from zipproxy.fetch.verify import verify_zip

Entries = dict[str, bytes]


@pytest.fixture(scope="module")
def mixed(orthanc: SampleUpstream) -> StudyInfo:
    return orthanc.study("ZP-MIX-001")


@pytest.fixture(scope="module")
def original(proxy: Proxy, mixed: StudyInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = requests.get(f"{proxy.url}/dicom-web/studies/{mixed.study_uid}", timeout=60,
                     headers={"Accept": "application/zip; transfer-syntax=*"})
    assert r.status_code == 200 and r.content.startswith(b"PK")
    path = tmp_path_factory.mktemp("verify") / "study.zip"
    path.write_bytes(r.content)
    return path


def match_of(study: StudyInfo) -> Match:
    return Match(study.study_uid, study.study_uid, len(study.instances),
                 f"/dicom-web/studies/{study.study_uid}", "study")


def read(path: Path) -> Entries:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write(entries: Entries, path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def manifest(entries: Entries) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(entries["MANIFEST.CSV"].decode()))
    return list(reader.fieldnames or []), list(reader)


def with_manifest(entries: Entries, columns: list[str], rows: list[dict[str, str]]) -> Entries:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\r\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return {**entries, "MANIFEST.CSV": out.getvalue().encode()}


def checksums_from_bytes(entries: Entries, wanted: tuple[str, ...]) -> Entries:
    """The manifest with exactly the ``wanted`` checksum columns, computed from the entries."""
    columns, rows = manifest(entries)
    columns = [c for c in columns if c not in ("crc32", "sha256")] + list(wanted)
    for row in rows:
        data = entries[row["path"]]
        row["crc32"] = f"{zlib.crc32(data):08x}"
        row["sha256"] = hashlib.sha256(data).hexdigest()
    return with_manifest(entries, columns, rows)


def test_the_proxy_s_zip_verifies(original: Path, mixed: StudyInfo) -> None:
    verified = verify_zip(original, match_of(mixed), len(mixed.instances))
    assert verified.checksums and set(verified.checksums) <= {"crc32", "sha256"}
    assert sorted(r["SOPInstanceUID"] for r in verified.rows) == sorted(mixed.sop_uids)


@pytest.mark.parametrize("wanted", [("crc32",), ("sha256",), ("crc32", "sha256")])
def test_either_checksum_column_or_both(original: Path, mixed: StudyInfo, tmp_path: Path,
                                        wanted: tuple[str, ...]) -> None:
    path = write(checksums_from_bytes(read(original), wanted), tmp_path / "z.zip")
    assert verify_zip(path, match_of(mixed), len(mixed.instances)).checksums == wanted


def _first_dicom(entries: Entries) -> str:
    return next(n for n in entries if n.startswith("DICOM/"))


def _spoil_row(column: str, value: str) -> Callable[[Entries], Entries]:
    def spoil(entries: Entries) -> Entries:
        entries = checksums_from_bytes(entries, ("crc32", "sha256"))
        columns, rows = manifest(entries)
        rows[0][column] = value
        return with_manifest(entries, columns, rows)
    return spoil


def _drop_column(*names: str) -> Callable[[Entries], Entries]:
    def spoil(entries: Entries) -> Entries:
        columns, rows = manifest(entries)
        return with_manifest(entries, [c for c in columns if c not in names], rows)
    return spoil


def _drop_entry(entries: Entries) -> Entries:
    name = _first_dicom(entries)
    columns, rows = manifest(entries)
    return with_manifest({k: v for k, v in entries.items() if k != name}, columns,
                         [r for r in rows if r["path"] != name])


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (_spoil_row("size", "1"), "MANIFEST.CSV says 1"),
        (_spoil_row("crc32", "00000000"), "CRC-32"),
        (_spoil_row("sha256", "0" * 64), "SHA-256"),
        (_spoil_row("path", "DICOM/ST000009/SE000001/IM000001"), "MANIFEST.CSV lists"),
        (_drop_column("crc32", "sha256"), "no checksum column"),
        (_drop_column("size"), "no size column"),
        (lambda e: {k: v for k, v in e.items() if k != "MANIFEST.CSV"}, "no MANIFEST.CSV"),
        (lambda e: {k: v for k, v in e.items() if k != "DICOMDIR"}, "no DICOMDIR"),
        (lambda e: {**e, "DICOMDIR": b"not dicom"}, "DICOMDIR does not parse"),
        (_drop_entry, "which is not in the ZIP"),  # the DICOMDIR still references it
        (lambda e: {**e, "DICOM/EXTRA": b"x"}, "does not list 'DICOM/EXTRA'"),
    ],
)
def test_spoiled_zips_fail(original: Path, mixed: StudyInfo, tmp_path: Path,
                           spoil: Callable[[Entries], Entries], problem: str) -> None:
    path = write(spoil(read(original)), tmp_path / "bad.zip")
    with pytest.raises(VerifyFailed) as info:
        verify_zip(path, match_of(mixed), len(mixed.instances))
    assert problem in info.value.reason


def test_a_flipped_byte_fails_its_crc(original: Path, mixed: StudyInfo, tmp_path: Path) -> None:
    data = bytearray(original.read_bytes())
    with zipfile.ZipFile(original) as zf:
        info = next(i for i in zf.infolist() if i.filename.startswith("DICOM/"))
        assert info.compress_type == zipfile.ZIP_STORED
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0xFF  # inside the entry's data, local header intact
    path = tmp_path / "flipped.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(VerifyFailed, match="Bad CRC-32"):
        verify_zip(path, match_of(mixed), len(mixed.instances))


def test_fewer_instances_than_counted(original: Path, mixed: StudyInfo) -> None:
    with pytest.raises(VerifyFailed, match=f"holds {len(mixed.instances)} instances, the search "
                       f"counted {len(mixed.instances) + 1}"):
        verify_zip(original, match_of(mixed), len(mixed.instances) + 1)


def test_a_cut_zip_and_another_study(original: Path, mixed: StudyInfo,
                                     orthanc: SampleUpstream, tmp_path: Path) -> None:
    cut = tmp_path / "cut.zip"
    cut.write_bytes(original.read_bytes()[: original.stat().st_size // 2])
    with pytest.raises(VerifyFailed, match="not a complete ZIP"):
        verify_zip(cut, match_of(mixed), len(mixed.instances))
    other = match_of(orthanc.study("ZP-CT-001"))
    with pytest.raises(VerifyFailed, match="not " + other.uid):
        verify_zip(original, other, len(mixed.instances))


def test_sha256_asked_for_but_missing(original: Path, mixed: StudyInfo, tmp_path: Path) -> None:
    path = write(checksums_from_bytes(read(original), ("crc32",)), tmp_path / "crc.zip")
    with pytest.raises(VerifyFailed, match="--checksum sha256"):
        verify_zip(path, match_of(mixed), len(mixed.instances), sha256=True)
