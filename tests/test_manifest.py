"""MANIFEST.CSV rows: values from the instance, size and checksums of what was written."""

from __future__ import annotations

import csv
import hashlib
import io
import zlib

import pytest
from dicomfactory import encode, make
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.charset import decode_bytes

from zipproxy.dicomscan import DicomScanner, Element, Scan
from zipproxy.manifest import Manifest, columns
from zipproxy.records import pydicom_quietly, tag_of, wanted_for


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


_CELL = st.one_of(
    st.sampled_from([b"", b"  ", b"CT", b"1.2.3", b"12 ", b"=1+2", b"-3", b"\t7", b"a,b",
                     b'say "x"', b"line\r\nbreak", b"M\xfcller", b"\x1b$B", b"ok\x00"]),
    st.binary(max_size=12),
)
_TEXT_KEYWORDS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                  "SOPClassUID", "Modality", "SeriesNumber", "InstanceNumber", "NumberOfFrames")


_INSTANCE = st.tuples(st.lists(st.one_of(st.none(), _CELL), min_size=9, max_size=9),
                      st.one_of(st.none(), st.binary(min_size=1, max_size=3)), st.booleans())


@settings(max_examples=300, deadline=None)
@given(instances=st.lists(st.one_of(_INSTANCE, st.just(None)), min_size=1, max_size=4))
def test_every_row_reads_back_as_the_values(
        instances: list[tuple[list[bytes | None], bytes | None, bool] | None]) -> None:
    """Whatever the values (plain, empty, quoted, formula-like, non-ASCII, missing), Python's
    csv module reads back each cell as the rules say: stripped, decoded from the instance's
    character set, a formula-like PatientID prefixed with ', the UIDs from the meta when the
    data set lacks them. The columns a series shares are rendered once per series: rows
    repeat (None: the last instance again, with an instance UID of its own) and change in any
    order, and each must still read back as its own values."""
    m = Manifest()
    expected: list[tuple[list[bytes | None], bytes | None, bool]] = []
    for i, instance in enumerate(instances):
        if instance is None:
            if not expected:
                continue
            values, rows, latin1 = expected[-1]
            instance = ([*values[:3], b"1.2.%d" % i, *values[4:]], rows, latin1)
        values, rows, latin1 = instance
        elements = {tag_of(kw): Element(b"LO", value)
                    for kw, value in zip(_TEXT_KEYWORDS, values, strict=True)
                    if value is not None}
        if rows is not None:
            elements[tag_of("Rows")] = Element(b"US", rows)
        if latin1:
            elements[tag_of("SpecificCharacterSet")] = Element(b"CS", b"ISO_IR 100")
        m.start()
        m.end(f"DICOM/ST000001/SE000001/IM{len(expected):06d}",
              Scan(_META, elements, frozenset(), ""), 3, 0xAB)
        expected.append(instance)
    _, pieces = m.render()
    text = b"".join(pieces).decode("utf-8")
    m.close()
    rows_read = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows_read) == len(expected)
    for i, (row, (values, rows, latin1)) in enumerate(zip(rows_read, expected, strict=True)):
        names = ["ISO_IR 100"] if latin1 else ["ISO_IR 6"]
        for keyword, value in zip(_TEXT_KEYWORDS, values, strict=True):
            want = (value or b"").strip(b" \x00")
            if not want and keyword in ("SOPClassUID", "SOPInstanceUID"):
                meta_tag = 0x00020002 if keyword == "SOPClassUID" else 0x00020003
                want = _META[meta_tag].strip(b" \x00")
            with pydicom_quietly():  # pydicom decodes what is not ASCII, as the manifest does
                cell = want.decode() if want.isascii() else decode_bytes(want, names, set())
            if keyword == "PatientID" and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                cell = "'" + cell
            assert row[keyword] == cell, keyword
        assert row["Rows"] == ("" if rows is None or len(rows) < 2
                               else str(int.from_bytes(rows[:2], "little")))
        assert row["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
        assert (row["size"], row["crc32"], row["path"]) == ("3", "000000ab",
                                                            f"DICOM/ST000001/SE000001/IM{i:06d}")


_META = {0x00020002: b"1.2.840.10008.5.1.4.1.1.2\x00", 0x00020003: b"9.8.7 ",
         0x00020010: b"1.2.840.10008.1.2.1\x00"}
