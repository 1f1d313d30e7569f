"""ZipAssembler driven by MultipartSplitter events, as retrieve._zip_pieces drives them, with no
I/O: multipart bodies of small DICOM instances fed in odd chunk sizes, the ZIP read back."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomfactory import encode, make
from pydicom.dataelem import DataElement
from pydicom.fileset import FileSet

from zipproxy import dicomdir
from zipproxy.archive import Buffer
from zipproxy.assembler import Layout, ZipAssembler
from zipproxy.errors import InstanceError, MultipartError, NoInstances
from zipproxy.multipart import MultipartSplitter
from zipproxy.spool import Spool

BOUNDARY = "zipproxy-test-boundary"
README = b"README of the test\r\n"
CHUNKS = [1, 7, None]  # None: each body in one piece
FILE_ID = re.compile(r"DICOM/ST[0-9]{6}/SE[0-9]{6}/IM[0-9]{6}")
FIXED_TIME = time.struct_time((2024, 1, 2, 3, 4, 6, 1, 2, 0))


@dataclass(frozen=True)
class Instance:
    data: bytes
    sop: str
    name: str  # the entry name it must get


def _instance(kind: str, seed: str, study: str, series: str, number: int, name: str,
              side: int = 4, private: int = 0) -> Instance:
    ds = make(kind, seed=seed, study=study, series=series, number=number, private_size=private)
    if side != 4:  # a larger image: its UIDs come first, its pixels after them
        ds.Rows = ds.Columns = side
        ds.PixelData = bytes(range(256)) * (side * side * 2 // 256)
    return Instance(encode(ds), str(ds.SOPInstanceUID), name)


def _instances() -> list[list[Instance]]:
    """Two bodies (two retrieves, as in a collection): study A with series 1 (2 CT) and series
    2 (an SR), then study B with one series (2 CT, the first with 32 KiB of pixels)."""
    return [
        [_instance("CT", "a1", "A", "1", 1, "DICOM/ST000001/SE000001/IM000001"),
         _instance("CT", "a2", "A", "1", 2, "DICOM/ST000001/SE000001/IM000002"),
         _instance("SR", "a3", "A", "2", 1, "DICOM/ST000001/SE000002/IM000001")],
        [_instance("CT", "b1", "B", "1", 1, "DICOM/ST000002/SE000001/IM000001", side=128),
         _instance("CT", "b2", "B", "1", 2, "DICOM/ST000002/SE000001/IM000002")],
    ]


BODIES = _instances()
ALL = [i for body in BODIES for i in body]


def multipart(parts: list[bytes], *, lengths: bool = True,
              content_type: bytes = b"application/dicom") -> bytes:
    out = [b"preamble\r\n"]
    for data in parts:
        out.append(b"--%s\r\nContent-Type: %s\r\n" % (BOUNDARY.encode(), content_type))
        if lengths:
            out.append(b"Content-Length: %d\r\n" % len(data))
        out.append(b"\r\n" + data + b"\r\n")
    out.append(b"--%s--\r\n" % BOUNDARY.encode())
    return b"".join(out)


def chunks(body: bytes, size: int | None) -> Iterator[bytes]:
    if size is None:
        yield body
        return
    for start in range(0, len(body), size):
        yield body[start : start + size]


def feed(assembler: ZipAssembler, bodies: list[bytes], size: int | None) -> list[Buffer]:
    """Every body split and assembled, chunk by chunk (retrieve._zip_pieces without I/O)."""
    out: list[Buffer] = []
    for body in bodies:
        splitter = MultipartSplitter(BOUNDARY)
        for chunk in chunks(body, size):
            out += assembler.feed(splitter.feed(chunk))
        splitter.eof()
    return out


def assembler(spool_dir: Path | None = None, **kwargs: object) -> ZipAssembler:
    options: dict[str, object] = {"header_limit": 4 << 20, "hold_limit": 8 << 20}
    options.update(kwargs)
    return ZipAssembler(README, spool_dir=str(spool_dir) if spool_dir else None,
                        **options)  # type: ignore[arg-type]


def assemble(bodies: list[bytes], size: int | None, **kwargs: Any) -> tuple[bytes, int]:
    """The whole ZIP and its instance count."""
    zipper = assembler(**kwargs)
    try:
        out = feed(zipper, bodies, size)
        out += zipper.finish()
        return b"".join(bytes(piece) for piece in out), zipper.instances
    finally:
        zipper.close()


def spool_files(directory: Path | str) -> list[str]:
    """This process's open files in ``directory`` (spools are unlinked: only fds show them)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{directory}/"):
            found.append(target)
    return found


@pytest.fixture(autouse=True)
def deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    """One ZIP timestamp and one DICOMDIR SOP Instance UID, so outputs can be compared."""
    real = time.localtime

    def localtime(*args: float | None) -> time.struct_time:
        return real(*args) if args else FIXED_TIME

    monkeypatch.setattr(time, "localtime", localtime)
    monkeypatch.setattr(dicomdir, "generate_uid",
                        lambda prefix=None, entropy_srcs=None: "2.25.1234")


def check_zip(data: bytes, tmp_path: Path, instances: list[Instance], sha256: bool) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None  # every entry's CRC-32
        names = zf.namelist()
        assert names[0] == "README.TXT" and zf.read("README.TXT") == README
        assert names[-2:] == ["MANIFEST.CSV", "DICOMDIR"]
        assert names[1:-2] == [i.name for i in instances]
        assert all(FILE_ID.fullmatch(n) for n in names[1:-2])
        for instance in instances:
            assert zf.read(instance.name) == instance.data
        assert zf.comment.decode().startswith(
            f"DICOM ZIP by zipproxy: {len(instances)} instances in 3 series of 2 studies")

        rows = list(csv.DictReader(io.StringIO(zf.read("MANIFEST.CSV").decode())))
        assert [r["path"] for r in rows] == [i.name for i in instances]
        for row, instance in zip(rows, instances, strict=True):
            info = zf.getinfo(instance.name)
            assert int(row["size"]) == info.file_size == len(instance.data)
            assert row["crc32"] == f"{info.CRC:08x}" == f"{zlib.crc32(instance.data):08x}"
            assert row["SOPInstanceUID"] == instance.sop
            assert ("sha256" in row) is sha256
            if sha256:
                assert row["sha256"] == hashlib.sha256(instance.data).hexdigest()
        zf.extractall(tmp_path)

    fs = FileSet(tmp_path / "DICOMDIR")
    try:
        found = {str(i.SOPInstanceUID): i for i in fs}
        assert set(found) == {i.sop for i in instances}
        for instance in instances:
            ref = found[instance.sop]
            assert Path(ref.path).read_bytes() == instance.data
            assert Path(ref.path) == tmp_path / instance.name
            assert ref.node.ancestors[-1]._record.DirectoryRecordType == "PATIENT"
        meta = pydicom.dcmread(tmp_path / "DICOMDIR").file_meta
        assert meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"  # Media Storage Directory
    finally:
        fs._stage["t"].cleanup()  # FileSet's staging directory warns when collected


HOLD_LIMITS = [8 << 20, 4096]  # everything held; the 32 KiB instance streamed


@pytest.mark.parametrize("size", CHUNKS, ids=lambda s: f"chunk{s or 'whole'}")
@pytest.mark.parametrize("lengths", [True, False], ids=["lengths", "no-lengths"])
@pytest.mark.parametrize("hold_limit", HOLD_LIMITS, ids=["held", "streamed"])
def test_zip_read_back(tmp_path: Path, size: int | None, lengths: bool, hold_limit: int) -> None:
    """Parts with and without Content-Length, held (STORED) and streamed (stored deflate
    blocks) entries: every entry, the manifest and the DICOMDIR agree with the input."""
    bodies = [multipart([i.data for i in body], lengths=lengths) for body in BODIES]
    data, count = assemble(bodies, size, hold_limit=hold_limit)
    assert count == len(ALL)
    check_zip(data, tmp_path, ALL, sha256=False)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        methods = {i.filename: i.compress_type for i in zf.infolist()}
    streamed = ALL[3].name
    assert methods[streamed] == (zipfile.ZIP_STORED if hold_limit > len(ALL[3].data)
                                 else zipfile.ZIP_DEFLATED)
    assert all(methods[i.name] == zipfile.ZIP_STORED for i in ALL if i.name != streamed)


def test_sha256_manifest_and_no_manifest(tmp_path: Path) -> None:
    bodies = [multipart([i.data for i in body]) for body in BODIES]
    data, _ = assemble(bodies, 7, manifest="sha256")
    check_zip(data, tmp_path, ALL, sha256=True)
    data, _ = assemble(bodies, 7, manifest=None)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert "MANIFEST.CSV" not in zf.namelist() and zf.namelist()[-1] == "DICOMDIR"


def entries(data: bytes) -> list[tuple[str, int, int, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, i.CRC, i.file_size, zf.read(i)) for i in zf.infolist()]


@pytest.mark.parametrize("lengths", [True, False], ids=["lengths", "no-lengths"])
def test_output_does_not_depend_on_the_chunking(lengths: bool) -> None:
    """Held (STORED) entries: the same ZIP, byte for byte, whatever the network's chunks."""
    bodies = [multipart([i.data for i in body], lengths=lengths) for body in BODIES]
    outputs = {size: assemble(bodies, size)[0] for size in CHUNKS}
    assert outputs[1] == outputs[7] == outputs[None]


@pytest.mark.parametrize("lengths", [True, False], ids=["lengths", "no-lengths"])
def test_streamed_entries_do_not_depend_on_the_chunking(lengths: bool) -> None:
    """Streamed entries frame each received chunk as its own stored deflate block (no copy),
    so the bytes differ with the chunking; names, CRCs, sizes and contents do not."""
    bodies = [multipart([i.data for i in body], lengths=lengths) for body in BODIES]
    outputs = {size: entries(assemble(bodies, size, hold_limit=HOLD_LIMITS[1])[0])
               for size in CHUNKS}
    assert outputs[1] == outputs[7] == outputs[None]
    assert len(outputs[1]) == len(ALL) + 3


def test_nothing_before_the_first_entry_opens() -> None:
    """No ZIP byte (and ``started`` stays False) until the first part is named: until then a
    failure can still be an HTTP error."""
    zipper = assembler()
    try:
        body = multipart([ALL[0].data])
        splitter = MultipartSplitter(BOUNDARY)
        head = body.index(b"\r\n\r\n") + 4 + 64  # the part's headers and 64 bytes of its data
        assert zipper.feed(splitter.feed(body[:head])) == []
        assert not zipper.started
        out = zipper.feed(splitter.feed(body[head:]))
        assert zipper.started and bytes(out[0]).startswith(b"PK\x03\x04")
    finally:
        zipper.close()


@pytest.fixture
def disk_spools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every spool moves to a file at its first byte (1 byte of RAM instead of 256 KiB)."""
    monkeypatch.setattr(Spool.__init__, "__defaults__", (None, 1))


@pytest.mark.usefixtures("disk_spools")
@pytest.mark.parametrize("finished", [False, True], ids=["aborted-mid-tail", "complete"])
def test_close_removes_the_spools(tmp_path: Path, finished: bool) -> None:
    spools = tmp_path / "spool"
    spools.mkdir()
    zipper = assembler(spools)
    try:
        feed(zipper, [multipart([i.data for i in body]) for body in BODIES], 7)
        tail = zipper.finish()  # MANIFEST.CSV rows are flushed to their spool here
        next(tail)
        # Central directory, DICOMDIR records and manifest rows: three files, unlinked.
        assert len(spool_files(spools)) == 3
        if finished:
            for _ in tail:
                pass
    finally:
        zipper.close()
    assert spool_files(spools) == []
    assert list(spools.iterdir()) == []


@pytest.mark.parametrize("size", CHUNKS, ids=lambda s: f"chunk{s or 'whole'}")
def test_empty_body_raises_no_instances(size: int | None) -> None:
    zipper = assembler()
    try:
        assert feed(zipper, [multipart([])], size) == []
        assert not zipper.started
        with pytest.raises(NoInstances):
            zipper.finish()
    finally:
        zipper.close()


@pytest.mark.parametrize("size", CHUNKS, ids=lambda s: f"chunk{s or 'whole'}")
def test_non_dicom_first_part_raises(size: int | None) -> None:
    zipper = assembler()
    try:
        with pytest.raises(InstanceError, match="not application/dicom"):
            feed(zipper, [multipart([b"<html>error page</html>"],
                                    content_type=b"text/html")], size)
        assert not zipper.started
    finally:
        zipper.close()


def test_body_ending_inside_a_part_raises() -> None:
    zipper = assembler()
    try:
        body = multipart([ALL[0].data])
        splitter = MultipartSplitter(BOUNDARY)
        zipper.feed(splitter.feed(body[: len(body) // 2]))
        with pytest.raises(MultipartError):
            splitter.eof()
        with pytest.raises(MultipartError, match="inside a part"):
            zipper.finish()
    finally:
        zipper.close()


@pytest.mark.parametrize("size", [7, None], ids=["chunk7", "chunkwhole"])
def test_uids_beyond_the_hold_limit(tmp_path: Path, size: int | None) -> None:
    """A part whose Study/Series UIDs come after ``hold_limit`` bytes (a 20 KB private element
    first) is named before they are known, so its File ID may differ from its siblings' study
    and series folders; the DICOMDIR still references it, under its real study."""
    late = _instance("CT", "c1", "C", "1", 1, "", private=20_000)
    sibling = _instance("CT", "c2", "C", "1", 2, "")
    data, count = assemble([multipart([late.data, sibling.data])], size, hold_limit=4096)
    assert count == 2
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()[1:-2]
        assert all(FILE_ID.fullmatch(n) for n in names)
        assert [zf.read(n) for n in names] == [late.data, sibling.data]
        zf.extractall(tmp_path)
    fs = FileSet(tmp_path / "DICOMDIR")
    try:
        found = {str(i.SOPInstanceUID): i for i in fs}
        assert set(found) == {late.sop, sibling.sop}
        assert Path(found[late.sop].path).read_bytes() == late.data
        study = {str(found[u].node.ancestors[-2]._record.StudyInstanceUID) for u in found}
        assert len(study) == 1
    finally:
        fs._stage["t"].cleanup()


def test_file_id_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """PS3.10 8.2: 8 characters a component, so 999,999 studies, series and instances (here
    3): the next one fails the ZIP rather than getting a name that is too long."""
    monkeypatch.setattr("zipproxy.assembler._MAX_INDEX", 3)
    layout = Layout()
    assert [layout.file_id(b"1", b"1")[3] for _ in range(3)] == ["IM000001", "IM000002",
                                                                 "IM000003"]
    with pytest.raises(InstanceError, match="instances in one series"):
        layout.file_id(b"1", b"1")
    assert layout.file_id(b"1", b"3") == ("DICOM", "ST000001", "SE000002", "IM000001")
    layout.file_id(b"1", b"4")
    with pytest.raises(InstanceError, match="series in one study"):
        layout.file_id(b"1", b"5")
    layout.file_id(b"2", b"1")
    layout.file_id(b"3", b"1")
    with pytest.raises(InstanceError, match="studies in one ZIP"):
        layout.file_id(b"4", b"1")
    assert layout.series == 5


def test_a_uid_with_a_binary_vr_is_read_alike_by_folders_dicomdir_and_manifest(
        tmp_path: Path) -> None:
    """A broken writer's SeriesInstanceUID with VR OB is no text value (records.text): the File
    ID's series folder, the DICOMDIR's series and the manifest's column all read it as missing,
    so two such instances with different bytes share one series everywhere."""
    instances = []
    for number, raw in ((1, b"1.2.3.4.1\0"), (2, b"1.2.3.4.2\0")):
        ds = make("CT", seed=f"d{number}", study="D", series="1", number=number)
        ds.add(DataElement(0x0020000E, "OB", raw))
        instances.append(Instance(encode(ds), str(ds.SOPInstanceUID), ""))
    data, count = assemble([multipart([i.data for i in instances])], 7)
    assert count == 2
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()[1:-2]
        rows = list(csv.DictReader(io.StringIO(zf.read("MANIFEST.CSV").decode())))
        zf.extractall(tmp_path)
    assert [n.rsplit("/", 1)[0] for n in names] == ["DICOM/ST000001/SE000001"] * 2
    assert [r["SeriesInstanceUID"] for r in rows] == ["", ""]
    fs = FileSet(tmp_path / "DICOMDIR")
    try:
        series = {id(i.node.parent) for i in fs}
        assert len(series) == 1 and len(list(fs)) == 2
    finally:
        fs._stage["t"].cleanup()
