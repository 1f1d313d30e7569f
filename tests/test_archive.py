"""The ZIP writer: every produced archive is read back and its CRCs checked."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from zipproxy.archive import ArchiveWriter


def produce(entries: list[tuple[str, bytes, bool]], *, hold_limit: int, chunk: int) -> bytes:
    """entries: (name, data, announce_size)."""
    w = ArchiveWriter(hold_limit=hold_limit)
    out = bytearray()
    for piece in w.add("README.TXT", b"hello\r\n"):
        out += piece
    for name, data, announce in entries:
        out += b"".join(w.open(name, len(data) if announce else None))
        for i in range(0, len(data), chunk):
            for piece in w.write(memoryview(data)[i : i + chunk]):
                out += piece
        pieces, crc = w.close()
        assert crc == zlib.crc32(data)
        for piece in pieces:
            out += piece
    for piece in w.tail([], "3 entries"):
        out += piece
    assert w.bytes_written == len(out)
    return bytes(out)


def local_headers(blob: bytes) -> dict[str, tuple[int, int]]:
    """name -> (flag bits, method) from the local file headers, read front to back."""
    found = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for info in zf.infolist():
            sig, _, flags, method = struct.unpack_from("<IHHH", blob, info.header_offset)
            assert sig == 0x04034B50
            found[info.filename] = (flags, method)
    return found


def test_small_entries_are_stored_without_data_descriptor() -> None:
    data = os.urandom(5000)
    blob = produce(
        [("DICOM/0/1", data, True), ("DICOM/0/2", data, False)], hold_limit=10_000, chunk=777
    )
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        assert zf.read("DICOM/0/1") == data == zf.read("DICOM/0/2")
        assert zf.comment == b"3 entries"
        assert zf.namelist()[0] == "README.TXT"
    for flags, method in local_headers(blob).values():
        assert method == zipfile.ZIP_STORED and not flags & 0x08


def test_large_entries_stream_as_deflate_level_0() -> None:
    data = os.urandom(50_000)
    blob = produce(
        [("BIG1", data, True), ("BIG2", data, False), ("SMALL", b"x", True)],
        hold_limit=10_000,
        chunk=4096,
    )
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        assert zf.read("BIG1") == data == zf.read("BIG2")
        infos = {i.filename: i for i in zf.infolist()}
        # Level 0: stored blocks, so the entry is not smaller than the data.
        assert infos["BIG1"].compress_size >= len(data)
    headers = local_headers(blob)
    assert headers["BIG1"] == (0x08, zipfile.ZIP_DEFLATED)
    assert headers["BIG2"][1] == zipfile.ZIP_DEFLATED
    assert headers["SMALL"] == (0, zipfile.ZIP_STORED)


@settings(max_examples=60)
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=6),
    hold=st.integers(1, 2000),
    chunk=st.integers(1, 1500),
    announce=st.booleans(),
)
def test_any_mix_reads_back(sizes: list[int], hold: int, chunk: int, announce: bool) -> None:
    entries = [(f"E{i}", os.urandom(n), announce) for i, n in enumerate(sizes)]
    blob = produce(entries, hold_limit=hold, chunk=chunk)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        for name, data, _ in entries:
            assert zf.read(name) == data


def test_encrypted_archive_opens_only_with_its_password(tmp_path: Path) -> None:
    """AE-2 entries of every kind (held, streamed with and without a known size) extract
    byte-identical with 7-Zip and the password, fail without it; README.TXT stays readable."""

    password = "correct horse battery"
    w = ArchiveWriter(hold_limit=10_000, password=password.encode())
    out = bytearray()
    datas = {"A": os.urandom(5000), "B": os.urandom(50_000), "C": os.urandom(30_000),
             "D": b""}
    for piece in w.add("README.TXT", b"read me\r\n", plain=True):
        out += piece
    for name, announce in (("A", True), ("B", True), ("C", False), ("D", True)):
        data = datas[name]
        out += b"".join(w.open(name, len(data) if announce else None))
        for i in range(0, len(data), 4096):
            for piece in w.write(memoryview(data)[i : i + 4096]):
                out += piece
        for piece in w.close()[0]:
            out += piece
    for piece in w.tail([("DICOMDIR", 9, iter([b"direc", b"tory"]))]):
        out += piece
    path = Path(tmp_path) / "enc.zip"
    path.write_bytes(out)
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert zf.read("README.TXT") == b"read me\r\n"
        assert infos["README.TXT"].flag_bits & 1 == 0
        assert all(infos[n].flag_bits & 1 and infos[n].compress_type == 99
                   for n in ("A", "B", "C", "D", "DICOMDIR"))
    test = subprocess.run(["7zz", "t", f"-p{password}", str(path)], capture_output=True,
                          text=True, check=False)
    assert test.returncode == 0, test.stdout + test.stderr
    dest = Path(tmp_path) / "x"
    subprocess.run(["7zz", "x", f"-p{password}", f"-o{dest}", str(path)], capture_output=True,
                   check=True)
    for name, data in datas.items():
        assert (dest / name).read_bytes() == data
    assert (dest / "DICOMDIR").read_bytes() == b"directory"
    wrong = subprocess.run(["7zz", "t", "-pwrong password", str(path)], capture_output=True,
                           text=True, check=False)
    assert wrong.returncode != 0


def test_deflate_level_compresses_streamed_entries() -> None:
    w = ArchiveWriter(hold_limit=1000, deflate_level=6)
    data = b"DICOM " * 20_000
    out = bytearray()
    out += b"".join(w.open("BIG", len(data)))
    for i in range(0, len(data), 7000):
        for piece in w.write(data[i : i + 7000]):
            out += piece
    for piece in [*w.close()[0], *w.tail([])]:
        out += piece
    with zipfile.ZipFile(io.BytesIO(bytes(out))) as zf:
        (info,) = zf.infolist()
        assert zf.read("BIG") == data and info.compress_size < len(data) // 10
