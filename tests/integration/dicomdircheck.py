"""Read a DICOM ZIP's DICOMDIR back and compare every record with the files it references.

``check_dicomdir_matches(zip_path)`` raises ``AssertionError`` listing every problem as
``<record> <where>: <key>: expected <x>, got <y>``. It checks:

1. Every DICOM entry is referenced by exactly one leaf record; every reference exists.
2. Each leaf's Directory Record Type is the one PS3.3 F.4/F.5 gives its SOP Class
   (``dicomdirkeys.expected_record_type``, or ``expected_types`` per SOP Instance UID), and
   single-level types sit in the root directory entity, the others under PATIENT/STUDY/SERIES.
3. Leaf keys equal the file's values (Verification DateTime: the latest of the Verifying
   Observer Sequence; Content Sequence: the root's HAS CONCEPT MOD items, all and only).
4. PATIENT/STUDY/SERIES keys equal the value of the *first instance of that entity, in ZIP
   entry order, that has a non-empty value*; a Type 1 key is made up only when no instance
   has it, a Type 2 key is then empty. Any further key in those records follows the same rule.
5. Every Type 1 key is non-empty, every Type 2 key present; every 1C key present when its
   condition holds and absent when it does not (Specific Character Set: required when a key
   holds non-ASCII text; it may be present otherwise, since F.5 gives no "shall not").
6. ``dciodvfy`` reports no error in the DICOMDIR (``zipcheck.dciodvfy``).
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from dicomdirkeys import IF_PRESENT, KEYS, PS_RELATIONSHIP_IODS, SINGLE_LEVEL, expected_record_type
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from zipcheck import dciodvfy, dicom_entry_names

_STRUCTURE = frozenset({"OffsetOfTheNextDirectoryRecord", "RecordInUseFlag",
                        "OffsetOfReferencedLowerLevelDirectoryEntity", "DirectoryRecordType",
                        "PrivateRecordUID", "ReferencedFileID", "ReferencedSOPClassUIDInFile",
                        "ReferencedSOPInstanceUIDInFile", "ReferencedTransferSyntaxUIDInFile",
                        "ReferencedRelatedGeneralSOPClassUIDInFile", "SpecificCharacterSet",
                        "IconImageSequence"})
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})


@dataclass
class Node:
    record: Dataset
    children: list[Node] = field(default_factory=list)

    @property
    def type(self) -> str:
        return str(self.record.get("DirectoryRecordType", "")).strip()

    def leaves(self) -> Iterator[Node]:
        for child in self.children:
            if "ReferencedFileID" in child.record:
                yield child
            yield from child.leaves()

    def label(self) -> str:
        key = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
               "SERIES": "SeriesInstanceUID"}.get(self.type, "ReferencedFileID")
        value = self.record.get(key, "")
        return f"{self.type} {'/'.join(value) if isinstance(value, MultiValue) else value}"


def norm(value: Any) -> Any:
    """A comparable form: text stripped, numbers as floats, sequences as JSON-like lists."""
    if isinstance(value, Sequence):
        return [{k: v for k, v in item.to_json_dict().items()} for item in value]
    if isinstance(value, MultiValue | list | tuple):
        return [norm(v) for v in value]
    if isinstance(value, bytes):
        return value.rstrip(b"\x00 ")
    if isinstance(value, int | float):
        return float(value)
    text = str(value if value is not None else "").strip(" \x00")
    try:
        return float(text) if text and text.lstrip("+-").replace(".", "", 1).isdigit() else text
    except ValueError:
        return text


def is_empty(value: Any) -> bool:
    return value is None or norm(value) in ("", [], b"")


def _tree(dicomdir: Dataset) -> Node:
    by_offset = {item.seq_item_tell: item for item in dicomdir.DirectoryRecordSequence}

    def siblings(offset: int) -> list[Node]:
        out, seen = [], set()
        while offset and offset in by_offset and offset not in seen:
            seen.add(offset)
            record = by_offset[offset]
            node = Node(record)
            node.children = siblings(int(record.get(
                "OffsetOfReferencedLowerLevelDirectoryEntity", 0) or 0))
            out.append(node)
            offset = int(record.get("OffsetOfTheNextDirectoryRecord", 0) or 0)
        return out

    return Node(Dataset(), siblings(
        int(dicomdir.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity)))


def instance_value(ds: Dataset, keyword: str) -> Any:
    """The value a record key should take from instance ``ds`` (PS3.3 F.5)."""
    if keyword == "VerificationDateTime":  # F.5-25: the most recent in the observer sequence
        times = [str(i.get("VerificationDateTime", "")).strip()
                 for i in ds.get("VerifyingObserverSequence", [])]
        times = [t for t in times if t]
        return max(times) if times else ds.get("VerificationDateTime")
    if keyword == "ContentSequence":  # F.5-25/26: all, and only, the HAS CONCEPT MOD items
        return Sequence([item for item in ds.get("ContentSequence", [])
                         if item.get("RelationshipType") == "HAS CONCEPT MOD"])
    return ds.get(keyword)


def _condition(record_type: str, keyword: str, ds: Dataset) -> bool:
    """Whether 1C key ``keyword`` of a ``record_type`` record for instance ``ds`` is required."""
    if keyword == "StudyInstanceUID":
        return True  # F.5-2: required if (0004,1511) is absent, as it is in STUDY records
    if keyword == "VerificationDateTime":
        return str(ds.get("VerificationFlag", "")).strip() == "VERIFIED"
    if keyword == "ContentSequence":
        return not is_empty(instance_value(ds, keyword))
    if keyword == "ReferencedSeriesSequence":
        return str(ds.SOPClassUID) in PS_RELATIONSHIP_IODS or not is_empty(ds.get(keyword))
    if keyword == "HL7InstanceIdentifier":  # F.5-32: if an HL7 Structured Document (CDA)
        return str(ds.SOPClassUID) == "1.2.840.10008.5.1.4.1.1.104.2"
    if keyword in IF_PRESENT:
        return not is_empty(ds.get(keyword))
    raise KeyError(keyword)


@dataclass
class Checker:
    zip_path: Path
    expected_types: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    files: dict[str, Dataset] = field(default_factory=dict)  # ZIP entry order
    referenced: dict[str, int] = field(default_factory=dict)

    def fail(self, node: Node, key: str, expected: Any, got: Any) -> None:
        self.problems.append(f"{node.label()}: {key}: expected {expected!r}, got {got!r}")

    def load(self) -> Node:
        with zipfile.ZipFile(self.zip_path) as zf:
            names = zf.namelist()
            for name in dicom_entry_names(names):
                self.files[name] = pydicom.dcmread(io.BytesIO(zf.read(name)), defer_size=1024)
            raw = zf.read("DICOMDIR")
        with tempfile.TemporaryDirectory(prefix="dicomdircheck-") as tmp:
            path = Path(tmp) / "DICOMDIR"
            path.write_bytes(raw)
            errors, _ = dciodvfy(path)
        self.problems += [f"dciodvfy: {line}" for line in errors]
        return _tree(pydicom.dcmread(io.BytesIO(raw)))

    def run(self) -> None:
        root = self.load()
        for node in root.children:
            self.walk(node, [])
        for name in self.files:
            count = self.referenced.get(name, 0)
            if count != 1:
                self.problems.append(f"{name}: referenced by {count} records (want 1)")
        for name in set(self.referenced) - set(self.files):
            self.problems.append(f"a record references {name!r}, which is not in the ZIP")
        if self.problems:
            raise AssertionError(f"{self.zip_path}: {len(self.problems)} DICOMDIR problems:\n"
                                 + "\n".join(self.problems[:80]))

    def walk(self, node: Node, ancestors: list[Node]) -> None:
        if "ReferencedFileID" in node.record:
            self.leaf(node, ancestors)
        elif node.type in ("PATIENT", "STUDY", "SERIES"):
            self.entity(node)
        for child in node.children:
            self.walk(child, [*ancestors, node])

    def _instances(self, node: Node) -> list[Dataset]:
        names = {"/".join(n.record.ReferencedFileID) if isinstance(
            n.record.ReferencedFileID, MultiValue) else str(n.record.ReferencedFileID)
            for n in node.leaves()}
        return [ds for name, ds in self.files.items() if name in names]  # ZIP order

    def entity(self, node: Node) -> None:
        """Rule 4: each key from the first instance (ZIP order) of the entity that has it."""
        instances = self._instances(node)
        keys = dict(KEYS[node.type])
        keys.update({e.keyword: "3" for e in node.record if e.keyword not in _STRUCTURE
                     and e.keyword not in keys})
        for keyword, key_type in keys.items():
            got = node.record.get(keyword)
            found = [instance_value(ds, keyword) for ds in instances]
            found = [v for v in found if not is_empty(v)]
            if keyword not in node.record and key_type != "3":
                self.fail(node, keyword, f"present (Type {key_type})", "absent")
            elif found and norm(got) != norm(found[0]):
                self.fail(node, keyword, found[0], got)
            elif not found and key_type in ("1", "1C") and is_empty(got):
                self.fail(node, keyword, "a made-up value (no instance has one)", got)
            elif not found and key_type in ("2", "3") and not is_empty(got):
                self.fail(node, keyword, "empty (no instance has a value)", got)
        self.charset(node, instances[:1])

    def leaf(self, node: Node, ancestors: list[Node]) -> None:
        value = node.record.ReferencedFileID
        name = "/".join(value) if isinstance(value, MultiValue) else str(value)
        self.referenced[name] = self.referenced.get(name, 0) + 1
        ds = self.files.get(name)
        if ds is None:
            return
        sop_uid, sop_class = str(ds.SOPInstanceUID), str(ds.SOPClassUID)
        want = self.expected_types.get(sop_uid) or expected_record_type(
            sop_class, str(ds.get("Modality", "")).strip())
        if node.type != want:
            self.fail(node, "DirectoryRecordType", want, node.type)
        types = [a.type for a in ancestors]
        want_above = [] if want in SINGLE_LEVEL else ["PATIENT", "STUDY", "SERIES"]
        if types != want_above:
            self.fail(node, "place in the hierarchy", want_above, types)
        for key, expect in (("ReferencedSOPInstanceUIDInFile", sop_uid),
                            ("ReferencedSOPClassUIDInFile", sop_class),
                            ("ReferencedTransferSyntaxUIDInFile",
                             str(ds.file_meta.TransferSyntaxUID))):
            if str(node.record.get(key, "")) != expect:
                self.fail(node, key, expect, node.record.get(key))
        if node.type == "PRIVATE" and str(node.record.get("PrivateRecordUID", "")) == "":
            self.fail(node, "PrivateRecordUID", "present (Type 1C)", "absent")
        self.leaf_keys(node, ds, KEYS.get(node.type, {}))

    def leaf_keys(self, node: Node, ds: Dataset, keys: dict[str, str]) -> None:
        extra = {e.keyword: "3" for e in node.record if e.keyword not in _STRUCTURE
                 and e.keyword not in keys}
        for keyword, key_type in {**keys, **extra}.items():
            got, want = node.record.get(keyword), instance_value(ds, keyword)
            required = key_type in ("1", "2") or (
                key_type == "1C" and _condition(node.type, keyword, ds))
            if key_type == "1C" and not required and keyword in node.record:
                self.fail(node, keyword, "absent (1C condition not met)", got)
            elif required and keyword not in node.record:
                self.fail(node, keyword, f"present (Type {key_type})", "absent")
            elif key_type in ("1", "1C") and required and is_empty(got):
                self.fail(node, keyword, "a value (Type 1)", got)
            elif keyword in node.record and not is_empty(want) and norm(got) != norm(want):
                self.fail(node, keyword, want, got)
            elif key_type in ("2", "3") and is_empty(want) and not is_empty(got):
                self.fail(node, keyword, "empty (the instance has no value)", got)
        self.charset(node, [ds])

    def charset(self, node: Node, instances: list[Dataset]) -> None:
        """Specific Character Set 1C: required if a key holds text beyond the default set."""
        texts = [str(e.value) for e in node.record if e.VR in _TEXT_VRS and e.value]
        if any(not t.isascii() for t in texts) and "SpecificCharacterSet" not in node.record:
            want = instances[0].get("SpecificCharacterSet") if instances else "a charset"
            self.fail(node, "SpecificCharacterSet", want, "absent")


def check_dicomdir_matches(zip_path: Path, expected_types: dict[str, str] | None = None) -> None:
    """Rules 1-6 of the module docstring; ``expected_types``: SOP Instance UID -> record type."""
    Checker(Path(zip_path), dict(expected_types or {})).run()
