"""Deterministic sample studies, written as DICOM Part-10 files with pydicom.

Nothing is downloaded and numpy is not needed: pixel data are byte patterns. The same arguments
always give the same UIDs and the same file bytes, so tests can compare what comes back from an
upstream with the files that were uploaded.

``make_study`` writes one study from a list of series specs ``(modality, n_instances, rows, cols,
frames)``. The modality picks the SOP class:

==========  ==============================================================================
``CT``      CT Image Storage (frames > 1: Multi-frame Grayscale Word Secondary Capture)
``MR``      MR Image Storage (frames > 1: as above)
``XA``      X-Ray Angiographic Image Storage (multi-frame allowed)
``OT``      Secondary Capture (frames > 1: Multi-frame Grayscale Word Secondary Capture)
``SR``      Basic Text SR (rows/cols/frames ignored)
``KO``      Key Object Selection, referencing every image written before it in the study
``DOC``     Encapsulated PDF (a small valid PDF)
==========  ==============================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from pydicom import uid as _uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence as DicomSequence

__all__ = [
    "SOP_CLASSES",
    "SampleInstance",
    "SeriesSpec",
    "StudyInfo",
    "make_bulk_study",
    "make_samples",
    "make_study",
    "pixel_pattern",
]

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
_NON_IMAGE_CLASSES = frozenset({BASIC_TEXT_SR, KEY_OBJECT_SELECTION, ENCAPSULATED_PDF})

#: ``(modality, n_instances, rows, cols, frames)``
SeriesSpec = tuple[str, int, int, int, int]


class SampleInstance(NamedTuple):
    """One written instance; unpacks as ``(series_uid, sop_uid, sop_class_uid, path)``."""

    series_uid: str
    sop_uid: str
    sop_class_uid: str
    path: Path


@dataclass(frozen=True)
class StudyInfo:
    """What :func:`make_study` wrote."""

    study_uid: str
    series_uids: list[str]
    instances: list[SampleInstance]
    patient_name: str
    patient_id: str
    study_description: str = ""
    charset: str | None = None
    modalities: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [inst.path for inst in self.instances]

    @property
    def sop_uids(self) -> list[str]:
        return [inst.sop_uid for inst in self.instances]

    def series_instances(self, series_uid: str) -> list[SampleInstance]:
        return [inst for inst in self.instances if inst.series_uid == series_uid]

    def by_sop_uid(self) -> dict[str, SampleInstance]:
        return {inst.sop_uid: inst for inst in self.instances}


def _make_uid(*parts: object) -> str:
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


def _minimal_pdf(text: str) -> bytes:
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


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _uid.UID(sop_class)
    meta.MediaStorageSOPInstanceUID = _uid.UID(sop_uid)
    meta.TransferSyntaxUID = _uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = _uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "ZIPPROXY_DEMO"
    return meta


def _sop_class_for(modality: str, frames: int) -> str:
    if modality == "XA" or modality in _NON_IMAGE:
        return SOP_CLASSES[modality]
    if frames > 1:
        return SC_MULTIFRAME_WORD
    return SOP_CLASSES.get(modality, SC_IMAGE)


def _set_image(ds: Dataset, rows: int, cols: int, frames: int, pixels: bytes) -> None:
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


def _modality_attributes(ds: Dataset, modality: str, sop_class: str, index: int) -> None:
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


def _sr_content(ds: Dataset) -> None:
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic Imaging Report")]
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence()
    ds.PerformedProcedureCodeSequence = DicomSequence()
    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    finding.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
    finding.TextValue = "No acute findings. Sample report written by zipproxy.demo."
    ds.ContentSequence = [finding]


def _kos_content(ds: Dataset, study_uid: str, refs: Sequence[SampleInstance]) -> None:
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [_code("113000", "DCM", "Of Interest")]
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


def _pdf_content(ds: Dataset, title: str) -> None:
    pdf = _minimal_pdf(title)
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = DicomSequence()
    ds.AcquisitionDateTime = ""
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf
    ds["EncapsulatedDocument"].VR = "OB"
    ds.EncapsulatedDocumentLength = len(pdf)


def make_study(
    out_dir: Path,
    *,
    patient_name: str,
    patient_id: str,
    charset: str | None = "ISO_IR 192",
    series: Sequence[SeriesSpec] = (("CT", 2, 64, 64, 1),),
    study_description: str = "",
    series_descriptions: Sequence[str] | None = None,
    accession_number: str = "",
    study_date: str = "20240102",
    study_time: str = "101500",
    study_id: str | None = "1",
    numbers: Literal["present", "absent", "empty", "mixed"] = "present",
    key: str | None = None,
) -> StudyInfo:
    """Write one study below ``out_dir/<StudyInstanceUID>/`` and describe it.

    ``charset`` is the Specific Character Set (``None``: element absent, ASCII only).
    ``study_id=None`` leaves out Study ID (``""``: empty element). ``numbers`` controls Series
    Number and Instance Number: ``"absent"`` leaves them out, ``"empty"`` writes empty elements,
    ``"mixed"`` leaves them out in odd and writes them empty in even series (all Type 1
    DICOMDIR keys a File-set creator must then supply). An empty ``patient_id`` /
    ``study_date`` / ``study_time`` is written as an empty (Type 2) element.
    ``key`` seeds the UIDs (default: patient and study description).
    """
    seed = key if key is not None else f"{patient_id}|{patient_name}|{study_description}"
    study_uid = _make_uid(seed, "study")
    frame_of_reference = _make_uid(seed, "frame-of-reference")
    study_dir = Path(out_dir) / study_uid
    instances: list[SampleInstance] = []
    series_uids: list[str] = []
    modalities: list[str] = []
    for s_index, (modality, n_instances, rows, cols, frames) in enumerate(series, start=1):
        series_uid = _make_uid(seed, "series", s_index)
        series_uids.append(series_uid)
        modalities.append(modality)
        series_dir = study_dir / f"{s_index:03d}"
        series_dir.mkdir(parents=True, exist_ok=True)
        image_refs = [i for i in instances if i.sop_class_uid not in _NON_IMAGE_CLASSES]
        for i_index in range(1, n_instances + 1):
            sop_class = _sop_class_for(modality, frames)
            sop_uid = _make_uid(seed, "instance", s_index, i_index)
            ds = Dataset()
            ds.file_meta = _file_meta(sop_class, sop_uid)
            if charset is not None:
                ds.SpecificCharacterSet = charset
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = sop_uid
            ds.StudyDate = study_date
            ds.StudyTime = study_time
            ds.ContentDate = study_date or "20240102"
            ds.ContentTime = study_time or "101500"
            ds.AccessionNumber = accession_number
            ds.Modality = modality
            ds.Manufacturer = "zipproxy.demo"
            ds.ReferringPhysicianName = ""
            ds.StudyDescription = study_description
            if series_descriptions is not None:
                ds.SeriesDescription = series_descriptions[s_index - 1]
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.PatientBirthDate = "19700101"
            ds.PatientSex = "O"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            if study_id is not None:
                ds.StudyID = study_id
            if numbers == "present":
                ds.SeriesNumber = s_index
                ds.InstanceNumber = i_index
            elif numbers == "empty" or (numbers == "mixed" and s_index % 2 == 0):
                ds.SeriesNumber = None
                ds.InstanceNumber = None
            if modality == "SR":
                _sr_content(ds)
            elif modality == "KO":
                _kos_content(ds, study_uid, image_refs)
            elif modality == "DOC":
                _pdf_content(ds, f"Sample PDF report {i_index}")
            else:
                ds.FrameOfReferenceUID = frame_of_reference
                ds.PositionReferenceIndicator = ""
                nbytes = rows * cols * 2 * max(frames, 1)
                pixels = pixel_pattern(nbytes, s_index * 31 + i_index)
                _set_image(ds, rows, cols, frames, pixels)
                _modality_attributes(ds, modality, sop_class, i_index)
            path = series_dir / f"{i_index:05d}.dcm"
            dcmwrite(path, ds, enforce_file_format=True)
            instances.append(SampleInstance(series_uid, sop_uid, sop_class, path))
    return StudyInfo(
        study_uid=study_uid,
        series_uids=series_uids,
        instances=instances,
        patient_name=patient_name,
        patient_id=patient_id,
        study_description=study_description,
        charset=charset,
        modalities=modalities,
    )


def make_samples(out_dir: Path) -> list[StudyInfo]:
    """The standard sample set (5 studies, 30 instances, well under 1 MiB in all).

    0. CT, ``Doe^Jane``, no Specific Character Set: 2 series x 5 instances, 64x64 16-bit.
    1. MR, ``Müller^Jürgen`` (ISO_IR 192), German study description: 1 series x 3.
    2. MR, ``Yamada^Tarou=山田^太郎=やまだ^たろう`` (ISO_IR 192), Japanese description: 1 x 3.
    3. Mixed, ``Roe^Richard``: CT 2 images, XA 10-frame image, Basic Text SR, Key Object
       Selection (referencing the CT and XA images) and Encapsulated PDF.
    4. ``Nokeys^Nora`` with empty Patient ID, no Study ID, empty Study Date/Time: 2 series of
       32x32 images, CT x 2 without Series/Instance Number elements, OT x 1 with them empty.
    """
    out = Path(out_dir)
    return [
        make_study(
            out,
            patient_name="Doe^Jane",
            patient_id="ZP-CT-001",
            charset=None,
            series=[("CT", 5, 64, 64, 1), ("CT", 5, 64, 64, 1)],
            study_description="CT chest",
            series_descriptions=["Axial 5mm", "Axial 5mm soft"],
            accession_number="ACC0001",
            study_id="CT1",
        ),
        make_study(
            out,
            patient_name="Müller^Jürgen",
            patient_id="ZP-MR-001",
            charset="ISO_IR 192",
            series=[("MR", 3, 64, 64, 1)],
            study_description="Kopf \u2013 Übersicht",  # en dash: not in Latin-1
            series_descriptions=["T1 axial"],
            accession_number="ACC0002",
            study_id="MR1",
        ),
        make_study(
            out,
            patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう",
            patient_id="ZP-JP-001",
            charset="ISO_IR 192",
            series=[("MR", 3, 32, 32, 1)],
            study_description="頭部MRI",
            series_descriptions=["T2 軸位"],
            accession_number="ACC0003",
            study_id="MR2",
        ),
        make_study(
            out,
            patient_name="Roe^Richard",
            patient_id="ZP-MIX-001",
            charset="ISO_IR 192",
            series=[
                ("CT", 2, 32, 32, 1),
                ("XA", 1, 64, 64, 10),
                ("SR", 1, 0, 0, 0),
                ("KO", 1, 0, 0, 0),
                ("DOC", 1, 0, 0, 0),
            ],
            study_description="Mixed objects",
            series_descriptions=["CT", "XA run", "Report", "Key images", "PDF"],
            accession_number="ACC0004",
            study_id="MIX1",
        ),
        make_study(
            out,
            patient_name="Nokeys^Nora",
            patient_id="",
            charset="ISO_IR 192",
            series=[("CT", 2, 32, 32, 1), ("OT", 1, 32, 32, 1)],
            study_description="Missing Type 1 DICOMDIR keys",
            study_date="",
            study_time="",
            study_id=None,
            numbers="mixed",
            key="nokeys",
        ),
    ]


def make_bulk_study(
    out_dir: Path,
    n_series: int,
    per_series: int,
    rows: int,
    cols: int,
    frames: int = 1,
    *,
    modality: str = "CT",
    patient_name: str = "Bulk^Benchmark",
    patient_id: str = "ZP-BULK-001",
    key: str = "bulk",
) -> StudyInfo:
    """A big study for benchmarks: one 16-bit pixel buffer shared by every instance.

    Each instance is ``rows * cols * frames * 2`` bytes of pixel data plus a ~1 KiB header.
    ``frames > 1`` uses XA for modality ``XA``, else Multi-frame Grayscale Word SC.
    """
    seed = f"{key}|{n_series}|{per_series}|{rows}|{cols}|{frames}|{modality}"
    study_uid = _make_uid(seed, "study")
    sop_class = _sop_class_for(modality, frames)
    pixels = pixel_pattern(rows * cols * 2 * max(frames, 1))
    base = Dataset()
    base.SpecificCharacterSet = "ISO_IR 192"
    base.SOPClassUID = sop_class
    base.StudyDate = "20240103"
    base.StudyTime = "090000"
    base.ContentDate = "20240103"
    base.ContentTime = "090000"
    base.AccessionNumber = ""
    base.Modality = modality
    base.Manufacturer = "zipproxy.demo"
    base.ReferringPhysicianName = ""
    base.StudyDescription = "Bulk benchmark study"
    base.PatientName = patient_name
    base.PatientID = patient_id
    base.PatientBirthDate = "19700101"
    base.PatientSex = "O"
    base.StudyInstanceUID = study_uid
    base.StudyID = "BULK"
    base.FrameOfReferenceUID = _make_uid(seed, "frame-of-reference")
    base.PositionReferenceIndicator = ""
    _set_image(base, rows, cols, frames, pixels)
    _modality_attributes(base, modality, sop_class, 0)
    study_dir = Path(out_dir) / study_uid
    instances: list[SampleInstance] = []
    series_uids: list[str] = []
    for s_index in range(1, n_series + 1):
        series_uid = _make_uid(seed, "series", s_index)
        series_uids.append(series_uid)
        series_dir = study_dir / f"{s_index:03d}"
        series_dir.mkdir(parents=True, exist_ok=True)
        base.SeriesInstanceUID = series_uid
        base.SeriesNumber = s_index
        for i_index in range(1, per_series + 1):
            sop_uid = _make_uid(seed, "instance", s_index, i_index)
            base.file_meta = _file_meta(sop_class, sop_uid)
            base.SOPInstanceUID = sop_uid
            base.InstanceNumber = i_index
            path = series_dir / f"{i_index:05d}.dcm"
            dcmwrite(path, base, enforce_file_format=True)
            instances.append(SampleInstance(series_uid, sop_uid, sop_class, path))
    return StudyInfo(
        study_uid=study_uid,
        series_uids=series_uids,
        instances=instances,
        patient_name=patient_name,
        patient_id=patient_id,
        study_description="Bulk benchmark study",
        charset="ISO_IR 192",
        modalities=[modality] * n_series,
    )
