"""A deterministic corpus of clinical shapes for judging zipproxy's DICOMDIR (issue 12).

``make_corpus()`` returns :class:`CorpusStudy` objects, each with its instances as Part-10
bytes in *upload order*. Same arguments, same bytes (fixed UIDs, dates and pixel patterns); it
takes a few seconds and writes nothing (``write()`` puts the files where a test wants them).

Studies (``key``):

``rt``      ISO_IR 192 patient: CT, a large RT Structure Set (``rtstruct_size``, 20-50 MiB of
            contours), RT Plan, RT Dose with DVHs and a dose grid, RT Beams Treatment Record,
            a VERIFIED and an UNVERIFIED Comprehensive SR (``sr_size`` each), KO, GSPS, PDF,
            CDA and a Secondary Capture without Rows.
``sparse``  ISO_IR 100 patient: a series whose first instance carries almost nothing (no
            dates, descriptions, PatientName, Modality or numbers) while later ones carry
            StudyDate 20240229 and the rest; and a series whose instances disagree on
            Modality, SeriesNumber, SeriesDescription and StudyDescription.
``types``   every record type zipproxy can write that has a Storage SOP Class: one series per
            kind, ``[X, Secondary Capture, X]`` so that X is first *and* last in its series;
            each first X lacks the study's descriptive keys that later instances carry.

Arrival order. Orthanc 1.10's WADO-RS study retrieve (DICOMweb plugin 1.7) sends the series
of a study in *reverse order of their creation* (the series whose first instance was uploaded
last comes first) and, within a series, the instances in *upload order*; a series retrieve
sends upload order. InstanceNumber and UIDs play no part (measured, see
/work/notes/dicomdir-records.md). Upload each study's instances one at a time, in order:
:meth:`CorpusStudy.arrival` is then what the proxy receives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from corpusiods import KINDS, SINGLE_LEVEL, Ctx, code
from corpusraw import encode_file
from corpusrt import (
    RT_BEAMS_RECORD,
    RT_DOSE,
    RT_PLAN,
    RT_STRUCTURE_SET,
    dose,
    plan,
    structure_set,
    treatment_record,
)
from corpussr import (
    COMPREHENSIVE_SR,
    ENCAPSULATED_CDA,
    ENCAPSULATED_PDF,
    KEY_OBJECT_SELECTION,
    cda,
    key_objects,
    pdf,
    structured_report,
)
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from zipproxy.demo.content import minimal_pdf as _minimal_pdf

UID_PREFIX = "1.2.826.0.1.3680043.8.498."
MIB = 1024 * 1024

#: Everything the sparse first instance lacks (its series' later instances have them all).
SPARSE_OMIT = ("StudyDate", "StudyTime", "StudyDescription", "AccessionNumber", "StudyID",
               "ReferringPhysicianName", "PatientName", "PatientBirthDate", "PatientSex",
               "Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime",
               "InstanceNumber", "ContentDate", "ContentTime", "AcquisitionDate",
               "AcquisitionTime", "InstanceCreationDate", "InstanceCreationTime")
#: What a first X of the ``types`` study lacks: what workstations often leave empty.
TYPES_FIRST_EMPTY = ("StudyDescription", "AccessionNumber", "ReferringPhysicianName",
                     "SeriesDescription")


def uid(*parts: object) -> str:
    return str(generate_uid(UID_PREFIX, [repr(parts)]))


@dataclass(frozen=True)
class CorpusInstance:
    case: str  # "types/PR/1" etc.: study key, series, 1-based position in upload order
    kind: str
    record_type: str  # what PS3.3 F.4/F.5 gives this SOP Class
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str
    data: bytes = field(repr=False)


@dataclass
class CorpusStudy:
    key: str
    study_uid: str
    patient_id: str
    instances: list[CorpusInstance]  # upload order

    def arrival(self) -> list[CorpusInstance]:
        """The order Orthanc 1.10 sends them in a study retrieve (see the module docstring)."""
        series: dict[str, list[CorpusInstance]] = {}
        for inst in self.instances:
            series.setdefault(inst.series_uid, []).append(inst)
        return [inst for members in reversed(series.values()) for inst in members]

    def series(self) -> dict[str, list[CorpusInstance]]:
        out: dict[str, list[CorpusInstance]] = {}
        for inst in self.arrival():
            out.setdefault(inst.series_uid, []).append(inst)
        return out

    @property
    def size(self) -> int:
        return sum(len(inst.data) for inst in self.instances)

    def write(self, directory: Path) -> list[Path]:
        """Write the instances as ``NNNN.dcm`` (upload order); returns the paths."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, inst in enumerate(self.instances, start=1):
            paths.append(directory / f"{n:04d}.dcm")
            paths[-1].write_bytes(inst.data)
        return paths


@dataclass
class Patient:
    patient_id: str
    name: str
    charset: str | None = None


@dataclass
class _Study:
    key: str
    patient: Patient
    description: str
    date: str = "20240229"
    instances: list[CorpusInstance] = field(default_factory=list)
    ctx: Ctx = field(default_factory=lambda: Ctx(seed=""))

    @property
    def uid(self) -> str:
        return uid(self.key, "study")

    def add(self, series: str, kind: str, build: Callable[[Dataset, Ctx], None] | None = None,
            *, omit: Iterable[str] = (), **attributes: object) -> CorpusInstance:
        """Append one instance of ``kind`` to ``series`` (a label); returns it."""
        record_type, sop_class, modality, builder = _KIND_TABLE[kind]
        members = [i for i in self.instances if i.series_uid == uid(self.key, series)]
        ctx = self.ctx
        ctx.seed, ctx.index, ctx.first = f"{self.key}/{series}", len(members), not members
        ctx.raw = {}
        ds = _common(self, series, sop_class, modality, len(members) + 1)
        (build or builder)(ds, ctx)
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        for keyword in omit:
            if keyword in ds:
                delattr(ds, keyword)
        inst = CorpusInstance(f"{self.key}/{series}/{len(members) + 1}", kind, record_type,
                              self.uid, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                              sop_class, _encode(ds, ctx.raw))
        self.instances.append(inst)
        return inst

    def done(self) -> CorpusStudy:
        return CorpusStudy(self.key, self.uid, self.patient.patient_id, self.instances)


def _common(study: _Study, series: str, sop_class: str, modality: str, number: int) -> Dataset:
    """Patient, General Study, General Series, General Equipment and SOP Common modules."""
    ds = Dataset()
    if study.patient.charset:
        ds.SpecificCharacterSet = study.patient.charset
    ds.InstanceCreationDate, ds.InstanceCreationTime = "20240310", "100000"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid(study.key, series, number)
    ds.StudyDate, ds.StudyTime = study.date, "143000"
    ds.SeriesDate, ds.SeriesTime = study.date, "143500"
    ds.AccessionNumber = f"ACC-{study.key.upper()}"[:16]  # SH: 16 characters at most
    ds.ReferringPhysicianName = "Referrer^Rita"
    if modality:
        ds.Modality = modality
    ds.Manufacturer = "ZIPPROXY CORPUS"
    if modality.startswith("RT"):  # RT Series module (PS3.3 C.8.8.1): Type 2
        ds.OperatorsName = ""
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.replace("_", " ").title()
    ds.PatientName, ds.PatientID = study.patient.name, study.patient.patient_id
    ds.PatientBirthDate, ds.PatientSex = "19600101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study.uid, uid(study.key, series)
    ds.StudyID, ds.InstanceNumber = f"S{study.key[:6].upper()}", number
    ds.SeriesNumber = 1 + sum(1 for _ in dict.fromkeys(
        i.series_uid for i in study.instances if i.series_uid != ds.SeriesInstanceUID))
    return ds


def _encode(ds: Dataset, raw: dict[int, bytes]) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(str(ds.SOPClassUID))
    ds.file_meta.MediaStorageSOPInstanceUID = UID(str(ds.SOPInstanceUID))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = UID(UID_PREFIX + "1")
    ds.file_meta.ImplementationVersionName = "ZIPPROXY_CORPUS"
    return encode_file(ds, raw)


def _sized(builder: Callable[..., None], **kwargs: object) -> Callable[[Dataset, Ctx], None]:
    return lambda ds, ctx: builder(ds, ctx, **kwargs)


_PDF = _minimal_pdf("Treatment summary")
_KIND_TABLE: dict[str, tuple[str, str, str, Callable[[Dataset, Ctx], None]]] = {
    **KINDS,
    "RTSTRUCT": ("RT STRUCTURE SET", RT_STRUCTURE_SET, "RTSTRUCT", structure_set),
    "RTPLAN": ("RT PLAN", RT_PLAN, "RTPLAN", plan),
    "RTDOSE": ("RT DOSE", RT_DOSE, "RTDOSE", dose),
    "RTRECORD": ("RT TREAT RECORD", RT_BEAMS_RECORD, "RTRECORD", treatment_record),
    "SR": ("SR DOCUMENT", COMPREHENSIVE_SR, "SR", structured_report),
    "SR_VERIFIED": ("SR DOCUMENT", COMPREHENSIVE_SR, "SR",
                    _sized(structured_report, verified=True)),
    "KO": ("KEY OBJECT DOC", KEY_OBJECT_SELECTION, "KO", key_objects),
    "PDF": ("ENCAP DOC", ENCAPSULATED_PDF, "DOC", _sized(pdf, document=_PDF)),
    "CDA": ("ENCAP DOC", ENCAPSULATED_CDA, "DOC", cda),
}


def _images(study: _Study, series: str, count: int, kind: str = "CT") -> None:
    """An image series the other objects refer to (frame of reference, image references)."""
    study.ctx.frame_of_reference = uid(study.key, "frame of reference")
    study.ctx.study = study.uid
    refs = [study.add(series, kind) for _ in range(count)]
    study.ctx.images = [(i.sop_class, i.sop_uid) for i in refs]
    study.ctx.image_series = refs[0].series_uid if refs else ""


def _reference(study: _Study, inst: CorpusInstance) -> None:
    study.ctx.references[inst.kind] = (inst.sop_class, inst.sop_uid)


def rt_study(rtstruct_size: int = 24 * MIB, sr_size: int = 3 * MIB) -> CorpusStudy:
    study = _Study("rt", Patient("RT-0001", "Ünal^Şebnem", "ISO_IR 192"), "Kopf-Hals RT")
    _images(study, "planning_ct", 4)
    _reference(study, study.add("structures", "RTSTRUCT",
                                _sized(structure_set, size=rtstruct_size)))
    _reference(study, study.add("plan", "RTPLAN"))
    study.add("dose", "RTDOSE", _sized(dose, dvh_rois=16, dvh_bins=2000))
    study.add("record", "RTRECORD")
    study.add("record", "RTRECORD")
    study.add("reports", "SR_VERIFIED", _sized(structured_report, size=sr_size, verified=True))
    study.add("reports", "SR", _sized(structured_report, size=sr_size))
    for kind in ("KO", "KO"):
        study.add("key_objects", kind)
    study.add("presentation", "PR")
    study.add("documents", "PDF")
    study.add("documents", "CDA")
    study.add("capture", "SC_NO_ROWS")
    study.add("capture", "SC_NO_ROWS")
    return study.done()


def sparse_study() -> CorpusStudy:
    """Series ``disagree`` is uploaded first, ``sparse`` last, so ``sparse`` arrives first."""
    study = _Study("sparse", Patient("SPARSE-01", "Müller^Jürgen", "ISO_IR 100"), "Thorax CT")
    _images(study, "disagree", 0)
    study.add("disagree", "CT", SeriesDescription="Axial", StudyDescription="Thorax")
    study.add("disagree", "CT", Modality="OT", SeriesNumber=7, SeriesDescription="Coronal",
              StudyDescription="Chest", StudyDate="20240301")
    study.add("disagree", "CT", SeriesNumber=8)
    study.add("sparse", "CT", omit=SPARSE_OMIT)
    study.add("sparse", "CT", SeriesNumber=3)
    study.add("sparse", "CT", SeriesNumber=3, StudyDescription="Thorax CT (2)")
    return study.done()


#: Kinds of the ``types`` study (every record type with a Storage SOP Class) besides images.
TYPE_KINDS = ("RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "PR", "PR_BLENDING", "ECG", "SR",
              "SR_VERIFIED", "KO", "MRS", "RAW", "REG", "FID", "HP", "PDF", "CDA", "RWV",
              "STEREO", "PALETTE", "IMPLANT", "IMPLANT_ASSY", "IMPLANT_GROUP", "DELIVERY",
              "LENSOMETRY", "SURFACE_SEG", "SURFACE_SCAN", "TRACT", "ASSESSMENT", "RT_INTENT",
              "PRIVATE", "SC_NO_ROWS")


def types_study() -> CorpusStudy:
    study = _Study("types", Patient("TYPES-01", "Types^Test"), "Every record type")
    _images(study, "images", 2, kind="SC")
    for kind in TYPE_KINDS:
        series = kind.lower()
        first = study.add(series, kind, omit=TYPES_FIRST_EMPTY)
        if kind in ("RTSTRUCT", "RTPLAN"):
            _reference(study, first)
        if _KIND_TABLE[kind][0] not in SINGLE_LEVEL:
            study.add(series, "SC")
        study.add(series, kind)
    return study.done()


def make_corpus(rtstruct_size: int = 24 * MIB, sr_size: int = 3 * MIB) -> list[CorpusStudy]:
    return [rt_study(rtstruct_size, sr_size), sparse_study(), types_study()]


def big_rtstruct_study(size: int = 50 * MIB) -> CorpusStudy:
    """One RT Structure Set of ``size`` bytes and the 4 CT slices it contours."""
    study = _Study(f"bigrt{size}", Patient("BIGRT-01", "Big^Structure"), "Large RTSTRUCT")
    _images(study, "ct", 4)
    study.add("structures", "RTSTRUCT", _sized(structure_set, size=size))
    return study.done()


def ct_study(size: int = 50 * MIB, slice_bytes: int = 512 * 512 * 2) -> CorpusStudy:
    """CT slices of ``slice_bytes`` pixels each, adding up to about ``size`` bytes."""
    study = _Study(f"ct{size}", Patient("BIGCT-01", "Big^Slices"), "CT of the same size")
    side = int((slice_bytes // 2) ** 0.5)
    pixels = hashlib.shake_256(b"ct").digest(side * side * 2)
    study.ctx.frame_of_reference, study.ctx.study = uid(study.key, "for"), study.uid

    def slice_(ds: Dataset, ctx: Ctx) -> None:
        KINDS["CT"][3](ds, ctx)
        ds.Rows = ds.Columns = side
        ds.PixelData = pixels

    for _ in range(max(1, size // (side * side * 2))):
        study.add("ct", "CT", slice_)
    return study.done()


__all__ = ["MIB", "CorpusInstance", "CorpusStudy", "big_rtstruct_study", "code", "ct_study",
           "make_corpus", "rt_study", "sparse_study", "types_study"]
