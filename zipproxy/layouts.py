"""Header layouts learned from the earlier instances of a ZIP: compare, don't walk.

The instances of a series come from one writer and share their header's layout: the same
elements in the same order, most with the same lengths. The scanner of :mod:`zipproxy.dicomscan`
steps through every element header in Python, about half a microsecond each; a layout checks a
run of element headers with one ``struct`` unpack and one tuple comparison, both in C, and takes
the kept values with one more unpack.

A :class:`Layout` is recorded from an instance whose File Meta Information (PS3.10 7.1) and data
set the scanner read element by element in its hot loops: the data set in Explicit VR Little
Endian, top level, defined lengths, no kept long-VR value, no sequence and no item before the
stop, the first element past the last wanted tag. It is used for a later instance only when
every element header from the File Meta to that stop is equal, tag, VR and length (PS3.5
7.1.2), and its SOP Class and Transfer Syntax are the same: the bytes then have the same
structure, so the kept values sit at the same offsets and the scanner would have kept exactly
these. Anything else (one header that differs, a first chunk too short) is a miss, and the
scanner reads the instance as always.

Elements whose length changes between instances (a SOPInstanceUID that grows a digit, an
ImagePositionPatient) are marked *volatile* when a miss shows it: their header is read and
checked one by one, and the runs between them stay one comparison each. A ZIP keeps a few
layouts; when misses outweigh hits it stops learning, so a study of ever-changing layouts
costs at most a few extra walks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Final, NamedTuple

from .dicomwalk import EXPLICIT_HEAD, HEADER_SIZE, U32, UNDEFINED, Element, Wanted

KEPT: Final = 8  # layouts kept per ZIP, most recently used first (a study's series)
_TAG: Final = struct.Struct("<HH")
_SOP_CLASS: Final = 0x00020002  # MediaStorageSOPClassUID: which keys the scanner keeps
_SYNTAX: Final = 0x00020010  # TransferSyntaxUID: how the data set is encoded


class _Spec(NamedTuple):
    """One element header of a layout (its value is ``length`` bytes after ``size``)."""

    group: int
    elem: int
    vr: bytes
    length: int
    size: int  # header bytes: 8, or 12 for the long VRs (PS3.5 7.1.2)
    keep: bool


class _Run(NamedTuple):
    """Consecutive elements of fixed lengths: checked by one unpack, kept values by another."""

    heads: Callable[[memoryview, int], tuple[object, ...]]
    expected: tuple[object, ...]
    values: Callable[[memoryview, int], tuple[bytes, ...]]
    span: int


class _Volatile(NamedTuple):
    """An element whose length changes from instance to instance: read on its own."""

    group: int
    elem: int
    vr: bytes
    size: int
    keep: bool


class Layout:
    """The element headers of one instance from its File Meta to its stop, and the plan that
    checks them. The first ``len(meta_tags)`` kept values are the File Meta's."""

    def __init__(self, specs: list[_Spec], meta: list[_Spec], wanted: Wanted,
                 sop_class: bytes, syntax: bytes) -> None:
        self.specs = [*meta, *specs]
        self.wanted = wanted
        self.sop_class, self.syntax = sop_class, syntax  # as the File Meta holds them
        self.volatile: set[int] = set()
        self.meta_tags = tuple(s.group << 16 | s.elem for s in meta if s.keep)
        self.kept_tags = tuple(s.group << 16 | s.elem for s in specs if s.keep)
        self.kept_vrs = tuple(s.vr for s in specs if s.keep)
        self.plan: list[_Run | _Volatile] = []
        self._compile()
        # Most kept values repeat from instance to instance (the patient's, the study's, the
        # series'): their elements are made once and shared; only those seen to change (the
        # SOPInstanceUID, the InstanceNumber) are made for each instance.
        self._changing: tuple[int, ...] = ()  # positions among the kept data set values
        self._stable: tuple[int, ...] = tuple(range(len(self.kept_tags)))
        self._stable_values: tuple[bytes, ...] | None = None
        self._stable_elements: dict[int, Element] = {}

    def same_elements(self, other: Layout) -> bool:
        """The same headers but for their lengths, for the same SOP Class and syntax."""
        return (self.wanted is other.wanted and self.sop_class == other.sop_class
                and self.syntax == other.syntax and len(self.specs) == len(other.specs)) and all(
            (a.group, a.elem, a.vr, a.size, a.keep) == (b.group, b.elem, b.vr, b.size, b.keep)
            for a, b in zip(self.specs, other.specs, strict=True))

    def widen(self, other: Layout) -> None:
        """Mark as volatile the elements whose length differs in ``other``."""
        changed = {i for i, (a, b) in enumerate(zip(self.specs, other.specs, strict=True))
                   if a.length != b.length}
        if not changed <= self.volatile:
            self.volatile |= changed
            self._compile()

    def match(self, view: memoryview, pos: int, end: int
              ) -> tuple[dict[int, bytes], dict[int, Element], int] | None:
        """``(File Meta values, kept data set elements, the stop's tag)``, or None on any
        doubt."""
        values: list[bytes] = []
        for step in self.plan:
            if type(step) is _Run:
                if end - pos < step.span or step.heads(view, pos) != step.expected:
                    return None
                values += step.values(view, pos)
                pos += step.span
                continue
            assert isinstance(step, _Volatile)
            if end - pos < 12:
                return None
            group, elem, vr, length = EXPLICIT_HEAD.unpack_from(view, pos)
            if group != step.group or elem != step.elem or vr != step.vr:
                return None
            if step.size == 12:
                length = U32[True].unpack_from(view, pos + 8)[0]
                if length == UNDEFINED:
                    return None
            after = pos + step.size + length
            if after > end:
                return None
            if step.keep:
                values.append(bytes(view[pos + step.size:after]))
            pos = after
        # The stop: a whole header must be there, as the walker's loop reads one (PS3.5 7.1.2).
        if end - pos < 12:
            return None
        group, elem = _TAG.unpack_from(view, pos)
        tag = group << 16 | elem
        if tag <= self.wanted.last:
            return None
        meta = dict(zip(self.meta_tags, values, strict=False))
        if meta.get(_SOP_CLASS) != self.sop_class or meta.get(_SYNTAX) != self.syntax:
            return None  # another SOP Class (other keys) or syntax, in the same layout
        kept = values[len(self.meta_tags):]
        if tuple(map(kept.__getitem__, self._stable)) == self._stable_values:
            elements = self._stable_elements.copy()
            elements.update(_elements(self.kept_tags, self.kept_vrs, kept, self._changing))
        else:
            elements = dict(_elements(self.kept_tags, self.kept_vrs, kept,
                                      range(len(kept))))
            self._restabilize(kept, elements)
        return meta, elements, tag

    def _restabilize(self, kept: list[bytes], elements: dict[int, Element]) -> None:
        """Values that differ from the last stable ones are changing from now on."""
        last = self._stable_values
        if last is not None:
            changed = {i for i, old in zip(self._stable, last, strict=True) if kept[i] != old}
            self._changing = tuple(sorted({*self._changing, *changed}))
            self._stable = tuple(i for i in self._stable if i not in changed)
        self._stable_values = tuple(map(kept.__getitem__, self._stable))
        self._stable_elements = {self.kept_tags[i]: elements[self.kept_tags[i]]
                                 for i in self._stable}

    def _compile(self) -> None:
        """Runs of fixed elements between the volatile ones, each as two struct formats."""
        plan: list[_Run | _Volatile] = []
        expected: list[object] = []
        heads, values, span = "<", "<", 0
        for i, s in enumerate(self.specs):
            if i in self.volatile:
                if span:
                    plan.append(_Run(struct.Struct(heads).unpack_from, tuple(expected),
                                     struct.Struct(values).unpack_from, span))
                    heads, values, expected, span = "<", "<", [], 0
                plan.append(_Volatile(s.group, s.elem, s.vr, s.size, s.keep))
                continue
            heads += f"HH2sH{s.length}x" if s.size == 8 else f"HH2s2xI{s.length}x"
            values += f"{s.size}x{s.length}{'s' if s.keep else 'x'}"
            expected += (s.group, s.elem, s.vr, s.length)
            span += s.size + s.length
        if span:
            plan.append(_Run(struct.Struct(heads).unpack_from, tuple(expected),
                             struct.Struct(values).unpack_from, span))
        self.plan = plan


def _elements(tags: tuple[int, ...], vrs: tuple[bytes, ...], values: list[bytes],
              positions: Iterable[int]) -> Iterator[tuple[int, Element]]:
    """(tag, Element) of the kept values at ``positions`` (explicit VR, little endian)."""
    return ((tags[i], Element(vrs[i], values[i], False, True)) for i in positions)


def record(view: memoryview, meta_start: int, data_set: int, wanted: Wanted,
           meta_kept: frozenset[int]) -> Layout | None:
    """The layout of the instance in ``view``, whose File Meta elements run from
    ``meta_start`` to ``data_set`` (``meta_kept``: the element numbers of group 0002 that are
    kept), if the scanner would read all of it up to the stop within ``view`` in its hot
    loops (the rules of ``_parse_meta`` and ``DataSetWalker._run``); else None."""
    meta: list[_Spec] = []
    pos = meta_start
    while pos < data_set:
        if data_set - pos < 8:
            return None
        group, elem, vr, length = EXPLICIT_HEAD.unpack_from(view, pos)
        size = HEADER_SIZE.get(vr)
        if group != 0x0002 or size is None:
            return None
        if size == 12:
            length = U32[True].unpack_from(view, pos + 8)[0]
        keep = elem in meta_kept
        if keep and size == 12:
            return None
        meta.append(_Spec(group, elem, vr, length, size, keep))
        pos += size + length
    if pos != data_set:
        return None
    values = {s.group << 16 | s.elem: s for s in meta}
    sop_class, syntax = values.get(_SOP_CLASS), values.get(_SYNTAX)
    if sop_class is None or syntax is None:
        return None
    specs = _data_set(view, data_set, len(view), wanted)
    if specs is None:
        return None
    return Layout(specs, meta, wanted, _value(view, meta_start, meta, sop_class),
                  _value(view, meta_start, meta, syntax))


def _value(view: memoryview, start: int, meta: list[_Spec], spec: _Spec) -> bytes:
    """The value of ``spec``, one of the ``meta`` elements from ``start``."""
    pos = start
    for s in meta:
        if s is spec:
            return bytes(view[pos + s.size:pos + s.size + s.length])
        pos += s.size + s.length
    raise ValueError("not an element of meta")


def _data_set(view: memoryview, pos: int, end: int, wanted: Wanted) -> list[_Spec] | None:
    """The data set's element headers up to the stop, by the rules of the walker's hot loop."""
    kept, last = wanted.kept, wanted.last
    specs: list[_Spec] = []
    while end - pos >= 12:
        group, elem, vr, length = EXPLICIT_HEAD.unpack_from(view, pos)
        tag = group << 16 | elem
        if tag > last:
            return specs
        size = HEADER_SIZE.get(vr)
        if size is None or group == 0xFFFE:
            return None
        keep = kept.get(tag)
        if size == 12:
            length = U32[True].unpack_from(view, pos + 8)[0]
            if length == UNDEFINED or keep is not None:
                return None
        elif keep is False:  # a sequence with a short VR: the walker's slow path decides
            return None
        after = pos + size + length
        if after > end:
            return None
        specs.append(_Spec(group, elem, vr, length, size, keep is True))
        pos = after
    return None


class Layouts:
    """The layouts of one ZIP's instances, most recently used first."""

    def __init__(self) -> None:
        self._layouts: list[Layout] = []
        self.hits = 0
        self.misses = 0

    def match(self, view: memoryview, start: int
              ) -> tuple[dict[int, bytes], dict[int, Element], int] | None:
        """The instance in ``view`` (its File Meta at ``start``) read by a known layout."""
        layouts = self._layouts
        end = len(view)
        for i, layout in enumerate(layouts):
            found = layout.match(view, start, end)
            if found is not None:
                if i:
                    layouts.insert(0, layouts.pop(i))
                self.hits += 1
                return found
        self.misses += 1
        return None

    @property
    def learning(self) -> bool:
        """Worth recording a missed instance: not while misses outweigh hits."""
        return self.misses <= 16 + self.hits

    def learn(self, layout: Layout) -> None:
        """Keep ``layout``: as volatile lengths of a known one with the same elements, or new."""
        layouts = self._layouts
        for i, known in enumerate(layouts):
            if known.same_elements(layout):
                known.widen(layout)
                layouts.insert(0, layouts.pop(i))
                return
        layouts.insert(0, layout)
        del layouts[KEPT:]
