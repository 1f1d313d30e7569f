"""The corpus generator (tests/dicomcorpus.py): deterministic, well-formed, the shapes it claims."""

from __future__ import annotations

import io
import tracemalloc

import pydicom
import pytest
from corpussr import LATEST_VERIFICATION, VERIFIERS
from dicomcorpus import MIB, CorpusStudy, big_rtstruct_study, make_corpus, rt_study

from zipproxy.dicomscan import DicomScanner
from zipproxy.records import stripped, wanted_for


@pytest.fixture(scope="module")
def corpus() -> dict[str, CorpusStudy]:
    return {study.key: study for study in make_corpus()}


def read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))  # a Part-10 file: preamble, DICM, meta


def test_same_arguments_same_bytes(corpus: dict[str, CorpusStudy]) -> None:
    again = rt_study()
    assert [i.data for i in again.instances] == [i.data for i in corpus["rt"].instances]


def test_every_instance_is_a_part10_file_whose_meta_matches(
        corpus: dict[str, CorpusStudy]) -> None:
    for study in corpus.values():
        for inst in study.instances:
            ds = read(inst.data)
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == inst.sop_uid
            assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == inst.sop_class
            assert ds.StudyInstanceUID == study.study_uid, inst.case
            list(ds)  # every element decodes (the hand-encoded sequences included)


def test_large_structure_set_is_all_contours_before_pixel_data(
        corpus: dict[str, CorpusStudy]) -> None:
    (inst,) = [i for i in corpus["rt"].instances if i.kind == "RTSTRUCT"]
    assert 20 * MIB <= len(inst.data) <= 50 * MIB
    ds = read(inst.data)
    rois = ds.ROIContourSequence
    assert len(rois) == len(ds.StructureSetROISequence) > 10
    contour = rois[0].ContourSequence[0]
    assert len(contour.ContourData) == 3 * contour.NumberOfContourPoints
    assert "PixelData" not in ds
    assert ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == ds.FrameOfReferenceUID


def test_fifty_mib_structure_set_is_scanned_in_bounded_memory() -> None:
    """Issue 12's 502 was this shape: every key of a 50 MiB structure set is read while the
    contours go by, and memory stays far below the object's size."""
    data = big_rtstruct_study(50 * MIB).instances[-1].data
    assert 48 * MIB <= len(data) <= 52 * MIB
    scanner = DicomScanner(wanted_for)
    tracemalloc.start()
    for start in range(0, len(data), 1 << 20):
        scanner.feed(memoryview(data)[start:start + (1 << 20)])
    scan = scanner.finish()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not scan.problem and peak < 2 * MIB, peak
    ds = read(data)
    assert stripped(scan, "StructureSetLabel") == ds.StructureSetLabel.encode()
    assert stripped(scan, "SeriesInstanceUID") == ds.SeriesInstanceUID.encode()


def test_sr_documents(corpus: dict[str, CorpusStudy]) -> None:
    reports = {i.kind: read(i.data) for i in corpus["rt"].instances if i.kind.startswith("SR")}
    verified, unverified = reports["SR_VERIFIED"], reports["SR"]
    assert verified.VerificationFlag == "VERIFIED" and unverified.VerificationFlag == "UNVERIFIED"
    times = [item.VerificationDateTime for item in verified.VerifyingObserverSequence]
    assert times == [t for t, _ in VERIFIERS] and max(times) == LATEST_VERIFICATION
    assert times[-1] != LATEST_VERIFICATION != times[0]  # neither end is the answer
    assert "VerificationDateTime" not in verified and "VerifyingObserverSequence" not in unverified
    for ds in (verified, unverified):
        kinds = [item.RelationshipType for item in ds.ContentSequence]
        assert kinds == ["HAS CONCEPT MOD", "HAS OBS CONTEXT", "CONTAINS", "HAS CONCEPT MOD"]
        assert len(ds.ContentSequence[2].ContentSequence) > 5000  # several MiB of findings


def test_rt_dose_has_dvhs_and_a_dose_grid(corpus: dict[str, CorpusStudy]) -> None:
    (ds,) = [read(i.data) for i in corpus["rt"].instances if i.kind == "RTDOSE"]
    assert len(ds.DVHSequence) == 16 and ds.DVHSequence[0].DVHNumberOfBins == 2000
    assert len(ds.PixelData) == ds.Rows * ds.Columns * ds.NumberOfFrames * 4


def test_each_kind_is_first_and_last_in_its_series(corpus: dict[str, CorpusStudy]) -> None:
    for members in corpus["types"].series().values():
        kinds = [inst.kind for inst in members]
        if kinds[0] != "SC":
            assert kinds[0] == kinds[-1] and len(kinds) >= 2, kinds
    record_types = {inst.record_type for inst in corpus["types"].instances}
    # Every record type zipproxy can write (its _KEY_SPECS) that has a Storage SOP Class.
    assert record_types == {"RT STRUCTURE SET", "RT PLAN", "RT DOSE", "RT TREAT RECORD",
                            "PRESENTATION", "WAVEFORM", "SR DOCUMENT", "KEY OBJECT DOC",
                            "SPECTROSCOPY", "RAW DATA", "REGISTRATION", "FIDUCIAL",
                            "HANGING PROTOCOL", "ENCAP DOC", "VALUE MAP", "STEREOMETRIC",
                            "PALETTE", "IMPLANT", "IMPLANT ASSY", "IMPLANT GROUP", "PLAN",
                            "MEASUREMENT", "SURFACE", "SURFACE SCAN", "TRACT", "ASSESSMENT",
                            "RADIOTHERAPY", "PRIVATE", "IMAGE"}


def test_sparse_first_instance_and_its_series(corpus: dict[str, CorpusStudy]) -> None:
    first, *later = next(iter(corpus["sparse"].series().values()))
    ds = read(first.data)
    for keyword in ("StudyDate", "PatientName", "Modality", "SeriesNumber", "InstanceNumber",
                    "StudyDescription", "AccessionNumber", "StudyID"):
        assert keyword not in ds
    assert all(read(i.data).StudyDate == "20240229" for i in later)
    assert read(later[0].data).PatientName == "Müller^Jürgen"
    assert read(later[0].data).SpecificCharacterSet == "ISO_IR 100"
