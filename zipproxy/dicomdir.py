"""An O(N) DICOMDIR builder (Basic Directory IOD, PS3.3 F; PS3.10 8; PS3.11 D.3.3), spooled.

``pydicom.fileset.FileSet`` writes to disk and its ``add()`` is quadratic, so the records are
encoded here, with the tables of :mod:`zipproxy.records`:

* ``add()`` encodes the instance's leaf record at once (all its keys come from that instance)
  and appends it to a :class:`~zipproxy.spool.Spool`; only its offset and length stay in RAM.
* The PATIENT, STUDY and SERIES records are encoded at the end, because their keys come from
  *every* instance of the entity: each key takes the value of the first instance that has one
  (in the order the upstream sent them, which is File ID order). PS3.3 F.5 expects one value
  per entity; when a later instance disagrees, the first value stays and the disagreement is
  counted in ``conflicts`` (the log names the entity and the key, never the values).
* ``build()`` lays the tree out depth-first, pre-order (PS3.3 F.3.2.1, as pydicom and dcmtk
  write it), works out every offset from the record lengths, then streams the file: the leaf
  records are read back from the spool one by one and their next-record offsets patched in
  (:mod:`zipproxy.dirlayout`).

Keys that are Type 1 but that no instance has are supplied by the File-set creator (PS3.11
D.3.3 note, PS3.3 F.5), by the rules of ``_supply()``:

* PatientID: ``ZIPPROXY_`` + 16 hex digits of SHA-256(StudyInstanceUID) -- the same study gives
  the same made-up patient in every export. A study goes under the first PatientID its
  instances carry, so one Study Instance UID never gets two STUDY records.
* StudyDate/StudyTime (and any other Type 1 DA/TM key): the first present of the entity's
  Series, Content, Acquisition, Study and Instance Creation Date/Time, else ``19000101`` /
  ``000000``.
* StudyID: the last 16 characters of the StudyInstanceUID (SH holds 16), else the study's index.
* Modality: ``OT``. SeriesNumber: the series' 1-based index within its study. InstanceNumber:
  the instance's 1-based index within its series. SeriesInstanceUID: a 2.25 UID hashed from the
  study. MIME type of an encapsulated document: from its SOP Class (``application/pdf``, ...).
* CompletionFlag ``PARTIAL``, VerificationFlag ``UNVERIFIED``; VerificationDateTime of a
  VERIFIED document: its latest VerifyingObserverSequence item, else its Content Date and Time;
  other text ``UNKNOWN``; other numbers 1; a Type 1 sequence that is missing is written empty.
* A key whose value cannot be decoded counts as missing: one odd key does not fail a download.

Text keeps the instance's bytes and its (0008,0005) Specific Character Set, which goes into a
record when one of its values needs it (PS3.3 F.5, Type 1C). When a record's values come from
instances with different character sets, they are all re-encoded in ISO_IR 192 (UTF-8).
"""

from __future__ import annotations

import functools
import hashlib
import operator
import re
import struct
import uuid
from collections.abc import Iterator
from typing import Final

from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid

from . import __version__, records
from .dicomscan import Scan
from .dirlayout import Entity, Layout, Value
from .errors import DuplicateInstance, InstanceError
from .records import KEYS, element, stripped, tag_of, text, vr_of
from .spool import Spool

# Implementation Class UID (PS3.7 D.3.3.2): a UUID-derived UID (PS3.5 B.2) under 2.25, from a
# name-based UUID -- constant across releases and needing no registered root.
IMPLEMENTATION_CLASS_UID: Final = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_DNS, "zipproxy").int)
IMPLEMENTATION_VERSION_NAME: Final = f"ZIPPROXY_{__version__}"[:16]

# PS3.10 8.2, 8.5: 1 to 8 components of 1 to 8 characters from A-Z 0-9 _, joined by "\".
_FILE_ID: Final = re.compile(r"[A-Z0-9_]{1,8}(?:\\[A-Z0-9_]{1,8}){0,7}")
_FILE_SET_ID: Final = re.compile(r"[A-Z0-9_ ]{0,16}")  # CS, PS3.5 6.2
_FIXED: Final = {"Modality": b"OT", "CompletionFlag": b"PARTIAL",
                 "VerificationFlag": b"UNVERIFIED"}
_STORAGE: Final = "1.2.840.10008.5.1.4.1.1."
_MIME: Final = {f"{_STORAGE}104.{n}": mime for n, mime in enumerate(
    [b"application/pdf", b"text/XML", b"model/stl", b"model/obj", b"model/mtl"], start=1)}
# What a STUDY entity collects: its own keys, its patient's, and the dates to fall back on.
_STUDY_KEYWORDS: Final = tuple(dict.fromkeys(
    [kw for kind in ("PATIENT", "STUDY") for kw, _ in KEYS[kind]]
    + [p + k for p in records.DATE_SOURCES for k in ("Date", "Time")]))
_SERIES_KEYWORDS: Final = tuple(kw for kw, _ in KEYS["SERIES"])
CONFLICTS_KEPT: Final = 100  # conflicts listed for the log; the count goes on


# What the STUDY and SERIES records are made of, the character set included.
_ENTITY_TAGS: Final = tuple(dict.fromkeys(map(tag_of, ("SpecificCharacterSet",
                                                      *_STUDY_KEYWORDS, *_SERIES_KEYWORDS))))
_STUDY_UID: Final = tag_of("StudyInstanceUID")
_SERIES_UID: Final = tag_of("SeriesInstanceUID")

class DicomDirBuilder:
    """Collect directory records instance by instance; ``build()`` streams the DICOMDIR."""

    def __init__(self, file_set_id: str = "", spool_dir: str | None = None) -> None:
        if not _FILE_SET_ID.fullmatch(file_set_id):
            raise ValueError(f"invalid File-set ID {file_set_id!r} (CS: A-Z 0-9 _ space, ≤16)")
        self._file_set_id = file_set_id
        self._uid = generate_uid(prefix=None)  # this File-set's DICOMDIR SOP Instance UID
        self._spool = Spool(spool_dir)
        self._studies: dict[bytes, Entity] = {}
        self._root = Entity(b"", 0)  # root-level records (PS3.3 F.4), in its offsets/sizes
        # The SOP Instance UIDs so far, as their 64-bit hashes: about 60 bytes an instance
        # instead of 220 for the strings. Two different UIDs taken for one would need equal
        # SipHash values: about 3 in 10^10 for 100,000 instances.
        self._instances: set[int] = set()
        self._last_series: Entity | None = None  # the series of the last instance, by UIDs
        self._last_uids: tuple[bytes, bytes] = (b"", b"")
        self._conflicted: set[tuple[int, str]] = set()  # (id of the entity, keyword)
        self.conflict_notes: list[str] = []  # "STUDY 1.2.3 StudyDescription", at most 100

    def __len__(self) -> int:
        return len(self._instances)

    def close(self) -> None:
        self._spool.close()

    def add(self, scan: Scan, file_id: tuple[str, ...]) -> None:
        try:
            referenced = "\\".join(file_id)
        except TypeError:
            referenced = ""
        if not _FILE_ID.fullmatch(referenced):
            raise ValueError(f"invalid File ID {file_id!r} (PS3.10 8.2)")
        # 1. The leaf's references (PS3.3 F.3.2.2): File ID, SOP Class/Instance, Syntax.
        sop_class, sop_uid, syntax = identity(scan)
        instance = hash(sop_uid)
        if instance in self._instances:
            raise DuplicateInstance(f"SOP Instance UID {sop_uid} appears twice")
        refs = [(0x00041500, element(0x00041500, "CS", referenced.encode())),
                (0x00041510, _uid_element(0x00041510, sop_class)),
                (0x00041511, element(0x00041511, "UI", sop_uid.encode())),
                (0x00041512, _uid_element(0x00041512, syntax))]
        leaf_type = _known_record_type(sop_class) or records.record_type(
            sop_class, scan.seen, stripped(scan, "Modality"))
        if leaf_type == "PRIVATE":
            refs.append((0x00041432, _uid_element(0x00041432, sop_class)))
        # 2. Its entities: a root-level record has none (PS3.3 F.4).
        parent = self._root if records.is_root_level(leaf_type) else self._entities(scan)
        # 3. The leaf record, spooled.
        leaf = _leaf_record(leaf_type, scan, _Supplied(len(parent.offsets) + 1, sop_class), refs)
        parent.offsets.append(self._spool.append(leaf))
        parent.sizes.append(len(leaf))
        self._instances.add(instance)

    def _entities(self, scan: Scan) -> Entity:
        """The instance's study and series, their values merged with the instance's."""
        elements = scan.elements
        study_uid = records.stripped_at(elements, _STUDY_UID)
        series_uid = records.stripped_at(elements, _SERIES_UID)
        series = self._last_series
        if series is None or (study_uid, series_uid) != self._last_uids:
            series = self._series(study_uid, series_uid)
            self._last_series, self._last_uids = series, (study_uid, series_uid)
        # Most instances repeat the keys of the last instance of their series exactly: one
        # comparison settles both entities (merging the same values again changes nothing).
        last = tuple(map(elements.get, _ENTITY_TAGS))
        if last != series.last:
            series.last = last
            charset = records.charset(scan)
            assert series.parent is not None
            self._merge("STUDY", series.parent, scan, _STUDY_KEYWORDS, charset)
            self._merge("SERIES", series, scan, _SERIES_KEYWORDS, charset)
        return series

    def _series(self, study_uid: bytes, series_uid: bytes) -> Entity:
        study = self._studies.get(study_uid)
        if study is None:
            study = self._studies[study_uid] = Entity(study_uid, len(self._studies) + 1)
        series_uid = series_uid or generate_uid(
            prefix=None, entropy_srcs=[study_uid.decode("ascii", "replace"), "series"]).encode()
        series = study.children.get(series_uid)
        if series is None:
            series = study.children[series_uid] = Entity(series_uid, len(study.children) + 1)
            series.parent = study
        return series

    def _merge(self, level: str, entity: Entity, scan: Scan, keywords: tuple[str, ...],
               charset: bytes) -> None:
        values = entity.values
        for keyword in keywords:
            value = text(scan, keyword)
            if not value:
                continue
            held = values.get(keyword)
            if held is not None and held[0] == value and held[1] == charset:
                continue  # the usual case: the same value again
            if not value.strip(b" \x00"):
                continue
            if held is None:
                values[keyword] = (value, charset)
            elif held[0].strip(b" \x00") != value.strip(b" \x00") or (
                    held[1] != charset and records.is_extended([value])):
                self._conflict(level, entity, keyword)

    def _conflict(self, level: str, entity: Entity, keyword: str) -> None:
        key = (id(entity), keyword)
        if key in self._conflicted:
            return
        self._conflicted.add(key)
        if len(self.conflict_notes) < CONFLICTS_KEPT:
            self.conflict_notes.append(f"{level} {entity.uid.decode('ascii', 'replace')} "
                                       f"{keyword}")

    @property
    def conflicts(self) -> int:
        """How many (entity, key) pairs had instances that disagree."""
        return len(self._conflicted)

    def build(self) -> tuple[int, Iterator[bytes]]:
        """The DICOMDIR's size and its bytes, in pieces. Reads the spool: call it last."""
        # 1. The tree: patients (by the first PatientID of each study) → studies → series.
        patients: dict[bytes, list[Entity]] = {}
        for study in self._studies.values():
            patients.setdefault(_patient_id(study), []).append(study)
        # 2. Every record in depth-first pre-order (PS3.3 F.3.2.1): entity records encoded
        #    now, leaves as (None, series), with their sizes, next and lower links.
        layout = Layout()
        last_patient = -1
        for patient_id, studies in patients.items():
            record = _entity_record("PATIENT", _patient_values(patient_id, studies), {})
            last_patient = layout.add(record, last_patient)
            last_study = -1
            for study in studies:
                last_study = layout.add(_study_record(study), last_study, parent=last_patient)
                last_series = -1
                for series in study.children.values():
                    last_series = layout.add(_series_record(series), last_series,
                                             parent=last_study)
                    layout.add_leaves(series, parent=last_series)
        layout.add_leaves(self._root, parent=-1, after=last_patient)
        # 3. Offsets count from the first byte of the file, preamble included (PS3.3
        #    F.3.2.1: "starting with the first byte of the File Meta Information", which
        #    PS3.10 7.1 begins with the preamble; pydicom and dcmtk agree).
        head = self._head()
        start = len(head) + 12 + 12 + 10 + 12  # 0004,1200 + 1202 + 1212 + the sequence header
        offsets = layout.offsets(start)
        first = offsets[0] if layout.records else 0  # the first record is the root's first
        last = layout.last_root_offset(offsets)
        sequence_size = offsets[-1] - start
        directory = b"".join([
            head,
            element(0x00041200, "UL", struct.pack("<I", first)),
            element(0x00041202, "UL", struct.pack("<I", last)),
            element(0x00041212, "US", struct.pack("<H", 0)),
            struct.pack("<HH2sHI", 0x0004, 0x1220, b"SQ", 0, sequence_size),
        ])
        size = len(directory) + sequence_size
        return size, layout.emit(directory, offsets, self._spool)

    def _head(self) -> bytes:
        # File Meta Information (PS3.10 7.1): preamble, "DICM", group 0002 with its length.
        meta = b"".join([
            element(0x00020001, "OB", b"\x00\x01"),
            element(0x00020002, "UI", MediaStorageDirectoryStorage.encode()),
            element(0x00020003, "UI", self._uid.encode()),
            element(0x00020010, "UI", ExplicitVRLittleEndian.encode()),
            element(0x00020012, "UI", IMPLEMENTATION_CLASS_UID.encode()),
            element(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME.encode()),
        ])
        return b"".join([bytes(128), b"DICM",
                         element(0x00020000, "UL", struct.pack("<I", len(meta))), meta,
                         element(0x00041130, "CS", self._file_set_id.encode())])


def identity(scan: Scan) -> tuple[str, str, str]:
    """SOP Class, SOP Instance and Transfer Syntax UIDs: the meta's, else the data set's."""
    meta = scan.meta
    sop_class = (meta.get(0x00020002, b"").strip(b" \x00")
                 or stripped(scan, "SOPClassUID")).decode("ascii", "replace")
    sop_uid = (meta.get(0x00020003, b"").strip(b" \x00")
               or stripped(scan, "SOPInstanceUID")).decode("ascii", "replace")
    syntax = meta.get(0x00020010, b"").strip(b" \x00").decode("ascii", "replace")
    if not (sop_class and sop_uid and syntax):
        raise InstanceError("instance lacks its SOP Class, SOP Instance or Transfer Syntax UID")
    return sop_class, sop_uid, syntax


@functools.lru_cache(maxsize=256)
def _uid_element(tag: int, uid: str) -> bytes:
    """A UID reference, encoded once per ZIP for the few SOP Classes and syntaxes it holds."""
    return element(tag, "UI", uid.encode())


@functools.lru_cache(maxsize=256)
def _known_record_type(sop_class: str) -> str | None:
    """The record type of a SOP Class that decides it alone (see records.record_type)."""
    if records.is_known_sop_class(sop_class):
        return records.record_type(sop_class)
    return None


class _Supplied:
    """What a leaf's Type 1 keys fall back on, worked out only when a key is missing."""

    __slots__ = ("index", "sop_class")

    def __init__(self, index: int, sop_class: str) -> None:
        self.index, self.sop_class = index, sop_class

    def get(self, keyword: str) -> bytes | None:
        if keyword == "InstanceNumber":
            return b"%d" % self.index
        if keyword == "MIMETypeOfEncapsulatedDocument":
            return _MIME.get(self.sop_class, b"application/octet-stream")
        return None


def _patient_id(study: Entity) -> bytes:
    value = study.values.get("PatientID")
    if value is not None:
        return value[0].strip(b" \x00")
    seed = study.uid or next(iter(study.children), b"")
    return b"ZIPPROXY_" + hashlib.sha256(seed).hexdigest()[:16].upper().encode()


def _patient_values(patient_id: bytes, studies: list[Entity]) -> dict[str, Value]:
    """A PATIENT's keys: the first of its studies' values (the studies in File ID order)."""
    values: dict[str, Value] = {}
    for study in studies:
        for keyword, _ in KEYS["PATIENT"]:
            if keyword in study.values:
                values.setdefault(keyword, study.values[keyword])
    values["PatientID"] = (patient_id, values.get("PatientID", (b"", b""))[1])
    return values


def _study_record(study: Entity) -> bytes:
    supplied = {"StudyID": study.uid[-16:] if study.uid else b"%d" % study.index}
    for kind in ("Date", "Time"):
        default = b"19000101" if kind == "Date" else b"000000"
        supplied["Study" + kind] = next(
            (study.values[p + kind][0].strip(b" \x00") for p in records.DATE_SOURCES
             if p + kind in study.values), default)
    return _entity_record("STUDY", study.values, supplied)


def _series_record(series: Entity) -> bytes:
    supplied = {"SeriesInstanceUID": series.uid, "SeriesNumber": b"%d" % series.index}
    return _entity_record("SERIES", series.values, supplied)


def _entity_record(kind: str, values: dict[str, Value], supplied: dict[str, bytes]) -> bytes:
    """A PATIENT, STUDY or SERIES record from merged values (see the module docstring)."""
    keys = KEYS[kind]
    chosen = {kw: values[kw] for kw, _ in keys if kw in values}
    texts, charset = _one_charset(chosen)
    elements: list[tuple[int, bytes]] = []
    for keyword, key_type in keys:
        tag, vr = tag_of(keyword), vr_of(keyword)
        value = texts.get(keyword)
        if value is None and key_type == 3:
            continue
        if value is None:
            value = supplied.get(keyword) or _supply(keyword, vr, {}) if key_type == 1 else b""
        elements.append((tag, element(tag, vr, value)))
    return _record(kind, elements, charset)


def _one_charset(values: dict[str, Value]) -> tuple[dict[str, bytes], bytes]:
    """The values, and the one character set they need (b"": the default repertoire)."""
    extended = {cs for value, cs in values.values() if records.is_extended([value])}
    if not extended:
        return {kw: v for kw, (v, _) in values.items()}, b""
    if len(extended) == 1:
        return {kw: v for kw, (v, _) in values.items()}, extended.pop()
    out = {}
    for keyword, (value, cs) in values.items():
        out[keyword] = records.to_utf8(value, cs)
    return out, b"ISO_IR 192"


def _leaf_record(kind: str, scan: Scan, supplied: _Supplied,
                 elements: list[tuple[int, bytes]]) -> bytes:
    """An instance's own record: the PS3.3 F.5 keys of its type, from that instance, after
    ``elements`` (its references, by tag)."""
    has_text = False
    for keyword, tag, vr, key_type in _key_specs(kind):
        if keyword == "VerificationDateTime":  # Type 1C: required if VERIFIED (PS3.3 F.5.22)
            if stripped(scan, "VerificationFlag") != b"VERIFIED":
                continue
            stamp = records.latest_verification(scan) or (
                stripped(scan, "ContentDate") + stripped(scan, "ContentTime")) or b"19000101"
            elements.append((tag, element(tag, vr, stamp)))
            continue
        encoded = records.encoded(scan, tag, vr)
        if encoded is None and key_type == 3:
            continue
        if encoded is None:
            value = (supplied.get(keyword) or _supply(keyword, vr, scan_dates(scan))
                     if key_type == 1 else b"")
            encoded = element(tag, vr, value)
        elements.append((tag, encoded))
        has_text = has_text or vr in records.CHARSET_VRS
    if not has_text or kind in records.NO_CHARSET:
        return _record(kind, elements, b"")
    charset = records.charset(scan)
    return _record(kind, elements, charset if charset not in (b"", b"ISO_IR 6") else b"")


@functools.cache
def _key_specs(kind: str) -> tuple[tuple[str, int, str, int], ...]:
    """A record type's keys (PS3.3 F.5) with their tags and VRs: keyword, tag, VR, type."""
    return tuple((kw, tag_of(kw), vr_of(kw), key_type) for kw, key_type in KEYS[kind])


def scan_dates(scan: Scan) -> dict[str, bytes]:
    return {p + k: stripped(scan, p + k) for p in records.DATE_SOURCES for k in ("Date", "Time")}


def _record(kind: str, elements: list[tuple[int, bytes]], charset: bytes) -> bytes:
    """A record's item value, its elements in tag order (PS3.5 7.1)."""
    if charset:
        elements.append((0x00080005, element(0x00080005, "CS", charset)))
    elements.sort(key=_BY_TAG)
    return b"".join([_record_head(kind), *map(_ENCODED, elements)])


_BY_TAG: Final = operator.itemgetter(0)
_ENCODED: Final = operator.itemgetter(1)


@functools.cache
def _record_head(kind: str) -> bytes:
    """PS3.3 F.3.2.2: the offsets (zero until build()), Record In-use Flag FFFFH, the type:
    the first elements of every record, (0004,1400) to (0004,1430)."""
    return b"".join([element(0x00041400, "UL", bytes(4)), element(0x00041410, "US", b"\xff\xff"),
                     element(0x00041420, "UL", bytes(4)), element(0x00041430, "CS", kind.encode())])


def _supply(keyword: str, vr: str, dates: dict[str, bytes]) -> bytes:
    """A value for a Type 1 key that no instance has (see the module docstring)."""
    if keyword in _FIXED:
        return _FIXED[keyword]
    if vr in ("DA", "TM", "DT"):
        parts = [next((dates.get(p + kind, b"") for p in records.DATE_SOURCES
                       if dates.get(p + kind)), default)
                 for kind, default in (("Date", b"19000101"), ("Time", b"000000"))]
        return parts[0] if vr == "DA" else parts[1] if vr == "TM" else parts[0] + parts[1]
    if vr in ("US", "UL"):
        return records.pack_number(vr, 1)
    if vr in ("IS", "DS"):
        return b"1"
    return b"" if vr == "SQ" else b"UNKNOWN"
