"""ZipAssembler on its own: multipart events in (from the real splitter), ZIP bytes out, read
back with zipfile and pydicom. No proxy, no network."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
import zlib
from pathlib import Path

import pytest
from dicomfactory import encode, make
from pydicom.fileset import FileSet
from test_multipart import BOUNDARY, build

from zipproxy.assembler import ZipAssembler
from zipproxy.errors import InstanceError, MultipartError, NoInstances
from zipproxy.multipart import MultipartSplitter

README = b"README for the test\r\n"
HEADER_LIMIT, HOLD_LIMIT = 4 << 20, 8 << 20


def _instances() -> list[bytes]:
    """Two studies, three series, a CT series of two, an SR and a PDF."""
    return [encode(make("CT", seed="a1", study="s1", series="ct", number=1)),
            encode(make("CT", seed="a2", study="s1", series="ct", number=2)),
            encode(make("SR", seed="a3", study="s1", series="sr")),
            encode(make("PDF", seed="b1", study="s2", series="doc", patient_id="PAT2"))]


def _assemble(body: bytes, chunk: int, manifest: str | None = "crc32",
              password: bytes | None = None) -> tuple[bytes, ZipAssembler]:
    assembler = ZipAssembler(README, header_limit=HEADER_LIMIT, hold_limit=HOLD_LIMIT,
                             manifest=manifest, password=password)
    splitter = MultipartSplitter(BOUNDARY)
    out = bytearray()
    try:
        for start in range(0, len(body), chunk):
            for piece in assembler.feed(splitter.feed(body[start:start + chunk])):
                out += piece  # a piece may be a view of the input: copied at once
        splitter.eof()
        for piece in assembler.finish():
            out += piece
    finally:
        assembler.close()
    return bytes(out), assembler


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 30])
def test_a_complete_dicom_zip_whatever_the_chunking(chunk: int, tmp_path: Path) -> None:
    instances = _instances()
    data, assembler = _assemble(build(instances), chunk)
    assert assembler.started and assembler.instances == len(instances)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None  # every CRC
        names = zf.namelist()
        assert names[0] == "README.TXT" and zf.read("README.TXT") == README
        assert names[-2:] == ["MANIFEST.CSV", "DICOMDIR"]  # the DICOMDIR is the last entry
        dicom = names[1:-2]
        assert dicom == ["DICOM/ST000001/SE000001/IM000001", "DICOM/ST000001/SE000001/IM000002",
                         "DICOM/ST000001/SE000002/IM000001", "DICOM/ST000002/SE000001/IM000001"]
        assert [zf.read(n) for n in dicom] == instances  # byte for byte, in the upstream's order
        rows = list(csv.DictReader(io.StringIO(zf.read("MANIFEST.CSV").decode())))
        zf.extractall(tmp_path)
    assert [r["path"] for r in rows] == dicom
    for row, name, raw in zip(rows, dicom, instances, strict=True):
        assert int(row["size"]) == len(raw) and row["crc32"] == f"{zlib.crc32(raw):08x}", name
    fs = FileSet(tmp_path / "DICOMDIR")
    try:
        assert sorted("/".join(i.ReferencedFileID) for i in fs) == dicom
        assert {i.node.record_type for i in fs} == {"IMAGE", "SR DOCUMENT", "ENCAP DOC"}
        assert len(fs.find(PatientID="PAT2")) == 1
    finally:
        fs._stage["t"].cleanup()  # FileSet's staging directory warns when collected


def test_the_output_does_not_depend_on_the_chunking() -> None:
    body = build(_instances())
    def entries(data: bytes) -> list[tuple[str, int, int]]:
        # The DICOMDIR's own SOP Instance UID (its File-set ID) is new for every ZIP.
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [(i.filename, i.CRC if i.filename != "DICOMDIR" else 0, i.file_size)
                    for i in zf.infolist()]

    expected = entries(_assemble(body, 1 << 30)[0])
    for chunk in (1, 13, 1000):
        assert entries(_assemble(body, chunk)[0]) == expected


def test_no_manifest_and_sha256() -> None:
    instances = _instances()
    plain, _ = _assemble(build(instances), 4096, manifest=None)
    with zipfile.ZipFile(io.BytesIO(plain)) as zf:
        assert "MANIFEST.CSV" not in zf.namelist() and zf.namelist()[-1] == "DICOMDIR"
    sha, _ = _assemble(build(instances), 4096, manifest="sha256")
    with zipfile.ZipFile(io.BytesIO(sha)) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("MANIFEST.CSV").decode())))
    assert [r["sha256"] for r in rows] == [hashlib.sha256(i).hexdigest() for i in instances]


def test_nothing_starts_before_the_first_instance_is_named() -> None:
    """The first bytes wait for the Study and Series UIDs: until then a failure is still an
    HTTP error (assembler.started stays False, nothing was returned)."""
    raw = encode(make("CT", seed="x"))
    assembler = ZipAssembler(README, header_limit=HEADER_LIMIT, hold_limit=HOLD_LIMIT)
    splitter = MultipartSplitter(BOUNDARY)
    try:
        head = build([raw])[:200]  # the part's headers and the preamble: no UID yet
        assert assembler.feed(splitter.feed(head)) == [] and not assembler.started
    finally:
        assembler.close()


def test_refusals() -> None:
    with pytest.raises(NoInstances):
        _assemble(b"--" + BOUNDARY.encode() + b"--\r\n", 100)
    not_dicom = build([b"hello"]).replace(b"application/dicom", b"text/plain")
    with pytest.raises(InstanceError, match="not application/dicom"):
        _assemble(not_dicom, 100)
    cut = build(_instances())[:-2000]
    with pytest.raises(MultipartError):
        _assemble(cut, 4096)
