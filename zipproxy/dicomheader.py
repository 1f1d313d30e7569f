"""Parse an instance's header from a growing prefix of its Part-10 bytes (sans-I/O).

The proxy writes every instance to the ZIP as its bytes arrive; the DICOMDIR, written last, needs
only a few attributes of each. ``HeaderParser`` keeps the first bytes of a part (at most
``limit``) and hands back the data set *up to* the bulk data once those bytes are complete.

Why the care: pydicom reads a truncated prefix without complaint -- a value cut by the end of
the buffer comes back cut, an element header cut by it is silently dropped. So a header is only
accepted when the reader stopped *on purpose before the end of the buffer*: the ``stop_when``
callback fires on the first element we do not want to read (group 7FE0 and after, or a large
element nobody needs) and records that it fired. The reader only reaches that element after
reading everything before it in full; a truncated value or sequence ends the read at the end
of the buffer instead (or raises), and the callback never fires.

Cost: a failed attempt parses the whole buffer, so attempts are spaced geometrically (the buffer
must double, and grow by at least 64 KiB, since the last failed attempt): total parse work stays
O(prefix size) however the part is chunked.

Deflated Explicit VR Little Endian (PS3.5 A.5) deflates everything after the File Meta
Information; pydicom inflates it only as a whole, so for that transfer syntax the available
prefix is inflated here (capped at ``limit``) and the data set parsed from it.
"""

from __future__ import annotations

import io
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset, read_partial
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from .errors import InstanceError

_PYDICOM_LOCK = threading.Lock()


@contextmanager
def pydicom_quietly() -> Iterator[None]:
    """pydicom work with its warnings silenced, one thread at a time.

    pydicom warns on odd input (VR mismatch, missing delimiters, cut data) where our own checks
    decide. ``warnings.catch_warnings`` swaps process-wide state, so two threads using it at
    once could leave the filters wrong; pydicom holds the GIL anyway, so serializing costs
    nothing.
    """
    with _PYDICOM_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield

DEFAULT_LIMIT: Final = 4 * 1024 * 1024
_MIN_STEP: Final = 64 * 1024  # never re-parse for less growth than this
_FIRST_ATTEMPT: Final = 16 * 1024  # most headers fit: parse this much first
_LARGE: Final = 64 * 1024  # an element value at least this long is "bulk"
_PREFIX_END: Final = 132  # 128-byte preamble + b"DICM" (PS3.10 7.1)
_BULK_GROUP: Final = 0x7FE00000  # (7FE0,0001..0010): offset tables, (Float) Pixel Data
_ENCAPSULATED_DOCUMENT: Final = 0x00420011
# The highest tag any directory record key comes from is RT Plan Time (300A,0007) (PS3.3 F.5):
# a large element after it is never needed, so reading stops there.
_LAST_NEEDED: Final = 0x300A0007
_REQUIRED_META: Final = (
    "TransferSyntaxUID",
    "MediaStorageSOPClassUID",
    "MediaStorageSOPInstanceUID",
)


class _TrackedBytesIO(io.BytesIO):
    """A BytesIO that notes reads the buffer could not satisfy.

    Reading a data set that ends cleanly meets the end of the buffer once: the next element's
    header is missing. An element cut by the end shows as a short read, or -- cut right where
    its value starts -- as an empty value read followed by that empty header read.
    """

    short_reads = 0
    empty_reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        out = super().read(size)
        if size is not None and size > len(out):
            if out:
                self.short_reads += 1
            else:
                self.empty_reads += 1
        return out

    @property
    def cut(self) -> bool:
        return self.short_reads > 0 or self.empty_reads > 1


class HeaderParser:
    """Collect the first bytes of one part and return its header once they suffice.

    ``feed()`` returns the header (a ``Dataset`` with ``file_meta``) the first time it is
    complete, else ``None``; after that it ignores further data. ``finish()`` says the part
    ended: it returns the header, parsing what was buffered as the whole file if needed.
    Errors are ``InstanceError``.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < _PREFIX_END:
            raise ValueError(f"limit must be at least {_PREFIX_END} bytes")
        self._limit = limit
        # The chunks as received (bytes from the network are immutable: kept, not copied); a
        # prefix of them is joined only when an attempt needs it.
        self._chunks: list[bytes | memoryview] = []
        self._size = 0
        self._next_attempt = 0  # bytes needed before the next attempt
        self._cap = _FIRST_ATTEMPT  # bytes the next attempt parses at most
        self._overflow = False  # bytes beyond the limit arrived (and were dropped)
        self._magic_checked = False
        self._header: Dataset | None = None

    @property
    def done(self) -> bool:
        return self._header is not None

    def feed(self, chunk: bytes | memoryview) -> Dataset | None:
        if self._header is not None:
            return None
        room = self._limit - self._size
        if len(chunk) > room:
            self._overflow = True
            chunk = chunk[:room]
        if isinstance(chunk, memoryview) and not isinstance(chunk.obj, bytes):
            chunk = bytes(chunk)  # a view of a mutable buffer could change under us
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size < _PREFIX_END:
            return None
        if not self._magic_checked:
            self._check_magic(self._prefix(_PREFIX_END))
        # Parse a prefix that grows geometrically (the first feed, capped at 16 KiB; then at
        # least doubling): a typical header is complete at the first attempt, and the total
        # cost stays O(size) however the data is chunked.
        while self._size >= self._next_attempt or self._overflow:
            size = min(self._size, self._cap)
            header = self._attempt(self._prefix(size), final=False)
            if header is not None:
                return self._accept(header)
            if self._overflow and size == self._size:
                raise InstanceError(f"instance header larger than the {self._limit}-byte limit")
            self._cap = max(2 * size, size + _MIN_STEP)
            # A cut prefix failed: retry at once with more of what is here; else wait for data.
            self._next_attempt = 0 if size < self._size else self._cap
        return None

    def finish(self) -> Dataset:
        if self._header is not None:
            return self._header
        if self._size < _PREFIX_END:
            raise InstanceError("part is not a DICOM Part-10 file")
        data = self._prefix(self._size)
        self._check_magic(data)
        header = self._attempt(data, final=True)
        if header is None:  # pragma: no cover - _attempt(final=True) raises instead
            raise InstanceError("instance header is incomplete")
        return self._accept(header)

    def _prefix(self, size: int) -> bytes:
        """The first ``size`` bytes received, joined."""
        parts: list[bytes | memoryview] = []
        have = 0
        for chunk in self._chunks:
            if have >= size:
                break
            parts.append(chunk[: size - have])
            have += len(parts[-1])
        return b"".join(parts)

    def _accept(self, header: Dataset) -> Dataset:
        self._header = header
        self._chunks = []  # the prefix is no longer needed
        return header

    def _check_magic(self, data: bytes) -> None:
        if data[128:132] != b"DICM":
            raise InstanceError("part is not a DICOM Part-10 file")
        self._magic_checked = True

    def _attempt(self, data: bytes, final: bool) -> Dataset | None:
        """Parse ``data``; return the header if complete, else None (raise if ``final``)."""
        fired = False

        def stop(tag: BaseTag, vr: str | None, length: int) -> bool:
            nonlocal fired
            number = int(tag)  # BaseTag's own comparisons are slow
            if number >= _BULK_GROUP or (
                length >= _LARGE and (number > _LAST_NEEDED or number == _ENCAPSULATED_DOCUMENT)
            ):
                fired = True
            return fired

        inflater: zlib._Decompress | None = None
        try:
            with pydicom_quietly():  # completeness is decided below, not by pydicom's warnings
                deflated = _deflated_meta(data)
                if deflated is None:
                    fp = _TrackedBytesIO(data)
                    whole = read_partial(fp, stop_when=stop)
                    whole.buffer = None  # do not keep the whole prefix alive
                    header: Dataset = whole
                else:
                    meta_end, meta = deflated
                    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    fp = _TrackedBytesIO(inflater.decompress(data[meta_end:], self._limit))
                    header = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                                          stop_when=stop)
                    header.file_meta = meta
        except Exception as exc:  # pydicom raises many types on cut or corrupt data
            if final:
                raise InstanceError(f"unreadable DICOM instance header: {exc}") from exc
            return None
        end = len(data) if inflater is None else len(fp.getbuffer())
        # Complete when the reader stopped on purpose with a whole element header left over
        # (the callback may also fire on a peek at the first element; then the read went on).
        complete = fired and fp.tell() + 8 <= end
        if not complete:
            if not final:
                return None
            capped = inflater is not None and end >= self._limit and not inflater.eof
            if self._overflow or capped:
                raise InstanceError(f"instance header larger than the {self._limit}-byte limit")
            if fp.cut or (inflater and not inflater.eof):
                raise InstanceError("DICOM instance is truncated")
        file_meta = getattr(header, "file_meta", None)
        missing = [kw for kw in _REQUIRED_META if not (file_meta and file_meta.get(kw))]
        if missing:
            raise InstanceError(f"File Meta Information lacks {', '.join(missing)}")
        return header


def _deflated_meta(data: bytes) -> tuple[int, FileMetaDataset] | None:
    """If the transfer syntax is deflated: where the File Meta Information ends, and it."""
    # (0002,0000) File Meta Information Group Length comes first (PS3.10 7.1, Type 1).
    if data[132:138] != b"\x02\x00\x00\x00UL" or len(data) < 144:
        return None
    end = 144 + int.from_bytes(data[140:144], "little")
    if len(data) < end or DeflatedExplicitVRLittleEndian.encode() not in data[144:end]:
        return None
    meta = read_partial(io.BytesIO(data[:end])).file_meta
    return (end, meta) if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian else None
