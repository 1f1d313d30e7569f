"""The DICOMDIR's directory record sequence laid out (PS3.3 F.3.2.1): every record in
depth-first pre-order, its offset worked out from the record lengths, then streamed with the
next-record (0004,1400) and lower-level (0004,1420) offsets patched in.

The entity records (PATIENT, STUDY, SERIES) are bytes by then; the leaf records of a series are
a run of spool references (:class:`Entity`), read back one by one, so the whole DICOMDIR never
sits in memory.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator
from typing import Final

from .spool import Spool

NEXT_AT: Final = 8  # value of (0004,1400) inside a record's item value
LOWER_AT: Final = 30  # value of (0004,1420): after 1400 (12 bytes) and 1410 (10 bytes)
ITEM: Final = struct.Struct("<HHI")

Value = tuple[bytes, bytes]  # (value as the instance encoded it, its Specific Character Set)


class Entity:
    """A STUDY or a SERIES: the first value of each key among its instances, and below it."""

    __slots__ = ("children", "index", "last", "offsets", "parent", "sizes", "uid", "values")

    def __init__(self, uid: bytes, index: int) -> None:
        self.uid, self.index = uid, index
        self.values: dict[str, Value] = {}
        self.last: tuple[object, ...] = ()  # a series: the entity keys of its last instance
        self.children: dict[bytes, Entity] = {}  # a study's series
        self.parent: Entity | None = None  # a series' study
        self.offsets = array("Q")  # a series' leaf records in the spool ...
        self.sizes = array("I")  # ... and their lengths


class Layout:
    """The records in file order: entity records as bytes, leaf runs as spool references."""

    def __init__(self) -> None:
        self.records: list[bytes | Entity] = []  # an Entity stands for its run of leaves
        self.sizes: list[int] = []  # item bytes of each (a run: all its items)
        self.next: list[int] = []  # index of the next sibling, -1: none
        self.lower: list[int] = []  # index of the first child, -1: none
        self.last_root = -1  # the last record (or run) of the root directory entity

    def add(self, record: bytes, last: int, parent: int = -1) -> int:
        """Append a record after sibling ``last`` (-1: the first of ``parent``)."""
        self.records.append(record)
        self.sizes.append(8 + len(record))
        self.next.append(-1)
        self.lower.append(-1)
        index = len(self.records) - 1
        if last >= 0:
            self.next[last] = index
        elif parent >= 0:
            self.lower[parent] = index
        if parent < 0:
            self.last_root = index
        return index

    def add_leaves(self, entity: Entity, parent: int, after: int = -1) -> None:
        if not entity.sizes:
            return
        self.records.append(entity)
        self.sizes.append(8 * len(entity.sizes) + sum(entity.sizes))
        self.next.append(-1)
        self.lower.append(-1)
        index = len(self.records) - 1
        if parent >= 0:
            if self.lower[parent] < 0:
                self.lower[parent] = index
        else:  # root-level leaves follow the last PATIENT record
            if after >= 0:
                self.next[after] = index
            self.last_root = index

    def last_root_offset(self, offsets: list[int]) -> int:
        """Where the root directory entity's last record starts (PS3.3 F.3.2.1)."""
        index = self.last_root
        if index < 0:
            return 0
        record = self.records[index]
        if isinstance(record, Entity):  # a run of root-level leaves: its last leaf
            return offsets[index + 1] - 8 - record.sizes[-1]
        return offsets[index]

    def offsets(self, start: int) -> list[int]:
        """Where each record (or run) starts, and where the sequence ends (the last entry)."""
        out = [start]
        for size in self.sizes:
            out.append(out[-1] + size)
        return out

    def emit(self, directory: bytes, offsets: list[int], spool: Spool) -> Iterator[bytes]:
        """Yield the DICOMDIR: ``directory`` (up to the sequence header), then every item."""
        buffer = bytearray(directory)
        for index, record in enumerate(self.records):
            if isinstance(record, Entity):
                at = offsets[index]
                runs = len(record.sizes)
                for n, (size, stored) in enumerate(zip(
                        record.sizes, spool.records(record.offsets, record.sizes),
                        strict=True)):
                    leaf = bytearray(stored)
                    # The next leaf of the run follows this one; the run's last leaf links
                    # to the run's next sibling (a root-level run), else to nothing.
                    nxt = at + 8 + size if n + 1 < runs else _link(self.next[index], offsets)
                    struct.pack_into("<I", leaf, NEXT_AT, nxt)
                    buffer += ITEM.pack(0xFFFE, 0xE000, size) + leaf
                    at += 8 + size
                    if len(buffer) >= 1 << 18:
                        yield bytes(buffer)
                        buffer.clear()
                continue
            item = bytearray(record)
            struct.pack_into("<I", item, NEXT_AT, _link(self.next[index], offsets))
            struct.pack_into("<I", item, LOWER_AT, _link(self.lower[index], offsets))
            buffer += ITEM.pack(0xFFFE, 0xE000, len(item)) + item
        if buffer:
            yield bytes(buffer)
        spool.close()  # every leaf has been read back


def _link(index: int, offsets: list[int]) -> int:
    return offsets[index] if index >= 0 else 0
