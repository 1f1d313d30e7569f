"""The DICOM ZIP writer: instances pushed in piece by piece, zipstream-ng for headers and the end.

Each call returns the ZIP bytes ready to send; the caller awaits its own ``write()``. The entry
kinds, chosen so that streaming readers can read the ZIP front to back:

1. ``_Held``: an instance whose size is known and at most ``hold_limit`` (a CT slice, an SR) is
   held (the received chunks themselves, not copies) until complete, then written STORED with
   its CRC-32 and sizes in the local header and no data descriptor. Java's ``ZipInputStream``
   refuses STORED entries that use a data descriptor, and zipstream-ng always writes one.
2. ``_StoredBlocks``: a larger instance (a 100 MiB multi-frame) streams as it arrives, as a
   DEFLATE entry made only of stored blocks (RFC 1951 3.2.4), framed here without zlib, with a
   data descriptor (every reader accepts one on DEFLATE); ZIP64 is decided per entry from its
   announced size. An instance of unknown size is held up to ``hold_limit``, then streams.
3. ``_Deflated``: the same with real compression, for ``--deflate-level 1..9`` (zlib-ng).
4. ``_Aes``: WinZip AES-256 (AE-2) of :mod:`zipproxy.aes`, for every entry but README.TXT when
   the ZIP has a password; AE-2 carries no CRC, so an entry of known size streams at once.

The last entries, MANIFEST.CSV and DICOMDIR, are a last-minute ``add()`` before
``finalize()``: zipstream-ng deflates them and writes the central directory. Until then the
central directory is kept compact: each entry's record is encoded as the entry ends and
spooled (``_CentralDirectory``), so memory does not grow with the number of entries. CRC-32
comes from zlib-ng, about ten times zlib's speed on this hardware (``bench/``).

zipstream-ng is pinned (1.9.3): the push entries set ``header_offset`` and advance ``_pos``
themselves, and ``_filelist`` is replaced; ``tests/test_archive.py`` covers both.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final

from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream
from zipstream.ng import ZIP64_LIMIT, ZipStreamInfo
from zlib_ng import zlib_ng

from . import aes
from .spool import Spool

Buffer = bytes | memoryview
crc32: Final = zlib_ng.crc32
# zipstream-ng 1.9.3 keeps this flag private; it is ZIP APPNOTE 4.4.4 bit 3.
_FLAG_DATA_DESCRIPTOR: Final = 1 << 3
_STORED_BLOCK: Final = 65535  # the most a deflate stored block holds (RFC 1951 3.2.4)
_FINAL_EMPTY_BLOCK: Final = b"\x01\x00\x00\xff\xff"  # BFINAL=1, BTYPE=00, LEN=0, NLEN=~0
_BLOCK_HEADER: Final = struct.Struct("<BHH").pack
TAIL_LEVEL: Final = 1  # deflate level of MANIFEST.CSV and DICOMDIR (UIDs: ~5:1 at level 1)


def deflate_stored_size(size: int) -> int:
    """Bytes of a deflate stream of ``size`` bytes as stored blocks, final empty block
    included."""
    return size + 5 * -(-size // _STORED_BLOCK) + len(_FINAL_EMPTY_BLOCK)


class _Entry(ZipStreamInfo):  # type: ignore[misc]
    """An entry written piece by piece: ``begin()``, ``write()`` per chunk, ``end()``; each
    returns the bytes to send. ``plain_crc`` is the CRC-32 of the data (for MANIFEST.CSV,
    also when the entry itself records none)."""

    announced: int | None = None
    plain_crc = 0

    def begin(self) -> list[Buffer]:
        raise NotImplementedError

    def write(self, data: Buffer) -> list[Buffer]:
        raise NotImplementedError

    def end(self) -> list[Buffer]:
        raise NotImplementedError

    def _file_data(self, iterable: Iterable[Buffer] | None = None,
                   force_zip64: bool = False) -> Iterator[Buffer]:
        """zipstream-ng pulls the entries it was given through the same code."""
        yield from self.begin()
        for buf in iterable or ():
            yield from self.write(buf)
        yield from self.end()


class _Held(_Entry):
    def begin(self) -> list[Buffer]:
        self._chunks: list[Buffer] = []
        self.file_size = 0
        return []

    def write(self, data: Buffer) -> list[Buffer]:
        self._chunks.append(data)
        self.plain_crc = crc32(data, self.plain_crc)
        self.file_size += len(data)
        return []

    def end(self) -> list[Buffer]:
        self.flag_bits &= ~_FLAG_DATA_DESCRIPTOR
        self.CRC, self.compress_size = self.plain_crc, self.file_size
        chunks, self._chunks = self._chunks, []
        return [self.FileHeader(zip64=self.file_size > ZIP64_LIMIT), *chunks]


class _StoredBlocks(_Entry):
    """What zlib does at level 0, minus its copying: measured at 0.9 GB/s, zlib cost more CPU
    than everything else on a large instance."""

    def begin(self) -> list[Buffer]:
        self.flag_bits |= _FLAG_DATA_DESCRIPTOR
        size = self.announced
        self._zip64 = size is None or deflate_stored_size(size) > ZIP64_LIMIT
        self.file_size = self.compress_size = 0
        return [self.FileHeader(self._zip64)]

    def write(self, data: Buffer) -> list[Buffer]:
        view = memoryview(data)
        self.plain_crc = crc32(view, self.plain_crc)
        self.file_size += len(view)
        out: list[Buffer] = []
        for start in range(0, len(view), _STORED_BLOCK):
            block = view[start:start + _STORED_BLOCK]
            out += (_BLOCK_HEADER(0, len(block), len(block) ^ 0xFFFF), block)
            self.compress_size += 5 + len(block)
        return out

    def end(self) -> list[Buffer]:
        self.CRC = self.plain_crc
        self.compress_size += len(_FINAL_EMPTY_BLOCK)
        if not self._zip64 and self.compress_size > ZIP64_LIMIT:
            raise RuntimeError(f"{self.filename}: larger than announced, needs ZIP64")
        return [_FINAL_EMPTY_BLOCK, self.DataDescriptor(self._zip64)]


class _Deflated(_StoredBlocks):
    level = 6

    def begin(self) -> list[Buffer]:
        self._compressor = zlib_ng.compressobj(self.level, zlib_ng.DEFLATED, -15)
        out = super().begin()
        self._zip64 = self.announced is None or self.announced * 1.05 + 64 > ZIP64_LIMIT
        return out

    def write(self, data: Buffer) -> list[Buffer]:
        self.plain_crc = crc32(data, self.plain_crc)
        self.file_size += len(data)
        out = self._compressor.compress(data)
        self.compress_size += len(out)
        return [out] if out else []

    def end(self) -> list[Buffer]:
        tail = self._compressor.flush()
        self.compress_size += len(tail)
        self.CRC = self.plain_crc
        if not self._zip64 and max(self.compress_size, self.file_size) > ZIP64_LIMIT:
            raise RuntimeError(f"{self.filename}: larger than announced, needs ZIP64")
        return [tail, self.DataDescriptor(self._zip64)]


class _Aes(_Entry):
    """A WinZip AE-2 entry (APPNOTE 7.2, WinZip "AES Encryption Information"): method 99, the
    0x9901 extra field, CRC 0 (AE-2 authenticates with HMAC-SHA1 instead), data = salt and
    verifier, ciphertext, 10-byte authentication code. With a known size the local header is
    exact; otherwise the sizes follow in a ZIP64 data descriptor."""

    password = b""
    forge: aes.KeyForge | None = None

    def begin(self) -> list[Buffer]:
        derived = self.forge.take() if self.forge is not None else None
        self._encryptor = aes.AesEntryEncryptor(self.password, derived=derived)
        self.compress_type = aes.METHOD_AES
        self.extra = aes.aes_extra_field(ZIP_STORED)
        self.flag_bits |= aes.FLAG_ENCRYPTED
        self.extract_version = aes.VERSION_NEEDED
        self.CRC = 0
        size = self.announced
        if size is not None:
            self.flag_bits &= ~_FLAG_DATA_DESCRIPTOR
            self.file_size, self.compress_size = size, size + aes.OVERHEAD
            self._zip64 = self.compress_size > ZIP64_LIMIT
        else:
            self.flag_bits |= _FLAG_DATA_DESCRIPTOR
            self._zip64 = True
        return [self.FileHeader(self._zip64), self._encryptor.header()]

    def write(self, data: Buffer) -> list[Buffer]:
        self.plain_crc = crc32(data, self.plain_crc)
        return [self._encryptor.encrypt(data)] if len(data) else []

    def end(self) -> list[Buffer]:
        out: list[Buffer] = [self._encryptor.finish()]
        size = self._encryptor.data_size
        self.file_size, self.compress_size = size, size + aes.OVERHEAD
        if self.announced is None:
            out.append(self.DataDescriptor(self._zip64))
        elif self.announced != size:
            raise RuntimeError(f"{self.filename}: announced {self.announced} bytes, got {size}")
        return out


class _CentralDirectory:
    """zipstream-ng's file list, kept as encoded central directory records in a spool (about
    80 bytes an entry, encoded as each entry ends); its footer reads them back in pieces."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._count = 0

    def append(self, zinfo: ZipStreamInfo) -> None:
        self._spool.append(zinfo._central_directory_header_data())
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[_Records]:
        return (_Records(piece) for piece in self._spool.pieces())


class _Records:
    """A piece of the spooled central directory, in the shape zipstream-ng's footer reads."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def _central_directory_header_data(self) -> bytes:
        return self._data


class _Stream(ZipStream):  # type: ignore[misc]
    """zipstream-ng with one more entry kind for its queue: AES-256 (for the last entries of
    an encrypted ZIP)."""

    forge: aes.KeyForge | None = None

    def add_aes(self, data: Iterable[Buffer], arcname: str, password: bytes, size: int) -> None:
        self._enqueue(iterable=data, arcname=arcname, size=size, aes_password=password)

    def _gen_file_entry(self, *, aes_password: bytes | None = None,
                        **kwargs: Any) -> Iterator[Buffer]:
        if aes_password is None:
            yield from super()._gen_file_entry(**kwargs)
            return
        entry = _Aes(kwargs["arcname"])
        entry.password, entry.announced = aes_password, kwargs["size"]
        entry.forge = self.forge
        entry.external_attr = 0o644 << 16
        entry.header_offset = self._pos
        for piece in entry._file_data(kwargs["iterable"]):
            yield self._track(piece)
        self._filelist.append(entry)


class ArchiveWriter:
    """Feed entries in order; every method returns the ZIP bytes that are ready to send."""

    def __init__(self, *, hold_limit: int = 8 * 1024 * 1024, deflate_level: int = 0,
                 password: bytes | None = None, spool_dir: str | None = None) -> None:
        self._zs = _Stream(compress_type=ZIP_STORED)
        self._spool = Spool(spool_dir)
        self._zs._filelist = _CentralDirectory(self._spool)
        self._hold_limit = hold_limit
        self._deflate_level = deflate_level
        self._password = password  # set: every entry but README.TXT is AES-256 (AE-2)
        self._forge = aes.KeyForge(password) if password is not None else None
        self._zs.forge = self._forge
        self._date = time.localtime()[:6]  # one timestamp for every entry of this ZIP
        self._entry: _Entry | None = None

    @property
    def bytes_written(self) -> int:
        return int(self._zs._pos)

    @property
    def entries(self) -> int:
        return len(self._zs._filelist)

    def add(self, name: str, data: bytes, *, plain: bool = False) -> list[Buffer]:
        """A whole small entry; ``plain`` = never encrypted (README.TXT tells the recipient
        how to open the archive)."""
        out = self.open(name, len(data), plain=plain)
        out += self.write(data)
        return out + self.close()[0]

    def open(self, name: str, size: int | None, *, plain: bool = False) -> list[Buffer]:
        assert self._entry is None, "an entry is already open"
        if self._password is not None and not plain:
            kind: type[_Entry] = _Aes
        elif size is None or size <= self._hold_limit:
            kind = _Held
        else:
            kind = _Deflated if self._deflate_level else _StoredBlocks
        return self._begin(kind, name, size)

    def write(self, data: Buffer) -> list[Buffer]:
        entry = self._entry
        assert entry is not None, "no entry is open"
        out = entry.write(data)
        if isinstance(entry, _Held) and entry.file_size > self._hold_limit:
            # Of unknown size and larger than the hold limit: stream it after all.
            held = entry._chunks
            self._entry = None
            kind = _Deflated if self._deflate_level else _StoredBlocks
            out = self._begin(kind, entry.filename, None)
            for chunk in held:
                out += self._write_tracked(chunk)
            return out
        return self._track(out)

    def close(self) -> tuple[list[Buffer], int]:
        """End the entry; return its bytes and the CRC-32 of its data."""
        entry, self._entry = self._entry, None
        assert entry is not None, "no entry is open"
        out = self._track(entry.end())
        self._zs._filelist.append(entry)
        return out, entry.plain_crc

    def tail(self, entries: list[tuple[str, int, Iterator[bytes]]],
             comment: str = "") -> Iterator[Buffer]:
        """The last entries (name, size, pieces), deflated, then the central directory."""
        assert self._entry is None, "an entry is still open"
        for name, size, pieces in entries:
            if self._password is not None:
                self._zs.add_aes(pieces, name, self._password, size)
            else:
                self._zs.add(pieces, name, size=size, compress_type=ZIP_DEFLATED,
                             compress_level=TAIL_LEVEL)
        self._zs.comment = comment.encode("ascii", "replace")[:65535]
        return self._finalize()

    def _finalize(self) -> Iterator[Buffer]:
        try:
            for piece in self._zs.finalize():
                if piece:
                    yield piece
        finally:
            self._spool.close()  # the central directory has been read back

    def close_spool(self) -> None:
        """Remove the spool, drop keys derived ahead (on success, abort and shutdown)."""
        self._spool.close()
        if self._forge is not None:
            self._forge.close()

    def _begin(self, kind: type[_Entry], name: str, size: int | None) -> list[Buffer]:
        entry = kind(name, self._date)
        entry.announced = size
        entry.external_attr = 0o644 << 16
        entry.header_offset = self._zs._pos
        if isinstance(entry, _Aes):
            assert self._password is not None
            entry.password, entry.forge = self._password, self._forge
        elif isinstance(entry, _Deflated):
            entry.level = self._deflate_level
            entry.compress_type = ZIP_DEFLATED
        elif isinstance(entry, _StoredBlocks):
            entry.compress_type = ZIP_DEFLATED
        self._entry = entry
        return self._track(entry.begin())

    def _write_tracked(self, data: Buffer) -> list[Buffer]:
        assert self._entry is not None
        return self._track(self._entry.write(data))

    def _track(self, pieces: list[Buffer]) -> list[Buffer]:
        if pieces:
            self._zs._pos += sum(map(len, pieces))
        return pieces
