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
length, whose value is an Implicit VR Little Endian sequence (PS3.5 6.2.2).

A data set that turns out malformed or cut ends the scan: what was read stays, ``problem`` says
what went wrong, and the caller decides. Only what is not a Part-10 file at all raises
:class:`~zipproxy.errors.InstanceError`. Memory is bounded by design: the meta (at most
``META_LIMIT``), a carry of one element header split by a chunk boundary, the wanted values
(``VALUE_LIMIT`` each), the sequence budget and ``MAX_DEPTH`` levels of nesting.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from .errors import InstanceError

PREFIX: Final = 132  # 128-byte preamble + b"DICM" (PS3.10 7.1)
META_LIMIT: Final = 1 << 16  # File Meta Information is a few hundred bytes
VALUE_LIMIT: Final = 1 << 16  # a longer wanted value is not a directory key (LT is 10240)
MAX_DEPTH: Final = 256  # open sequences and items; SR trees are deep, never this deep
UNDEFINED: Final = 0xFFFFFFFF
ITEM: Final = 0xFFFEE000
ITEM_END: Final = 0xFFFEE00D
SEQUENCE_END: Final = 0xFFFEE0DD
CONTENT_SEQUENCE: Final = 0x0040A730
RELATIONSHIP_TYPE: Final = 0x0040A010
HAS_CONCEPT_MOD: Final = b"HAS CONCEPT MOD"
MEDIA_STORAGE_SOP_CLASS: Final = 0x00020002
TRANSFER_SYNTAX: Final = 0x00020010
_INFLATE_STEP: Final = 1 << 18  # inflated bytes scanned at a time (bounds memory)

# PS3.5 7.1.2: these VRs have two reserved bytes and a 4-byte length.
_LONG_VRS: Final = frozenset(vr.encode() for vr in (
    "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"))
_VRS: Final = _LONG_VRS | frozenset(vr.encode() for vr in (
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL",
    "SS", "ST", "TM", "UI", "UL", "US"))
_WIDTH: Final = {b"US": 2, b"SS": 2, b"AT": 2, b"OW": 2, b"UL": 4, b"SL": 4, b"FL": 4,
                 b"OL": 4, b"OF": 4, b"FD": 8, b"OD": 8, b"SV": 8, b"UV": 8, b"OV": 8}
_TAG: Final = {True: struct.Struct("<HH"), False: struct.Struct(">HH")}
_U16: Final = {True: struct.Struct("<H"), False: struct.Struct(">H")}
_U32: Final = {True: struct.Struct("<I"), False: struct.Struct(">I")}
_META_KEPT: Final = frozenset({0x0002, 0x0003, 0x0010})  # SOP Class, Instance, Syntax UIDs
_META: Final = struct.Struct("<HH2sH")  # Explicit VR Little Endian: tag, VR, short length
_IMPLICIT_HEAD: Final = struct.Struct("<HHI")  # Implicit VR Little Endian: tag, length
# Transfer syntaxes that are not Explicit VR Little Endian (PS3.5 A.1-A.5, PS3.6 A).
_IMPLICIT_LE: Final = "1.2.840.10008.1.2"
_EXPLICIT_BE: Final = "1.2.840.10008.1.2.2"
_DEFLATED: Final = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})


@dataclass(frozen=True)
class Wanted:
    """The top-level elements to keep, by tag; ``sequences`` are kept encoded."""

    tags: frozenset[int]
    sequences: frozenset[int] = frozenset()
    last: int = field(init=False)  # reading stops at the first top-level tag past this

    def __post_init__(self) -> None:
        object.__setattr__(self, "last", max(self.tags | self.sequences, default=0))


class Element(NamedTuple):
    """A kept top-level element: the VR as encoded (b"" in Implicit VR) and its value.

    Numbers are made little endian. A sequence's value is the whole encoded element, header
    included, in the encoding ``implicit`` / ``little`` says (PS3.5 7.5)."""

    vr: bytes
    value: bytes
    implicit: bool = False
    little: bool = True


# ``Element(vr, value)`` without the generated constructor's Python frame, for the hot loop.
_TUPLE_NEW: Final = tuple.__new__


@dataclass(frozen=True)
class Scan:
    """What the scanner found in one instance."""

    meta: dict[int, bytes]
    elements: dict[int, Element]
    seen: frozenset[int]  # wanted top-level tags present, kept or not (too long, too many)
    problem: str  # "" when the data set read cleanly to the stop or to its end


class _Frame:
    """An open sequence or item: where it ends (None: at its delimiter) and how it is encoded;
    ``root`` marks a root item of a kept ContentSequence."""

    __slots__ = ("end", "implicit", "is_item", "little", "root")

    def __init__(self, end: int | None, is_item: bool, implicit: bool, little: bool,
                 root: bool) -> None:
        self.end, self.is_item, self.implicit, self.little, self.root = (
            end, is_item, implicit, little, root)


class DicomScanner:
    """Feed one instance; ``feed()`` returns True once nothing more needs to be read.

    ``wanted_for(sop_class_uid)`` says what to keep; it is asked once the meta is read.
    """

    def __init__(self, wanted_for: Callable[[str], Wanted], limit: int = 4 << 20) -> None:
        self._wanted_for = wanted_for
        self._limit = limit
        self._meta_buffer = b""  # the start of the file, when the meta spans chunks
        self._meta: dict[int, bytes] = {}
        self._data_set: _DataSet | None = None
        self._inflater: zlib._Decompress | None = None
        self.done = False

    def feed(self, data: bytes | memoryview) -> bool:
        if self.done:
            return True
        views = [memoryview(data)]
        if self._data_set is None:
            views = self._read_meta(views[0])
        data_set = self._data_set
        for view in views:
            if data_set is None or data_set.done or not view:
                continue
            if self._inflater is not None:
                self._inflate(view)
            else:
                data_set.feed(view)
            self.done = data_set.done
        return self.done

    @property
    def elements(self) -> dict[int, Element]:
        """The top-level elements kept so far."""
        return self._data_set.elements if self._data_set is not None else {}

    def knows(self, tag: int) -> bool:
        """Whether the value of top-level ``tag`` is known (kept, or surely absent)."""
        data_set = self._data_set
        return data_set is not None and (data_set.done or data_set.last_tag > tag
                                         or tag in data_set.elements)

    def finish(self) -> Scan:
        """The instance ended; raises :class:`InstanceError` unless it was a Part-10 file."""
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
        self._data_set = _DataSet(self._wanted_for(_text(meta.get(MEDIA_STORAGE_SOP_CLASS,
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
        group, elem, vr, length = _META.unpack_from(source, pos)
        if group != 0x0002:
            return meta, pos
        size = 8
        if vr in _LONG_VRS:
            if n - pos < 12:
                break
            length, size = _U32[True].unpack_from(source, pos + 8)[0], 12
        elif vr not in _VRS:
            raise InstanceError("malformed File Meta Information")
        if n - pos < size + length:
            break
        if elem in _META_KEPT:
            meta[group << 16 | elem] = bytes(source[pos + size:pos + size + length])
        pos += size + length
    return meta, pos if final and pos == n else None


class _DataSet:
    """The element walker over the data set (already inflated when it was deflated).

    Each ``_step`` consumes one piece: a header, value bytes to step over or to keep, or the
    end of a sequence or item. A wanted sequence is recorded as it is consumed; for the
    ContentSequence only within root items, and a root item is dropped as soon as its
    RelationshipType (the first element of a content item, PS3.3 C.17.3) says it is not kept.
    """

    def __init__(self, wanted: Wanted, implicit: bool, little: bool, limit: int) -> None:
        self.wanted = wanted
        self.implicit, self.little = implicit, little
        self.limit = limit  # bytes of sequences kept at most
        self.elements: dict[int, Element] = {}
        self.seen: set[int] = set()
        self.problem = ""
        self.done = False
        self._carry = b""  # the start of a header cut by the end of a chunk
        self._at = 0  # data set bytes consumed
        self._skip = 0  # value bytes still to step over
        self._fill: bytearray | None = None  # a wanted value still arriving ...
        self._fill_left = 0
        self._fill_key: tuple[int, bytes] = (0, b"")  # ... its tag and VR
        self._stack: list[_Frame] = []
        self._first = True
        self.last_tag = -1  # the last top-level tag read: every tag before it is known
        self._closing = False  # a delimiter was consumed: close its frame after recording
        self._sequence: tuple[int, bool, bool] | None = None  # kept: tag, implicit, little
        self._record: bytearray | None = None  # its bytes (None: not recording now)
        self._items: list[bytes] = []  # kept ContentSequence root items
        self._relationship: bytes | None = None
        self._kept = 0

    def stop(self, problem: str) -> None:
        self.problem = self.problem or problem
        self.done = True

    def finish(self) -> None:
        while not self.done and self._stack and self._stack[-1].end == self._at:
            self._close()
        if not self.done and (self._carry or self._skip or self._fill is not None
                              or self._stack):
            self.stop("the data set is cut short")
        self.done = True

    def feed(self, view: memoryview) -> None:
        pos, end = 0, len(view)
        if self._carry:  # finish the cut header from the first bytes of this chunk
            carry, self._carry = self._carry, b""
            head = memoryview(carry + bytes(view[:96]))
            used = 0
            while used < len(carry) and not self.done:  # the carried bytes, then on in view
                after = self._step(head, used)
                if after < 0:
                    self._carry = bytes(head[used:])
                    return
                used = after
            pos = max(used - len(carry), 0)
        while pos < end and not self.done:
            if not (self._stack or self._skip or self._first or self._fill is not None) and (
                    self.little):
                pos = self._run(view, pos, end)
                if pos >= end or self.done:
                    return
            used = self._step(view, pos)
            if used < 0:
                self._carry = bytes(view[pos:])  # at most a header and a RelationshipType
                return
            pos = used

    def _run(self, view: memoryview, pos: int, end: int) -> int:
        """The hot loop: top-level elements of defined length, little endian, stepped over or
        kept whole; return where :meth:`_step` must take over (anything else, or a cut)."""
        wanted = self.wanted
        tags, sequences, last = wanted.tags, wanted.sequences, wanted.last
        elements = self.elements
        start, tag = pos, -1
        if self.implicit:
            head = _IMPLICIT_HEAD.unpack_from
            while end - pos >= 8:
                group, elem, length = head(view, pos)
                tag = group << 16 | elem
                if tag > last:
                    self.done = True
                    break
                after = pos + 8 + length
                if after > end or length == UNDEFINED or tag in tags or tag in sequences:
                    break
                pos = after
        else:
            head, u32, long_vrs = _META.unpack_from, _U32[True].unpack_from, _LONG_VRS
            new = _TUPLE_NEW
            while end - pos >= 12:
                group, elem, vr, length = head(view, pos)
                tag = group << 16 | elem
                if tag > last:
                    self.done = True
                    break
                if vr in long_vrs:
                    length = u32(view, pos + 8)[0]
                    after = pos + 12 + length
                    if after > end or length == UNDEFINED or tag in tags or tag in sequences:
                        break
                elif tag in tags:
                    after = pos + 8 + length
                    if after > end or vr not in _VRS:
                        break
                    elements[tag] = new(Element, (vr, bytes(view[pos + 8:after]), False, True))
                else:
                    after = pos + 8 + length
                    if after > end or group == 0xFFFE or tag in sequences or vr not in _VRS:
                        break
                pos = after
        self.last_tag = max(self.last_tag, tag)
        self._at += pos - start
        return pos

    def _step(self, view: memoryview, pos: int) -> int:
        """Consume one piece at ``pos``; return the position after it (-1: a cut header)."""
        start = pos
        if self._skip:
            step = min(self._skip, len(view) - pos)
            self._skip -= step
            pos += step
        elif self._fill is not None:
            step = min(self._fill_left, len(view) - pos)
            self._fill += view[pos:pos + step]
            self._fill_left -= step
            pos += step
            if not self._fill_left:
                self._keep_value(bytes(self._fill))
        elif self._stack and self._stack[-1].end == self._at:
            self._close()
            return pos
        else:
            used = self._element(view, pos)
            if used < 0:
                return -1
            pos += used
        self._at += pos - start
        if self._record is not None:
            self._record += view[start:pos]
            if len(self._record) + self._kept > self.limit:
                self._record = None  # too large to keep: the key (or item) is left out
        if self._closing:
            self._closing = False
            self._close()
        return pos

    def _element(self, view: memoryview, pos: int) -> int:
        """Handle the element whose header starts at ``pos``; the bytes used, -1 if cut."""
        frame = self._stack[-1] if self._stack else None
        implicit, little = (frame.implicit, frame.little) if frame else (self.implicit,
                                                                           self.little)
        if len(view) - pos < 8:
            return -1
        group, elem = _TAG[little].unpack_from(view, pos)
        if group == 0xFFFE:  # items and delimiters: tag and length, no VR (PS3.5 7.5)
            return self._delimiter(group << 16 | elem, _U32[little].unpack_from(view, pos + 4)[0])
        if frame is None and self._first:
            self._first = False
            implicit = self.implicit = _looks_implicit(view, pos)
        if implicit:
            vr, length, size = b"", _U32[little].unpack_from(view, pos + 4)[0], 8
        else:
            vr = bytes(view[pos + 4:pos + 6])
            if vr in _LONG_VRS:
                if len(view) - pos < 12:
                    return -1
                length, size = _U32[little].unpack_from(view, pos + 8)[0], 12
            elif vr in _VRS:
                length, size = _U16[little].unpack_from(view, pos + 6)[0], 8
            else:
                self.stop(f"unknown VR {vr!r} in ({group:04X},{elem:04X})")
                return 0
        tag = group << 16 | elem
        if frame is None:
            return self._top_level(tag, vr, length, size, implicit, view, pos)
        if frame.root and tag == RELATIONSHIP_TYPE and length <= 64:
            if len(view) - pos < size + length:
                return -1
            self._relationship = bytes(view[pos + size:pos + size + length]).rstrip(b" \0")
            if self._relationship != HAS_CONCEPT_MOD:
                self._record = None  # this root item is not kept
        if length == UNDEFINED:
            self._open(None, False, implicit or vr == b"UN", little, False)
        else:
            self._skip = length
        return size

    def _top_level(self, tag: int, vr: bytes, length: int, size: int, implicit: bool,
                   view: memoryview, pos: int) -> int:
        wanted = self.wanted
        self.last_tag = max(self.last_tag, tag)
        if tag > wanted.last:
            self.done = True
            return 0
        if tag in wanted.sequences:
            self.seen.add(tag)
            if vr in (b"", b"SQ", b"UN") or length == UNDEFINED:
                self._begin_sequence(tag, length, implicit or vr == b"UN", size)
                return size
        elif tag in wanted.tags:
            self.seen.add(tag)
            if length != UNDEFINED and length <= VALUE_LIMIT:
                self._fill_key = (tag, vr)
                if len(view) - pos >= size + length:  # whole in this chunk: the usual case
                    self._keep_value(bytes(view[pos + size:pos + size + length]))
                    return size + length
                self._fill, self._fill_left = bytearray(), length
                return size
        if length == UNDEFINED:
            self._open(None, False, implicit or vr == b"UN", self.little, False)
        else:
            self._skip = length
        return size

    def _delimiter(self, tag: int, length: int) -> int:
        frame = self._stack[-1] if self._stack else None
        if tag == ITEM and frame is not None and not frame.is_item:
            root = (self._sequence is not None and self._sequence[0] == CONTENT_SEQUENCE
                    and len(self._stack) == 1)
            if root:  # looked into for its RelationshipType, recorded from its header
                self._record, self._relationship = bytearray(), None
            elif length != UNDEFINED:  # an item (or pixel fragment) stepped over whole
                self._skip = length
                return 8
            self._open(None if length == UNDEFINED else self._at + 8 + length, True,
                       frame.implicit, frame.little, root)
            return 8
        if frame is not None and frame.end is None and (
                (tag == ITEM_END and frame.is_item) or (tag == SEQUENCE_END
                                                        and not frame.is_item)):
            self._closing = True
            return 8
        self.stop(f"misplaced item or delimiter ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        return 0

    def _open(self, end: int | None, is_item: bool, implicit: bool, little: bool,
              root: bool) -> None:
        stack = self._stack
        if len(stack) >= MAX_DEPTH:
            self.stop(f"sequences nested deeper than {MAX_DEPTH}")
        elif end is not None and stack and stack[-1].end is not None and end > stack[-1].end:
            self.stop("an item is longer than its sequence")
        else:
            stack.append(_Frame(end, is_item, implicit, little, root))

    def _close(self) -> None:
        frame = self._stack.pop()
        if frame.root:
            if self._record is not None and self._relationship == HAS_CONCEPT_MOD:
                self._items.append(bytes(self._record))
                self._kept += len(self._items[-1])
            self._record = None
        if not self._stack and self._sequence is not None:
            self._end_sequence()

    def _begin_sequence(self, tag: int, length: int, implicit: bool, size: int) -> None:
        self._sequence = (tag, implicit, self.little)
        self._items = []
        # The header is recorded by _step with the bytes it used; a ContentSequence is
        # recorded item by item instead.
        self._record = None if tag == CONTENT_SEQUENCE else bytearray()
        self._open(None if length == UNDEFINED else self._at + size + length, False, implicit,
                   self.little, False)

    def _end_sequence(self) -> None:
        assert self._sequence is not None
        tag, implicit, little = self._sequence
        record, self._record, self._sequence = self._record, None, None
        if tag == CONTENT_SEQUENCE:  # the kept root items, in a sequence of undefined length
            pack, u32 = _TAG[little].pack, _U32[little].pack
            head = pack(tag >> 16, tag & 0xFFFF) + (
                u32(UNDEFINED) if implicit else b"SQ\0\0" + u32(UNDEFINED))
            self.elements[tag] = Element(b"SQ", b"".join(
                [head, *self._items, pack(0xFFFE, 0xE0DD), bytes(4)]), implicit, little)
        elif record is not None:
            self._kept += len(record)
            self.elements[tag] = Element(b"SQ", bytes(record), implicit, little)

    def _keep_value(self, value: bytes) -> None:
        self._fill = None
        tag, vr = self._fill_key
        if not self.little and vr in _WIDTH:
            value = _little_endian(value, _WIDTH[vr])
        self.elements[tag] = Element(vr, value)


def _looks_implicit(view: memoryview, pos: int) -> bool:
    """pydicom's rule for the first element: the bytes decide over the transfer syntax
    (a VR where Implicit VR has a length, or none where Explicit VR has one)."""
    return bytes(view[pos + 4:pos + 6]) not in _VRS


def _little_endian(value: bytes, width: int) -> bytes:
    """Big-endian numbers of ``width`` bytes each, made little endian."""
    if len(value) % width:
        return value
    fmt = f"{len(value) // width}{ {2: 'H', 4: 'I', 8: 'Q'}[width]}"
    return struct.pack("<" + fmt, *struct.unpack(">" + fmt, value))
