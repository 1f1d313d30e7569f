"""From multipart bytes to DICOM ZIP bytes, with no I/O: the heart of a ZIP retrieve.

For every part of the upstream's ``multipart/related; type="application/dicom"`` body:

1. Keep the part's first chunks (at most ``header_limit`` bytes) until its header parses
   (:class:`~zipproxy.dicomheader.HeaderParser` accepts a header only when it is complete).
2. Choose the File ID from the header (study, series and instance counters, see :class:`Layout`),
   record the instance in the DICOMDIR, open the ZIP entry and write the kept chunks.
3. Write every further chunk straight into the entry; close it when the part ends.

After the closing boundary come MANIFEST.CSV (one row per instance, with its SHA-256), the
DICOMDIR as the last entry, then the central directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pydicom import Dataset

from .archive import ArchiveWriter, Buffer
from .dicomdir import DicomDirBuilder
from .dicomheader import HeaderParser, pydicom_quietly
from .errors import InstanceError, MultipartError, NoInstances
from .manifest import Manifest
from .multipart import MultipartSplitter, PartData, PartStart

ROOT: Final = "DICOM"
_MAX_INDEX: Final = 999_999  # "ST" / "SE" / "IM" + 6 digits = 8 characters (PS3.10 8.2)


@dataclass
class Layout:
    """File IDs ``DICOM/STnnnnnn/SEnnnnnn/IMnnnnnn`` (PS3.10 8.2, 8.5; PS3.12 Annex V).

    Four components of at most 8 characters from ``A-Z 0-9``, no extension, so the entry name *is*
    the File ID the DICOMDIR references. Counters, not hashes: names never collide, carry no
    patient data, and sort in the order the upstream sent the instances. Limits: 999,999 studies,
    series per study and instances per series.
    """

    studies: dict[str, tuple[int, dict[str, list[int]]]] = field(default_factory=dict)

    def file_id(self, study_uid: str, series_uid: str) -> tuple[str, str, str, str]:
        study = self.studies.get(study_uid)
        if study is None:
            study = self.studies[study_uid] = (len(self.studies) + 1, {})
        series = study[1].get(series_uid)
        if series is None:
            series = study[1][series_uid] = [len(study[1]) + 1, 0]
        series[1] += 1
        if max(study[0], series[0], series[1]) > _MAX_INDEX:
            raise InstanceError("more than 999,999 studies, series or instances in one level")
        return (ROOT, f"ST{study[0]:06d}", f"SE{series[0]:06d}", f"IM{series[1]:06d}")


def _is_dicom_part(headers: dict[str, str]) -> bool:
    ctype = headers.get("content-type", "application/dicom")  # PS3.18: the default is the type=
    return ctype.split(";", 1)[0].strip().lower() == "application/dicom"


class ZipAssembler:
    """Feed the upstream body chunk by chunk; each call returns the ZIP bytes ready to send."""

    def __init__(
        self,
        readme: bytes,
        *,
        header_limit: int,
        hold_limit: int,
        deflate_level: int = 0,
        file_set_id: str = "",
        manifest: bool = True,
        password: bytes | None = None,
    ) -> None:
        self._splitter: MultipartSplitter | None = None
        self._writer = ArchiveWriter(hold_limit=hold_limit, deflate_level=deflate_level,
                                     password=password)
        self._dicomdir = DicomDirBuilder(file_set_id)
        self._layout = Layout()
        self._readme = readme
        self._manifest = Manifest() if manifest else None
        self._header_limit = header_limit
        self._parser: HeaderParser | None = None
        self._pending: list[memoryview] = []
        self._in_part = False
        self._length: int | None = None
        self._entry_open = False
        self.started = False  # True once the first instance's header parsed: ZIP bytes follow
        self.instances = 0
        self.instance_bytes = 0

    @property
    def bytes_written(self) -> int:
        return self._writer.bytes_written

    def begin_body(self, boundary: str) -> None:
        """The next upstream body (one per study or series of a collection) begins."""
        assert self._splitter is None, "the previous body was not ended"
        self._splitter = MultipartSplitter(boundary)

    def end_body(self) -> None:
        """That body ended: raise unless it was whole (closing boundary seen)."""
        assert self._splitter is not None
        self._splitter.eof()
        self._splitter = None

    def feed(self, chunk: bytes) -> list[Buffer]:
        assert self._splitter is not None, "begin_body() first"
        out: list[Buffer] = []
        for event in self._splitter.feed(chunk):
            if isinstance(event, PartData):
                self.instance_bytes += len(event.data)
                if self._entry_open:
                    out += self._writer.write(event.data)
                    if self._manifest is not None:
                        self._manifest.update(event.data)
                else:
                    assert self._parser is not None
                    self._pending.append(event.data)
                    header = self._parser.feed(event.data)
                    if header is not None:
                        out += self._open(header)
            elif isinstance(event, PartStart):
                if not _is_dicom_part(event.headers):
                    raise InstanceError(
                        "upstream part is not application/dicom "
                        f"({event.headers.get('content-type', '')[:60]!r})"
                    )
                self._parser = HeaderParser(limit=self._header_limit)
                self._pending = []
                self._in_part = True
                self._length = event.content_length
            else:  # PartEnd
                if not self._entry_open:
                    assert self._parser is not None
                    out += self._open(self._parser.finish())
                out += self._writer.close()
                if self._manifest is not None:
                    self._manifest.end()
                self._entry_open = self._in_part = False
                self._parser = None
                self.instances += 1
        return out

    def _open(self, header: Dataset) -> list[Buffer]:
        out: list[Buffer] = []
        if not self.started:
            self.started = True
            out += self._writer.add("README.TXT", self._readme, plain=True)
        with pydicom_quietly():
            study = str(header.get("StudyInstanceUID", "") or "")
            series = str(header.get("SeriesInstanceUID", "") or "")
        file_id = self._layout.file_id(study, series)
        self._dicomdir.add(header, file_id)
        name = "/".join(file_id)
        self._writer.open(name, self._length)
        self._entry_open = True
        if self._manifest is not None:
            self._manifest.start(name, header)
        for data in self._pending:
            out += self._writer.write(data)
            if self._manifest is not None:
                self._manifest.update(data)
        self._pending = []
        return out

    def finish(self, comment: str = "") -> list[Buffer]:
        """Every body ended: MANIFEST.CSV, the DICOMDIR and the central directory."""
        if self._splitter is not None:
            self.end_body()
        if self._in_part:  # pragma: no cover - eof() already refuses a body cut inside a part
            raise MultipartError("multipart body ended inside a part")
        if not self.instances:
            raise NoInstances("the upstream returned no instances for this resource")
        out = []
        if self._manifest is not None:
            out += self._writer.add("MANIFEST.CSV", self._manifest.render())
        out += self._writer.add("DICOMDIR", self._dicomdir.build())
        out += self._writer.finish(comment or self.summary())
        return out

    def summary(self) -> str:
        series = sum(len(s[1]) for s in self._layout.studies.values())
        return (f"DICOM ZIP by zipproxy: {self.instances} instances in {series} series of "
                f"{len(self._layout.studies)} studies; see DICOMDIR")
