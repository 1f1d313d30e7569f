"""The ZIP validators pass a good hand-made DICOM ZIP and catch each kind of broken one."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.fileset import FileSet
from zipcheck import (
    check_7zz,
    check_all,
    check_bsdtar_pipe,
    check_dicomdir,
    check_java_zipinputstream,
    check_python_zipfile,
    check_unzip,
    expected_instances_match,
)
from zipstream import ZIP_STORED, ZipStream

from zipproxy.demo.samples import StudyInfo, make_samples

README = b"DICOM ZIP test file-set.\r\n"


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[StudyInfo]:
    return make_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def sample_files(samples: list[StudyInfo]) -> list[Path]:
    """CT x2 (Doe), MR x1 each of Müller and Yamada (UTF-8, CJK) and the XA/SR/KO/PDF of the
    mixed study."""
    ct, mr, jp, mixed, _nokeys = samples
    return [*ct.files[:2], mr.files[0], jp.files[0], *mixed.files[2:]]


def fix_content_sequences(fs: FileSet) -> None:
    """pydicom copies an SR's/KOS's whole Content Sequence into its SR DOCUMENT / KEY OBJECT DOC
    record, which dciodvfy rejects; PS3.3 F.5 wants only the HAS CONCEPT MOD items there."""
    for instance in fs:
        record = instance.node._record
        if "ContentSequence" in record:
            keep = [
                item
                for item in record.ContentSequence
                if item.get("RelationshipType") == "HAS CONCEPT MOD"
            ]
            if keep:
                record.ContentSequence = keep
            else:
                del record.ContentSequence


def write_fileset(
    files: Iterable[Path], out_dir: Path, edit: Callable[[FileSet], None] | None = None
) -> list[str]:
    """pydicom FileSet -> DICOMDIR + instances under File IDs in ``out_dir``; entry names."""
    fs = FileSet()
    for path in files:
        fs.add(path)
    fix_content_sequences(fs)
    if edit is not None:
        edit(fs)
    fs.write(out_dir)
    fs._stage["t"].cleanup()  # else a ResourceWarning when garbage-collected
    return sorted(
        p.relative_to(out_dir).as_posix()
        for p in out_dir.rglob("*")
        if p.is_file() and p.name != "DICOMDIR"
    )


def zip_dir(
    src: Path,
    names: list[str],
    out: Path,
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    rename: Callable[[str], str] = lambda n: n,
    readme: bool = True,
) -> Path:
    """DICOMDIR first, then the instances, then README.TXT."""
    with zipfile.ZipFile(out, "w", compression) as zf:
        zf.write(src / "DICOMDIR", "DICOMDIR")
        for name in names:
            zf.write(src / name, rename(name))
        if readme:
            zf.writestr("README.TXT", README)
    return out


@pytest.fixture(scope="module")
def fileset_dir(tmp_path_factory: pytest.TempPathFactory, sample_files: list[Path]) -> Path:
    out = tmp_path_factory.mktemp("fileset")
    write_fileset(sample_files, out)
    return out


@pytest.fixture(scope="module")
def entry_names(fileset_dir: Path) -> list[str]:
    return sorted(
        p.relative_to(fileset_dir).as_posix()
        for p in fileset_dir.rglob("*")
        if p.is_file() and p.name != "DICOMDIR"
    )


@pytest.fixture(scope="module")
def good_zip(
    tmp_path_factory: pytest.TempPathFactory, fileset_dir: Path, entry_names: list[str]
) -> Path:
    return zip_dir(fileset_dir, entry_names, tmp_path_factory.mktemp("good") / "good.zip")


def test_good_zip_passes_every_check(
    good_zip: Path, sample_files: list[Path], entry_names: list[str]
) -> None:
    info = check_all(good_zip)
    assert sorted(r.file_id for r in info.records) == entry_names
    assert {r.record_type for r in info.records} == {
        "IMAGE",
        "SR DOCUMENT",
        "KEY OBJECT DOC",
        "ENCAP DOC",
    }
    assert len(info.patients) == 4
    names = {p.PatientID: str(p.PatientName) for p in info.patients}
    assert names["ZP-MR-001"] == "Müller^Jürgen"
    assert names["ZP-JP-001"] == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    matched = expected_instances_match(good_zip, sample_files)
    assert len(matched) == len(sample_files)


def test_good_stored_zip_passes(tmp_path: Path, fileset_dir: Path, entry_names: list[str]) -> None:
    path = zip_dir(
        fileset_dir, entry_names, tmp_path / "stored.zip", compression=zipfile.ZIP_STORED
    )
    check_all(path)


def test_truncated_before_eocd_fails(tmp_path: Path, good_zip: Path) -> None:
    data = good_zip.read_bytes()
    eocd = data.rfind(b"PK\x05\x06")
    assert eocd > 0
    path = tmp_path / "truncated.zip"
    path.write_bytes(data[:eocd])
    for check in (check_python_zipfile, check_unzip, check_7zz):
        with pytest.raises(AssertionError):
            check(path)
    with pytest.raises(AssertionError):
        check_all(path)


def test_truncated_mid_entry_fails_front_to_back_readers(tmp_path: Path, good_zip: Path) -> None:
    data = good_zip.read_bytes()
    path = tmp_path / "cut.zip"
    path.write_bytes(data[: len(data) // 2])
    for check in (check_python_zipfile, check_unzip, check_7zz, check_bsdtar_pipe):
        with pytest.raises(AssertionError):
            check(path)
    with pytest.raises(AssertionError, match=r"ZipException|EOFException"):
        check_java_zipinputstream(path)


def stored_with_data_descriptors(fileset_dir: Path, names: list[str], out: Path) -> Path:
    """zipstream-ng always writes data descriptors, also for STORED entries."""
    zs = ZipStream(compress_type=ZIP_STORED)
    zs.add((fileset_dir / "DICOMDIR").read_bytes(), "DICOMDIR")
    for name in names:
        zs.add((fileset_dir / name).read_bytes(), name)
    zs.add(README, "README.TXT")
    with out.open("wb") as fp:
        for chunk in zs:
            fp.write(chunk)
    return out


def test_stored_entry_with_data_descriptor_fails_java(
    tmp_path: Path, fileset_dir: Path, entry_names: list[str]
) -> None:
    path = stored_with_data_descriptors(fileset_dir, entry_names, tmp_path / "dd.zip")
    with zipfile.ZipFile(path) as zf:
        first = zf.infolist()[0]
        assert first.compress_type == zipfile.ZIP_STORED
        assert first.flag_bits & 0x08  # data descriptor
    # Central-directory readers do not care ...
    check_python_zipfile(path)
    check_unzip(path)
    check_7zz(path)
    check_dicomdir(path)
    # ... Java's ZipInputStream refuses it.
    with pytest.raises(AssertionError, match="only DEFLATED entries can have EXT descriptor"):
        check_java_zipinputstream(path)
    with pytest.raises(AssertionError):
        check_all(path)


def test_entry_with_dcm_extension_fails(
    tmp_path: Path, fileset_dir: Path, entry_names: list[str]
) -> None:
    path = zip_dir(fileset_dir, entry_names, tmp_path / "dcm.zip", rename=lambda n: n + ".dcm")
    check_python_zipfile(path)
    check_java_zipinputstream(path)
    with pytest.raises(AssertionError, match=r"not a PS3\.10 File ID"):
        check_dicomdir(path)


def test_lower_case_and_long_components_fail(
    tmp_path: Path, fileset_dir: Path, entry_names: list[str]
) -> None:
    for n, rename in enumerate(
        [
            lambda name: name.lower(),
            lambda name: name.replace("/", "/ABCDEFGHI", 1),
            lambda name: "A/B/C/D/E/" + name,  # 9 components
        ]
    ):
        path = zip_dir(fileset_dir, entry_names, tmp_path / f"names{n}.zip", rename=rename)
        with pytest.raises(AssertionError, match=r"not a PS3\.10 File ID"):
            check_dicomdir(path)


def test_readme_required_by_default(
    tmp_path: Path, fileset_dir: Path, entry_names: list[str]
) -> None:
    path = zip_dir(fileset_dir, entry_names, tmp_path / "noreadme.zip", readme=False)
    with pytest.raises(AssertionError, match=r"README\.TXT"):
        check_dicomdir(path)
    check_dicomdir(path, require_readme=False)


def test_missing_or_second_dicomdir_fails(
    tmp_path: Path, fileset_dir: Path, entry_names: list[str]
) -> None:
    path = tmp_path / "nodicomdir.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name in entry_names:
            zf.write(fileset_dir / name, name)
        zf.writestr("README.TXT", README)
    with pytest.raises(AssertionError, match="DICOMDIR"):
        check_dicomdir(path)
    path = zip_dir(fileset_dir, entry_names, tmp_path / "two.zip")
    with zipfile.ZipFile(path, "a") as zf:
        zf.write(fileset_dir / "DICOMDIR", "SUB/DICOMDIR")
    with pytest.raises(AssertionError, match="DICOMDIR entries outside the root"):
        check_dicomdir(path)


def test_unreferenced_and_missing_instances_fail(
    tmp_path: Path, fileset_dir: Path, entry_names: list[str], samples: list[StudyInfo]
) -> None:
    extra = samples[2].files[1]  # an instance the DICOMDIR does not reference
    path = zip_dir(fileset_dir, entry_names, tmp_path / "extra.zip")
    with zipfile.ZipFile(path, "a") as zf:
        zf.write(extra, "EXTRA/IM1")
    with pytest.raises(AssertionError, match="not referenced"):
        check_dicomdir(path)
    path = zip_dir(fileset_dir, entry_names[1:], tmp_path / "missing.zip")
    with pytest.raises(AssertionError, match="missing file"):
        check_dicomdir(path)


def test_duplicate_entry_names_fail(
    tmp_path: Path, fileset_dir: Path, entry_names: list[str]
) -> None:
    path = zip_dir(fileset_dir, entry_names, tmp_path / "dup.zip")
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(path, "a") as zf,
    ):
        zf.write(fileset_dir / entry_names[0], entry_names[0])
    with pytest.raises(AssertionError, match="duplicate entry names"):
        check_python_zipfile(path)


def test_flipped_byte_fails_every_reader(
    tmp_path: Path, fileset_dir: Path, entry_names: list[str]
) -> None:
    good = zip_dir(fileset_dir, entry_names, tmp_path / "s.zip", compression=zipfile.ZIP_STORED)
    with zipfile.ZipFile(good) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    data = bytearray(good.read_bytes())
    # local header: 30 bytes + name + extra, then the stored data
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    data_at = info.header_offset + 30 + name_len + extra_len
    data[data_at + info.file_size // 2] ^= 0xFF
    bad = tmp_path / "flipped.zip"
    bad.write_bytes(bytes(data))
    checks: list[Callable[[Path], Any]] = [
        check_python_zipfile,
        check_unzip,
        check_7zz,
        check_bsdtar_pipe,
        check_java_zipinputstream,
    ]
    for check in checks:
        with pytest.raises(AssertionError):
            check(bad)


def test_dicomdir_without_type1_key_fails_dciodvfy(
    tmp_path: Path, sample_files: list[Path]
) -> None:
    def drop_study_id(fs: FileSet) -> None:
        for instance in fs:
            study = instance.node.parent.parent
            assert study.record_type == "STUDY"
            if "StudyID" in study._record:
                del study._record.StudyID

    out = tmp_path / "fs"
    names = write_fileset(sample_files[:2], out, edit=drop_study_id)
    path = zip_dir(out, names, tmp_path / "nostudyid.zip")
    with pytest.raises(AssertionError, match="dciodvfy reports errors") as err:
        check_dicomdir(path)
    assert "StudyID" in str(err.value)


def test_instance_content_mismatch_fails(
    tmp_path: Path, fileset_dir: Path, entry_names: list[str], sample_files: list[Path]
) -> None:
    good = zip_dir(fileset_dir, entry_names, tmp_path / "good.zip")
    expected_instances_match(good, sample_files)
    expected_instances_match(good, sample_files, transfer_syntax_star=False)
    # one instance fewer expected -> unexpected entry; one more -> missing
    with pytest.raises(AssertionError, match="unexpected instance"):
        expected_instances_match(good, sample_files[1:])
    # same SOP Instance UID, other bytes
    changed_dir = tmp_path / "changed"
    shutil.copytree(fileset_dir, changed_dir)
    target = changed_dir / entry_names[0]
    ds = pydicom.dcmread(target)
    ds.PatientName = "Changed^Name"
    ds.save_as(target)
    changed = zip_dir(changed_dir, entry_names, tmp_path / "changed.zip")
    with pytest.raises(AssertionError, match="bytes differ"):
        expected_instances_match(changed, sample_files)
    with pytest.raises(AssertionError, match="PatientName"):
        expected_instances_match(changed, sample_files, transfer_syntax_star=False)
