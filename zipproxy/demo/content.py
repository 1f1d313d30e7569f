"""The parts of a sample instance (:mod:`zipproxy.demo.samples`): deterministic UIDs, byte
pattern pixels, the attributes of each modality's IOD, and the content of SR, KO and PDF
objects. pydicom only; nothing random, nothing downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from pydicom import uid as _uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence

#: UID root of every generated UID (pydicom's root; the suffix is a hash of a seed string).
UID_PREFIX = "1.2.826.0.1.3680043.8.498."

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
SC_MULTIFRAME_WORD = "1.2.840.10008.5.1.4.1.1.7.3"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"

SOP_CLASSES: dict[str, str] = {
    "CT": CT_IMAGE,
    "MR": MR_IMAGE,
    "XA": XA_IMAGE,
    "OT": SC_IMAGE,
    "SR": BASIC_TEXT_SR,
    "KO": KEY_OBJECT_SELECTION,
    "DOC": ENCAPSULATED_PDF,
}
_NON_IMAGE = frozenset({"SR", "KO", "DOC"})
NON_IMAGE_CLASSES = frozenset({BASIC_TEXT_SR, KEY_OBJECT_SELECTION, ENCAPSULATED_PDF})

class SampleInstance(NamedTuple):
    """One written instance; unpacks as ``(series_uid, sop_uid, sop_class_uid, path)``."""

    series_uid: str
    sop_uid: str
    sop_class_uid: str
    path: Path


def make_uid(*parts: object) -> str:
    # One entropy source: pydicom joins several without a separator, so ("x", 1, 11) and
    # ("x", 11, 1) would give the same UID.
    return str(_uid.generate_uid(UID_PREFIX, [repr(parts)]))


_PATTERN = bytes(range(256)) * 2


def pixel_pattern(nbytes: int, offset: int = 0) -> bytes:
    """A deterministic byte pattern of length ``nbytes`` (even lengths stay even)."""
    start = offset % 256
    block = _PATTERN[start : start + 256]
    reps, rest = divmod(nbytes, 256)
    return block * reps + block[:rest]


def minimal_pdf(text: str) -> bytes:
    """A tiny valid one-page PDF with ``text`` (ASCII) in Helvetica, correct xref offsets."""
    safe = text.encode("ascii", "replace").replace(b"(", b"[").replace(b")", b"]")
    stream = b"BT /F1 18 Tf 72 720 Td (" + safe + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += str(number).encode() + b" 0 obj\n" + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 " + str(len(objects) + 1).encode() + b"\n0000000000 65535 f \n"
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        b"trailer\n<< /Size "
        + str(len(objects) + 1).encode()
        + b" /Root 1 0 R >>\nstartxref\n"
        + str(xref_at).encode()
        + b"\n%%EOF\n"
    )
    if len(out) % 2:
        out += b"\n"
    return bytes(out)


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _uid.UID(sop_class)
    meta.MediaStorageSOPInstanceUID = _uid.UID(sop_uid)
    meta.TransferSyntaxUID = _uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = _uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "ZIPPROXY_DEMO"
    return meta


def sop_class_for(modality: str, frames: int) -> str:
    if modality == "XA" or modality in _NON_IMAGE:
        return SOP_CLASSES[modality]
    if frames > 1:
        return SC_MULTIFRAME_WORD
    return SOP_CLASSES.get(modality, SC_IMAGE)


def set_image(ds: Dataset, rows: int, cols: int, frames: int, pixels: bytes) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW"


def modality_attributes(ds: Dataset, modality: str, sop_class: str, index: int) -> None:
    ds.Laterality = ""
    ds.PatientOrientation = ""
    ds.AcquisitionNumber = 1
    if sop_class in (CT_IMAGE, MR_IMAGE):
        ds.PatientPosition = "HFS"
    if sop_class in (CT_IMAGE, MR_IMAGE):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [0, 0, index * 5]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SliceThickness = 5
        ds.SliceLocation = index * 5
    if sop_class == CT_IMAGE:
        ds.KVP = 120
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
    elif sop_class == MR_IMAGE:
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = 500
        ds.EchoTime = 15
        ds.EchoTrainLength = 1
    elif sop_class == XA_IMAGE:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
        ds.PositionerMotion = "STATIC"
        ds.KVP = 80
        ds.RadiationSetting = "GR"
        ds.PixelIntensityRelationship = "LIN"
        ds.XRayTubeCurrent = 10
        ds.ExposureTime = 100
        ds.Exposure = 1
        ds.PositionerPrimaryAngle = 0
        ds.PositionerSecondaryAngle = 0
        ds.FrameTime = 33.3
        if "NumberOfFrames" in ds:
            ds.FrameIncrementPointer = 0x00181063
    elif sop_class in (SC_IMAGE, SC_MULTIFRAME_WORD):
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ConversionType = "WSD"
        if sop_class == SC_MULTIFRAME_WORD:
            ds.BurnedInAnnotation = "NO"
            ds.FrameIncrementPointer = 0x00181063
            ds.FrameTime = 40.0


def sr_content(ds: Dataset) -> None:
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [code("18748-4", "LN", "Diagnostic Imaging Report")]
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence()
    ds.PerformedProcedureCodeSequence = DicomSequence()
    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    finding.ConceptNameCodeSequence = [code("121071", "DCM", "Finding")]
    finding.TextValue = "No acute findings. Sample report written by zipproxy.demo."
    ds.ContentSequence = [finding]


def kos_content(ds: Dataset, study_uid: str, refs: Sequence[SampleInstance]) -> None:
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [code("113000", "DCM", "Of Interest")]
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = [template]
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence()
    series_items: list[Dataset] = []
    for series_uid in dict.fromkeys(ref.series_uid for ref in refs):
        series_item = Dataset()
        series_item.SeriesInstanceUID = series_uid
        sop_items = []
        for ref in refs:
            if ref.series_uid == series_uid:
                sop = Dataset()
                sop.ReferencedSOPClassUID = ref.sop_class_uid
                sop.ReferencedSOPInstanceUID = ref.sop_uid
                sop_items.append(sop)
        series_item.ReferencedSOPSequence = sop_items
        series_items.append(series_item)
    evidence = Dataset()
    evidence.StudyInstanceUID = study_uid
    evidence.ReferencedSeriesSequence = series_items
    ds.CurrentRequestedProcedureEvidenceSequence = [evidence]
    content = []
    for ref in refs:
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "IMAGE"
        sop = Dataset()
        sop.ReferencedSOPClassUID = ref.sop_class_uid
        sop.ReferencedSOPInstanceUID = ref.sop_uid
        item.ReferencedSOPSequence = [sop]
        content.append(item)
    ds.ContentSequence = content


def pdf_content(ds: Dataset, title: str) -> None:
    pdf = minimal_pdf(title)
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = DicomSequence()
    ds.AcquisitionDateTime = ""
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf
    ds["EncapsulatedDocument"].VR = "OB"
    ds.EncapsulatedDocumentLength = len(pdf)
