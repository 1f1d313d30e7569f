"""An O(N) builder of the DICOMDIR (Basic Directory IOD, PS3.3 F; PS3.10 8; PS3.11 D.3.3).

``pydicom.fileset.FileSet`` writes to disk and its ``add()`` is quadratic, so the records are
encoded here, in the style of (and with the tables of) ``pydicom.fileset``:

* ``add()`` keeps only the encoded bytes of the records an instance needs: its leaf record, and
  the PATIENT / STUDY / SERIES records the first time those appear. The offset elements are
  zero placeholders at fixed positions in every record (see ``_NEXT_AT``).
* ``build()`` walks the tree once, depth-first, works out where every record lands and patches
  the offsets in. The DICOMDIR is Explicit VR Little Endian (PS3.10 8, "DICOMDIR File"),
  written here element by element.

Text values are copied as the instance encoded them (raw bytes, not decoded and re-encoded), so
``Müller^Jürgen`` in ISO_IR 100 or 192 stays byte-exact; its (0008,0005) Specific Character Set
goes with it into every record that holds text (PS3.3 F.5: Type 1C, required if an extended or
replacement character set is used in the record's keys).

Keys that are Type 1 in the record but missing from the instance are supplied by the File-set
creator (PS3.11 D.3.3 note, PS3.3 F.5), by the rules of ``_supply()``:

* PatientID: ``ZIPPROXY_`` + 16 hex digits of SHA-256(StudyInstanceUID) -- the same study gives
  the same made-up patient in every export. A study stays under the patient of its first
  instance, so one Study Instance UID never gets two STUDY records.
* StudyDate/StudyTime (and any other Type 1 DA/TM key): the first present of Series, Content,
  Acquisition, Study and Instance Creation Date/Time, else ``19000101`` / ``000000``.
* StudyID: the last 16 characters of the StudyInstanceUID (SH holds 16), else the study's index.
* Modality: ``OT``. SeriesNumber: the series' 1-based index within its study. InstanceNumber: the
  instance's 1-based index within its series. SeriesInstanceUID: a 2.25 UID hashed from the
  study. MIME type of an encapsulated document: from its SOP Class (``application/pdf``, ...).
* CompletionFlag ``PARTIAL``, VerificationFlag ``UNVERIFIED``; other text ``UNKNOWN``; other
  numbers 1; a Type 1 sequence that is missing is written empty (nothing sensible to invent).
* A key whose value pydicom cannot decode counts as missing: one odd key does not fail a
  whole download.

Record type: pydicom's rules and tables (``_four_level_record_type``); an unknown SOP Class
whose UID says SR (``...1.88.``), waveform (``...1.9.``), presentation state (``...1.11.``) or
encapsulated document (``...1.104.``) gets that record type; any other unknown SOP Class gets
IMAGE if it has image pixel attributes (Rows), else a PRIVATE record (PS3.3 F.3.2.2) whose
Private Record UID is the SOP Class UID. Single-level SOP Classes (hanging protocols, palettes,
implant templates) become records of the root directory entity, beside the PATIENTs (PS3.3 F.4).
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
import uuid
from typing import Any, Final

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.fileset import _FOUR_LEVEL_SOP_CLASSES, _SINGLE_LEVEL_SOP_CLASSES
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from . import __version__
from .dicomheader import pydicom_quietly
from .errors import DuplicateInstance, InstanceError

# Implementation Class UID (PS3.7 D.3.3.2): a UUID-derived UID (PS3.5 B.2) under 2.25, from a
# name-based UUID -- constant across releases and needing no registered root.
IMPLEMENTATION_CLASS_UID: Final = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_DNS, "zipproxy").int)
IMPLEMENTATION_VERSION_NAME: Final = f"ZIPPROXY_{__version__}"[:16]

_FILE_ID_COMPONENT: Final = re.compile(r"[A-Z0-9_]{1,8}")  # PS3.10 8.2, 8.5
_FILE_SET_ID: Final = re.compile(r"[A-Z0-9_ ]{0,16}")  # CS, PS3.5 6.2
_EMPTY: Final = Dataset()
_NEXT_AT: Final = 8  # value of (0004,1400) inside a record's item value
_LOWER_AT: Final = 30  # value of (0004,1420): after 1400 (12 bytes) and 1410 (10 bytes)

# Record keys, PS3.3 F.5, as pydicom's DIRECTORY_RECORDERS define them ("keyword:type"), where
# 1 = must have a value (supplied if missing), 2 = always present (maybe empty),
# 3 = copied when the instance has it (the Type 1C/3 keys). tests/test_dicomdir.py checks this
# table against pydicom's recorders.
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
    "WAVEFORM": _CONTENT, "RAW DATA": _CONTENT,
    "SR DOCUMENT": f"{_CONTENT} CompletionFlag:1 VerificationFlag:1 VerificationDateTime:3 "
                   "ConceptNameCodeSequence:1 ContentSequence:3",
    "KEY OBJECT DOC": f"{_CONTENT} ConceptNameCodeSequence:1 ContentSequence:3",
    "SPECTROSCOPY": f"{_CONTENT} ImageType:1 ReferencedImageEvidenceSequence:3 "
                    "NumberOfFrames:1 Rows:1 Columns:1 DataPointRows:1 DataPointColumns:1",
    "REGISTRATION": _CONTENT_ID, "FIDUCIAL": _CONTENT_ID, "VALUE MAP": _CONTENT_ID,
    "MEASUREMENT": _CONTENT_ID, "SURFACE": _CONTENT_ID, "TRACT": _CONTENT_ID,
    "HANGING PROTOCOL": "HangingProtocolCreator:1 HangingProtocolCreationDateTime:1 "
                        "HangingProtocolDefinitionSequence:1 NumberOfPriorsReferenced:1 "
                        "HangingProtocolUserIdentificationCodeSequence:2",
    "ENCAP DOC": "ContentDate:2 ContentTime:2 InstanceNumber:1 DocumentTitle:2 "
                 "HL7InstanceIdentifier:3 ConceptNameCodeSequence:2 "
                 "MIMETypeOfEncapsulatedDocument:1",
    "PALETTE": "ContentLabel:1 ContentDescription:2",
    "IMPLANT": "Manufacturer:1 ImplantName:1 ImplantSize:3 ImplantPartNumber:1",
    "IMPLANT ASSY": "ImplantAssemblyTemplateName:1 Manufacturer:1 ProcedureTypeCodeSequence:1",
    "IMPLANT GROUP": "ImplantTemplateGroupName:1 ImplantTemplateGroupIssuer:1",
    "SURFACE SCAN": "ContentDate:1 ContentTime:1",
    "ASSESSMENT": "InstanceNumber:1 InstanceCreationDate:1 InstanceCreationTime:2",
    "RADIOTHERAPY": "InstanceNumber:1 UserContentLabel:3 UserContentLongLabel:3 "
                    "ContentDescription:2 ContentCreatorName:2",
    "STEREOMETRIC": "", "PLAN": "", "PRIVATE": "",
}
_KEYS: Final = {record_type: tuple((kw, int(t)) for kw, t in (k.split(":") for k in spec.split()))
                for record_type, spec in _KEY_SPECS.items()}
_TEXT_VRS: Final = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH",
                              "ST", "TM", "UC", "UI", "UR", "UT"})
_CHARSET_VRS: Final = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN", "SQ"})  # PS3.5 6.1.2.3
_DATES: Final = ("Series", "Content", "Acquisition", "Study", "InstanceCreation")
_FIXED: Final = {"Modality": b"OT", "CompletionFlag": b"PARTIAL",
                 "VerificationFlag": b"UNVERIFIED"}
_STORAGE: Final = "1.2.840.10008.5.1.4.1.1."
_MIME: Final = {f"{_STORAGE}104.{n}": mime for n, mime in enumerate(
    [b"application/pdf", b"text/XML", b"model/stl", b"model/obj", b"model/mtl"], start=1)}
_BY_PREFIX: Final = ((f"{_STORAGE}104.", "ENCAP DOC"), (f"{_STORAGE}88.", "SR DOCUMENT"),
                     (f"{_STORAGE}9.", "WAVEFORM"), (f"{_STORAGE}11.", "PRESENTATION"))


def _element(tag: int, vr: str, value: bytes) -> bytes:
    """Encode one element in Explicit VR Little Endian (PS3.5 7.1.2), padded to even length."""
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB", "UN") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in EXPLICIT_VR_LENGTH_32:
        return head + struct.pack("<HI", 0, len(value)) + value
    return head + struct.pack("<H", len(value)) + value


@functools.cache
def _tag(keyword: str) -> tuple[int, str]:
    return int(tag_for_keyword(keyword) or 0), str(dictionary_VR(keyword))


def _pydicom_element(header: Dataset, tag: int, vr: str, value: object) -> bytes | None:
    """Let pydicom encode a (decoded) value in our syntax with the instance's charset.

    None if it cannot: a key with a malformed value counts as missing, rather than failing a
    whole download over one directory key.
    """
    try:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        charset = header.get("SpecificCharacterSet") or "ISO_IR 6"
        write_data_element(fp, DataElement(tag, vr, value), convert_encodings(charset))
        return bytes(fp.getvalue())
    except Exception:  # pydicom raises many types on malformed values
        return None


def _value(header: Dataset, keyword: str) -> bytes:
    """A text element's value as the instance encoded it (b"" when missing).

    Text is the same bytes in every transfer syntax; the raw bytes keep the instance's charset.
    """
    tag, vr = _tag(keyword)
    elem = header.get_item(tag)
    if elem is None:
        return b""
    if isinstance(elem, RawDataElement):
        # A text key written with a binary VR by a broken writer is unusable, not text.
        return (elem.value or b"") if elem.VR in (None, "UN", *_TEXT_VRS) else b""
    value = elem.value  # decoded already (e.g. someone read it): encode it again
    if vr not in _CHARSET_VRS:  # the default repertoire only (PS3.5 6.1.2.3): ASCII
        values = value if isinstance(value, MultiValue) else [] if value is None else [value]
        return "\\".join(str(v) for v in values).encode("ascii", "replace")
    encoded = _pydicom_element(header, tag, vr, value)
    return encoded[12 if vr in EXPLICIT_VR_LENGTH_32 else 8:] if encoded else b""


def _raw(header: Dataset, keyword: str) -> bytes:
    return _value(header, keyword).strip(b" \x00")


class _Branch:
    """A PATIENT, STUDY or SERIES record (or the root) and what lies below it."""

    __slots__ = ("children", "leaves", "record")

    def __init__(self, record: bytes) -> None:
        self.record = record
        self.children: dict[bytes, _Branch] = {}
        self.leaves: list[bytes] = []


class DicomDirBuilder:
    """Collect directory records instance by instance; ``build()`` returns the DICOMDIR."""

    def __init__(self, file_set_id: str = "") -> None:
        if not _FILE_SET_ID.fullmatch(file_set_id):
            raise ValueError(f"invalid File-set ID {file_set_id!r} (CS: A-Z 0-9 _ space, ≤16)")
        self._file_set_id = file_set_id
        self._uid = generate_uid(prefix=None)  # this File-set's DICOMDIR SOP Instance UID
        self._root = _Branch(b"")
        self._studies: dict[bytes, _Branch] = {}  # Study Instance UID -> STUDY, any patient
        self._instances: set[str] = set()

    def __len__(self) -> int:
        return len(self._instances)

    def add(self, header: Dataset, file_id: tuple[str, ...]) -> None:
        if not 1 <= len(file_id) <= 8 or not all(
                isinstance(c, str) and _FILE_ID_COMPONENT.fullmatch(c) for c in file_id):
            raise ValueError(f"invalid File ID {file_id!r} (PS3.10 8.2)")
        with pydicom_quietly():  # converting odd values (sequences, binary keys) may warn
            self._add(header, file_id)

    def _add(self, header: Dataset, file_id: tuple[str, ...]) -> None:
        meta = getattr(header, "file_meta", None) or _EMPTY
        sop_class = str(meta.get("MediaStorageSOPClassUID") or header.get("SOPClassUID") or "")
        sop_uid = str(meta.get("MediaStorageSOPInstanceUID") or header.get("SOPInstanceUID")
                      or "")
        syntax = str(meta.get("TransferSyntaxUID") or "")
        if not (sop_class and sop_uid and syntax):
            raise InstanceError("instance lacks its SOP Class, SOP Instance or Transfer Syntax UID")
        if sop_uid in self._instances:
            raise DuplicateInstance(f"SOP Instance UID {sop_uid} appears twice")
        # Leaf: PS3.3 F.3.2.2 Referenced File ID, SOP Class/Instance/Transfer Syntax in File.
        refs = [(0x00041500, _element(0x00041500, "CS", "\\".join(file_id).encode())),
                (0x00041510, _element(0x00041510, "UI", sop_class.encode())),
                (0x00041511, _element(0x00041511, "UI", sop_uid.encode())),
                (0x00041512, _element(0x00041512, "UI", syntax.encode()))]
        leaf_type = _leaf_type(header, sop_class)
        if leaf_type == "PRIVATE":
            refs.append((0x00041432, _element(0x00041432, "UI", sop_class.encode())))
        supplied = {"MIMETypeOfEncapsulatedDocument": _MIME.get(sop_class,
                                                                b"application/octet-stream")}

        if leaf_type in _SINGLE_LEVEL_SOP_CLASSES.values():  # PS3.3 F.4: root-level records
            self._root.leaves.append(_record(leaf_type, header, supplied, refs))
            self._instances.add(sop_uid)
            return

        # Build every record this instance needs before changing the tree, so that a failure
        # leaves the builder as it was.
        study_uid = _raw(header, "StudyInstanceUID")
        study = self._studies.get(study_uid)
        series_uid = _raw(header, "SeriesInstanceUID") or generate_uid(
            prefix=None, entropy_srcs=[study_uid.decode("ascii", "replace"), "series"]).encode()
        series = study.children.get(series_uid) if study else None
        seed = study_uid or series_uid
        patient_id = _raw(header, "PatientID") or (
            b"ZIPPROXY_" + hashlib.sha256(seed).hexdigest()[:16].upper().encode())
        supplied.update(
            PatientID=patient_id,
            StudyID=study_uid[-16:] if study_uid else b"%d" % (len(self._studies) + 1),
            SeriesInstanceUID=series_uid,
            SeriesNumber=b"%d" % ((len(study.children) if study else 0) + 1),
            InstanceNumber=b"%d" % ((len(series.leaves) if series else 0) + 1),
        )
        patient = self._root.children.get(patient_id)
        if study is None and patient is None:
            patient = _Branch(_record("PATIENT", header, supplied, []))
        if study is None:
            study = _Branch(_record("STUDY", header, supplied, []))
        if series is None:
            series = _Branch(_record("SERIES", header, supplied, []))
        leaf = _record(leaf_type, header, supplied, refs)

        if study_uid not in self._studies:
            assert patient is not None
            self._root.children.setdefault(patient_id, patient).children[study_uid] = study
            self._studies[study_uid] = study
        study.children.setdefault(series_uid, series).leaves.append(leaf)
        self._instances.add(sop_uid)

    def build(self) -> bytes:
        # 1. File Meta Information (PS3.10 7.1): preamble, "DICM", group 0002 with its length.
        meta = b"".join([
            _element(0x00020001, "OB", b"\x00\x01"),
            _element(0x00020002, "UI", MediaStorageDirectoryStorage.encode()),
            _element(0x00020003, "UI", self._uid.encode()),
            _element(0x00020010, "UI", ExplicitVRLittleEndian.encode()),
            _element(0x00020012, "UI", IMPLEMENTATION_CLASS_UID.encode()),
            _element(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME.encode()),
        ])
        head = b"".join([bytes(128), b"DICM",
                         _element(0x00020000, "UL", struct.pack("<I", len(meta))), meta,
                         _element(0x00041130, "CS", self._file_set_id.encode())])
        # 2. Lay the records out depth-first, pre-order -- each record followed by its subtree,
        #    as PS3.3 F.3.2.1 describes and pydicom writes them -- noting for each record the
        #    index of its next sibling and of its first child (-1: none).
        bodies: list[bytes] = []
        nexts: list[int] = []
        lowers: list[int] = []

        def link(record: bytes, last: int) -> int:
            """Append a record after sibling ``last`` (-1: it is the first); return its index."""
            bodies.append(record)
            nexts.append(-1)
            lowers.append(-1)
            if last >= 0:
                nexts[last] = len(bodies) - 1
            return len(bodies) - 1

        def lay_out(branch: _Branch) -> tuple[int, int]:
            """Lay out ``branch``'s children; return the indexes of the first and last one."""
            first = last = -1
            for child in branch.children.values():
                last = link(child.record, last)
                first = last if first < 0 else first
                lowers[last] = lay_out(child)[0]
            for leaf in branch.leaves:
                last = link(leaf, last)
                first = last if first < 0 else first
            return first, last

        root_first, root_last = lay_out(self._root)
        # 3. Offsets count from the first byte of the file, preamble included (PS3.3 F.3.2.1:
        #    "starting with the first byte of the File Meta Information", which PS3.10 7.1
        #    begins with the preamble; pydicom and dcmtk agree). The first record follows the
        #    five data set elements below: 0004,1200 + 0004,1202 (12 each), 0004,1212 (10) and
        #    the sequence header (12).
        position = len(head) + 12 + 12 + 10 + 12
        offsets = []
        for body in bodies:
            offsets.append(position)
            position += 8 + len(body)  # item tag + item length, then the record

        def offset(index: int) -> int:
            return offsets[index] if index >= 0 else 0

        # 4. Patch the offsets into each record, wrap it in an item (defined length).
        items = bytearray()
        for body, nxt, lower in zip(bodies, nexts, lowers, strict=True):
            record = bytearray(body)
            struct.pack_into("<I", record, _NEXT_AT, offset(nxt))
            struct.pack_into("<I", record, _LOWER_AT, offset(lower))
            items += struct.pack("<HHI", 0xFFFE, 0xE000, len(record)) + record
        # 5. The Basic Directory module (PS3.3 F.3.2.1): root first/last offsets,
        #    File-set Consistency Flag 0, the Directory Record Sequence (defined length).
        return b"".join([
            head,
            _element(0x00041200, "UL", struct.pack("<I", offset(root_first))),
            _element(0x00041202, "UL", struct.pack("<I", offset(root_last))),
            _element(0x00041212, "US", struct.pack("<H", 0)),
            _element(0x00041220, "SQ", bytes(items)),
        ])


def _leaf_type(header: Dataset, sop_class: str) -> str:
    """The leaf record type: pydicom's ``_four_level_record_type`` order, then fallbacks."""
    modality = _raw(header, "Modality")
    if modality in (b"RTINTENT", b"RTSEGANN", b"RTRAD"):
        return "RADIOTHERAPY"
    if modality == b"PLAN":
        return "PLAN"
    if sop_class in _SINGLE_LEVEL_SOP_CLASSES:
        return _SINGLE_LEVEL_SOP_CLASSES[sop_class]  # type: ignore[index]
    # The header parser stops before a large Encapsulated Document: the SOP Class tells.
    if sop_class.startswith(_BY_PREFIX[0][0]) or "EncapsulatedDocument" in header:
        return "ENCAP DOC"
    if "RTPlanLabel" in header:
        return "RT PLAN"
    if sop_class in _FOUR_LEVEL_SOP_CLASSES:
        return _FOUR_LEVEL_SOP_CLASSES[sop_class]  # type: ignore[index]
    for prefix, record_type in _BY_PREFIX:
        if sop_class.startswith(prefix):
            return record_type
    return "IMAGE" if "Rows" in header else "PRIVATE"


def _record(record_type: str, header: Dataset, supplied: dict[str, bytes],
            extra: list[tuple[int, bytes]]) -> bytes:
    """Encode a record's item value: the PS3.3 F.5 keys of its type, in tag order."""
    # PS3.3 F.3.2.2: the offsets (zero until build()), Record In-use Flag FFFFH, the type.
    elements = [(0x00041400, _element(0x00041400, "UL", bytes(4))),
                (0x00041410, _element(0x00041410, "US", b"\xff\xff")),
                (0x00041420, _element(0x00041420, "UL", bytes(4))),
                (0x00041430, _element(0x00041430, "CS", record_type.encode())), *extra]
    has_text = False
    for keyword, key_type in _KEYS[record_type]:
        tag, vr = _tag(keyword)
        encoded = _from_instance(header, keyword)
        if encoded is None and key_type == 3:
            continue
        if encoded is None:
            encoded = _element(tag, vr, _supply(keyword, vr, header, supplied)
                               if key_type == 1 else b"")
        elements.append((tag, encoded))
        has_text = has_text or vr in _CHARSET_VRS
    charset = _raw(header, "SpecificCharacterSet")
    if has_text and charset not in (b"", b"ISO_IR 6"):
        elements.append((0x00080005, _element(0x00080005, "CS", charset)))
    elements.sort(key=lambda e: e[0])
    return b"".join(encoded for _, encoded in elements)


def _from_instance(header: Dataset, keyword: str) -> bytes | None:
    """The key's element as the instance has it, or None if missing or empty."""
    tag, vr = _tag(keyword)
    if vr in _TEXT_VRS:
        value = _value(header, keyword)
        if not value.strip(b" \x00") or (len(value) > 0xFFFF
                                         and vr not in EXPLICIT_VR_LENGTH_32):
            return None
        return _element(tag, vr, value)
    # Sequences and binary values: decoded by pydicom, encoded again in our syntax.
    try:
        elem = header.get(tag)
        decoded: Any = elem.value if elem is not None else None
        if keyword == "ContentSequence" and decoded:
            # PS3.3 F.5: only the root's HAS CONCEPT MOD items, not the whole document.
            decoded = Sequence([item for item in decoded
                                if item.get("RelationshipType") == "HAS CONCEPT MOD"])
    except Exception:  # malformed: treated as missing, like in _pydicom_element
        return None
    if elem is None or elem.is_empty or (isinstance(decoded, Sequence) and not decoded):
        return None
    return _pydicom_element(header, tag, vr, decoded)


def _supply(keyword: str, vr: str, header: Dataset, supplied: dict[str, bytes]) -> bytes:
    """A value for a Type 1 key the instance lacks (see the module docstring)."""
    if keyword in supplied:
        return supplied[keyword]
    if keyword in _FIXED:
        return _FIXED[keyword]
    if vr in ("DA", "TM", "DT"):
        parts = [next((v for v in (_raw(header, p + kind) for p in _DATES) if v), default)
                 for kind, default in (("Date", b"19000101"), ("Time", b"000000"))]
        return parts[0] if vr == "DA" else parts[1] if vr == "TM" else parts[0] + parts[1]
    if vr in ("US", "UL"):
        return struct.pack("<H" if vr == "US" else "<I", 1)
    if vr in ("IS", "DS"):
        return b"1"
    return b"" if vr == "SQ" else b"UNKNOWN"
