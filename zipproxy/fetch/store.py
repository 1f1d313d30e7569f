"""DIR on disk: final names appear only for verified data, and a record says what is verified.

::

    DIR/study-<uid>.zip            a verified ZIP (or, with --extract, the files of --layout)
    DIR/cohort.csv                 every verified instance: its manifest row plus local_path
    DIR/.zipproxy/lock             held while a fetch writes DIR (a second one stops at once)
    DIR/.zipproxy/partial/         downloads and extracted files before their rename
    DIR/.zipproxy/verified/*.json  one record per verified study: its rows, how it was stored

Every file is written under ``.zipproxy/partial/``, flushed to disk (``fsync``) and only then
renamed to its final name (``os.replace``, atomic within one file system), and the record is
written the same way after the files it lists. A kill at any point leaves no half-written file
under a final name; the next run deletes what is left in ``partial/`` and redoes the studies that
have no record, or whose files are no longer there.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Self

from .errors import LayoutError, UsageError
from .layout import Layout
from .search import Match
from .verify import CHUNK, Verified

STATE: Final = ".zipproxy"
COHORT: Final = "cohort.csv"
LOCAL_PATH: Final = "local_path"


@dataclass(frozen=True)
class Record:
    """What was verified for one match and where its instances are."""

    columns: list[str]  # the manifest's columns, then local_path
    rows: list[dict[str, str]]
    zip_name: str | None  # the kept ZIP, None when extracted
    zip_size: int
    layout: str | None  # the --layout it was extracted with

    @property
    def instances(self) -> int:
        return len(self.rows)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def durable(tmp: Path, final: Path) -> Iterator[IO[bytes]]:
    """Write ``tmp``, fsync it and rename it to ``final``; on any failure remove ``tmp``."""
    try:
        with tmp.open("wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


class Store:
    def __init__(self, root: Path, layout: Layout | None) -> None:
        self.root = root
        self.layout = layout
        self.state = root / STATE
        self.partial = self.state / "partial"
        self.verified = self.state / "verified"
        self._lock: IO[bytes] | None = None
        self.claimed: dict[str, str] = {}  # extracted path -> SOP Instance UID, across studies
        self.records: dict[str, Record] = {}  # Match.name -> its record, this run's and before

    def open(self) -> None:
        """Create DIR's folders, take the lock, delete what a killed run left in partial/."""
        try:
            self.verified.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {self.verified}: {exc.strerror}") from exc
        self._lock = (self.state / "lock").open("wb")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock.close()
            raise UsageError(f"another zipproxy fetch is writing {self.root}") from exc
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir()

    def close(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def part(self, match: Match) -> Path:
        return self.partial / f"{match.name}.zip.part"

    def _record_path(self, match: Match) -> Path:
        return self.verified / f"{match.name}.json"

    # -- resume ---------------------------------------------------------------------------

    def load(self, match: Match) -> Record | None:
        """The record of a match verified before, if its files are all still in place and were
        stored the way this run stores them; else None (the match is fetched again)."""
        try:
            data = json.loads(self._record_path(match).read_text("utf-8"))
            columns = list(data["columns"])
            record = Record(columns, [dict(zip(columns, r, strict=True)) for r in data["rows"]],
                            data["zip"], int(data["zip_size"]), data["layout"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if record.layout != (self.layout.template if self.layout else None):
            return None
        if not all(self._in_place(p, s) for p, s in self._sizes(record)):
            return None
        for row in record.rows:
            self.claimed[row[LOCAL_PATH]] = row.get("SOPInstanceUID", "")
        self.records[match.name] = record
        return record

    def _sizes(self, record: Record) -> Iterator[tuple[str, int]]:
        if record.zip_name is not None:
            yield record.zip_name, record.zip_size
        else:
            for row in record.rows:
                yield row[LOCAL_PATH], int(row["size"])

    def _in_place(self, relative: str, size: int) -> bool:
        try:
            return (self.root / relative).stat().st_size == size
        except OSError:
            return False

    # -- storing a verified download ------------------------------------------------------

    def keep(self, match: Match, verified: Verified) -> Record:
        """Move a verified ZIP into place (or extract it) and write its record."""
        part = self.part(match)
        if self.layout is None:
            name = f"{match.name}.zip"
            with part.open("rb+") as f:
                os.fsync(f.fileno())
            os.replace(part, self.root / name)
            fsync_dir(self.root)
            rows = [{**row, LOCAL_PATH: name} for row in verified.rows]
            record = Record([*verified.columns, LOCAL_PATH], rows, name, verified.size, None)
        else:
            rows = self._extract(part, match, verified, self.layout)
            part.unlink()
            record = Record([*verified.columns, LOCAL_PATH], rows, None, verified.size,
                            self.layout.template)
        self._write_record(match, record)
        self.records[match.name] = record
        return record

    def _extract(self, part: Path, match: Match, verified: Verified,
                 layout: Layout) -> list[dict[str, str]]:
        """1. place every row and check no two instances share a path; 2. copy each entry to
        partial/, fsync, rename; 3. fsync the folders that got files."""
        places: dict[str, Path] = {}
        for row in verified.rows:
            dest = layout.place(self.root, row)
            key = dest.relative_to(self.root).as_posix()
            sop = row.get("SOPInstanceUID", row["path"])
            if key in places or self.claimed.get(key, sop) != sop:
                raise LayoutError(f"--layout puts two instances at {key!r}; add "
                                  "{SOPInstanceUID} to it")
            places[key] = dest
        folders: set[Path] = set()
        with zipfile.ZipFile(part) as zf:
            for index, (row, (key, dest)) in enumerate(zip(verified.rows, places.items(),
                                                           strict=True)):
                dest.parent.mkdir(parents=True, exist_ok=True)
                with durable(self.partial / f"{match.name}.{index}", dest) as out, \
                        zf.open(row["path"]) as entry:
                    shutil.copyfileobj(entry, out, CHUNK)
                folders.add(dest.parent)
                self.claimed[key] = row.get("SOPInstanceUID", row["path"])
        for folder in folders:
            fsync_dir(folder)
        return [{**row, LOCAL_PATH: key} for row, key in zip(verified.rows, places, strict=True)]

    def _write_record(self, match: Match, record: Record) -> None:
        data = {"kind": match.kind, "uid": match.uid, "columns": record.columns,
                "rows": [[row[c] for c in record.columns] for row in record.rows],
                "zip": record.zip_name, "zip_size": record.zip_size, "layout": record.layout}
        with durable(self.partial / f"{match.name}.json", self._record_path(match)) as out:
            out.write(json.dumps(data).encode("utf-8"))
        fsync_dir(self.verified)

    # -- the cohort index -----------------------------------------------------------------

    def write_cohort(self, records: list[Record]) -> Path:
        """DIR/cohort.csv: the rows of ``records`` in order, under the union of their columns
        (a rerun against an upgraded proxy may bring a new checksum column)."""
        columns: dict[str, None] = {}
        for record in records:
            columns.update(dict.fromkeys(record.columns))
        text = io.StringIO()
        writer = csv.DictWriter(text, list(columns), lineterminator="\n", restval="")
        writer.writeheader()
        for record in records:
            writer.writerows(record.rows)
        final = self.root / COHORT
        with durable(self.partial / COHORT, final) as out:
            out.write(text.getvalue().encode("utf-8"))
        return final
