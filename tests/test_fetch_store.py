"""DIR on disk: the lock, atomic writes, what a resume trusts, the cohort index."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from zipproxy.fetch.errors import LayoutError, UsageError
from zipproxy.fetch.layout import parse_layout
from zipproxy.fetch.search import Match
from zipproxy.fetch.store import Record, Store, durable
from zipproxy.fetch.verify import Verified

MATCH = Match("1.2.3", "1.2.3", 2, "/studies/1.2.3", "study")
COLUMNS = ["path", "SOPInstanceUID", "Modality", "size", "crc32"]
ROWS = [{"path": "DICOM/A", "SOPInstanceUID": "1.2.3.1", "Modality": "CT", "size": "3",
         "crc32": "x"},
        {"path": "DICOM/B", "SOPInstanceUID": "1.2.3.2", "Modality": "CT", "size": "4",
         "crc32": "y"}]


def staged(store: Store) -> Verified:
    """A downloaded ZIP in partial/, as if it had just verified."""
    with zipfile.ZipFile(store.part(MATCH), "w") as zf:
        zf.writestr("DICOM/A", b"aaa")
        zf.writestr("DICOM/B", b"bbbb")
    return Verified(COLUMNS, [dict(r) for r in ROWS], ("crc32",), store.part(MATCH).stat().st_size)


def test_one_fetch_per_dir(tmp_path: Path) -> None:
    with Store(tmp_path, None), pytest.raises(UsageError, match="another zipproxy fetch"):
        Store(tmp_path, None).open()
    with Store(tmp_path, None):
        pass  # free again


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "final"
    with pytest.raises(OSError), durable(tmp_path / "tmp", final) as out:
        out.write(b"half")
        raise OSError("disk full")
    assert not final.exists() and not (tmp_path / "tmp").exists()


def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".zipproxy" / "partial").mkdir(parents=True)
    (tmp_path / ".zipproxy" / "partial" / "study-9.zip.part").write_bytes(b"PK")
    with Store(tmp_path, None):
        assert not any((tmp_path / ".zipproxy" / "partial").iterdir())


def test_keep_then_resume_trusts_only_files_in_place(tmp_path: Path) -> None:
    with Store(tmp_path, None) as store:
        record = store.keep(MATCH, staged(store))
    assert record.zip_name == "study-1.2.3.zip" and (tmp_path / record.zip_name).exists()
    assert [r["local_path"] for r in record.rows] == ["study-1.2.3.zip"] * 2
    assert Store(tmp_path, None).load(MATCH) == record
    assert Store(tmp_path, parse_layout("{SOPInstanceUID}")).load(MATCH) is None  # other way
    (tmp_path / record.zip_name).write_bytes(b"truncated")
    assert Store(tmp_path, None).load(MATCH) is None
    (tmp_path / ".zipproxy" / "verified" / "study-1.2.3.json").write_text("{not json")
    assert Store(tmp_path, None).load(MATCH) is None


def test_extract_and_its_record(tmp_path: Path) -> None:
    with Store(tmp_path, parse_layout("{Modality}/{SOPInstanceUID}.dcm")) as store:
        record = store.keep(MATCH, staged(store))
        assert not store.part(MATCH).exists()
    assert (tmp_path / "CT" / "1.2.3.1.dcm").read_bytes() == b"aaa"
    assert [r["local_path"] for r in record.rows] == ["CT/1.2.3.1.dcm", "CT/1.2.3.2.dcm"]
    data = json.loads((tmp_path / ".zipproxy" / "verified" / "study-1.2.3.json").read_text())
    assert data["layout"] == "{Modality}/{SOPInstanceUID}.dcm" and data["zip"] is None
    (tmp_path / "CT" / "1.2.3.2.dcm").unlink()
    assert Store(tmp_path, store.layout).load(MATCH) is None


def test_two_instances_on_one_path_fail(tmp_path: Path) -> None:
    with Store(tmp_path, parse_layout("{Modality}.dcm")) as store, \
            pytest.raises(LayoutError, match="two instances"):
        store.keep(MATCH, staged(store))
    assert not (tmp_path / "CT.dcm").exists()


def test_cohort_index_takes_the_union_of_columns(tmp_path: Path) -> None:
    old = Record(["path", "sha256", "local_path"], [{"path": "a", "sha256": "s",
                                                     "local_path": "x.zip"}], "x.zip", 1, None)
    new = Record(["path", "crc32", "local_path"], [{"path": "b", "crc32": "c",
                                                    "local_path": "y.zip"}], "y.zip", 1, None)
    with Store(tmp_path, None) as store:
        text = store.write_cohort([old, new]).read_text()
    assert text.splitlines() == ["path,sha256,local_path,crc32", "a,s,x.zip,", "b,,y.zip,c"]
