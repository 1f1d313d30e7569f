"""Directory records (PS3.3 F.5): which record an instance gets, its keys, and their encoding.

The tables are pydicom's (``pydicom.fileset``) where it has them; ``tests/test_dicomdir.py``
checks ``KEYS`` against pydicom's recorders. Everything here works on the raw values the
scanner kept (:mod:`zipproxy.dicomscan`), so text keeps the bytes and the Specific Character
Set the instance used (``Müller^Jürgen`` in ISO_IR 100 stays byte for byte).
"""

from __future__ import annotations

import functools
import io
import struct
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final

from pydicom._uid_dict import UID_dictionary
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.fileset import _FOUR_LEVEL_SOP_CLASSES, _SINGLE_LEVEL_SOP_CLASSES
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from .dicomscan import Element, Scan, Wanted

# Record keys, PS3.3 F.5, as pydicom's DIRECTORY_RECORDERS define them ("keyword:type"), where
# 1 = must have a value (supplied if missing), 2 = always present (maybe empty),
# 3 = copied when the instance has it (Type 1C/3 keys, whose conditions see ``conditional``).
_CONTENT = "InstanceNumber:1 ContentDate:1 ContentTime:1"
_CONTENT_ID = f"{_CONTENT} ContentLabel:1 ContentDescription:2 ContentCreatorName:2"
_KEY_SPECS: Final = {
    "PATIENT": "PatientName:2 PatientID:1",
    "STUDY": "StudyDate:1 StudyTime:1 StudyDescription:2 StudyInstanceUID:3 StudyID:1 "
             "AccessionNumber:2",
    "SERIES": "Modality:1 SeriesInstanceUID:1 SeriesNumber:1",
    "IMAGE": "InstanceNumber:1",
    "RT DOSE": "InstanceNumber:1 DoseSummationType:1",
    "RT STRUCTURE SET": "InstanceNumber:1 StructureSetLabel:1 StructureSetDate:2 "
                        "StructureSetTime:2",
    "RT PLAN": "InstanceNumber:1 RTPlanLabel:1 RTPlanDate:2 RTPlanTime:2",
    "RT TREAT RECORD": "InstanceNumber:1 TreatmentDate:2 TreatmentTime:2",
    "PRESENTATION": "PresentationCreationDate:1 PresentationCreationTime:1 InstanceNumber:1 "
                    "ContentLabel:1 ContentDescription:2 ContentCreatorName:2 "
                    "ReferencedSeriesSequence:3 BlendingSequence:3",
    "WAVEFORM": _CONTENT, "RAW DATA": "ContentDate:1 ContentTime:1 InstanceNumber:2",
    "SR DOCUMENT": f"{_CONTENT} CompletionFlag:1 VerificationFlag:1 VerificationDateTime:3 "
                   "ConceptNameCodeSequence:1 ContentSequence:3",
    "KEY OBJECT DOC": f"{_CONTENT} ConceptNameCodeSequence:1 ContentSequence:3",
    "SPECTROSCOPY": f"{_CONTENT} ImageType:1 ReferencedImageEvidenceSequence:3 "
                    "NumberOfFrames:1 Rows:1 Columns:1 DataPointRows:1 DataPointColumns:1",
    "REGISTRATION": _CONTENT_ID, "FIDUCIAL": _CONTENT_ID, "VALUE MAP": _CONTENT_ID,
    "MEASUREMENT": _CONTENT_ID, "SURFACE": _CONTENT_ID, "TRACT": _CONTENT_ID,
    # F.5-31 begins with Name, Description and Level, which pydicom's recorder lacks.
    "HANGING PROTOCOL": "HangingProtocolName:1 HangingProtocolDescription:1 "
                        "HangingProtocolLevel:1 "
                        "HangingProtocolCreator:1 HangingProtocolCreationDateTime:1 "
                        "HangingProtocolDefinitionSequence:1 NumberOfPriorsReferenced:1 "
                        "HangingProtocolUserIdentificationCodeSequence:2",
    "ENCAP DOC": "ContentDate:2 ContentTime:2 InstanceNumber:1 DocumentTitle:2 "
                 "HL7InstanceIdentifier:3 ConceptNameCodeSequence:2 "
                 "MIMETypeOfEncapsulatedDocument:1",
    "PALETTE": "ContentLabel:1 ContentDescription:2",
    "IMPLANT": "Manufacturer:1 ImplantName:1 ImplantSize:3 ImplantPartNumber:1",
    "IMPLANT ASSY": "ImplantAssemblyTemplateName:1 Manufacturer:1 ProcedureTypeCodeSequence:1",
    "IMPLANT GROUP": "ImplantTemplateGroupName:1 ImplantTemplateGroupDescription:3 "
                     "ImplantTemplateGroupIssuer:1",
    "SURFACE SCAN": "ContentDate:1 ContentTime:1",
    "ASSESSMENT": "InstanceNumber:1 InstanceCreationDate:1 InstanceCreationTime:2",
    "RADIOTHERAPY": "InstanceNumber:1 UserContentLabel:3 UserContentLongLabel:3 "
                    "ContentDescription:2 ContentCreatorName:2",
    # F.5-35 lists no keys; dicom3tools' dciodvfy requires the Content Identification Macro
    # (PS3.3 Table 10-12), which every stereometric relationship instance carries.
    "STEREOMETRIC": "InstanceNumber:1 ContentLabel:1 ContentDescription:2",
    "PLAN": "", "PRIVATE": "",
}
# Where these keys differ from pydicom's DIRECTORY_RECORDERS, and why (tests check the rest).
BEYOND_PYDICOM: Final = {
    "HANGING PROTOCOL": ("HangingProtocolName", "HangingProtocolDescription",
                         "HangingProtocolLevel"),  # PS3.3 F.5-31
    "IMPLANT GROUP": ("ImplantTemplateGroupDescription",),  # PS3.3 F.5-39, Type 3
    "STEREOMETRIC": ("InstanceNumber", "ContentLabel", "ContentDescription"),  # dciodvfy
}
# PS3.3 F.5-37..39: the implant template records have no Specific Character Set key.
NO_CHARSET: Final = frozenset({"IMPLANT", "IMPLANT ASSY", "IMPLANT GROUP"})
KEYS: Final = {record_type: tuple((kw, int(t)) for kw, t in (k.split(":") for k in spec.split()))
               for record_type, spec in _KEY_SPECS.items()}
ENTITY_TYPES: Final = ("PATIENT", "STUDY", "SERIES")
TEXT_VRS: Final = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH",
                             "ST", "TM", "UC", "UI", "UR", "UT"})
CHARSET_VRS: Final = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN", "SQ"})  # PS3.5 6.1.2.3
# The VRs a text key may come with: its own, none (Implicit VR), or UN (PS3.5 6.2.2).
_TEXTUAL: Final = frozenset({b"", b"UN", *(vr.encode() for vr in TEXT_VRS)})
_WIDTH: Final = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4}
DATE_SOURCES: Final = ("Series", "Content", "Acquisition", "Study", "InstanceCreation")
_STORAGE: Final = "1.2.840.10008.5.1.4.1.1."
_BY_PREFIX: Final = ((f"{_STORAGE}104.", "ENCAP DOC"), (f"{_STORAGE}88.", "SR DOCUMENT"),
                     (f"{_STORAGE}9.", "WAVEFORM"), (f"{_STORAGE}11.", "PRESENTATION"))
# Besides the keys: what the manifest, the File ID and the fallbacks read, and what tells the
# record type of an unknown SOP Class by its presence.
_ALWAYS: Final = ("SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID",
                  "SeriesInstanceUID", "PatientID", "Modality", "SeriesNumber",
                  "InstanceNumber", "Rows", "Columns", "NumberOfFrames",
                  *(p + k for p in DATE_SOURCES for k in ("Date", "Time")))
_PRESENCE: Final = ("Rows", "EncapsulatedDocument", "RTPlanLabel")
_PYDICOM_LOCK = threading.Lock()


@contextmanager
def pydicom_quietly() -> Iterator[None]:
    """pydicom work with its warnings silenced, one thread at a time.

    pydicom warns on odd input (VR mismatch, missing delimiters) where our own checks decide.
    ``warnings.catch_warnings`` swaps process-wide state, so two threads using it at once could
    leave the filters wrong; pydicom holds the GIL anyway, so serializing costs nothing.
    """
    with _PYDICOM_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _image_classes() -> dict[str, str]:
    """Every Storage SOP Class pydicom knows as "... Image Storage ..." gets an IMAGE record
    (PS3.3 F.4: image IODs), whatever attributes an instance carries."""
    return {uid: "IMAGE" for uid, (name, kind, *_) in UID_dictionary.items()
            if kind == "SOP Class" and "Image Storage" in name}


_SOP_CLASS_RECORDS: Final[Mapping[str, str]] = {
    **_image_classes(),
    f"{_STORAGE}481.5": "RT PLAN", f"{_STORAGE}481.8": "RT PLAN",  # RT (Ion) Plan
    **{f"{_STORAGE}104.{n}": "ENCAP DOC" for n in range(1, 6)},  # PDF, CDA, STL, OBJ, MTL
    f"{_STORAGE}131": "PRESENTATION",  # Basic Structured Display (dcm4che's table too)
    # SR-based ophthalmic reports (dcm4che): Spectacle Prescription, Macular Grid Thickness
    f"{_STORAGE}78.6": "SR DOCUMENT", f"{_STORAGE}79.1": "SR DOCUMENT",
    # Second-generation RT objects (PS3.3 F.5.46, Modality RTINTENT, RTSEGANN or RTRAD) ...
    **{f"{_STORAGE}481.{n}": "RADIOTHERAPY" for n in (*range(10, 23), 25)},
    # ... and plans of procedures and deliveries (F.5.40, Modality PLAN).
    **{f"{_STORAGE}200.{n}": "PLAN" for n in (1, 2, 7, 8)},
    **{f"1.2.840.10008.5.1.4.34.{n}": "PLAN" for n in (1, 7, 10)},
    **_FOUR_LEVEL_SOP_CLASSES,  # type: ignore[dict-item]
}
_BY_MODALITY: Final = {b"RTINTENT": "RADIOTHERAPY", b"RTSEGANN": "RADIOTHERAPY",
                       b"RTRAD": "RADIOTHERAPY", b"PLAN": "PLAN"}


def record_type(sop_class: str, present: Iterable[int] = (), modality: bytes = b"") -> str:
    """The leaf record type of an instance of ``sop_class`` (PS3.3 F.4, F.5).

    A known SOP Class decides alone. An unknown one is judged by its Modality, as pydicom's
    ``_four_level_record_type`` does (RTINTENT, RTSEGANN, RTRAD, PLAN), its UID's family (SR,
    waveform, presentation state, encapsulated document), then by what it holds: a Rows
    (0028,0010) makes it an IMAGE, anything else a PRIVATE record (PS3.3 F.3.2.2)."""
    if sop_class in _SINGLE_LEVEL_SOP_CLASSES:
        return str(_SINGLE_LEVEL_SOP_CLASSES[sop_class])  # type: ignore[index]
    if sop_class in _SOP_CLASS_RECORDS:
        return _SOP_CLASS_RECORDS[sop_class]
    if modality in _BY_MODALITY:
        return _BY_MODALITY[modality]
    for prefix, kind in _BY_PREFIX:
        if sop_class.startswith(prefix):
            return kind
    seen = set(present)
    if tag_of("EncapsulatedDocument") in seen:
        return "ENCAP DOC"
    if tag_of("RTPlanLabel") in seen:
        return "RT PLAN"
    return "IMAGE" if tag_of("Rows") in seen else "PRIVATE"


def is_known_sop_class(sop_class: str) -> bool:
    """Whether ``sop_class`` alone decides its record type (see :func:`record_type`)."""
    return sop_class in _SINGLE_LEVEL_SOP_CLASSES or sop_class in _SOP_CLASS_RECORDS


_ROOT_LEVEL: Final = frozenset(map(str, _SINGLE_LEVEL_SOP_CLASSES.values()))


def is_root_level(record: str) -> bool:
    """Single-level SOP Classes are records of the root directory entity (PS3.3 F.4)."""
    return record in _ROOT_LEVEL


class _Tags(dict[str, int]):
    """keyword -> tag, filled on first use (a dict lookup is cheaper than a cached call)."""

    def __missing__(self, keyword: str) -> int:
        tag = self[keyword] = int(tag_for_keyword(keyword) or 0)
        return tag


TAGS: Final = _Tags()
tag_of: Final = TAGS.__getitem__


@functools.cache
def vr_of(keyword: str) -> str:
    return str(dictionary_VR(keyword))


@functools.lru_cache(maxsize=512)
def wanted_for(sop_class: str) -> Wanted:
    """What the scanner keeps of an instance of ``sop_class``: its record's keys, the entity
    keys, the manifest's columns and the sources of supplied values (PS3.3 F.5)."""
    known = is_known_sop_class(sop_class)
    kinds = [record_type(sop_class)] if known else list(KEYS)  # unknown: any record type
    keywords = {*_ALWAYS, *(kw for kind in (*ENTITY_TYPES, *kinds) for kw, _ in KEYS[kind])}
    if not known:
        keywords.update(_PRESENCE)
    if "SR DOCUMENT" in kinds:
        keywords.add("VerifyingObserverSequence")  # where VerificationDateTime comes from
    sequences = {tag_of(kw) for kw in keywords if vr_of(kw) == "SQ"}
    return Wanted(frozenset(tag_of(kw) for kw in keywords) - sequences, frozenset(sequences))


def element(tag: int, vr: str, value: bytes) -> bytes:
    """One element in Explicit VR Little Endian (PS3.5 7.1.2), padded to even length."""
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB", "UN") else b" "
    head = _HEADS.get((tag, vr)) or _head(tag, vr)
    if vr in EXPLICIT_VR_LENGTH_32:
        return b"".join((head, _LONG_LENGTH(0, len(value)), value))
    return b"".join((head, _SHORT_LENGTH(len(value)), value))


def _head(tag: int, vr: str) -> bytes:
    head = _HEADS[(tag, vr)] = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    return head


_HEADS: dict[tuple[int, str], bytes] = {}  # tag and VR, encoded: a few hundred at most
_LONG_LENGTH: Final = struct.Struct("<HI").pack
_SHORT_LENGTH: Final = struct.Struct("<H").pack


def text(scan: Scan, keyword: str) -> bytes:
    """A text value as the instance encoded it, b"" when missing or not text (a text key
    written with a binary VR by a broken writer is unusable)."""
    return text_at(scan.elements, TAGS[keyword])


def text_at(elements: Mapping[int, Element], tag: int) -> bytes:
    """:func:`text` by tag, of a data set's kept elements."""
    elem = elements.get(tag)
    return elem.value if elem is not None and elem.vr in _TEXTUAL else b""


def stripped(scan: Scan, keyword: str) -> bytes:
    return stripped_at(scan.elements, TAGS[keyword])


def stripped_at(elements: Mapping[int, Element], tag: int) -> bytes:
    """:func:`text_at` without the spaces and NULs around it (padding, PS3.5 6.2)."""
    return text_at(elements, tag).strip(b" \x00")


def charset(scan: Scan) -> bytes:
    return stripped(scan, "SpecificCharacterSet")


def sequence(scan: Scan, keyword: str) -> Sequence | None:
    """A kept sequence, decoded by pydicom; None when missing, empty or unreadable."""
    return _sequence(scan, tag_of(keyword))


def _sequence(scan: Scan, tag: int) -> Sequence | None:
    elem = scan.elements.get(tag)
    if elem is None:
        return None
    try:
        with pydicom_quietly():
            ds = read_dataset(io.BytesIO(elem.value), elem.implicit, elem.little)
            value = ds[tag].value
    except Exception:  # pydicom raises many types on malformed data: the key is missing
        return None
    return value if isinstance(value, Sequence) and len(value) else None


def encoded(scan: Scan, tag: int, vr: str) -> bytes | None:
    """The key's whole element in the DICOMDIR's syntax, or None if missing or empty."""
    if vr in TEXT_VRS:
        value = text_at(scan.elements, tag)
        if not value.strip(b" \x00") or (len(value) > 0xFFFF and vr not in EXPLICIT_VR_LENGTH_32):
            return None
        return element(tag, vr, value)
    if vr == "SQ":
        items = _sequence(scan, tag)
        return None if items is None else pydicom_element(charset(scan), tag, vr, items)
    elem = scan.elements.get(tag)
    width = _WIDTH.get(vr, 1)
    if elem is None or not elem.value or len(elem.value) % width:
        return None
    return element(tag, vr, elem.value)


def pydicom_element(charset_: bytes, tag: int, vr: str, value: object) -> bytes | None:
    """Let pydicom encode a decoded value in our syntax with the instance's character set;
    None if it cannot (a malformed key counts as missing, rather than failing a download)."""
    try:
        with pydicom_quietly():
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, False
            names = charset_.decode("ascii", "replace").split("\\") if charset_ else ["ISO_IR 6"]
            write_data_element(fp, DataElement(tag, vr, value), convert_encodings(names))
            return bytes(fp.getvalue())
    except Exception:  # pydicom raises many types on malformed values
        return None


def latest_verification(scan: Scan) -> bytes:
    """VerificationDateTime (0040,A030) of the latest VerifyingObserverSequence item: the
    SR DOCUMENT record's Type 1C key when the document is VERIFIED (PS3.3 F.5.22)."""
    items: Iterable[Dataset] = sequence(scan, "VerifyingObserverSequence") or []
    stamps = [str(item.get("VerificationDateTime", "") or "").strip() for item in items]
    stamps = [s for s in stamps if s]
    return max(stamps, key=lambda s: s[:14].ljust(14, "0")).encode() if stamps else b""


def to_utf8(value: bytes, charset_: bytes) -> bytes:
    """Text in the Specific Character Set ``charset_`` (b"": the default repertoire), as UTF-8
    (PS3.5 6.1). pydicom decodes; what it cannot map it replaces, so this never fails."""
    names = charset_.decode("ascii", "replace").split("\\") if charset_ else ["ISO_IR 6"]
    with pydicom_quietly():
        return decode_bytes(value, names, set()).encode("utf-8", "replace")


def is_extended(values: Iterable[bytes]) -> bool:
    """Whether text needs its Specific Character Set (PS3.3 F.5: Type 1C, "required if an
    extended or replacement character set is used"): anything beyond plain ASCII, ESC too."""
    return any(not value.isascii() or b"\x1b" in value for value in values)


def pack_number(vr: str, number: int) -> bytes:
    return struct.pack("<H" if vr == "US" else "<I", number)

