"""MANIFEST.CSV rows: values from the instance, size and checksums of what was written."""

from __future__ import annotations

import csv
import hashlib
import io
import zlib

import pytest
from dicomfactory import encode, make

from zipproxy.dicomscan import DicomScanner
from zipproxy.manifest import Manifest, columns
from zipproxy.records import pydicom_quietly, wanted_for


@pytest.mark.parametrize("sha256", [False, True])
def test_rows_checksum_what_was_written_in_any_chunks(sha256: bool) -> None:
    ds = make("CT", patient_id="=HYPERLINK(1)")
    ds.Rows, ds.Columns = 4, 5
    scanner = DicomScanner(wanted_for)
    scanner.feed(encode(ds))
    scan = scanner.finish()
    m = Manifest(sha256=sha256)
    m.start()
    for chunk in (b"abc", memoryview(b"defg"), b""):
        m.update(chunk)
    m.end("DICOM/ST000001/SE000001/IM000001", scan, 7, zlib.crc32(b"abcdefg"))
    size, pieces = m.render()
    text = b"".join(pieces)
    assert len(text) == size
    m.close()
    rows = list(csv.DictReader(io.StringIO(text.decode())))
    assert list(rows[0]) == list(columns(sha256))
    (row,) = rows
    assert row["crc32"] == f"{zlib.crc32(b'abcdefg'):08x}" and row["size"] == "7"
    assert row.get("sha256") == (hashlib.sha256(b"abcdefg").hexdigest() if sha256 else None)
    assert row["PatientID"] == "'=HYPERLINK(1)"  # no formula for spreadsheets
    assert (row["Rows"], row["Columns"], row["NumberOfFrames"]) == ("4", "5", "")
    assert row["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
    assert row["SOPInstanceUID"] == ds.SOPInstanceUID and row["Modality"] == "CT"


def test_cells_that_need_quotes_read_back_whole() -> None:
    """RFC 4180: a PatientID (free text) or a malformed code with a comma or quote is quoted."""
    ds = make("CT", patient_id='Doe, "J"')
    with pydicom_quietly():  # pydicom warns about the malformed CS it is asked to write
        ds.Modality = "C,T"  # malformed, but it must not shift the columns
        data = encode(ds)
    scanner = DicomScanner(wanted_for)
    scanner.feed(data)
    m = Manifest()
    m.start()
    m.end("DICOM/ST000001/SE000001/IM000001", scanner.finish(), 0, 0)
    _, pieces = m.render()
    (row,) = list(csv.DictReader(io.StringIO(b"".join(pieces).decode())))
    m.close()
    assert row["PatientID"] == 'Doe, "J"' and row["Modality"] == "C,T"
    assert row["SOPInstanceUID"] == ds.SOPInstanceUID
