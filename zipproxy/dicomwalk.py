"""The data set walker of :mod:`zipproxy.dicomscan`: element headers, values stepped over or
kept, sequences and items (PS3.5 7.1, 7.5), with no I/O and no copy of what it steps over.

It is fed the data set (after the File Meta Information, already inflated when it was
deflated) in pieces as they arrive, and keeps only the wanted top-level values and the wanted
sequences, encoded: see :class:`DataSetWalker`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final, NamedTuple

VALUE_LIMIT: Final = 1 << 16  # a longer wanted value is not a directory key (LT is 10240)
MAX_DEPTH: Final = 256  # open sequences and items; SR trees are deep, never this deep
UNDEFINED: Final = 0xFFFFFFFF
ITEM: Final = 0xFFFEE000
ITEM_END: Final = 0xFFFEE00D
SEQUENCE_END: Final = 0xFFFEE0DD
CONTENT_SEQUENCE: Final = 0x0040A730
RELATIONSHIP_TYPE: Final = 0x0040A010
HAS_CONCEPT_MOD: Final = b"HAS CONCEPT MOD"

# PS3.5 7.1.2: these VRs have two reserved bytes and a 4-byte length.
LONG_VRS: Final = frozenset(vr.encode() for vr in (
    "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"))
VRS: Final = LONG_VRS | frozenset(vr.encode() for vr in (
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL",
    "SS", "ST", "TM", "UI", "UL", "US"))
# An element header's size by its VR (PS3.5 7.1.2): 12 bytes for the long VRs, 8 otherwise.
HEADER_SIZE: Final = {vr: 12 if vr in LONG_VRS else 8 for vr in VRS}
_WIDTH: Final = {b"US": 2, b"SS": 2, b"AT": 2, b"OW": 2, b"UL": 4, b"SL": 4, b"FL": 4,
                 b"OL": 4, b"OF": 4, b"FD": 8, b"OD": 8, b"SV": 8, b"UV": 8, b"OV": 8}
_TAG: Final = {True: struct.Struct("<HH"), False: struct.Struct(">HH")}
_U16: Final = {True: struct.Struct("<H"), False: struct.Struct(">H")}
U32: Final = {True: struct.Struct("<I"), False: struct.Struct(">I")}
EXPLICIT_HEAD: Final = struct.Struct("<HH2sH")  # Explicit VR Little Endian: tag, VR, short length
_IMPLICIT_HEAD: Final = struct.Struct("<HHI")  # Implicit VR Little Endian: tag, length


@dataclass(frozen=True)
class Wanted:
    """The top-level elements to keep, by tag; ``sequences`` are kept encoded."""

    tags: frozenset[int]
    sequences: frozenset[int] = frozenset()
    last: int = field(init=False)  # reading stops at the first top-level tag past this
    # Tags and sequences in one dict, True for a value: the hot loop's one lookup per tag.
    kept: dict[int, bool] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "last", max(self.tags | self.sequences, default=0))
        object.__setattr__(self, "kept", {**dict.fromkeys(self.sequences, False),
                                          **dict.fromkeys(self.tags, True)})


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


class _Frame:
    """An open sequence or item: where it ends (None: at its delimiter) and how it is encoded;
    ``root`` marks a root item of a kept ContentSequence."""

    __slots__ = ("end", "implicit", "is_item", "little", "root")

    def __init__(self, end: int | None, is_item: bool, implicit: bool, little: bool,
                 root: bool) -> None:
        self.end, self.is_item, self.implicit, self.little, self.root = (
            end, is_item, implicit, little, root)


class DataSetWalker:
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
        kept, last = wanted.kept, wanted.last
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
                if after > end or length == UNDEFINED or tag in kept:
                    break
                pos = after
        else:
            head, u32, header_size = EXPLICIT_HEAD.unpack_from, U32[True].unpack_from, HEADER_SIZE
            new = _TUPLE_NEW
            while end - pos >= 12:
                group, elem, vr, length = head(view, pos)
                tag = group << 16 | elem
                if tag > last:
                    self.done = True
                    break
                # One lookup for the VR, one for the tag: the common element costs two.
                size = header_size.get(vr)
                if size == 12:
                    length = u32(view, pos + 8)[0]
                    after = pos + 12 + length
                    if after > end or length == UNDEFINED or tag in kept:
                        break
                else:
                    after = pos + 8 + length
                    if size is None or after > end or group == 0xFFFE:
                        break
                    keep = kept.get(tag)
                    if keep is not None:
                        if not keep:  # a sequence with a short VR: malformed, _step decides
                            break
                        elements[tag] = new(Element, (vr, bytes(view[pos + 8:after]), False,
                                                      True))
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
            return self._delimiter(group << 16 | elem, U32[little].unpack_from(view, pos + 4)[0])
        if frame is None and self._first:
            self._first = False
            implicit = self.implicit = _looks_implicit(view, pos)
        if implicit:
            vr, length, size = b"", U32[little].unpack_from(view, pos + 4)[0], 8
        else:
            vr = bytes(view[pos + 4:pos + 6])
            if vr in LONG_VRS:
                if len(view) - pos < 12:
                    return -1
                length, size = U32[little].unpack_from(view, pos + 8)[0], 12
            elif vr in VRS:
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
            pack, u32 = _TAG[little].pack, U32[little].pack
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
    return bytes(view[pos + 4:pos + 6]) not in VRS


def _little_endian(value: bytes, width: int) -> bytes:
    """Big-endian numbers of ``width`` bytes each, made little endian."""
    if len(value) % width:
        return value
    fmt = f"{len(value) // width}{ {2: 'H', 4: 'I', 8: 'Q'}[width]}"
    return struct.pack("<" + fmt, *struct.unpack(">" + fmt, value))
