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
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from zipproxy.demo.content import (
    NON_IMAGE_CLASSES,
    SOP_CLASSES,
    UID_PREFIX,
    SampleInstance,
    file_meta,
    kos_content,
    make_uid,
    modality_attributes,
    pdf_content,
    pixel_pattern,
    set_image,
    sop_class_for,
    sr_content,
)

__all__ = [
    "SOP_CLASSES",
    "UID_PREFIX",
    "SampleInstance",
    "SeriesSpec",
    "StudyInfo",
    "make_bulk_study",
    "make_samples",
    "make_study",
    "pixel_pattern",
]

#: ``(modality, n_instances, rows, cols, frames)``
SeriesSpec = tuple[str, int, int, int, int]


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



@dataclass(frozen=True)
class _Study:
    """What every instance of one sample study shares (PS3.3 C.7.1.1 Patient, C.7.2.1 General
    Study, C.7.5.1 General Equipment), and how its UIDs are seeded."""

    seed: str
    patient_name: str
    patient_id: str
    charset: str | None
    study_description: str
    study_date: str
    study_time: str
    accession_number: str = ""
    study_id: str | None = "1"

    @cached_property
    def study_uid(self) -> str:
        return make_uid(self.seed, "study")

    def instance(self, sop_class: str, sop_uid: str, modality: str) -> Dataset:
        """A data set with the File Meta, the SOP and the shared patient and study attributes."""
        ds = Dataset()
        ds.file_meta = file_meta(sop_class, sop_uid)
        if self.charset is not None:
            ds.SpecificCharacterSet = self.charset
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = self.study_date
        ds.StudyTime = self.study_time
        ds.ContentDate = self.study_date or "20240102"
        ds.ContentTime = self.study_time or "101500"
        ds.AccessionNumber = self.accession_number
        ds.Modality = modality
        ds.Manufacturer = "zipproxy.demo"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = self.study_description
        ds.PatientName = self.patient_name
        ds.PatientID = self.patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = self.study_uid
        if self.study_id is not None:
            ds.StudyID = self.study_id
        return ds

    def info(self, series_uids: list[str], instances: list[SampleInstance],
             modalities: list[str]) -> StudyInfo:
        return StudyInfo(study_uid=self.study_uid, series_uids=series_uids,
                         instances=instances, patient_name=self.patient_name,
                         patient_id=self.patient_id, study_description=self.study_description,
                         charset=self.charset, modalities=modalities)


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
    study = _Study(seed, patient_name, patient_id, charset, study_description, study_date,
                   study_time, accession_number, study_id)
    instances: list[SampleInstance] = []
    series_uids: list[str] = []
    for s_index, spec in enumerate(series, start=1):
        series_uids.append(make_uid(seed, "series", s_index))
        series_dir = Path(out_dir) / study.study_uid / f"{s_index:03d}"
        series_dir.mkdir(parents=True, exist_ok=True)
        image_refs = [i for i in instances if i.sop_class_uid not in NON_IMAGE_CLASSES]
        for i_index in range(1, spec[1] + 1):
            description = series_descriptions[s_index - 1] if series_descriptions else None
            ds = _sample_instance(study, spec, s_index, i_index, description, numbers,
                                  image_refs)
            path = series_dir / f"{i_index:05d}.dcm"
            dcmwrite(path, ds, enforce_file_format=True)
            instances.append(SampleInstance(ds.SeriesInstanceUID, ds.SOPInstanceUID,
                                            ds.SOPClassUID, path))
    return study.info(series_uids, instances, [spec[0] for spec in series])


def _sample_instance(study: _Study, spec: SeriesSpec, s_index: int, i_index: int,
                     description: str | None, numbers: str,
                     image_refs: Sequence[SampleInstance]) -> Dataset:
    """Instance ``i_index`` of series ``s_index``: the shared attributes, its series, its
    numbers, then what its modality holds (a report, key images, a PDF or pixels)."""
    modality, _, rows, cols, frames = spec
    sop_class = sop_class_for(modality, frames)
    ds = study.instance(sop_class, make_uid(study.seed, "instance", s_index, i_index), modality)
    if description is not None:
        ds.SeriesDescription = description
    ds.SeriesInstanceUID = make_uid(study.seed, "series", s_index)
    if numbers == "present":
        ds.SeriesNumber = s_index
        ds.InstanceNumber = i_index
    elif numbers == "empty" or (numbers == "mixed" and s_index % 2 == 0):
        ds.SeriesNumber = None
        ds.InstanceNumber = None
    if modality == "SR":
        sr_content(ds)
    elif modality == "KO":
        kos_content(ds, study.study_uid, image_refs)
    elif modality == "DOC":
        pdf_content(ds, f"Sample PDF report {i_index}")
    else:
        ds.FrameOfReferenceUID = make_uid(study.seed, "frame-of-reference")
        ds.PositionReferenceIndicator = ""
        nbytes = rows * cols * 2 * max(frames, 1)
        set_image(ds, rows, cols, frames, pixel_pattern(nbytes, s_index * 31 + i_index))
        modality_attributes(ds, modality, sop_class, i_index)
    return ds


# The standard sample set: make_study's arguments, one row a study (see make_samples).
_SAMPLES: tuple[dict[str, Any], ...] = (
    {"patient_name": "Doe^Jane", "patient_id": "ZP-CT-001", "charset": None,
     "series": [("CT", 5, 64, 64, 1), ("CT", 5, 64, 64, 1)], "study_description": "CT chest",
     "series_descriptions": ["Axial 5mm", "Axial 5mm soft"], "accession_number": "ACC0001",
     "study_id": "CT1"},
    {"patient_name": "Müller^Jürgen", "patient_id": "ZP-MR-001", "charset": "ISO_IR 192",
     "series": [("MR", 3, 64, 64, 1)],
     "study_description": "Kopf \u2013 Übersicht",  # en dash: not in Latin-1
     "series_descriptions": ["T1 axial"], "accession_number": "ACC0002", "study_id": "MR1"},
    {"patient_name": "Yamada^Tarou=山田^太郎=やまだ^たろう", "patient_id": "ZP-JP-001",
     "charset": "ISO_IR 192", "series": [("MR", 3, 32, 32, 1)], "study_description": "頭部MRI",
     "series_descriptions": ["T2 軸位"], "accession_number": "ACC0003", "study_id": "MR2"},
    {"patient_name": "Roe^Richard", "patient_id": "ZP-MIX-001", "charset": "ISO_IR 192",
     "series": [("CT", 2, 32, 32, 1), ("XA", 1, 64, 64, 10), ("SR", 1, 0, 0, 0),
                ("KO", 1, 0, 0, 0), ("DOC", 1, 0, 0, 0)],
     "study_description": "Mixed objects",
     "series_descriptions": ["CT", "XA run", "Report", "Key images", "PDF"],
     "accession_number": "ACC0004", "study_id": "MIX1"},
    {"patient_name": "Nokeys^Nora", "patient_id": "", "charset": "ISO_IR 192",
     "series": [("CT", 2, 32, 32, 1), ("OT", 1, 32, 32, 1)],
     "study_description": "Missing Type 1 DICOMDIR keys", "study_date": "", "study_time": "",
     "study_id": None, "numbers": "mixed", "key": "nokeys"},
)


def make_samples(out_dir: Path) -> list[StudyInfo]:
    """The standard sample set (5 studies, 25 instances, well under 1 MiB in all).

    0. CT, ``Doe^Jane``, no Specific Character Set: 2 series x 5 instances, 64x64 16-bit.
    1. MR, ``Müller^Jürgen`` (ISO_IR 192), German study description: 1 series x 3.
    2. MR, ``Yamada^Tarou=山田^太郎=やまだ^たろう`` (ISO_IR 192), Japanese description: 1 x 3.
    3. Mixed, ``Roe^Richard``: CT 2 images, XA 10-frame image, Basic Text SR, Key Object
       Selection (referencing the CT and XA images) and Encapsulated PDF.
    4. ``Nokeys^Nora`` with empty Patient ID, no Study ID, empty Study Date/Time: 2 series of
       32x32 images, CT x 2 without Series/Instance Number elements, OT x 1 with them empty.
    """
    return [make_study(Path(out_dir), **sample) for sample in _SAMPLES]


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
    study = _Study(seed, patient_name, patient_id, "ISO_IR 192", "Bulk benchmark study",
                   "20240103", "090000", study_id="BULK")
    sop_class = sop_class_for(modality, frames)
    # 1. One data set, pixels included, written again and again with new UIDs and numbers.
    base = study.instance(sop_class, make_uid(seed, "instance", 0, 0), modality)
    base.FrameOfReferenceUID = make_uid(seed, "frame-of-reference")
    base.PositionReferenceIndicator = ""
    set_image(base, rows, cols, frames, pixel_pattern(rows * cols * 2 * max(frames, 1)))
    modality_attributes(base, modality, sop_class, 0)
    instances: list[SampleInstance] = []
    series_uids: list[str] = []
    for s_index in range(1, n_series + 1):
        # 2. Per series: its UID and number; 3. per instance: the File Meta, SOP, number.
        series_uid = make_uid(seed, "series", s_index)
        series_uids.append(series_uid)
        series_dir = Path(out_dir) / study.study_uid / f"{s_index:03d}"
        series_dir.mkdir(parents=True, exist_ok=True)
        base.SeriesInstanceUID = series_uid
        base.SeriesNumber = s_index
        for i_index in range(1, per_series + 1):
            sop_uid = make_uid(seed, "instance", s_index, i_index)
            base.file_meta = file_meta(sop_class, sop_uid)
            base.SOPInstanceUID = sop_uid
            base.InstanceNumber = i_index
            path = series_dir / f"{i_index:05d}.dcm"
            dcmwrite(path, base, enforce_file_format=True)
            instances.append(SampleInstance(series_uid, sop_uid, sop_class, path))
    return study.info(series_uids, instances, [modality] * n_series)
