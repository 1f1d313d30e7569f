"""MANIFEST.CSV rows: values from the header, size and SHA-256 of what was written."""

from __future__ import annotations

import csv
import hashlib
import io

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset

from zipproxy.manifest import COLUMNS, Manifest


def header(**values: object) -> Dataset:
    ds = Dataset()
    for k, v in values.items():
        setattr(ds, k, v)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    return ds


def test_rows_hash_what_was_written_in_any_chunks() -> None:
    m = Manifest()
    m.start("DICOM/ST000001/SE000001/IM000001",
            header(PatientID="=HYPERLINK(1)", StudyInstanceUID="1.2", Rows=4, Columns=5))
    for chunk in (b"abc", memoryview(b"defg"), b""):
        m.update(chunk)
    m.end()
    rows = list(csv.DictReader(io.StringIO(m.render().decode())))
    assert list(rows[0]) == list(COLUMNS)
    (row,) = rows
    assert row["sha256"] == hashlib.sha256(b"abcdefg").hexdigest() and row["size"] == "7"
    assert row["PatientID"] == "'=HYPERLINK(1)"  # no formula for spreadsheets
    assert (row["Rows"], row["Columns"], row["NumberOfFrames"]) == ("4", "5", "")
    assert row["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
