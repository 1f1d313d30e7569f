"""DicomScanner: the values it keeps are pydicom's, in any chunking, for objects of any size.

pydicom is the reference: every file of pydicom's own test corpus and every sample built here
is read by both, and the kept values must be equal byte for byte.
"""

from __future__ import annotations

import io
import itertools
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom
import pytest
from dicomfactory import code, encode, make
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from zipproxy.dicomscan import DicomScanner, Scan, Wanted
from zipproxy.dicomwalk import CONTENT_SEQUENCE, VALUE_LIMIT
from zipproxy.errors import InstanceError
from zipproxy.records import pydicom_quietly, record_type, wanted_for

PYDICOM_FILES = sorted(Path(str(get_testdata_file("CT_small.dcm"))).parent.glob("*.dcm"))
NUMBERS = {"US", "SS", "UL", "SL", "FL", "FD", "AT"}


def _undefined_lengths(ds: Dataset) -> Dataset:
    """Encode every sequence and item with undefined length (delimiters, PS3.5 7.5.2)."""
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
    return ds


def _samples() -> dict[str, bytes]:
    cjk = {"charset": "ISO_IR 192", "patient_name": "山田^太郎"}
    return {
        "ct-explicit": encode(make("CT", **cjk)),
        "ct-implicit": encode(make("CT", charset="ISO_IR 100", patient_name="Müller^Jürgen"),
                              ImplicitVRLittleEndian),
        "ct-big-endian": encode(make("CT"), ExplicitVRBigEndian),
        "ct-deflated": encode(make("CT", **cjk), DeflatedExplicitVRLittleEndian),
        "ct-no-pixels": encode(make("CT", pixels=False)),
        "sr": encode(make("SR", **cjk)),
        "sr-implicit": encode(make("SR"), ImplicitVRLittleEndian),
        "sr-undefined": encode(_undefined_lengths(make("SR"))),
        "sr-deflated": encode(make("SR"), DeflatedExplicitVRLittleEndian),
        "ko-undefined-implicit": encode(_undefined_lengths(make("KO", pixels=False)),
                                        ImplicitVRLittleEndian),
        "pdf-small": encode(make("PDF")),
        "pdf-large": encode(make("PDF", pdf=bytes(70_000))),
    }


SAMPLES = _samples()


def scan(data: bytes, cuts: Iterable[int] = ()) -> Scan:
    scanner = DicomScanner(wanted_for)
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in itertools.pairwise(bounds):
        if scanner.feed(memoryview(data)[start:end]):
            break
    return scanner.finish()


def reference(data: bytes) -> Dataset:
    with pydicom_quietly():
        return pydicom.dcmread(io.BytesIO(data))


def assert_as_pydicom(result: Scan, ref: Dataset) -> None:
    """Every wanted top-level element pydicom reads is kept, with pydicom's value."""
    sop_class = str(ref.file_meta.get("MediaStorageSOPClassUID", ""))
    wanted = wanted_for(sop_class)
    for tag in wanted.tags:
        if tag not in ref:
            assert tag not in result.elements, hex(tag)
            continue
        raw = ref.get_item(tag)
        if not isinstance(raw, RawDataElement) or raw.value is None:
            continue
        if len(raw.value) > VALUE_LIMIT:
            assert tag in result.seen and tag not in result.elements
            continue
        got = result.elements[tag].value
        vr = pydicom.datadict.dictionary_VR(tag)
        if ref.is_little_endian is False and vr in NUMBERS:  # kept little endian
            width = {"US": 2, "SS": 2, "AT": 2}.get(vr, 4 if vr in ("UL", "SL", "FL") else 8)
            got = b"".join(got[i:i + width][::-1] for i in range(0, len(got), width))
        assert got == raw.value, hex(tag)
    for tag in wanted.sequences:
        if tag not in ref or not ref[tag].value:
            continue
        elem = result.elements[tag]
        with pydicom_quietly():
            kept = pydicom.filereader.read_dataset(io.BytesIO(elem.value), elem.implicit,
                                                   elem.little)[tag].value
        expected = list(ref[tag].value)
        if tag == CONTENT_SEQUENCE:  # PS3.3 F.5: only the root's HAS CONCEPT MOD items
            expected = [i for i in expected if i.get("RelationshipType") == "HAS CONCEPT MOD"]
        assert list(kept) == expected, hex(tag)
    for tag in (0x00020002, 0x00020003, 0x00020010):
        if tag in ref.file_meta:
            assert result.meta[tag].rstrip(b"\0 ").decode() == str(ref.file_meta[tag].value)


def _pydicom_corpus() -> Iterator[Path]:
    for path in PYDICOM_FILES:
        data = path.read_bytes()
        if data[128:132] == b"DICM" and b"\x10\x00UI" in data[:400]:  # Part-10 with a syntax
            yield path


@pytest.mark.parametrize("path", list(_pydicom_corpus()), ids=lambda p: p.name)
def test_pydicom_corpus_whole_and_in_pieces(path: Path) -> None:
    data = path.read_bytes()
    ref = reference(data)
    whole = scan(data)
    assert_as_pydicom(whole, ref)
    for step in (7, 61, 4096):
        assert scan(data, range(step, len(data), step)) == whole, step


@pytest.mark.parametrize("name", list(SAMPLES))
def test_samples_cut_at_every_offset(name: str) -> None:
    data = SAMPLES[name]
    whole = scan(data)
    assert not whole.problem
    assert_as_pydicom(whole, reference(data))
    for cut in range(1, len(data)):
        assert scan(data, [cut]) == whole, cut


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(SAMPLES)), st.data())
def test_random_chunks_of_a_buffer_that_is_reused(name: str, draw: st.DataObject) -> None:
    """The scanner copies what it keeps: the network buffer may be overwritten later."""
    data = SAMPLES[name]
    cuts = sorted(draw.draw(st.lists(st.integers(1, len(data) - 1), max_size=12)))
    backing = bytearray(data)
    scanner = DicomScanner(wanted_for)
    for start, end in itertools.pairwise([0, *cuts, len(data)]):
        scanner.feed(memoryview(backing)[start:end])
        backing[start:end] = bytes(end - start)
    assert scanner.finish() == scan(data)


def test_stops_before_the_pixels() -> None:
    ds = make("CT")
    ds.PixelData = bytes(2 << 20)
    data = encode(ds)
    scanner = DicomScanner(wanted_for)
    assert scanner.feed(memoryview(data)[: len(data) - (2 << 20)])  # done without the pixels
    assert scanner.finish().problem == ""


def _big_sr(verified: bool) -> Dataset:
    """An SR whose content tree holds 5 MiB of text between two HAS CONCEPT MOD items."""
    ds = make("SR")
    mods = [item for item in ds.ContentSequence if item.RelationshipType == "HAS CONCEPT MOD"]
    bulk = []
    for index in range(80):
        item = Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
        item.ConceptNameCodeSequence = [code("121071", "DCM", "Finding")]
        item.TextValue = f"{index:04d} " + "x" * 65_000
        bulk.append(item)
    late = Dataset()
    late.RelationshipType, late.ValueType = "HAS CONCEPT MOD", "CODE"
    late.ConceptNameCodeSequence = [code("121046", "DCM", "Country of Language")]
    late.ConceptCodeSequence = [code("US", "ISO3166_1", "United States")]
    ds.ContentSequence = Sequence([*mods, *bulk, late])
    if verified:
        ds.VerificationFlag = "VERIFIED"
    return ds


@pytest.mark.parametrize("undefined", [False, True])
def test_big_content_tree_keeps_only_concept_modifiers(undefined: bool) -> None:
    ds = _big_sr(verified=False)
    data = encode(_undefined_lengths(ds) if undefined else ds)
    assert len(data) > 5_000_000
    tracemalloc.start()
    result = scan(data, range(65536, len(data), 65536))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert_as_pydicom(result, reference(data))
    assert len(result.elements[CONTENT_SEQUENCE].value) < 2000
    assert peak < 1 << 20, peak  # the tree went by; nothing of it stayed


def test_huge_element_before_the_keys_is_stepped_over() -> None:
    """A 20 MiB private element in group 0009 lies before every patient and study key."""
    data = encode(make("CT", private_size=20 << 20))
    tracemalloc.start()
    result = scan(data, range(65536, len(data), 65536))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert_as_pydicom(result, reference(data))
    assert peak < 1 << 20, peak


def test_large_wanted_value_is_seen_not_kept() -> None:
    """An unknown SOP Class is told an encapsulated document by the presence of one."""
    ds = make("PDF", pdf=bytes(70_000))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.3.4.9"
    result = scan(encode(ds))
    assert 0x00420011 in result.seen and 0x00420011 not in result.elements
    assert record_type("1.2.3.4.9", result.seen) == "ENCAP DOC"


def test_sequences_over_the_budget_are_left_out() -> None:
    ds = make("SR")
    ds.ConceptNameCodeSequence = [code("11528-7", "LN", "Radiology Report " + "x" * 40)] * 200
    data = encode(ds)
    scanner = DicomScanner(wanted_for, limit=4096)
    scanner.feed(data)
    result = scanner.finish()
    assert 0x0040A043 in result.seen and 0x0040A043 not in result.elements
    assert result.elements[0x00100020].value.strip() == b"PAT1"  # the rest is kept


def test_not_dicom() -> None:
    with pytest.raises(InstanceError, match="not a DICOM Part-10 file"):
        DicomScanner(wanted_for).feed(b"%PDF-1.4 " * 40)
    with pytest.raises(InstanceError, match="not a DICOM Part-10 file"):
        DicomScanner(wanted_for).finish()
    short = DicomScanner(wanted_for)
    assert not short.feed(b"DICM")
    with pytest.raises(InstanceError, match="not a DICOM Part-10 file"):
        short.finish()


def test_meta_without_transfer_syntax() -> None:
    data = bytes(128) + b"DICM" + b"\x02\x00\x02\x00UI\x04\x00" + b"1.2\x00"
    scanner = DicomScanner(wanted_for)
    scanner.feed(data)
    with pytest.raises(InstanceError, match="lacks TransferSyntaxUID"):
        scanner.finish()


def test_garbage_after_the_meta_is_a_problem_not_a_crash() -> None:
    data = encode(make("CT"))
    meta_end = data.index(b"\x08\x00\x05\x00") if b"\x08\x00\x05\x00" in data else data.index(
        b"\x08\x00")
    broken = data[:meta_end] + b"\x08\x00\x05\x00SQ\x00\x00\xff\xff\xff\x7f" + bytes(50)
    result = scan(broken)
    assert result.problem
    assert result.meta[0x00020010].rstrip(b"\0") == ExplicitVRLittleEndian.encode()


def test_file_meta_says_implicit_but_data_set_is_explicit() -> None:
    """As pydicom does, the bytes of the first element decide."""
    ds = make("CT", patient_name="Odd^Writer")
    implicit, explicit = encode(ds, ImplicitVRLittleEndian), encode(ds, ExplicitVRLittleEndian)
    meta_end = implicit.index(b"\x08\x00")  # the first data set element: (0008,xxxx)
    data = implicit[:meta_end] + explicit[explicit.index(b"\x08\x00"):]
    result = scan(data)
    assert result.elements[0x00100010].value.strip() == b"Odd^Writer"
    assert not result.problem


def test_wanted_for_an_unknown_class_reads_everything_before_the_pixels() -> None:
    wanted = wanted_for("1.2.3.4.5")
    assert isinstance(wanted, Wanted)
    for keyword_tag in (0x00420011, 0x300A0002, 0x00280010):  # what decides its record type
        assert keyword_tag in wanted.tags
