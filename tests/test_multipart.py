"""The multipart splitter at every chunk boundary, with and without part lengths."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zipproxy.errors import MultipartError
from zipproxy.multipart import (
    MultipartSplitter,
    PartData,
    PartEnd,
    PartStart,
    boundary_from_content_type,
)

BOUNDARY = "b0undary-XyZ"


def build(
    parts: list[bytes],
    *,
    lengths: bool = True,
    preamble: bytes = b"",
    epilogue: bytes = b"",
    padding: bytes = b"",
) -> bytes:
    out = [preamble + (b"\r\n" if preamble else b"")]
    for body in parts:
        out.append(b"--" + BOUNDARY.encode() + padding + b"\r\n")
        out.append(b"Content-Type: application/dicom\r\n")
        if lengths:
            out.append(b"Content-Length: %d\r\n" % len(body))
        out.append(b"MIME-Version: 1.0\r\n\r\n")
        out.append(body + b"\r\n")
    out.append(b"--" + BOUNDARY.encode() + b"--\r\n" + epilogue)
    return b"".join(out)


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in itertools.pairwise(points)]


def run(chunks: list[bytes]) -> tuple[list[bytes], list[dict[str, str]]]:
    s = MultipartSplitter(BOUNDARY)
    parts: list[bytearray] = []
    headers: list[dict[str, str]] = []
    open_ = False
    for chunk in chunks:
        for ev in s.feed(chunk):
            if isinstance(ev, PartStart):
                assert not open_
                open_ = True
                parts.append(bytearray())
                headers.append(ev.headers)
            elif isinstance(ev, PartData):
                assert open_
                parts[-1] += ev.data
            else:
                assert isinstance(ev, PartEnd) and open_
                open_ = False
    s.eof()
    assert not open_
    return [bytes(p) for p in parts], headers


# Bodies that contain boundary-like bytes, CRLFs and dashes are the interesting ones.
part_bytes = st.lists(
    st.sampled_from([b"\r\n", b"--", b"--" + BOUNDARY.encode(), b"x", b"DICM", b"\r", b"\x00" * 7]),
    max_size=12,
).map(b"".join)


@settings(max_examples=400)
@given(
    parts=st.lists(part_bytes, max_size=5),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    lengths=st.booleans(),
    preamble=st.sampled_from([b"", b"preamble text"]),
    padding=st.sampled_from([b"", b"  \t"]),
)
def test_any_chunking_gives_the_same_parts(
    parts: list[bytes], cuts: list[int], lengths: bool, preamble: bytes, padding: bytes
) -> None:
    if not lengths:  # without a length a body must not contain the delimiter itself
        delimiter = b"\r\n--" + BOUNDARY.encode()
        parts = [p.replace(delimiter, b"").replace(b"\r", b"") for p in parts]
    body = build(parts, lengths=lengths, preamble=preamble, epilogue=b"ignored", padding=padding)
    got, headers = run(split(body, cuts))
    assert got == parts
    assert all(h["content-type"] == "application/dicom" for h in headers)


def test_every_single_cut_point() -> None:
    parts = [b"A" * 300, b"", b"\r\n--" + BOUNDARY.encode() + b"\r\n", b"B" * 10]
    body = build(parts)
    for cut in range(len(body) + 1):
        assert run([body[:cut], body[cut:]])[0] == parts
    assert run([body[i : i + 1] for i in range(len(body))])[0] == parts


def test_sized_parts_are_not_copied() -> None:
    body = build([b"X" * 1000])
    s = MultipartSplitter(BOUNDARY)
    data = [e for e in s.feed(body) if isinstance(e, PartData)]
    assert len(data) == 1 and data[0].data.obj is body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (build([b"abc"])[:-20], "without its closing boundary"),
        (b"<html>not multipart</html>" * 2000, "no multipart boundary"),
        (build([b"abc"]).replace(b"Content-Length: 3", b"Content-Length: 2"), "not followed"),
        (build([b"abc"]).replace(b"Content-Length: 3", b"Content-Length: x"), "Content-Length"),
        # latin-1 superscript three: str.isdigit() says yes, int() refuses it
        (build([b"abc"]).replace(b"Content-Length: 3", b"Content-Length: \xb3"), "Content-Length"),
        (build([b"abc"]).replace(b"MIME-Version: 1.0", b"no colon here"), "malformed"),
        (b"--" + BOUNDARY.encode() + b"\r\n" + b"H" * 20_000, "headers too large"),
    ],
)
def test_malformed_bodies_raise(body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        run([body])


def test_zero_parts_is_well_formed() -> None:
    assert run([b"--" + BOUNDARY.encode() + b"--\r\n"])[0] == []


@pytest.mark.parametrize(
    ("value", "boundary"),
    [
        ('multipart/related; type="application/dicom"; boundary=abc123', "abc123"),
        ('Multipart/Related;boundary="a b:c";type=application/dicom', "a b:c"),
    ],
)
def test_boundary_from_content_type(value: str, boundary: str) -> None:
    assert boundary_from_content_type(value)[0] == boundary


@pytest.mark.parametrize(
    "value",
    [
        None,
        "application/json",
        "multipart/related; type=application/dicom",
        "multipart/related; boundary=",
    ],
)
def test_bad_content_types(value: str | None) -> None:
    with pytest.raises(MultipartError):
        boundary_from_content_type(value)


def test_parts_with_the_same_header_block_share_one_parsed_event() -> None:
    """Parsed once per distinct header block; a changed block is parsed again."""
    body = (b"--b\r\nContent-Type: application/dicom\r\nContent-Length: 3\r\n\r\nabc\r\n"
            b"--b\r\nContent-Type: application/dicom\r\nContent-Length: 3\r\n\r\ndef\r\n"
            b"--b\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\ngh\r\n--b--\r\n")
    starts = [e for e in MultipartSplitter("b").feed(body) if isinstance(e, PartStart)]
    assert starts[0] is starts[1] and starts[2] is not starts[1]
    assert [(s.headers["content-type"], s.content_length) for s in starts] == [
        ("application/dicom", 3), ("application/dicom", 3), ("text/plain", 2)]
    with pytest.raises(TypeError):
        starts[0].headers["content-type"] = "x"  # type: ignore[index]
