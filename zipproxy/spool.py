"""What a ZIP keeps until its end, off the heap: the central directory, DICOMDIR records, manifest
rows.

Memory must stay flat from 10 to 100,000 instances, and these grow by a few hundred bytes per
instance. Like dcm4chee-arc and KHEOPS, which spool the DICOMDIR while the ZIP streams, a
:class:`Spool` keeps the first ``memory`` bytes in RAM and the rest in an anonymous temporary
file (``tempfile.TemporaryFile``: unlinked at once, or ``O_TMPFILE``), so nothing is ever left
on disk: it is gone when the spool is closed, on success, abort or shutdown, and when the
process dies. Appends go through a write buffer into the page cache (microseconds, not a
blocking disk wait); the reads at the end of a large ZIP run in a worker thread.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import Final

MEMORY: Final = 256 * 1024  # bytes kept in RAM before the spool moves to a file
PIECE: Final = 256 * 1024  # bytes read back at a time
GATHER: Final = 64 * 1024  # appends gathered before they go to the file (one call, not many)


class Spool:
    """A byte store: appended to while the ZIP streams, then read back at its end (reads move
    the file position, so no append may follow them)."""

    def __init__(self, directory: str | None = None, memory: int = MEMORY) -> None:
        # Closed by close(): the spool lives as long as its ZIP, across many calls.
        self._file = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=memory, dir=directory or None)
        self._gathered = bytearray()
        self._gather = min(GATHER, memory)
        self.size = 0

    def append(self, data: bytes) -> int:
        """Store ``data``; return its offset."""
        offset = self.size
        self._gathered += data
        self.size += len(data)
        if len(self._gathered) >= self._gather:
            self._flush()
        return offset

    def pieces(self, size: int = PIECE) -> Iterator[bytes]:
        """Everything stored, in order, ``size`` bytes at a time."""
        self._flush()
        self._file.seek(0)
        while piece := self._file.read(size):
            yield piece

    def records(self, offsets: Iterable[int], sizes: Iterable[int]) -> Iterator[bytes]:
        """The records stored at ``offsets`` with ``sizes``, in that order. Records that follow
        one another in the spool (as a series' do) are read together, up to PIECE at a time."""
        self._flush()
        block, start = b"", 0  # what was read last, and where it starts
        for offset, size in zip(offsets, sizes, strict=True):
            at = offset - start
            if at < 0 or at + size > len(block):
                start, at = offset, 0
                self._file.seek(offset)
                block = self._file.read(max(size, PIECE))
            yield block[at:at + size]

    def _flush(self) -> None:
        if self._gathered:
            self._file.write(self._gathered)
            self._gathered.clear()

    @property
    def on_disk(self) -> bool:
        return bool(getattr(self._file, "_rolled", False))

    def close(self) -> None:
        self._gathered = bytearray()
        self._file.close()  # idempotent
