"""A streaming scanner for the few attributes of an instance that its DICOMDIR record needs.

Sans-I/O: ``feed()`` every byte of one Part-10 instance as it arrives, ``finish()`` at its end.
The scanner reads element headers and steps over values by their length, so it costs the same
for a 2 KiB slice and for a 50 MiB RT Structure Set, and it keeps only:

* the values of the wanted top-level elements (a few hundred bytes);
* the encoded wanted sequences, at most ``limit`` bytes in all per instance;
* of the SR / KO ContentSequence (0040,A730), only the root's HAS CONCEPT MOD items: PS3.3 F.5
  asks no more of a document whose content tree may be many MiB.

It stops at the first top-level element past the last wanted tag (for a CT slice, before
(0028,0030)): the pixels are never looked at.

The encoding (PS3.10 7.1, PS3.5 A): a 128-byte preamble, ``DICM``, the File Meta Information
(group 0002, Explicit VR Little Endian), then the data set in the transfer syntax of
(0002,0010): Implicit or Explicit VR, Little or Big Endian, or deflated (PS3.5 A.5: all after
the meta is one raw deflate stream, inflated here as it arrives). Sequences and items of
undefined length are walked with an explicit stack (PS3.5 7.5); so is a UN element of undefined
length, whose value is an Implicit VR Little Endian sequence (PS3.5 6.2.2). This module reads the
Part-10 envelope; the walk over the data set is :mod:`zipproxy.dicomwalk`.

A data set that turns out malformed or cut ends the scan: what was read stays, ``problem`` says
what went wrong, and the caller decides. Only what is not a Part-10 file at all raises
:class:`~zipproxy.errors.InstanceError`. Memory is bounded by design: the meta (at most
``META_LIMIT``), a carry of one element header split by a chunk boundary, the wanted values
(``VALUE_LIMIT`` each), the sequence budget and ``MAX_DEPTH`` levels of nesting.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .dicomwalk import EXPLICIT_HEAD, LONG_VRS, U32, VRS, DataSetWalker, Element, Wanted
from .errors import InstanceError
from .layouts import Layouts, record

__all__ = ["DicomScanner", "Element", "Scan", "Wanted"]

PREFIX: Final = 132  # 128-byte preamble + b"DICM" (PS3.10 7.1)
META_LIMIT: Final = 1 << 16  # File Meta Information is a few hundred bytes
MEDIA_STORAGE_SOP_CLASS: Final = 0x00020002
TRANSFER_SYNTAX: Final = 0x00020010
_INFLATE_STEP: Final = 1 << 18  # inflated bytes scanned at a time (bounds memory)

_META_KEPT: Final = frozenset({0x0002, 0x0003, 0x0010})  # SOP Class, Instance, Syntax UIDs
# Transfer syntaxes that are not Explicit VR Little Endian (PS3.5 A.1-A.5, PS3.6 A).
_IMPLICIT_LE: Final = "1.2.840.10008.1.2"
_EXPLICIT_BE: Final = "1.2.840.10008.1.2.2"
_DEFLATED: Final = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})


@dataclass(frozen=True)
class Scan:
    """What the scanner found in one instance."""

    meta: dict[int, bytes]
    elements: dict[int, Element]
    seen: frozenset[int]  # wanted top-level tags present, kept or not (too long, too many)
    problem: str  # "" when the data set read cleanly to the stop or to its end


class DicomScanner:
    """Feed one instance; ``feed()`` returns True once nothing more needs to be read.

    ``wanted_for(sop_class_uid)`` says what to keep; it is asked once the meta is read.
    """

    def __init__(self, wanted_for: Callable[[str], Wanted], limit: int = 4 << 20,
                 layouts: Layouts | None = None) -> None:
        self._wanted_for = wanted_for
        self._limit = limit
        self._layouts = layouts  # of the ZIP's earlier instances (see zipproxy.layouts)
        self._found: dict[int, Element] | None = None  # what a layout read, if one did
        self._data_start: int | None = None
        self._meta_buffer = b""  # the start of the file, when the meta spans chunks
        self._meta: dict[int, bytes] = {}
        self._data_set: DataSetWalker | None = None
        self._inflater: zlib._Decompress | None = None
        self.done = False

    def feed(self, data: bytes | memoryview) -> bool:
        if self.done:
            return True
        view = memoryview(data)
        layouts = self._layouts
        learn = False
        if layouts is not None and self._data_set is None and not self._meta_buffer:
            # The instance's first bytes: read by a layout of an earlier instance if one fits.
            found = layouts.match(view, PREFIX) if bytes(view[128:PREFIX]) == b"DICM" else None
            if found is not None:
                self._meta, self._found, _ = found
                self.done = True
                return True
            learn = layouts.learning
        views = self._read_meta(view) if self._data_set is None else [view]
        data_set = self._data_set
        for part in views:
            if data_set is None or data_set.done or not part:
                continue
            if self._inflater is not None:
                self._inflate(part)
            else:
                data_set.feed(part)
            self.done = data_set.done
        if learn and self.done:
            self._learn(view)
        return self.done

    def _learn(self, view: memoryview) -> None:
        """The instance was read whole from its first chunk: keep its layout, if plain."""
        data_set, start = self._data_set, self._data_start
        if (data_set is None or start is None or data_set.problem or self._inflater is not None
                or data_set.implicit or not data_set.little or self._layouts is None):
            return
        layout = record(view, PREFIX, start, data_set.wanted, _META_KEPT)
        if layout is not None:
            self._layouts.learn(layout)

    @property
    def elements(self) -> dict[int, Element]:
        """The top-level elements kept so far."""
        if self._found is not None:
            return self._found
        return self._data_set.elements if self._data_set is not None else {}

    def knows(self, tag: int) -> bool:
        """Whether the value of top-level ``tag`` is known (kept, or surely absent)."""
        if self.done:
            return True
        data_set = self._data_set
        return data_set is not None and (data_set.last_tag > tag or tag in data_set.elements)

    def finish(self) -> Scan:
        """The instance ended; raises :class:`InstanceError` unless it was a Part-10 file."""
        if self._found is not None:  # read by a layout: every wanted element it has is kept
            return Scan(self._meta, self._found, frozenset(self._found), "")
        if self._data_set is None:
            self._read_meta(memoryview(b""), final=True)
        data_set = self._data_set
        assert data_set is not None
        if self._inflater is not None and not data_set.done:
            data_set.feed(memoryview(self._inflater.flush()))
        data_set.finish()
        self.done = True
        seen = frozenset(data_set.seen | data_set.elements.keys())
        return Scan(self._meta, data_set.elements, seen, data_set.problem)

    def _read_meta(self, view: memoryview, final: bool = False) -> list[memoryview]:
        """Read the preamble and group 0002 (PS3.10 7.1); once they are whole, start the data
        set and return the bytes after them (held ones first), else nothing."""
        held = self._meta_buffer
        source = memoryview(held + bytes(view[:META_LIMIT])) if held else view
        if len(source) >= PREFIX and bytes(source[128:PREFIX]) != b"DICM":
            raise InstanceError("part is not a DICOM Part-10 file")
        meta, end = _parse_meta(source, final)
        if end is None:
            if final or len(source) > META_LIMIT:
                raise InstanceError("part is not a DICOM Part-10 file" if len(source) < PREFIX
                                    else "malformed or overlong File Meta Information")
            self._meta_buffer = bytes(source)  # at most META_LIMIT bytes
            return []
        syntax = _text(meta.get(TRANSFER_SYNTAX, b""))
        if not syntax:
            raise InstanceError("File Meta Information lacks TransferSyntaxUID")
        self._meta, self._meta_buffer = meta, b""
        self._data_start = None if held else end  # where the data set starts in this view
        self._data_set = DataSetWalker(self._wanted_for(_text(meta.get(MEDIA_STORAGE_SOP_CLASS,
                                                                   b""))),
                                  syntax == _IMPLICIT_LE, syntax != _EXPLICIT_BE, self._limit)
        if syntax in _DEFLATED:
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        if end < len(held):  # the data set began in the held bytes
            return [memoryview(held)[end:], view]
        return [view[end - len(held):]]

    def _inflate(self, view: memoryview) -> None:
        inflater, data_set = self._inflater, self._data_set
        assert inflater is not None and data_set is not None
        try:
            out = inflater.decompress(view, _INFLATE_STEP)
            while True:
                data_set.feed(memoryview(out))
                if data_set.done or not inflater.unconsumed_tail:
                    return
                out = inflater.decompress(inflater.unconsumed_tail, _INFLATE_STEP)
        except zlib.error as exc:
            data_set.stop(f"the deflated data set is corrupt ({exc})")


def _text(value: bytes) -> str:
    return value.rstrip(b"\0 ").decode("ascii", "replace")


def _parse_meta(source: memoryview, final: bool = False) -> tuple[dict[int, bytes], int | None]:
    """The File Meta elements, and where the data set starts (None: need more bytes; at the
    ``final`` end of the part, a meta that ends cleanly ends there)."""
    meta: dict[int, bytes] = {}
    pos, n = PREFIX, len(source)
    if final and n == pos:
        return meta, None
    while n - pos >= 8:
        group, elem, vr, length = EXPLICIT_HEAD.unpack_from(source, pos)
        if group != 0x0002:
            return meta, pos
        size = 8
        if vr in LONG_VRS:
            if n - pos < 12:
                break
            length, size = U32[True].unpack_from(source, pos + 8)[0], 12
        elif vr not in VRS:
            raise InstanceError("malformed File Meta Information")
        if n - pos < size + length:
            break
        if elem in _META_KEPT:
            meta[group << 16 | elem] = bytes(source[pos + size:pos + size + length])
        pos += size + length
    return meta, pos if final and pos == n else None
