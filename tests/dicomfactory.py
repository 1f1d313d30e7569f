"""Small Part-10 instances built with pydicom, for the header parser and DICOMDIR tests."""

from __future__ import annotations

import io
from collections.abc import Iterable

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ComprehensiveSRStorage,
    CTImageStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    KeyObjectSelectionDocumentStorage,
    generate_uid,
)

PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def uid(seed: str) -> str:
    return str(generate_uid(entropy_srcs=[seed]))


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def make(
    kind: str = "CT",
    *,
    seed: str = "x",
    study: str = "study",
    series: str = "series",
    patient_id: str = "PAT1",
    patient_name: str = "Doe^John",
    charset: str | None = None,
    number: int = 1,
    pixels: bool = True,
    private_size: int = 0,
    pdf: bytes = PDF,
    omit: Iterable[str] = (),
) -> Dataset:
    """An instance of ``kind`` (CT, SR, KO, PDF); UIDs are derived from the seed strings."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    sop_class = {"CT": CTImageStorage, "SR": ComprehensiveSRStorage,
                 "KO": KeyObjectSelectionDocumentStorage, "PDF": EncapsulatedPDFStorage}[kind]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid("sop" + seed)
    ds.StudyDate, ds.StudyTime = "20240102", "030405"
    ds.SeriesDate, ds.SeriesTime = "20240103", "040506"
    ds.ContentDate, ds.ContentTime = "20240104", "050607"
    ds.AccessionNumber = "ACC1"
    ds.Modality = {"CT": "CT", "SR": "SR", "KO": "KO", "PDF": "DOC"}[kind]
    ds.StudyDescription = "Études du thorax" if charset else "Chest"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyInstanceUID = uid(study)
    ds.SeriesInstanceUID = uid(study + series)
    ds.StudyID = "S1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    if private_size:
        ds.private_block(0x0009, "ZIPPROXY TEST", create=True).add_new(0x10, "OB",
                                                                         bytes(private_size))
    if kind == "CT":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = 4, 4
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        if pixels:
            ds.PixelData = bytes(range(32))
    elif kind in ("SR", "KO"):
        ds.ValueType = "CONTAINER"
        ds.ContinuityOfContent = "SEPARATE"
        if kind == "SR":
            ds.ConceptNameCodeSequence = [code("11528-7", "LN", "Radiology Report")]
            ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
        else:
            ds.ConceptNameCodeSequence = [code("113000", "DCM", "Of Interest")]
        lang = Dataset()
        lang.RelationshipType, lang.ValueType = "HAS CONCEPT MOD", "CODE"
        lang.ConceptNameCodeSequence = [code("121049", "DCM", "Language of Content Item")]
        lang.ConceptCodeSequence = [code("en", "RFC5646", "English")]
        text = Dataset()
        text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
        text.ConceptNameCodeSequence = [code("121071", "DCM", "Finding")]
        text.TextValue = "Nothing remarkable " * 20
        ds.ContentSequence = Sequence([lang, text])
    elif kind == "PDF":
        ds.DocumentTitle = "Rapport médical" if charset else "Report"
        ds.ConceptNameCodeSequence = [code("18748-4", "LN", "Diagnostic imaging report")]
        ds.BurnedInAnnotation = "YES"
        ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
        ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    for keyword in omit:
        delattr(ds, keyword)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def encode(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    """The Part-10 bytes of ``ds`` in ``syntax``."""
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
