"""Data set layouts learned from the earlier instances of a ZIP: compare, don't walk.

The instances of a series come from one writer and share their header's layout: the same
elements in the same order, most with the same lengths. The walker of :mod:`zipproxy.dicomwalk`
steps through every element header in Python, about half a microsecond each; a layout checks a
run of element headers with one ``struct`` unpack and one tuple comparison, both in C, and takes
the kept values with one more unpack.

A :class:`Layout` is recorded from a data set that the walker would read element by element in
its hot loop (Explicit VR Little Endian, top level, defined lengths, no kept long-VR value, no
sequence and no item before the stop), up to the first element past the last wanted tag. It is
used for a later data set only when every element header up to that stop is equal, tag, VR and
length (PS3.5 7.1.2): the bytes then have the same structure, so the kept values sit at the same
offsets and the walker would have kept exactly these. Anything else (one header that differs, a
chunk too short) is a miss, and the walker reads the data set as always.

Elements whose length changes between instances (a SOPInstanceUID that grows a digit, an
ImagePositionPatient) are marked *volatile* when a miss shows it: their header is read and
checked one by one, and the runs between them stay one comparison each. A ZIP keeps a few
layouts per set of wanted tags; when misses outweigh hits it stops learning, so a study of
ever-changing layouts costs at most a few extra walks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from itertools import repeat
from typing import Final, NamedTuple

from .dicomwalk import _HEADER, EXPLICIT_HEAD, U32, UNDEFINED, Element, Wanted

KEPT_PER_WANTED: Final = 4  # layouts kept for one set of wanted tags (series of one study)
_TAG: Final = struct.Struct("<HH")
_NEW: Final = tuple.__new__


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
    """The element headers of one data set up to its stop, and the plan that checks them."""

    def __init__(self, specs: list[_Spec]) -> None:
        self.specs = specs
        self.volatile: set[int] = set()
        self.kept_tags = tuple(s.group << 16 | s.elem for s in specs if s.keep)
        self.kept_vrs = tuple(s.vr for s in specs if s.keep)
        self.plan: list[_Run | _Volatile] = []
        self._compile()

    def same_elements(self, other: Layout) -> bool:
        """The same headers but for their lengths."""
        return len(self.specs) == len(other.specs) and all(
            (a.group, a.elem, a.vr, a.size, a.keep) == (b.group, b.elem, b.vr, b.size, b.keep)
            for a, b in zip(self.specs, other.specs, strict=True))

    def widen(self, other: Layout) -> None:
        """Mark as volatile the elements whose length differs in ``other``."""
        changed = {i for i, (a, b) in enumerate(zip(self.specs, other.specs, strict=True))
                   if a.length != b.length}
        if not changed <= self.volatile:
            self.volatile |= changed
            self._compile()

    def match(self, view: memoryview, pos: int, end: int, last: int
              ) -> tuple[dict[int, Element], int, int] | None:
        """``(kept elements, offset of the stop element, its tag)``, or None on any doubt."""
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
        if tag <= last:
            return None
        elements = dict(zip(self.kept_tags, map(
            _NEW, repeat(Element), zip(self.kept_vrs, values, repeat(False), repeat(True))),
            strict=True))
        return elements, pos, tag

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


def record(view: memoryview, pos: int, end: int, wanted: Wanted) -> Layout | None:
    """The layout of the data set at ``pos``, if the walker's hot loop would read all of it up
    to the stop within ``view`` (the rules of ``DataSetWalker._run``); else None."""
    kept, last = wanted.kept, wanted.last
    specs: list[_Spec] = []
    while end - pos >= 12:
        group, elem, vr, length = EXPLICIT_HEAD.unpack_from(view, pos)
        tag = group << 16 | elem
        if tag > last:
            return Layout(specs)
        size = _HEADER.get(vr)
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
    """The layouts of one ZIP, per set of wanted tags (one per SOP Class, from
    ``records.wanted_for``), most recently used first."""

    def __init__(self) -> None:
        self._by_wanted: dict[int, tuple[Wanted, list[Layout]]] = {}
        self.hits = 0
        self.misses = 0

    def match(self, wanted: Wanted, view: memoryview, pos: int, end: int
              ) -> tuple[dict[int, Element], int, int] | None:
        entry = self._by_wanted.get(id(wanted))
        if entry is not None and entry[0] is wanted:
            layouts = entry[1]
            for i, layout in enumerate(layouts):
                found = layout.match(view, pos, end, wanted.last)
                if found is not None:
                    if i:
                        layouts.insert(0, layouts.pop(i))
                    self.hits += 1
                    return found
        self.misses += 1
        return None

    @property
    def learning(self) -> bool:
        """Worth recording a missed data set: not while misses outweigh hits."""
        return self.misses <= 16 + self.hits

    def learn(self, wanted: Wanted, layout: Layout) -> None:
        """Keep ``layout``: as volatile lengths of a known one with the same elements, or new."""
        entry = self._by_wanted.get(id(wanted))
        if entry is None or entry[0] is not wanted:
            entry = self._by_wanted[id(wanted)] = (wanted, [])
        layouts = entry[1]
        for i, known in enumerate(layouts):
            if known.same_elements(layout):
                known.widen(layout)
                layouts.insert(0, layouts.pop(i))
                return
        layouts.insert(0, layout)
        del layouts[KEPT_PER_WANTED:]
