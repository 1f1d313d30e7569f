"""The spool of what a ZIP keeps until its end: every record read back as appended, in any
order, whether it stayed in memory or moved to its file, gathered appends included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from zipproxy.spool import PIECE, Spool

_RECORDS = st.lists(st.binary(max_size=3000), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(records=_RECORDS, memory=st.sampled_from([512, 4096, 1 << 20]), data=st.data())
def test_records_read_back_in_any_order(records: list[bytes], memory: int,
                                        data: st.DataObject) -> None:
    spool = Spool(memory=memory)
    try:
        offsets = [spool.append(r) for r in records]
        assert offsets == [sum(map(len, records[:i])) for i in range(len(records))]
        assert spool.size == sum(map(len, records))
        assert spool.on_disk == (spool.size > memory)
        # A DICOMDIR reads its series' runs one after another: forwards within a run, but
        # the runs of interleaved series jump back and forth in the spool.
        order = data.draw(st.permutations(range(len(records))))
        got = list(spool.records([offsets[i] for i in order], [len(records[i]) for i in order]))
        assert got == [records[i] for i in order]
        assert b"".join(spool.pieces(size=1000)) == b"".join(records)
    finally:
        spool.close()


def test_a_record_larger_than_a_read_piece() -> None:
    big, small = bytes(range(256)) * (PIECE // 256 + 3), b"after"
    spool = Spool(memory=1024)
    try:
        offsets = [spool.append(small), spool.append(big), spool.append(small)]
        got = list(spool.records(offsets[::-1], [len(small), len(big), len(small)]))
        assert got == [small, big, small]
    finally:
        spool.close()


def test_appends_still_gathered_are_read_too() -> None:
    # The default memory: a few small appends stay in the gather buffer until a read.
    for read in ("pieces", "records"):
        spool = Spool()
        try:
            spool.append(b"one")
            spool.append(b"two")
            if read == "pieces":
                assert b"".join(spool.pieces()) == b"onetwo"
            else:
                assert list(spool.records([3, 0], [3, 3])) == [b"two", b"one"]
        finally:
            spool.close()
