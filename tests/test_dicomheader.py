"""HeaderParser: a header is returned only when complete, never with cut values."""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Iterable

import pydicom
import pytest
from dicomfactory import encode, make
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from zipproxy.dicomheader import HeaderParser
from zipproxy.errors import InstanceError

PIXEL_DATA = 0x7FE00010
ENCAPSULATED_DOCUMENT = 0x00420011
END = 0xFFFFFFFF  # no stop element: the header is the whole file


def _undefined_lengths(ds: Dataset) -> Dataset:
    """Encode every sequence and item with undefined length (delimiters, PS3.5 7.5.2)."""
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
    return ds


def _sample(name: str) -> tuple[bytes, int]:
    """(file bytes, tag of the first element the parser does not read)."""
    cjk = {"charset": "ISO_IR 192", "patient_name": "山田^太郎"}
    samples: dict[str, tuple[Dataset, str, int]] = {
        "ct-explicit": (make("CT", **cjk), ExplicitVRLittleEndian, PIXEL_DATA),
        "ct-implicit": (make("CT", charset="ISO_IR 100", patient_name="Müller^Jürgen"),
                        ImplicitVRLittleEndian, PIXEL_DATA),
        "ct-big-endian": (make("CT"), ExplicitVRBigEndian, PIXEL_DATA),
        "ct-deflated": (make("CT", **cjk), DeflatedExplicitVRLittleEndian, PIXEL_DATA),
        "ct-no-pixels": (make("CT", pixels=False), ExplicitVRLittleEndian, END),
        "sr": (make("SR", **cjk), ExplicitVRLittleEndian, END),
        "sr-implicit": (make("SR"), ImplicitVRLittleEndian, END),
        "sr-undefined": (_undefined_lengths(make("SR")), ExplicitVRLittleEndian, END),
        "ko-undefined-implicit": (_undefined_lengths(make("KO", pixels=False)),
                                  ImplicitVRLittleEndian, END),
        "pdf-small": (make("PDF"), ExplicitVRLittleEndian, END),
        "pdf-large": (make("PDF", pdf=bytes(70_000)), ExplicitVRLittleEndian,
                      ENCAPSULATED_DOCUMENT),
    }
    ds, syntax, stop = samples[name]
    return encode(ds, syntax), stop


SMALL = ["ct-explicit", "ct-implicit", "ct-big-endian", "ct-deflated", "ct-no-pixels", "sr",
         "sr-implicit", "sr-undefined", "ko-undefined-implicit", "pdf-small"]


def _reference(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _assert_exact(header: Dataset, reference: Dataset, stop: int) -> None:
    """``header`` holds every element of the whole file before ``stop``, with equal values."""
    tags = [elem.tag for elem in header]  # (iterating a Dataset yields elements, not tags)
    assert set(tags) == {elem.tag for elem in reference if elem.tag < stop}
    for tag in tags:
        assert header[tag].value == reference[tag].value, tag
    for keyword in ("TransferSyntaxUID", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"):
        assert header.file_meta[keyword].value == reference.file_meta[keyword].value


def _assert_no_cut_values(header: Dataset, reference: Dataset) -> None:
    """What ``header`` holds is what the whole file holds (it may hold less)."""
    for elem in header:
        assert elem.tag in reference, elem.tag
        assert elem.value == reference[elem.tag].value, elem.tag


def _feed_all(chunks: Iterable[bytes | memoryview], limit: int = 4 << 20) -> Dataset | None:
    parser = HeaderParser(limit)
    found = None
    for chunk in chunks:
        header = parser.feed(chunk)
        if header is not None:
            assert found is None, "feed() returned a header twice"
            found = header
    return found


@pytest.mark.parametrize("name", [*SMALL, "pdf-large"])
def test_whole_file(name: str) -> None:
    data, stop = _sample(name)
    reference = _reference(data)
    parser = HeaderParser()
    fed = parser.feed(data)
    assert (fed is not None) == (stop != END)
    assert parser.done == (stop != END)
    header = parser.finish()
    assert parser.done
    assert fed is None or header is fed
    _assert_exact(header, reference, stop)
    assert parser.feed(b"more") is None  # ignored once done
    assert parser.finish() is header


@pytest.mark.parametrize("name", SMALL)
def test_every_cut(name: str) -> None:
    """Cut the file at every offset: feed() returns a header only when it is whole, finish()
    either raises or returns values equal to the whole file's (element-boundary cuts look like
    a shorter file and cannot be told apart)."""
    data, stop = _sample(name)
    reference = _reference(data)
    returned = 0
    for cut in range(len(data)):
        parser = HeaderParser()
        header = parser.feed(data[:cut])
        if header is not None:
            returned += 1
            _assert_exact(header, reference, stop)
        parser = HeaderParser()
        parser.feed(data[:cut])
        try:
            header = parser.finish()
        except InstanceError:
            continue
        _assert_no_cut_values(header, reference)
    assert returned > 0 or stop == END


def test_cut_large_private_element() -> None:
    """A 3 MiB private element before Pixel Data: cuts around both of its ends."""
    data = encode(make("CT", private_size=3 << 20))
    reference = _reference(data)
    start = data.index(b"ZIPPROXY TEST")
    pixel = len(data) - 32 - 12
    cuts = [*range(start - 200, start + 200), *range(pixel - 100, pixel + 20)]
    for cut in cuts:
        header = _feed_all([data[:cut]])
        if cut < pixel + 12:
            assert header is None, cut
        else:
            assert header is not None, cut
            _assert_exact(header, reference, PIXEL_DATA)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([*SMALL, "pdf-large"]), st.data())
def test_random_chunks(name: str, draw: st.DataObject) -> None:
    data, stop = _sample(name)
    reference = _reference(data)
    length = draw.draw(st.integers(0, len(data)), label="length")
    cuts = sorted(draw.draw(st.lists(st.integers(0, length), max_size=12), label="cuts"))
    bounds = [0, *cuts, length]
    backing = bytearray(data[:length])
    chunks = [memoryview(backing)[a:b] for a, b in itertools.pairwise(bounds)]
    parser = HeaderParser()
    found = None
    for chunk in chunks:
        header = parser.feed(chunk)
        found = found or header
    backing[:] = bytes(len(backing))  # the parser must have copied what it keeps
    if found is not None:
        _assert_exact(found, reference, stop)
    if length == len(data):
        _assert_exact(parser.finish(), reference, stop)
    else:
        with contextlib.suppress(InstanceError):
            _assert_no_cut_values(parser.finish(), reference)


def test_not_dicom() -> None:
    parser = HeaderParser()
    with pytest.raises(InstanceError, match="part is not a DICOM Part-10 file"):
        parser.feed(b"%PDF-1.4 " * 40)
    with pytest.raises(InstanceError, match="part is not a DICOM Part-10 file"):
        HeaderParser().finish()
    short = HeaderParser()
    assert short.feed(b"DICM") is None
    with pytest.raises(InstanceError, match="part is not a DICOM Part-10 file"):
        short.finish()


def test_preamble_without_dataset_is_an_error() -> None:
    data = bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00" + b"1.2\x00"
    parser = HeaderParser()
    parser.feed(data)
    with pytest.raises(InstanceError):
        parser.finish()


def test_header_over_the_limit() -> None:
    data = encode(make("CT", private_size=200_000))
    parser = HeaderParser(limit=100_000)
    with pytest.raises(InstanceError, match="larger than the 100000-byte limit"):
        for offset in range(0, len(data), 4096):
            parser.feed(data[offset:offset + 4096])
    # A whole part within the limit needs no stop element.
    sr, _ = _sample("sr")
    small = HeaderParser(limit=len(sr))
    assert small.feed(sr) is None
    assert small.finish().SOPClassUID == _reference(sr).SOPClassUID


def test_parse_attempts_are_geometric(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 KiB chunks of a 3 MiB header: a handful of parses, not one per chunk."""
    ds = make("CT", private_size=3 << 20)
    ds.PixelData = bytes(2 << 20)
    data = encode(ds)
    attempts = []
    original = HeaderParser._attempt

    def counting(self: HeaderParser, data: bytes, final: bool) -> Dataset | None:
        attempts.append(len(data))
        return original(self, data, final)

    monkeypatch.setattr(HeaderParser, "_attempt", counting)
    header = _feed_all(data[i:i + 1024] for i in range(0, len(data), 1024))
    assert header is not None  # before the end of the part
    assert len(attempts) <= 10, attempts
    _assert_exact(header, _reference(data), PIXEL_DATA)


def test_file_meta_says_implicit_but_data_set_is_explicit() -> None:
    """pydicom warns about the mismatch; the warning must not escape (filterwarnings=error)."""
    ds = make("CT", patient_name="Odd^Writer")
    implicit, explicit = encode(ds, ImplicitVRLittleEndian), encode(ds, ExplicitVRLittleEndian)
    meta_end = implicit.index(b"\x08\x00")  # the first data set element: (0008,xxxx)
    explicit_start = explicit.index(b"\x08\x00")
    data = implicit[:meta_end] + explicit[explicit_start:]
    header = _feed_all([data])
    assert header is not None
    assert str(header.PatientName) == "Odd^Writer"
    assert header.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian


def test_garbage_after_the_meta_raises_in_finish() -> None:
    data = encode(make("CT"))
    meta_end = data.index(b"\x08\x00")
    broken = data[:meta_end] + b"\x08\x00\x05\x00SQ\x00\x00\xff\xff\xff\x7f" + bytes(50)
    parser = HeaderParser()
    assert parser.feed(broken) is None
    with pytest.raises(InstanceError):
        parser.finish()
