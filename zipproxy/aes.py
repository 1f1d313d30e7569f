"""WinZip AES-256 entry encryption (AE-2), sans I/O: bytes in, bytes out, no ZIP writing.

The format (WinZip "AES Encryption Information: Encryption Specification AE-1 and AE-2"):

* per entry a random 16-byte salt; PBKDF2-HMAC-SHA1(password, salt, 1000 iterations) gives
  66 bytes: the AES-256 key (32), the HMAC-SHA1 key (32) and a 2-byte password verifier;
* the entry data is ``salt + verifier + AES-CTR(data) + HMAC-SHA1(ciphertext)[:10]``, so the
  compressed size grows by :data:`OVERHEAD` (28) bytes;
* the CTR counter block is the block number as a **little-endian** 128-bit integer starting at
  1 (Gladman's ``fileenc``), not the big-endian counter of NIST CTR mode, so ``modes.CTR`` can't
  be used: the key stream is AES-ECB over counter blocks, XORed into the data;
* the headers say compression method 99, general-purpose flag bit 0, CRC-32 = 0 (AE-2), version
  needed to extract 5.1, and carry the 0x9901 extra field (:func:`aes_extra_field`) that holds
  the real compression method; the central directory entry repeats method and extra field.

Cost per entry: PBKDF2, about 1.0 ms of CPU with the OpenSSL that ``cryptography`` bundles (the
system OpenSSL 3.0 behind ``hashlib`` took 1.3 to 2.2 ms here); it releases the GIL, and
:class:`KeyForge` runs it ahead in background threads. Per byte (about 1 s/GiB here): the AES-ECB
key stream and the HMAC-SHA1 run in OpenSSL, the XOR in numpy; all three release the GIL.

``cryptography`` is imported on first use: a proxy that never encrypts does not carry it (about
6 MiB of resident memory; numpy is loaded anyway, by pydicom).
"""

from __future__ import annotations

import hmac
import os
import struct
import unicodedata
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import Final

import numpy as np

from zipproxy.errors import BadRequest

METHOD_AES: Final = 99
"""Compression method of an AES-encrypted entry in the local and central headers."""
FLAG_ENCRYPTED: Final = 0x0001
"""General-purpose bit 0."""
VERSION_NEEDED: Final = 51
"""Version needed to extract for AES entries (APPNOTE 4.4.3.2: 5.1, AES encryption)."""
EXTRA_ID: Final = 0x9901
AE_2: Final = 2
STRENGTH_AES256: Final = 3

SALT_LENGTH: Final = 16
KEY_LENGTH: Final = 32
VERIFIER_LENGTH: Final = 2
AUTH_CODE_LENGTH: Final = 10
PBKDF2_ITERATIONS: Final = 1000
OVERHEAD: Final = SALT_LENGTH + VERIFIER_LENGTH + AUTH_CODE_LENGTH  # 28

_BLOCK: Final = 16
# Counter blocks are made in units of 2**16 consecutive counters: within a unit only the two low
# bytes change (taken from one shared template), bytes 2..7 are the unit number.
_UNIT_SHIFT: Final = 16
_UNIT_BLOCKS: Final = 1 << _UNIT_SHIFT
_MAX_UNITS: Final = 1 << 48  # a 64-bit counter, as in Gladman's fileenc (2**68 bytes)


def _xor_into(data: memoryview, keystream: memoryview) -> None:
    """keystream ^= data, in place, with numpy: it runs without the GIL at memory speed (an XOR
    of Python integers would hold the GIL for most of the encryption time)."""
    ks = np.frombuffer(keystream, dtype=np.uint8)
    np.bitwise_xor(ks, np.frombuffer(data, dtype=np.uint8), out=ks)


@cache
def _template() -> bytes:
    """Counter blocks 0 .. 2**16-1, little-endian, 16 bytes each (1 MiB, shared)."""
    t = bytearray(_UNIT_BLOCKS * _BLOCK)
    t[0::_BLOCK] = bytes(range(256)) * 256
    t[1::_BLOCK] = b"".join(bytes([i]) * 256 for i in range(256))
    return bytes(t)


def _counter_unit(unit: int) -> bytes | bytearray:
    """Counter blocks ``unit * 2**16 .. unit * 2**16 + 2**16 - 1``, little-endian."""
    if not 0 <= unit < _MAX_UNITS:
        raise OverflowError("AES entry too large for a 64-bit CTR counter")
    template = _template()
    if unit == 0:
        return template
    buf = bytearray(template)
    for k in range(6):
        v = (unit >> (8 * k)) & 0xFF
        if v:
            buf[2 + k :: _BLOCK] = bytes([v]) * _UNIT_BLOCKS
    return buf


def aes_extra_field(actual_method: int) -> bytes:
    """The 0x9901 extra field for an AE-2, AES-256 entry whose data was ``actual_method``."""
    if not 0 <= actual_method <= 0xFFFF or actual_method == METHOD_AES:
        raise ValueError(f"bad actual compression method {actual_method}")
    return struct.pack("<HHH2sBH", EXTRA_ID, 7, AE_2, b"AE", STRENGTH_AES256, actual_method)


class AesEntryEncryptor:
    """Encrypts one ZIP entry's (already compressed) data: ``header()``, then ``encrypt()`` for
    each chunk in order (any sizes), then ``finish()``. One instance per entry, never reused:
    each entry needs its own salt, or the key stream repeats."""

    def __init__(self, password: bytes, *, salt: bytes | None = None,
                 derived: tuple[bytes, bytes] | None = None) -> None:
        """``derived``: a ``(salt, key material)`` pair from :class:`KeyForge`."""
        if not isinstance(password, bytes):
            raise TypeError("password must be bytes (see check_password)")
        if derived is not None:
            salt, material = derived
        else:
            if salt is None:
                salt = os.urandom(SALT_LENGTH)
            elif len(salt) != SALT_LENGTH:
                raise ValueError(f"salt must be {SALT_LENGTH} bytes")
            material = derive(password, salt)
        self._header = bytes(salt) + material[2 * KEY_LENGTH :]
        from cryptography.hazmat.primitives.ciphers import (  # first use: see the docstring
            Cipher,
            algorithms,
            modes,
        )

        self._ecb = Cipher(algorithms.AES(material[:KEY_LENGTH]), modes.ECB()).encryptor()
        self._mac = hmac.new(material[KEY_LENGTH : 2 * KEY_LENGTH], digestmod="sha1")
        self._counter = 1  # the next counter block to encrypt
        self._unit_number = 0
        self._unit: bytes | bytearray = _template()
        self._spare = b""  # key stream left over from the last, partial block (< 16 bytes)
        self._buffer = bytearray()  # where the key stream is made
        self._finished = False
        self.data_size = 0
        """Plain bytes encrypted so far (the ciphertext is as long)."""

    def header(self) -> bytes:
        """Salt and password verifier: the first 18 bytes of the entry data."""
        return self._header

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """The ciphertext of ``data``, the next bytes of the entry."""
        if self._finished:
            raise RuntimeError("encrypt() after finish()")
        src = memoryview(data).cast("B")
        n = len(src)
        if n == 0:
            return b""
        ks = self._keystream(n)
        _xor_into(src, ks)
        out = bytes(ks)
        self._mac.update(out)
        self.data_size += n
        return out

    def finish(self) -> bytes:
        """The 10-byte authentication code: the last bytes of the entry data."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        self._spare, self._buffer = b"", bytearray()
        return self._mac.digest()[:AUTH_CODE_LENGTH]

    def _keystream(self, n: int) -> memoryview:
        """The next ``n`` key stream bytes; a view valid until the next call."""
        spare = self._spare
        if n <= len(spare):
            self._spare = spare[n:]
            return memoryview(bytearray(spare[:n]))
        blocks = -(-(n - len(spare)) // _BLOCK)
        size = len(spare) + blocks * _BLOCK
        if len(self._buffer) < size + _BLOCK - 1:  # update_into wants input + block - 1 room
            # Kept between calls: a fresh MiB each call costs page faults, not just a malloc.
            self._buffer = bytearray(size + _BLOCK - 1)
        view = memoryview(self._buffer)
        view[: len(spare)] = spare
        pos = len(spare)
        counter, end = self._counter, self._counter + blocks
        while counter < end:
            unit = counter >> _UNIT_SHIFT
            if unit != self._unit_number:
                self._unit, self._unit_number = _counter_unit(unit), unit
            lo = counter & (_UNIT_BLOCKS - 1)
            hi = min(_UNIT_BLOCKS, lo + end - counter)
            counters = memoryview(self._unit)[lo * _BLOCK : hi * _BLOCK]
            pos += self._ecb.update_into(counters, view[pos:])
            counter += hi - lo
        self._counter = end
        self._spare = bytes(view[n:size])
        return view[:n]


def derive(password: bytes, salt: bytes) -> bytes:
    """PBKDF2-HMAC-SHA1, 1000 rounds: the AES key, the HMAC key and the verifier (66 bytes)."""
    from cryptography.hazmat.primitives.hashes import SHA1
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    return PBKDF2HMAC(SHA1(), 2 * KEY_LENGTH + VERIFIER_LENGTH, salt,
                      PBKDF2_ITERATIONS).derive(password)


def _fresh(password: bytes) -> tuple[bytes, bytes]:
    salt = os.urandom(SALT_LENGTH)
    return salt, derive(password, salt)


class KeyForge:
    """The keys of a ZIP's next entries, derived ahead in background threads.

    Every entry needs its own salt, hence its own PBKDF2: 4 blocks of 1000 HMAC-SHA1 rounds,
    about 1 ms here, which for 0.5 MiB CT slices costs more than encrypting them. The
    derivation releases the GIL, so background threads derive the next keys on the other
    cores while the current entry is encrypted and sent. ``take()`` returns a
    ``(salt, material)`` pair."""

    AHEAD: Final = 8
    THREADS: Final = min(2, os.cpu_count() or 1)
    _pool: ThreadPoolExecutor | None = None

    def __init__(self, password: bytes) -> None:
        self._password = password
        self._pending: deque[Future[tuple[bytes, bytes]]] = deque()

    def take(self) -> tuple[bytes, bytes]:
        pool = KeyForge._pool
        if pool is None:
            pool = KeyForge._pool = ThreadPoolExecutor(KeyForge.THREADS,
                                                       thread_name_prefix="zipproxy-kdf")
        while len(self._pending) <= self.AHEAD:
            self._pending.append(pool.submit(_fresh, self._password))
        return self._pending.popleft().result()

    def close(self) -> None:
        """Drop the keys not used (each is never used for another entry)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()


def check_password(password: str, min_length: int) -> bytes:
    """The UTF-8 bytes of a client-supplied ZIP password, or :class:`BadRequest`.

    At least ``min_length`` (and at least 1) characters, no control characters (NUL, C0, DEL,
    C1), no lone surrogates (the only str that UTF-8 can't encode; checked up front, so no codec
    error quoting the character ends up in an exception chain). No Unicode normalization: these
    bytes are what 7-Zip and WinZip derive the key from when the same text is typed. Reasons
    never echo the password, its length, or the offending character or its position.
    """
    if not isinstance(password, str):
        raise BadRequest("password must be text")
    least = max(1, min_length)
    if len(password) < least:
        raise BadRequest(f"password too short: at least {least} characters are required")
    categories = {unicodedata.category(ch) for ch in password}
    if "Cc" in categories:
        raise BadRequest("password must not contain control characters")
    if "Cs" in categories:
        raise BadRequest("password is not valid Unicode text")
    return password.encode("utf-8")
