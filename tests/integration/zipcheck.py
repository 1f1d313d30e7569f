"""Validators that every DICOM ZIP produced by zipproxy must pass.

Each ``check_*`` takes the ZIP's path and raises ``AssertionError`` carrying the tool's own
output when the ZIP fails. ``check_all`` runs them all and returns :class:`DicomdirInfo` for
further asserts; ``expected_instances_match`` compares entries with the uploaded originals.

Readers covered: Python's zipfile (central directory, CRCs), Info-ZIP ``unzip -t``, 7-Zip
``7zz t``, libarchive ``bsdtar`` reading from a pipe (front to back, no central directory),
Java's ``ZipInputStream`` (front to back; refuses STORED entries with a data descriptor), and
for the DICOM side dcmtk ``dcmdump``, dicom3tools ``dciodvfy`` and ``pydicom.fileset``.
"""

from __future__ import annotations

import atexit
import collections
import functools
import hashlib
import io
import re
import shutil
import subprocess
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from dicomdirkeys import SINGLE_LEVEL
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian

from zipproxy.demo.samples import StudyInfo

__all__ = [
    "NON_DICOM_NAMES",
    "DicomdirInfo",
    "DicomdirRecord",
    "check_7zz",
    "check_all",
    "check_bsdtar_pipe",
    "check_dicomdir",
    "check_java_zipinputstream",
    "check_python_zipfile",
    "check_unzip",
    "dciodvfy",
    "dicom_entry_names",
    "expected_instances_match",
    "file_id_problem",
]

HERE = Path(__file__).resolve().parent
JAVA_SOURCE = HERE / "ZipCheck.java"

#: Root entries that are allowed besides the File-set (PS3.12 V: unreferenced files allowed).
NON_DICOM_NAMES = frozenset({"README.TXT", "MANIFEST.CSV"})
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_COMPONENT = re.compile(r"[A-Z0-9_]{1,8}")
_TIMEOUT = 600

#: Type 1 keys of directory records that we check ourselves (PS3.3 F.5; notes/dicom-zip.md).
TYPE1_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientID",),
    "STUDY": ("StudyDate", "StudyTime", "StudyID", "StudyInstanceUID"),
    "SERIES": ("Modality", "SeriesInstanceUID", "SeriesNumber"),
    "IMAGE": ("InstanceNumber",),
    "SR DOCUMENT": (
        "InstanceNumber",
        "CompletionFlag",
        "VerificationFlag",
        "ContentDate",
        "ContentTime",
        "ConceptNameCodeSequence",
    ),
    "KEY OBJECT DOC": ("InstanceNumber", "ContentDate", "ContentTime", "ConceptNameCodeSequence"),
    "ENCAP DOC": ("InstanceNumber", "MIMETypeOfEncapsulatedDocument"),
}


def _fail(message: str, output: str = "") -> None:
    if output:
        message = f"{message}\n--- tool output ---\n{output.strip()[-6000:]}"
    raise AssertionError(message)


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        cmd,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=_TIMEOUT,
        check=False,
        **kwargs,
    )


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"$ {' '.join(map(str, proc.args))}\n(exit {proc.returncode})\n{proc.stdout}{proc.stderr}"
    )


def _open_zip(path: Path) -> zipfile.ZipFile:
    """zipfile.ZipFile, with an unreadable ZIP turned into an AssertionError."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise AssertionError(f"{path}: Python zipfile: {type(exc).__name__}: {exc}") from exc


def _is_dir_entry(name: str) -> bool:
    return name.endswith("/")


def dicom_entry_names(names: Iterable[str]) -> list[str]:
    """Entry names that should be DICOM instances (not DICOMDIR, README.TXT, MANIFEST.CSV, dirs)."""
    return [
        n for n in names if not _is_dir_entry(n) and n != "DICOMDIR" and n not in NON_DICOM_NAMES
    ]


def file_id_problem(name: str) -> str | None:
    """Why ``name`` is not a PS3.10 File ID (None when it is one)."""
    components = name.rstrip("/").split("/")
    if len(components) > 8:
        return f"{len(components)} components (at most 8)"
    for component in components:
        if not _COMPONENT.fullmatch(component):
            return f"component {component!r} is not 1-8 characters of A-Z 0-9 _"
    return None


# -- ZIP readers ----------------------------------------------------------------------------


def check_python_zipfile(path: Path) -> list[zipfile.ZipInfo]:
    """Central directory readable, names unique and safe, every CRC right (``testzip``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [info.filename for info in infos]
            duplicates = [n for n, c in collections.Counter(names).items() if c > 1]
            if duplicates:
                _fail(f"{path}: duplicate entry names {duplicates!r}")
            for name in names:
                if name.startswith("/") or "\\" in name or ".." in name.split("/") or not name:
                    _fail(f"{path}: unsafe entry name {name!r}")
            bad = zf.testzip()
            if bad is not None:
                _fail(f"{path}: zipfile.testzip: bad CRC or header in {bad!r}")
            for info in infos:
                if info.flag_bits & 0x1:
                    _fail(f"{path}: {info.filename!r} is encrypted")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    _fail(f"{path}: {info.filename!r} uses compression {info.compress_type}")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        _fail(f"{path}: Python zipfile: {type(exc).__name__}: {exc}")
    return infos


def check_unzip(path: Path) -> str:
    """Info-ZIP ``unzip -t``: exit 0 and "No errors detected"."""
    proc = _run(["unzip", "-t", str(path)])
    out = _output(proc)
    if proc.returncode != 0 or "No errors detected" not in proc.stdout:
        _fail(f"{path}: unzip -t failed", out)
    return out


def check_7zz(path: Path) -> str:
    """7-Zip ``7zz t``: exit 0, "Everything is Ok", no warnings."""
    proc = _run(["7zz", "t", "-bd", str(path)])
    out = _output(proc)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Everything is Ok" not in text or re.search(r"(?i)warning", text):
        _fail(f"{path}: 7zz t failed", out)
    return out


def _zip_contents(path: Path) -> Iterator[tuple[str, str, int]]:
    """(name, sha256, size) of every file entry, read through zipfile."""
    with _open_zip(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            digest = hashlib.sha256()
            with zf.open(info) as fp:
                while chunk := fp.read(1 << 20):
                    digest.update(chunk)
            yield info.filename, digest.hexdigest(), info.file_size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_bsdtar_pipe(path: Path) -> None:
    """libarchive reading the ZIP from a pipe (``cat FILE | bsdtar -xf - -C DIR``), so strictly
    front to back; the extracted files must equal what zipfile reads via the central directory."""
    with tempfile.TemporaryDirectory(prefix="zipcheck-bsdtar-") as tmp:
        with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as cat:
            proc = _run(["bsdtar", "-xf", "-", "-C", tmp], stdin=cat.stdout)
            assert cat.stdout is not None
            cat.stdout.close()
        out = _output(proc)
        if proc.returncode != 0 or proc.stderr.strip():
            _fail(f"{path}: bsdtar -xf - (from a pipe) failed", out)
        root = Path(tmp)
        got = {
            p.relative_to(root).as_posix(): (_sha256(p), p.stat().st_size)
            for p in root.rglob("*")
            if p.is_file()
        }
        want = {name: (digest, size) for name, digest, size in _zip_contents(path)}
        if got != want:
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            differ = sorted(n for n in set(got) & set(want) if got[n] != want[n])
            _fail(
                f"{path}: bsdtar (pipe) extracted other files than zipfile reads: "
                f"missing={missing[:20]} extra={extra[:20]} differ={differ[:20]}",
                out,
            )


@functools.cache
def _java_classes() -> Path:
    """Compile ZipCheck.java once per process (a source launch costs ~0.6 s per call)."""
    out = Path(tempfile.mkdtemp(prefix="zipcheck-java-"))
    atexit.register(shutil.rmtree, out, True)
    proc = _run(["javac", "-d", str(out), str(JAVA_SOURCE)])
    if proc.returncode != 0:
        _fail("javac ZipCheck.java failed", _output(proc))
    return out


def check_java_zipinputstream(path: Path) -> list[tuple[str, int, int]]:
    """Java ``ZipInputStream`` reads every entry front to back; names, sizes and CRCs (in order)
    must equal zipfile's central directory. Returns ``[(name, size, crc)]``."""
    if shutil.which("javac"):
        cmd = ["java", "-cp", str(_java_classes()), "ZipCheck", str(path)]
    else:  # single-file source launch
        cmd = ["java", str(JAVA_SOURCE), str(path)]
    proc = _run(cmd)
    out = _output(proc)
    if proc.returncode != 0 or proc.stderr.strip():
        _fail(f"{path}: Java ZipInputStream refused the ZIP", out)
    lines = proc.stdout.splitlines()
    if not lines or not lines[-1].startswith("entries\t"):
        _fail(f"{path}: ZipCheck.java gave no entry count", out)
    got: list[tuple[str, int, int]] = []
    for line in lines[:-1]:
        name, size, crc = line.rsplit("\t", 2)
        got.append((name, int(size), int(crc, 16)))
    with _open_zip(path) as zf:
        want = [(i.filename, i.file_size, i.CRC) for i in zf.infolist()]
    if got != want:
        _fail(
            f"{path}: Java ZipInputStream saw other entries than the central directory lists:\n"
            f"java:    {got[:10]}\nzipfile: {want[:10]}",
            out,
        )
    return got


# -- DICOM File-set --------------------------------------------------------------------------


@dataclass(frozen=True)
class DicomdirRecord:
    """One leaf record of the DICOMDIR with its place in the hierarchy."""

    record_type: str
    file_id: str  # the ZIP entry name, "A/B/C"
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    patient: Dataset
    study: Dataset
    series: Dataset
    record: Dataset

    @property
    def patient_id(self) -> str:
        return str(self.patient.get("PatientID", ""))

    @property
    def study_uid(self) -> str:
        return str(self.study.get("StudyInstanceUID", ""))

    @property
    def series_uid(self) -> str:
        return str(self.series.get("SeriesInstanceUID", ""))


@dataclass
class DicomdirInfo:
    """What :func:`check_dicomdir` found. ``fileset`` points into the extraction folder, which
    is gone unless ``extract_to`` was given."""

    names: list[str]
    dicomdir: Dataset
    fileset: FileSet
    records: list[DicomdirRecord]
    dciodvfy: str
    dcmdump: str
    extracted: Path | None = None
    tool_output: dict[str, str] = field(default_factory=dict)

    def by_sop_uid(self) -> dict[str, DicomdirRecord]:
        return {r.sop_instance_uid: r for r in self.records}

    def by_type(self, record_type: str) -> list[DicomdirRecord]:
        return [r for r in self.records if r.record_type == record_type]

    @property
    def patients(self) -> list[Dataset]:
        return _records_of_type(self.dicomdir, "PATIENT")

    @property
    def studies(self) -> list[Dataset]:
        return _records_of_type(self.dicomdir, "STUDY")

    @property
    def series(self) -> list[Dataset]:
        return _records_of_type(self.dicomdir, "SERIES")


def _records_of_type(dicomdir: Dataset, record_type: str) -> list[Dataset]:
    return [
        r
        for r in dicomdir.DirectoryRecordSequence
        if str(r.get("DirectoryRecordType", "")).strip() == record_type
    ]


def _release_stage(fileset: FileSet) -> None:
    """Remove the FileSet's staging directory now (it is only used to add instances)."""
    stage = getattr(fileset, "_stage", {}).get("t")
    if stage is not None:
        stage.cleanup()


def _file_id_of(record: Dataset) -> str:
    """ReferencedFileID as a ZIP entry name ("A/B/C"); "" when absent."""
    value = record.get("ReferencedFileID")
    if value is None or value == "":
        return ""
    parts = [value] if isinstance(value, str) else list(value)
    return "/".join(str(p) for p in parts)


def _missing_keys(record: Dataset, keys: Iterable[str]) -> list[str]:
    missing = []
    for key in keys:
        value = record.get(key)
        if value is None or value == "" or (isinstance(value, list) and not value):
            missing.append(key)
    return missing


def check_dicomdir(
    path: Path, *, require_readme: bool = True, extract_to: Path | None = None
) -> DicomdirInfo:
    """The ZIP is one PS3.12 Annex V File-set.

    Exactly one ``DICOMDIR`` at the root; every other entry except root ``README.TXT`` /
    ``MANIFEST.CSV`` is a File ID (<= 8 components of 1-8 ``A-Z0-9_``); ``dcmdump`` parses the
    DICOMDIR; ``dciodvfy`` reports no ``Error`` line; ``pydicom.fileset.FileSet`` loads it without
    warnings; every DICOM entry is referenced by exactly one record and each referenced file
    exists and matches its record (SOP class/instance, transfer syntax, study/series UIDs);
    Type 1 keys of PATIENT/STUDY/SERIES/IMAGE (and SR/KO/ENCAP DOC) records are not empty;
    patient IDs and study/series UIDs are unique among their records.
    """
    with _open_zip(path) as zf:
        names = zf.namelist()
        if names.count("DICOMDIR") != 1:
            _fail(f"{path}: {names.count('DICOMDIR')} root DICOMDIR entries (want 1)")
        nested = [
            n for n in names if n != "DICOMDIR" and n.upper().rsplit("/", 1)[-1] == "DICOMDIR"
        ]
        if nested:
            _fail(f"{path}: DICOMDIR entries outside the root: {nested!r}")
        if require_readme and "README.TXT" not in names:
            _fail(f"{path}: no README.TXT entry")
        for name in names:
            if name in NON_DICOM_NAMES or name == "DICOMDIR":
                continue
            problem = file_id_problem(name)
            if problem:
                _fail(f"{path}: entry {name!r} is not a PS3.10 File ID: {problem}")
        tmp_ctx = (
            tempfile.TemporaryDirectory(prefix="zipcheck-dicomdir-") if extract_to is None else None
        )
        root = Path(tmp_ctx.name) if tmp_ctx is not None else Path(extract_to)  # type: ignore[arg-type]
        try:
            root.mkdir(parents=True, exist_ok=True)
            zf.extractall(root)
            return _check_extracted(path, root, names, keep=extract_to is not None)
        finally:
            if tmp_ctx is not None:
                tmp_ctx.cleanup()


#: Directory Record Types of PS3.3 F.5 (F.5.40, F.5.43-F.5.45) newer than Debian 12's dicom3tools
#: (1.00~20220618), whose dciodvfy calls them "Unrecognized enumerated value".
_NEWER_RECORD_TYPES = ("PLAN", "SURFACE SCAN", "TRACT", "ASSESSMENT")
_UNKNOWN_RECORD_TYPE = re.compile(
    r"Error - Unrecognized enumerated value <(.*)> for value 1 of attribute "
    r"<Directory Record Type>")


def dciodvfy(dicom_path: Path) -> tuple[list[str], str]:
    """Run dicom3tools ``dciodvfy`` on one file: its ``Error`` lines and its whole output.

    A standard record type that this dciodvfy build does not know yet is not an error.
    """
    proc = _run(["dciodvfy", str(dicom_path)])
    errors = []
    for line in (proc.stdout + proc.stderr).splitlines():
        unknown = _UNKNOWN_RECORD_TYPE.match(line)
        if line.startswith("Error") and not (unknown and unknown[1] in _NEWER_RECORD_TYPES):
            errors.append(line)
    return errors, _output(proc)


def _check_extracted(path: Path, root: Path, names: list[str], *, keep: bool) -> DicomdirInfo:
    dicomdir_path = root / "DICOMDIR"
    dump = _run(["dcmdump", str(dicomdir_path)])
    dump_out = _output(dump)
    if dump.returncode != 0 or re.search(r"(?m)^E: ", dump.stderr + dump.stdout):
        _fail(f"{path}: dcmdump cannot parse the DICOMDIR", dump_out)
    errors, vfy_out = dciodvfy(dicomdir_path)
    if errors:
        _fail(f"{path}: dciodvfy reports errors in the DICOMDIR:\n" + "\n".join(errors), vfy_out)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(dicomdir_path)
            fileset = FileSet(ds)
        except Exception as exc:
            _fail(f"{path}: pydicom cannot load the DICOMDIR as a FileSet: {exc!r}")
    # Every FileSet owns a staging TemporaryDirectory that warns (ResourceWarning, an error
    # under filterwarnings=error) when garbage-collected; a loaded FileSet never stages.
    _release_stage(fileset)
    problems = [
        f"pydicom warned loading the DICOMDIR: {w.message}"
        for w in caught
        if "pydicom" in w.filename
    ]
    meta = ds.file_meta
    if meta.get("MediaStorageSOPClassUID") != MEDIA_STORAGE_DIRECTORY:
        _fail(f"{path}: DICOMDIR Media Storage SOP Class is {meta.get('MediaStorageSOPClassUID')}")
    if meta.get("TransferSyntaxUID") != ExplicitVRLittleEndian:
        _fail(f"{path}: DICOMDIR transfer syntax is {meta.get('TransferSyntaxUID')}")

    records: list[DicomdirRecord] = []
    for instance in fileset:
        leaf = instance.node
        ancestors = {node.record_type: node._record for node in leaf.ancestors}
        rec = leaf._record
        file_id = _file_id_of(rec)
        patient = ancestors.get("PATIENT", Dataset())
        study = ancestors.get("STUDY", Dataset())
        series = ancestors.get("SERIES", Dataset())
        records.append(
            DicomdirRecord(
                record_type=leaf.record_type,
                file_id=file_id,
                sop_class_uid=str(rec.get("ReferencedSOPClassUIDInFile", "")),
                sop_instance_uid=str(rec.get("ReferencedSOPInstanceUIDInFile", "")),
                transfer_syntax_uid=str(rec.get("ReferencedTransferSyntaxUIDInFile", "")),
                patient=patient,
                study=study,
                series=series,
                record=rec,
            )
        )
        # Single-level SOP Classes are records of the root directory entity (PS3.3 F.4).
        root_level = leaf.record_type in SINGLE_LEVEL
        for level, dataset in (("PATIENT", patient), ("STUDY", study), ("SERIES", series)):
            if root_level:
                if "DirectoryRecordType" in dataset:
                    problems.append(f"{file_id}: a {level} record above the root-level "
                                    f"{leaf.record_type}")
                continue
            if "DirectoryRecordType" not in dataset:
                problems.append(f"{file_id}: no {level} record above the {leaf.record_type}")
                continue
            missing = _missing_keys(dataset, TYPE1_KEYS[level])
            if missing:
                problems.append(f"{file_id}: {level} record lacks Type 1 {missing}")
        missing = _missing_keys(rec, TYPE1_KEYS.get(leaf.record_type, ()))
        if missing:
            problems.append(f"{file_id}: {leaf.record_type} record lacks Type 1 {missing}")
        file_path = root.joinpath(*file_id.split("/")) if file_id else root / "?"
        if not file_id or not file_path.is_file():
            problems.append(f"{leaf.record_type} record references missing file {file_id!r}")
            continue
        try:
            inst = pydicom.dcmread(file_path, stop_before_pixels=True)
        except Exception as exc:
            problems.append(f"{file_id}: not a DICOM Part-10 file: {exc!r}")
            continue
        checks = [
            ("SOPInstanceUID", inst.get("SOPInstanceUID"), records[-1].sop_instance_uid),
            ("SOPClassUID", inst.get("SOPClassUID"), records[-1].sop_class_uid),
            (
                "TransferSyntaxUID",
                inst.file_meta.get("TransferSyntaxUID"),
                records[-1].transfer_syntax_uid,
            ),
        ]
        if not root_level:
            checks += [
                ("StudyInstanceUID", inst.get("StudyInstanceUID"), records[-1].study_uid),
                ("SeriesInstanceUID", inst.get("SeriesInstanceUID"), records[-1].series_uid),
            ]
        for key, in_file, in_record in checks:
            if str(in_file or "") != in_record:
                problems.append(f"{file_id}: {key} {in_file!r} in file, {in_record!r} in DICOMDIR")

    # From the raw records too: pydicom drops records whose file is missing from the FileSet.
    referenced = collections.Counter(
        _file_id_of(r) for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r
    )
    for file_id in referenced:
        if not root.joinpath(*file_id.split("/")).is_file():
            problems.append(f"a record references missing file {file_id!r}")
    twice = sorted(n for n, c in referenced.items() if c > 1)
    if twice:
        problems.append(f"entries referenced more than once: {twice[:20]}")
    entries = set(dicom_entry_names(names))
    unreferenced = sorted(entries - set(referenced))
    if unreferenced:
        problems.append(f"DICOM entries not referenced by the DICOMDIR: {unreferenced[:20]}")
    for level, key in (
        ("PATIENT", "PatientID"),
        ("STUDY", "StudyInstanceUID"),
        ("SERIES", "SeriesInstanceUID"),
    ):
        values = [str(r.get(key, "")) for r in _records_of_type(ds, level)]
        dupes = sorted(v for v, c in collections.Counter(values).items() if c > 1)
        if dupes:
            problems.append(f"{level} records share {key}: {dupes[:10]}")
    if problems:
        _fail(f"{path}: DICOMDIR problems:\n" + "\n".join(problems[:50]))
    return DicomdirInfo(
        names=names,
        dicomdir=ds,
        fileset=fileset,
        records=records,
        dciodvfy=vfy_out,
        dcmdump=dump_out,
        extracted=root if keep else None,
    )


def check_all(
    path: Path, *, require_readme: bool = True, extract_to: Path | None = None
) -> DicomdirInfo:
    """Every reader above, then :func:`check_dicomdir`; returns its :class:`DicomdirInfo`."""
    path = Path(path)
    check_python_zipfile(path)
    outputs = {"unzip": check_unzip(path), "7zz": check_7zz(path)}
    check_bsdtar_pipe(path)
    check_java_zipinputstream(path)
    info = check_dicomdir(path, require_readme=require_readme, extract_to=extract_to)
    info.tool_output.update(outputs)
    return info


# -- content ---------------------------------------------------------------------------------


def _sop_uid_of(data: bytes | Path) -> str:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    ds = pydicom.dcmread(source, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(ds.SOPInstanceUID)


def _originals(expected: StudyInfo | Iterable[StudyInfo] | Iterable[Path]) -> dict[str, Path]:
    items: list[StudyInfo | Path]
    items = [expected] if isinstance(expected, StudyInfo) else list(expected)
    out: dict[str, Path] = {}
    for item in items:
        if isinstance(item, StudyInfo):
            out.update({inst.sop_uid: inst.path for inst in item.instances})
        else:
            out[_sop_uid_of(Path(item))] = Path(item)
    return out


def _same_dataset(a: Dataset, b: Dataset) -> list[str]:
    """Differences between two datasets by tag and value (VRs may differ after transcoding)."""
    diffs = []
    for elem in a:
        if elem.tag not in b:
            diffs.append(f"{elem.tag} {elem.keyword} missing")
            continue
        other = b[elem.tag]
        if elem.VR == "SQ":
            if len(elem.value) != len(other.value):
                diffs.append(
                    f"{elem.tag} {elem.keyword} items {len(elem.value)}/{len(other.value)}"
                )
                continue
            for i, (x, y) in enumerate(zip(elem.value, other.value, strict=True)):
                diffs.extend(f"{elem.keyword}[{i}].{d}" for d in _same_dataset(x, y))
        elif elem.value != other.value:
            diffs.append(f"{elem.tag} {elem.keyword} {elem.value!r:.60} != {other.value!r:.60}")
    diffs.extend(f"{e.tag} {e.keyword} added" for e in b if e.tag not in a)
    return diffs


def expected_instances_match(
    path: Path,
    expected: StudyInfo | Iterable[StudyInfo] | Iterable[Path],
    transfer_syntax_star: bool = True,
    *,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> dict[str, str]:
    """The ZIP's DICOM entries are exactly the expected instances, matched by SOP Instance UID.

    With ``transfer_syntax_star`` (``transfer-syntax=*``: Orthanc sends instances as stored)
    each entry must be byte-identical to the uploaded file. Otherwise each entry must be in
    ``transfer_syntax`` and its data set (file meta aside) equal the original's by tag and value.
    Returns ``{sop_instance_uid: entry name}``.
    """
    originals = _originals(expected)
    found: dict[str, str] = {}
    problems: list[str] = []
    with _open_zip(path) as zf:
        for name in dicom_entry_names(zf.namelist()):
            data = zf.read(name)
            try:
                sop_uid = _sop_uid_of(data)
            except Exception as exc:
                problems.append(f"{name}: not DICOM: {exc!r}")
                continue
            if sop_uid in found:
                problems.append(f"{name}: SOP Instance UID {sop_uid} also in {found[sop_uid]}")
                continue
            found[sop_uid] = name
            original = originals.get(sop_uid)
            if original is None:
                continue
            if transfer_syntax_star:
                if data != original.read_bytes():
                    problems.append(f"{name}: bytes differ from {original} ({sop_uid})")
                continue
            got = pydicom.dcmread(io.BytesIO(data))
            if got.file_meta.get("TransferSyntaxUID") != transfer_syntax:
                problems.append(
                    f"{name}: transfer syntax {got.file_meta.get('TransferSyntaxUID')}"
                    f" (want {transfer_syntax})"
                )
            diffs = _same_dataset(pydicom.dcmread(original), got)
            if diffs:
                problems.append(f"{name}: differs from {original}: {diffs[:10]}")
    missing = sorted(set(originals) - set(found))
    extra = sorted(set(found) - set(originals))
    if missing:
        problems.append(f"{len(missing)} expected instance(s) missing: {missing[:10]}")
    if extra:
        problems.append(f"{len(extra)} unexpected instance(s): {[found[u] for u in extra[:10]]}")
    if problems:
        _fail(f"{path}: entries do not match the expected instances:\n" + "\n".join(problems[:50]))
    return found
