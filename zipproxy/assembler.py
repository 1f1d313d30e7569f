"""From multipart events to DICOM ZIP bytes, with no I/O: the heart of a ZIP retrieve.

For every part of the upstream's ``multipart/related; type="application/dicom"`` bodies (the
events of :class:`~zipproxy.multipart.MultipartSplitter`):

1. Scan the part's bytes as they arrive (:class:`~zipproxy.dicomscan.DicomScanner`): only
   element headers and the few values the DICOMDIR and the manifest need.
2. Hold the first chunks until the Study and Series Instance UIDs are known -- usually in the
   first few KiB -- which choose the File ID (study, series and instance counters, see
   :class:`Layout`); then open the ZIP entry, write the held chunks, and every further chunk
   straight into the entry. A part that shows neither UID within ``hold_limit`` bytes is named
   with what is known, so holding never grows past that.
3. When the part ends: close the entry, add the instance's DICOMDIR record and manifest row.

After the last body: MANIFEST.CSV, the DICOMDIR as the last entry, the central directory
(:meth:`ZipAssembler.finish`). What is kept until then is spooled, so memory stays flat in the
number of instances; :meth:`ZipAssembler.close` removes the spools.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from .archive import ArchiveWriter, Buffer
from .dicomdir import DicomDirBuilder
from .dicomscan import DicomScanner, Scan
from .errors import InstanceError, MultipartError, NoInstances
from .layouts import Layouts
from .manifest import Manifest
from .multipart import Event, PartData, PartStart
from .records import stripped_at, tag_of, wanted_for

ROOT: Final = "DICOM"
_MAX_INDEX: Final = 999_999  # "ST" / "SE" / "IM" + 6 digits = 8 characters (PS3.10 8.2)
_STUDY: Final = tag_of("StudyInstanceUID")
_SERIES: Final = tag_of("SeriesInstanceUID")


class _Series:
    """A series' File ID components up to its own, and how many instances it has so far."""

    __slots__ = ("instances", "prefix")

    def __init__(self, study: int, series: int) -> None:
        self.prefix = (ROOT, f"ST{study:06d}", f"SE{series:06d}")
        self.instances = 0


@dataclass
class Layout:
    """File IDs ``DICOM/STnnnnnn/SEnnnnnn/IMnnnnnn`` (PS3.10 8.2, 8.5; PS3.12 Annex V).

    Four components of at most 8 characters from ``A-Z 0-9``, no extension, so the entry name *is*
    the File ID the DICOMDIR references. Counters, not hashes: names never collide, carry no
    patient data, and sort in the order the upstream sent the instances. Limits: 999,999 studies,
    series per study and instances per series.
    """

    studies: dict[bytes, tuple[int, dict[bytes, _Series]]] = field(default_factory=dict)

    def file_id(self, study_uid: bytes, series_uid: bytes) -> tuple[str, str, str, str]:
        study = self.studies.get(study_uid)
        if study is None:
            if len(self.studies) >= _MAX_INDEX:
                raise InstanceError("more than 999,999 studies in one ZIP")
            study = self.studies[study_uid] = (len(self.studies) + 1, {})
        series = study[1].get(series_uid)
        if series is None:
            if len(study[1]) >= _MAX_INDEX:
                raise InstanceError("more than 999,999 series in one study")
            series = study[1][series_uid] = _Series(study[0], len(study[1]) + 1)
        if series.instances >= _MAX_INDEX:
            raise InstanceError("more than 999,999 instances in one series")
        series.instances += 1
        return (*series.prefix, f"IM{series.instances:06d}")

    @property
    def series(self) -> int:
        return sum(len(s[1]) for s in self.studies.values())


def _is_dicom_part(headers: Mapping[str, str]) -> bool:
    ctype = headers.get("content-type", "application/dicom")  # PS3.18: the default is the type=
    return ctype.split(";", 1)[0].strip().lower() == "application/dicom"


class _Part:
    """The part being read: its scanner, the chunks held until it is named, its entry."""

    __slots__ = ("held", "held_bytes", "length", "name", "path", "scanner", "size")

    def __init__(self, scanner: DicomScanner, length: int | None) -> None:
        self.scanner = scanner
        self.length = length
        self.size = 0
        self.held: list[memoryview] = []
        self.held_bytes = 0
        self.name: tuple[str, ...] | None = None  # its File ID, once the entry is open ...
        self.path = ""  # ... and its entry's name


class ZipAssembler:
    """Feed the multipart events of the upstream bodies; each call returns the ZIP bytes ready
    to send. ``manifest`` is ``None`` (no MANIFEST.CSV), ``"crc32"`` or ``"sha256"``."""

    def __init__(
        self,
        readme: bytes,
        *,
        header_limit: int,
        hold_limit: int,
        deflate_level: int = 0,
        file_set_id: str = "",
        manifest: str | None = "crc32",
        password: bytes | None = None,
        spool_dir: str | None = None,
    ) -> None:
        self._writer = ArchiveWriter(hold_limit=hold_limit, deflate_level=deflate_level,
                                     password=password, spool_dir=spool_dir)
        self._dicomdir = DicomDirBuilder(file_set_id, spool_dir)
        self._manifest = (Manifest(sha256=manifest == "sha256", spool_dir=spool_dir)
                          if manifest else None)
        # The manifest, when it reads every byte of the entries (a SHA-256 column).
        self._hasher = self._manifest if manifest == "sha256" else None
        self._layout = Layout()
        self._layouts = Layouts()  # data set layouts of the instances so far (see layouts)
        self._readme = readme
        self._header_limit = header_limit
        self._hold_limit = hold_limit
        self._part: _Part | None = None
        self._dicom_start: PartStart | None = None  # the last part start checked, and passed
        # Per-byte work that is heavy enough for a worker thread (AES, real deflate).
        self.heavy = password is not None or deflate_level > 0
        self.started = False  # True once the first entry opened: ZIP bytes follow
        self.instances = 0
        self.instance_bytes = 0
        self.unreadable = 0  # instances whose data set could not be read to the end
        self.first_problem = ""

    @property
    def bytes_written(self) -> int:
        return self._writer.bytes_written

    @property
    def conflicts(self) -> list[str]:
        """DICOMDIR keys on which instances of one entity disagreed (see dicomdir)."""
        return self._dicomdir.conflict_notes

    def feed(self, events: list[Event]) -> list[Buffer]:
        out: list[Buffer] = []
        for event in events:
            if isinstance(event, PartData):
                out += self._data(event.data)
            elif isinstance(event, PartStart):
                if self._part is not None:  # pragma: no cover - the splitter ends parts
                    raise MultipartError("a part began inside a part")
                if event is not self._dicom_start and not _is_dicom_part(event.headers):
                    raise InstanceError("upstream part is not application/dicom "
                                        f"({event.headers.get('content-type', '')[:60]!r})")
                self._dicom_start = event  # the splitter repeats an event for the same headers
                scanner = DicomScanner(wanted_for, limit=self._header_limit,
                                       layouts=self._layouts)
                self._part = _Part(scanner, event.content_length)
                if self._hasher is not None:
                    self._hasher.start()
            else:  # PartEnd
                out += self._end()
        return out

    def _data(self, data: memoryview) -> list[Buffer]:
        part = self._part
        assert part is not None, "data outside a part"
        self.instance_bytes += len(data)
        part.size += len(data)
        scanner = part.scanner
        if not scanner.done:
            scanner.feed(data)
        if part.path:
            if self._hasher is not None:
                self._hasher.update(data)
            return self._writer.write(data)
        part.held.append(data)
        part.held_bytes += len(data)
        if scanner.done or (scanner.knows(_STUDY) and scanner.knows(_SERIES)) or (
                part.held_bytes > self._hold_limit):
            return self._open(part, scanner)
        return []

    def _open(self, part: _Part, scanner: DicomScanner, scan: Scan | None = None) -> list[Buffer]:
        """Name the part and open its entry: README.TXT first, then the held chunks."""
        out: list[Buffer] = []
        if not self.started:
            self.started = True
            out += self._writer.add("README.TXT", self._readme, plain=True)
        elements = scan.elements if scan is not None else scanner.elements
        part.name = self._layout.file_id(stripped_at(elements, _STUDY),
                                          stripped_at(elements, _SERIES))
        part.path = "/".join(part.name)
        out += self._writer.open(part.path, part.length)
        for data in part.held:
            out += self._writer.write(data)
            if self._hasher is not None:
                self._hasher.update(data)
        part.held = []
        return out

    def _end(self) -> list[Buffer]:
        part, self._part = self._part, None
        assert part is not None, "a part ended outside a part"
        scan = part.scanner.finish()
        if scan.problem:
            self.unreadable += 1
            self.first_problem = self.first_problem or scan.problem
        out: list[Buffer] = []
        if part.name is None:
            out += self._open(part, part.scanner, scan)
        assert part.name is not None
        pieces, crc = self._writer.close()
        self._dicomdir.add(scan, part.name)
        if self._manifest is not None:
            self._manifest.end(part.path, scan, part.size, crc)
        self.instances += 1
        return out + pieces

    def finish(self, comment: str = "") -> Iterator[Buffer]:
        """Every body ended: MANIFEST.CSV, the DICOMDIR and the central directory, in pieces
        (reading the spools: worth a worker thread for a large ZIP)."""
        if self._part is not None:
            raise MultipartError("multipart body ended inside a part")
        if not self.instances:
            raise NoInstances("the upstream returned no instances for this resource")
        entries = []
        if self._manifest is not None:
            entries.append(("MANIFEST.CSV", *self._manifest.render()))
        entries.append(("DICOMDIR", *self._dicomdir.build()))
        return self._writer.tail(entries, comment or self.summary())

    def close(self) -> None:
        """Remove the spools (on success, abort and shutdown alike)."""
        self._writer.close_spool()
        self._dicomdir.close()
        if self._manifest is not None:
            self._manifest.close()

    def summary(self) -> str:
        text = (f"DICOM ZIP by zipproxy: {self.instances} instances in {self._layout.series} "
                f"series of {len(self._layout.studies)} studies; see DICOMDIR")
        if self.unreadable:
            text += f"; {self.unreadable} with a data set that could not be read to its end"
        return text
