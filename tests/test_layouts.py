"""Layouts (zipproxy/layouts.py): a data set read by a learned layout gives exactly what the
walker gives, and anything that differs falls back to the walker.

The reference for each instance is a scanner without layouts (which test_dicomscan holds to
pydicom); here every instance of a sequence is scanned with one shared :class:`Layouts`, as a
ZIP's instances are, and each result must be equal.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import pytest
from dicomcorpus import make_corpus
from dicomfactory import encode, make
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from zipproxy.dicomscan import DicomScanner, Scan
from zipproxy.layouts import Layouts
from zipproxy.records import pydicom_quietly, wanted_for

PYDICOM_FILES = sorted(Path(str(get_testdata_file("CT_small.dcm"))).parent.glob("*.dcm"))


def scan(data: bytes, layouts: Layouts | None = None, cuts: Iterable[int] = ()) -> Scan:
    scanner = DicomScanner(wanted_for, layouts=layouts)
    for start, end in itertools.pairwise([0, *sorted(cuts), len(data)]):
        if scanner.feed(memoryview(data)[start:end]):
            break
    return scanner.finish()


def scan_all(instances: list[bytes], cuts: int | None = None) -> Layouts:
    """Scan every instance with one Layouts and compare each with the walker's own result."""
    layouts = Layouts()
    for data in instances:
        pieces = range(cuts, len(data), cuts) if cuts else ()
        assert scan(data, layouts, pieces) == scan(data), len(data)
    return layouts


def instance(n: int, vary: bool = True, **changes: object) -> Dataset:
    """The n-th CT instance of a series; with ``vary`` the lengths of several values change
    from instance to instance, as a real scanner's do."""
    ds = make("CT", seed=f"i{n}" + "x" * (n % 7 if vary else 0), number=n * (n if vary else 1))
    ds.ImagePositionPatient = [0, 0, -1.25 * n] if vary else [0, 0, 0]
    ds.SliceLocation = str(round(-1.25 * n, 2)) if vary else "0"
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def series(count: int, vary: bool = True, **changes: object) -> list[bytes]:
    return [encode(instance(n, vary, **changes)) for n in range(1, count + 1)]


def test_a_series_is_read_by_its_layout_after_the_first_instances() -> None:
    layouts = scan_all(series(40))
    assert layouts.hits >= 30, (layouts.hits, layouts.misses)


def test_a_series_of_one_layout_misses_once() -> None:
    layouts = scan_all(series(10, vary=False))
    assert (layouts.hits, layouts.misses) == (9, 1)


def test_every_chunking() -> None:
    """Layouts are only tried on a data set's first bytes: a cut before the stop is a miss."""
    instances = series(6)
    for step in (7, 61, 300, 4096):
        scan_all(instances, cuts=step)


def test_changed_elements_fall_back_to_the_walker() -> None:
    """The same series, then instances with an element more, one less, another VR, a value
    that grows past the stop, a sequence: none may be read by the old layout."""
    base = series(5)
    extra = make("CT", seed="extra")
    extra.Manufacturer = "ACME"
    fewer = make("CT", seed="fewer", omit=["AccessionNumber"])
    with pydicom_quietly():
        other_vr = make("CT", seed="vr")
        other_vr["StudyID"].VR = "LO"
    with_sequence = make("CT", seed="seq")
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = "1.2.3", "4.5.6"
    with_sequence.ReferencedStudySequence = [item]
    layouts = scan_all([*base, *(encode(d) for d in (extra, fewer, other_vr, with_sequence)),
                        *base])
    assert layouts.hits >= 5


def test_interleaved_series_keep_their_layouts() -> None:
    one = series(8, PatientName="A^B")
    two = series(8, PatientName="Somebody^With^A^Longer^Name", StudyDescription="Other")
    layouts = scan_all([x for pair in zip(one, two, strict=True) for x in pair])
    assert layouts.hits >= 10, (layouts.hits, layouts.misses)


def test_implicit_vr_and_the_corpora_are_unchanged() -> None:
    """Syntaxes the layouts do not read, and every shape of the test corpora, twice each."""
    implicit = [encode(make("CT", seed=f"imp{n}"), ImplicitVRLittleEndian) for n in range(4)]
    scan_all(implicit)
    corpus = [inst.data for study in make_corpus() for inst in study.instances
              if len(inst.data) < 2 << 20]
    scan_all(corpus + corpus)
    files = [p.read_bytes() for p in PYDICOM_FILES]
    files = [d for d in files if d[128:132] == b"DICM" and b"\x10\x00UI" in d[:400]]
    with pydicom_quietly():
        scan_all(files + files)


def test_stops_learning_when_layouts_keep_missing() -> None:
    """Every instance different (a new element each time): learning stops, results don't."""
    instances = []
    for n in range(60):
        ds = make("CT", seed=f"n{n}")
        ds.add_new(0x00091000 + n, "LO", "x")  # a private element no other instance has
        instances.append(encode(ds))
    layouts = scan_all(instances)
    assert layouts.hits == 0 and not layouts.learning


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_series_and_chunks(draw: st.DataObject) -> None:
    """Random lengths for a few values of each instance, random chunking of each."""
    count = draw.draw(st.integers(2, 12))
    text = st.text(alphabet="ABCDEFGH^ ", min_size=1, max_size=20)
    instances = []
    for n in range(count):
        ds = make("CT", seed=draw.draw(st.text(max_size=6)) + str(n),
                  number=draw.draw(st.integers(1, 10**6)))
        ds.PatientName = draw.draw(text)
        if draw.draw(st.booleans()):
            ds.StudyDescription = draw.draw(text)
        instances.append(encode(ds))
    layouts = Layouts()
    for data in instances:
        cuts = draw.draw(st.lists(st.integers(1, len(data) - 1), max_size=3))
        assert scan(data, layouts, cuts) == scan(data)


@pytest.mark.parametrize("cut", [1, 131, 132, 200, 400])
def test_a_first_chunk_that_ends_early(cut: int) -> None:
    """The meta, or the data set, cut in its first chunk: the layout is not tried there."""
    instances = series(4, vary=False)
    layouts = scan_all(instances)
    data = instances[-1]
    assert scan(data, layouts, [cut]) == scan(data)


def test_another_element_in_a_volatile_place() -> None:
    """InstanceNumber's length varies, so it is read on its own; an instance with
    AcquisitionNumber (0020,0012) in its place, same length, must not pass for it."""
    instances = series(12)
    ds = instance(13)
    number = ds.InstanceNumber
    del ds.InstanceNumber
    ds.AcquisitionNumber = number
    layouts = scan_all([*instances, encode(ds), *instances[:2]])
    assert layouts.hits >= 8


def test_a_first_chunk_that_ends_at_the_stop() -> None:
    """Cut at every offset around the first element past the last wanted tag."""
    instances = series(4, vary=False)
    layouts = scan_all(instances)
    data = instances[-1]
    stop = data.index(b"\x28\x00\x00\x01")  # BitsAllocated (0028,0100), after Columns
    for cut in range(stop - 2, stop + 14):
        assert scan(data, layouts, [cut]) == scan(data), cut
