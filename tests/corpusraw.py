"""Hand-encoded Explicit VR Little Endian elements for the test corpus's bulky sequences.

pydicom parses and converts every element of a sequence while writing it (about 0.75 s per
MiB of decimal strings, even for a raw element), so the 20-50 MiB ROI Contour Sequence of an RT
Structure Set and the large content tree of an SR are encoded here, byte by byte (PS3.5 7.1.2,
7.5: defined-length items), and spliced between the elements pydicom writes (``encode_file``).
"""

from __future__ import annotations

import io
import struct

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

# PS3.5 Table 7.1-1: VRs with a 2-byte reserved field and a 32-bit length.
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})


def element(tag: int, vr: str, value: bytes) -> bytes:
    """One element, padded to even length (UI with NUL, other text with a space)."""
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB", "UN") else b" "
    group, number = tag >> 16, tag & 0xFFFF
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, number, vr.encode(), 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"({group:04X},{number:04X}) {vr} value of {len(value)} bytes")
    return struct.pack("<HH2sH", group, number, vr.encode(), len(value)) + value


def item(body: bytes) -> bytes:
    """A defined-length sequence item (FFFE,E000)."""
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def encode_item(ds: Dataset, encoding: str = "utf-8") -> bytes:
    """A small pydicom item encoded as Explicit VR Little Endian, wrapped as an item.

    ``encoding`` is the Python codec of the instance's Specific Character Set.
    """
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds, [encoding])
    return item(bytes(fp.getvalue()))


def encode_file(ds: Dataset, raw: dict[int, bytes]) -> bytes:
    """The Part-10 bytes of ``ds`` (Explicit VR LE, its ``file_meta``) with the top-level
    elements ``raw`` (tag -> encoded element) inserted in tag order (PS3.5 7.1)."""
    cuts = sorted(raw)
    head = Dataset()
    head.file_meta = ds.file_meta
    segments: list[Dataset] = [head] + [Dataset() for _ in cuts]
    for elem in ds:
        segments[sum(1 for cut in cuts if elem.tag > cut)].add(elem)
    out = io.BytesIO()
    head.save_as(out, enforce_file_format=True, implicit_vr=False, little_endian=True)
    for cut, segment in zip(cuts, segments[1:], strict=True):
        out.write(raw[cut])
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, segment)
        out.write(fp.getvalue())
    return out.getvalue()


def code(value: str, scheme: str, meaning: str, encoding: str = "utf-8") -> bytes:
    """The encoded value of a one-item code sequence (Code Sequence Macro, PS3.3 8.8)."""
    return item(element(0x00080100, "SH", value.encode())
                + element(0x00080102, "SH", scheme.encode())
                + element(0x00080104, "LO", meaning.encode(encoding)))
