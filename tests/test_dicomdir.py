"""DicomDirBuilder: a DICOMDIR that pydicom, dcmtk and dicom3tools read as intended."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from dicomfactory import encode, make, uid
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.fileset import DIRECTORY_RECORDERS, FileSet
from pydicom.uid import ColorPaletteStorage, ExplicitVRBigEndian, ImplicitVRLittleEndian

from zipproxy.dicomdir import DicomDirBuilder
from zipproxy.dicomscan import DicomScanner, Scan
from zipproxy.errors import DuplicateInstance
from zipproxy.records import BEYOND_PYDICOM, wanted_for
from zipproxy.records import KEYS as _KEYS

NAME_192 = "Müller^Jürgen"
NAME_CJK = "山田^太郎"
LACKING = ["PatientID", "StudyDate", "StudyID", "SeriesNumber", "InstanceNumber", "Modality"]


def _header(data: bytes) -> Scan:
    scanner = DicomScanner(wanted_for)
    scanner.feed(data)
    return scanner.finish()


def _instances() -> list[tuple[str, bytes]]:
    """(expected record type, Part-10 bytes) of a small mixed File-set."""
    utf8 = {"charset": "ISO_IR 192", "patient_name": NAME_192, "patient_id": "PAT1"}
    latin1 = {"charset": "ISO_IR 100", "patient_name": NAME_192, "patient_id": "PAT3"}
    cjk = {"charset": "ISO_IR 192", "patient_name": NAME_CJK, "patient_id": "PAT2"}
    return [
        ("IMAGE", encode(make("CT", seed="ct1", series="a", number=1, **utf8))),
        ("IMAGE", encode(make("CT", seed="ct2", series="a", number=2, **utf8),
                         ImplicitVRLittleEndian)),
        ("IMAGE", encode(make("CT", seed="ct3", series="b", number=1, **utf8),
                         ExplicitVRBigEndian)),
        ("SR DOCUMENT", encode(make("SR", seed="sr", series="c", **utf8))),
        ("KEY OBJECT DOC", encode(make("KO", seed="ko", series="d", **utf8))),
        # > 64 KiB: the parser stops before the document, the MIME type comes from the class
        ("ENCAP DOC", encode(make("PDF", seed="pdf", series="e", pdf=bytes(70_000), **utf8))),
        ("IMAGE", encode(make("CT", seed="cjk", study="s2", **cjk))),
        ("ENCAP DOC", encode(make("PDF", seed="latin1", study="s3", **latin1))),
        ("IMAGE", encode(make("CT", seed="bare", study="s4", omit=LACKING))),
        # no PatientID, but its study is PAT1's: it joins that study, no second STUDY record
        ("IMAGE", encode(make("CT", seed="ct4", series="a", omit=["PatientID"], **{
            k: v for k, v in utf8.items() if k != "patient_id"}))),
    ]


def _build(builder: DicomDirBuilder) -> bytes:
    size, pieces = builder.build()
    data = b"".join(pieces)
    assert len(data) == size
    return data


def _write_fileset(root: Path, instances: list[tuple[str, bytes]]) -> Path:
    builder = DicomDirBuilder("ZIPPROXY TEST")
    for index, (_, data) in enumerate(instances):
        file_id = ("DICOM", "ST000001", f"IM{index:06d}")
        builder.add(_header(data), file_id)
        path = root.joinpath(*file_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert len(builder) == len(instances)
    (root / "DICOMDIR").write_bytes(_build(builder))
    return root / "DICOMDIR"


@pytest.fixture(scope="module")
def fileset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, bytes]]]:
    instances = _instances()
    return _write_fileset(tmp_path_factory.mktemp("fs"), instances), instances


def _records(dicomdir: Path) -> list[Dataset]:
    return list(pydicom.dcmread(dicomdir).DirectoryRecordSequence)


def test_pydicom_fileset_finds_every_instance(
        fileset: tuple[Path, list[tuple[str, bytes]]]) -> None:
    dicomdir, instances = fileset
    fs = FileSet(dicomdir)
    try:
        found = {str(i.SOPInstanceUID): i for i in fs}
        assert len(found) == len(instances)
        for record_type, data in instances:
            source = pydicom.dcmread(io.BytesIO(data))
            instance = found[source.SOPInstanceUID]
            assert instance.node.record_type == record_type
            assert Path(instance.path).read_bytes() == data
            patient = instance.node.ancestors[-1]._record
            assert patient.DirectoryRecordType == "PATIENT"
            assert patient.PatientName == source.PatientName
            # byte-exact, in the instance's own character set
            raw = patient.get_item(0x00100010).value
            assert raw == source.get_item(0x00100010).value
        patients = [str(n._record.PatientName) for n in fs._tree.children]
        assert patients == [NAME_192, NAME_CJK, NAME_192, "Doe^John"]
    finally:
        fs._stage["t"].cleanup()  # FileSet's staging directory warns when collected


def test_records_and_supplied_keys(fileset: tuple[Path, list[tuple[str, bytes]]]) -> None:
    dicomdir, _ = fileset
    records = _records(dicomdir)
    by_type: dict[str, list[Dataset]] = {}
    for record in records:
        by_type.setdefault(record.DirectoryRecordType, []).append(record)
    assert len(by_type["PATIENT"]) == 4
    assert len(by_type["STUDY"]) == 4  # one per Study Instance UID
    assert len(by_type["SERIES"]) == 8
    assert {r.SpecificCharacterSet for r in by_type["PATIENT"][:3]} == {"ISO_IR 192",
                                                                       "ISO_IR 100"}
    assert "SpecificCharacterSet" not in by_type["SERIES"][0]  # no text that needs it
    assert "SpecificCharacterSet" not in by_type["PATIENT"][3]  # default repertoire
    latin1 = by_type["PATIENT"][2]
    assert latin1.get_item(0x00100010).value == NAME_192.encode("latin-1") + b" "
    pdfs = by_type["ENCAP DOC"]
    assert [r.MIMETypeOfEncapsulatedDocument for r in pdfs] == ["application/pdf"] * 2
    sr = by_type["SR DOCUMENT"][0]
    assert [i.RelationshipType for i in sr.ContentSequence] == ["HAS CONCEPT MOD"]
    # the instance lacking the Type 1 keys
    study_uid = uid("s4")
    patient, study, series, image = records[-4:]
    assert patient.PatientID == "ZIPPROXY_" + hashlib.sha256(
        study_uid.encode()).hexdigest()[:16].upper()
    assert study.StudyInstanceUID == study_uid
    assert study.StudyDate == "20240103"  # SeriesDate
    assert study.StudyTime == "030405"
    assert study.StudyID == study_uid[-16:]
    assert study.StudyDescription == "Chest" and study.AccessionNumber == "ACC1"
    assert series.Modality == "OT" and series.SeriesNumber == 1
    assert image.InstanceNumber == 1
    assert image.ReferencedFileID == ["DICOM", "ST000001", "IM000008"]


def test_offsets(fileset: tuple[Path, list[tuple[str, bytes]]]) -> None:
    """Offsets count from the first byte of the file (PS3.3 F.3.2.1), as pydicom reads them."""
    dicomdir, _ = fileset
    ds = pydicom.dcmread(dicomdir)
    records = list(ds.DirectoryRecordSequence)
    at = {r.seq_item_tell: r for r in records}
    raw = dicomdir.read_bytes()
    assert all(raw[offset:offset + 4] == b"\xfe\xff\x00\xe0" for offset in at)
    roots = [r for r in records if r.DirectoryRecordType == "PATIENT"]
    assert at[ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity] is roots[0]
    assert at[ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity] is roots[-1]
    reached = set()

    def walk(offset: int, depth: int) -> None:
        while offset:
            reached.add(offset)
            record = at[offset]
            expected = ["PATIENT", "STUDY", "SERIES"][depth] if depth < 3 else None
            assert expected is None or record.DirectoryRecordType == expected
            walk(record.OffsetOfReferencedLowerLevelDirectoryEntity, depth + 1)
            offset = record.OffsetOfTheNextDirectoryRecord

    walk(ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity, 0)
    assert reached == set(at)


def test_dciodvfy_reports_no_error(fileset: tuple[Path, list[tuple[str, bytes]]]) -> None:
    dicomdir, _ = fileset
    assert shutil.which("dciodvfy"), "dicom3tools' dciodvfy is required"
    result = subprocess.run(["dciodvfy", str(dicomdir)], capture_output=True, check=False)
    output = (result.stdout + result.stderr).decode("latin-1")
    assert "BasicDirectory" in output
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert not errors, output


def test_dcmdump_parses(fileset: tuple[Path, list[tuple[str, bytes]]]) -> None:
    dicomdir, instances = fileset
    assert shutil.which("dcmdump"), "dcmtk's dcmdump is required"
    result = subprocess.run(["dcmdump", "+L", str(dicomdir)], capture_output=True,
                            check=False)
    output = result.stdout.decode("latin-1")
    assert result.returncode == 0, result.stderr
    assert b"E:" not in result.stderr and b"W:" not in result.stderr, result.stderr
    assert output.count("refFileID=") == len(instances)
    assert "(0004,1130) CS [ZIPPROXY TEST]" in output


def test_twenty_thousand_instances() -> None:
    ds = make("CT", charset="ISO_IR 192", patient_name=NAME_192)
    builder = DicomDirBuilder()
    for index in range(20_000):
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = f"1.2.3.{index}"
        ds.SeriesInstanceUID = f"1.2.3.4.{index // 1000}"
        builder.add(_header(encode(ds)), ("DICOM", f"SE{index // 1000:06d}", f"IM{index:06d}"))
    data = _build(builder)
    builder.close()
    ds = pydicom.dcmread(io.BytesIO(data))
    types = [r.DirectoryRecordType for r in ds.DirectoryRecordSequence]
    assert types.count("IMAGE") == 20_000
    assert types.count("SERIES") == 20
    assert ds.DirectoryRecordSequence[-1].InstanceNumber == 1  # the instance's own
    assert ds.DirectoryRecordSequence[-1].ReferencedFileID[-1] == "IM019999"


def test_duplicates_and_bad_arguments() -> None:
    header = _header(encode(make("CT")))
    builder = DicomDirBuilder()
    builder.add(header, ("DICOM", "IM1"))
    with pytest.raises(DuplicateInstance):
        builder.add(header, ("DICOM", "IM2"))
    assert len(builder) == 1
    for bad in [(), ("dicom",), ("TOOLONGXX",), ("A.B",), ("",), tuple("ABCDEFGHI")]:
        with pytest.raises(ValueError):
            builder.add(_header(encode(make("CT", seed=str(bad)))), bad)
    for bad_id in ["lower", "SEVENTEEN_CHARS_X", "A-B"]:
        with pytest.raises(ValueError):
            DicomDirBuilder(bad_id)
    assert len(builder) == 1
    builder.close()


def test_record_type_fallbacks(tmp_path: Path) -> None:
    unknown_image = make("CT", seed="u1")
    unknown_image.SOPClassUID = unknown_image.file_meta.MediaStorageSOPClassUID = "1.2.3.4.1"
    unknown_other = make("CT", seed="u2", omit=["Rows", "Columns", "PixelData"])
    unknown_other.SOPClassUID = unknown_other.file_meta.MediaStorageSOPClassUID = "1.2.3.4.2"
    new_sr = make("SR", seed="u3")
    new_sr.SOPClassUID = new_sr.file_meta.MediaStorageSOPClassUID = \
        "1.2.840.10008.5.1.4.1.1.88.999"
    palette = make("CT", seed="u4", pixels=False)
    palette.SOPClassUID = palette.file_meta.MediaStorageSOPClassUID = ColorPaletteStorage
    palette.ContentLabel = "GRAYS"
    instances = [("IMAGE", encode(unknown_image)), ("PRIVATE", encode(unknown_other)),
                 ("SR DOCUMENT", encode(new_sr)), ("PALETTE", encode(palette))]
    dicomdir = _write_fileset(tmp_path, instances)
    records = _records(dicomdir)
    leaves = [r for r in records if "ReferencedFileID" in r]
    assert [r.DirectoryRecordType for r in leaves] == [t for t, _ in instances]
    assert leaves[1].PrivateRecordUID == "1.2.3.4.2"
    # the palette is a record of the root directory entity, after the patient
    ds = pydicom.dcmread(dicomdir)
    last = ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity
    assert {r.seq_item_tell: r for r in records}[last].DirectoryRecordType == "PALETTE"
    result = subprocess.run(["dciodvfy", str(dicomdir)], capture_output=True, check=False)
    assert b"\nError" not in b"\n" + result.stdout + result.stderr


# Where the standard and pydicom's recorders part (PS3.3 F.5-28: RAW DATA's InstanceNumber is
# Type 2), besides the keys records.BEYOND_PYDICOM adds.
TYPE_DIFFERS = {("RAW DATA", "InstanceNumber"): 2}


@pytest.mark.parametrize("record_type", sorted(set(DIRECTORY_RECORDERS) - {"PRIVATE"}))
def test_key_table_matches_pydicom(record_type: str) -> None:
    """``KEYS`` mirrors pydicom's DIRECTORY_RECORDERS: same keys; Type 1 exactly the keys
    the recorder refuses to do without -- except where PS3.3 says otherwise (listed)."""
    beyond = set(BEYOND_PYDICOM.get(record_type, ()))
    keys = {kw: t for kw, t in _KEYS[record_type] if kw not in beyond}

    def full(without: str = "") -> Dataset:
        ds = Dataset()
        for keyword in keys:
            if keyword != without:
                vr = dictionary_VR(keyword)
                value: object = {"SQ": [Dataset()], "US": 1, "UL": 1, "IS": "1",
                                 "DA": "20240101", "TM": "000000", "DT": "20240101000000",
                                 "UI": "1.2.3"}.get(vr, "X")
                ds.add(DataElement(keyword, vr, value))
        return ds

    recorder = DIRECTORY_RECORDERS[record_type]
    assert {e.keyword for e in recorder(full())} == set(keys)
    for keyword, key_type in keys.items():
        pydicom_type = 1 if TYPE_DIFFERS.get((record_type, keyword)) else key_type
        assert TYPE_DIFFERS.get((record_type, keyword), key_type) == key_type
        if pydicom_type == 1:
            with pytest.raises(ValueError):
                recorder(full(without=keyword))
        else:
            recorder(full(without=keyword))
