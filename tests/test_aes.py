"""WinZip AE-2 encryption: against a block-by-block reference, chunking invariance, and complete
hand-written AES ZIPs read back by 7-Zip (test, extract, wrong password, tampering), Info-ZIP
``unzip -l``, libarchive and Python's zipfile (central directory only)."""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from zipproxy.aes import (
    FLAG_ENCRYPTED,
    METHOD_AES,
    OVERHEAD,
    VERSION_NEEDED,
    AesEntryEncryptor,
    _counter_unit,
    aes_extra_field,
    check_password,
)
from zipproxy.errors import BadRequest

PASSWORD = "correct horse battery staple"
SALT = bytes(range(16))


def reference_entry(password: bytes, salt: bytes, data: bytes) -> bytes:
    """The whole AE-2 entry data, the slow obvious way: one counter block at a time."""
    material = hashlib.pbkdf2_hmac("sha1", password, salt, 1000, 66)
    aes = Cipher(algorithms.AES(material[:32]), modes.ECB()).encryptor()
    out = bytearray()
    for block, start in enumerate(range(0, len(data), 16), start=1):
        stream = aes.update(block.to_bytes(16, "little"))
        out += bytes(p ^ k for p, k in zip(data[start : start + 16], stream, strict=False))
    code = hmac.new(material[32:64], bytes(out), "sha1").digest()[:10]
    return salt + material[64:] + bytes(out) + code


def encrypt_entry(password: bytes, data: bytes, sizes: Iterable[int], salt: bytes = SALT) -> bytes:
    """Entry data from an encryptor fed ``data`` cut into ``sizes`` (then the rest)."""
    enc = AesEntryEncryptor(password, salt=salt)
    out = [enc.header()]
    view, pos = memoryview(data), 0
    for size in sizes:
        out.append(enc.encrypt(view[pos : pos + size]))
        pos += size
    out.append(enc.encrypt(view[pos:]))
    out.append(enc.finish())
    assert enc.data_size == len(data)
    return b"".join(out)


# --- the primitive ---------------------------------------------------------------------------


def test_matches_reference_across_counter_units() -> None:
    """1 MiB + a bit: the counter carries into byte 1 every 256 blocks and into byte 2 at block
    65536, the first switch between counter units."""
    data = os.urandom((1 << 20) + 4099)
    expected = reference_entry(b"pw", SALT, data)
    assert len(expected) == len(data) + OVERHEAD
    assert encrypt_entry(b"pw", data, []) == expected
    assert encrypt_entry(b"pw", data, [1, 15, 16, 17, 4095, 65536, (1 << 20) - 7]) == expected
    assert encrypt_entry(b"pw", data, [100_000] * 10) == expected


@pytest.mark.parametrize("unit", [1, 2, 255, 256, 0x1_0001, 0xFF_FFFF, 2**40 + 3, 2**48 - 1])
def test_counter_units_are_little_endian(unit: int) -> None:
    blocks = _counter_unit(unit)
    assert len(blocks) == 16 << 16
    for offset in (0, 1, 255, 256, 4097, 65535):
        counter = (unit << 16) + offset
        assert blocks[16 * offset : 16 * offset + 16] == counter.to_bytes(16, "little")


def test_counter_overflow_is_refused() -> None:
    with pytest.raises(OverflowError):
        _counter_unit(2**48)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_chunking_does_not_change_the_ciphertext(
    data: bytes, cuts: list[int], kind: type[bytes] | type[bytearray] | type[memoryview]
) -> None:
    one_shot = encrypt_entry(b"secret", data, [])
    enc = AesEntryEncryptor(b"secret", salt=SALT)
    pieces = [enc.header()]
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    for lo, hi in itertools.pairwise(bounds):
        pieces.append(enc.encrypt(kind(data[lo:hi])))
    pieces.append(enc.finish())
    assert b"".join(pieces) == one_shot


def test_header_salt_verifier_and_auth_code() -> None:
    material = hashlib.pbkdf2_hmac("sha1", b"pw", SALT, 1000, 66)
    enc = AesEntryEncryptor(b"pw", salt=SALT)
    assert enc.header() == SALT + material[64:66]
    assert enc.encrypt(b"") == b""
    code = enc.finish()
    assert code == hmac.new(material[32:64], b"", "sha1").digest()[:10]
    assert OVERHEAD == len(enc.header()) + len(code) == 28
    with pytest.raises(RuntimeError):
        enc.encrypt(b"x")
    with pytest.raises(RuntimeError):
        enc.finish()


def test_default_salt_is_random_per_entry() -> None:
    a, b = AesEntryEncryptor(b"pw"), AesEntryEncryptor(b"pw")
    assert len(a.header()) == len(b.header()) == 18
    assert a.header()[:16] != b.header()[:16]
    assert a.encrypt(bytes(64)) != b.encrypt(bytes(64))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        AesEntryEncryptor(b"pw", salt=bytes(8))
    with pytest.raises(TypeError):
        AesEntryEncryptor("pw")  # type: ignore[arg-type]


def test_extra_field() -> None:
    assert aes_extra_field(8) == b"\x01\x99\x07\x00\x02\x00AE\x03\x08\x00"
    assert aes_extra_field(0) == b"\x01\x99\x07\x00\x02\x00AE\x03\x00\x00"
    assert len(aes_extra_field(0)) == 11
    for bad in (-1, 99, 0x10000):
        with pytest.raises(ValueError):
            aes_extra_field(bad)


# --- passwords -------------------------------------------------------------------------------


def test_check_password_accepts_and_encodes_utf8() -> None:
    assert check_password("hunter22", 8) == b"hunter22"
    assert check_password("pässwörd 日本", 4) == "pässwörd 日本".encode()
    assert check_password("x", 0) == b"x"


@pytest.mark.parametrize(
    ("password", "min_length", "reason"),
    [
        ("Qz7-shrt", 12, "too short"),
        ("", 0, "too short"),
        ("Qz7\x00nul", 4, "control"),
        ("Qz7\nnewline", 4, "control"),
        ("Qz7\x7fdelete", 4, "control"),
        ("Qz7\x85next-line", 4, "control"),
        ("Qz7\ud800surrogate", 4, "Unicode"),
    ],
)
def test_check_password_refuses_without_echoing(
    password: str, min_length: int, reason: str
) -> None:
    with pytest.raises(BadRequest) as info:
        check_password(password, min_length)
    err = info.value
    assert reason in err.reason
    assert err.status == 400
    shown = f"{err.reason} {err!s} {err!r}"
    assert "Qz7" not in shown
    # Nothing chained that a traceback would print (a codec error quotes the character).
    assert err.__cause__ is None and err.__context__ is None


# --- whole AES ZIPs read by real tools -------------------------------------------------------

_DOS_TIME, _DOS_DATE = 0, ((2024 - 1980) << 9) | (1 << 5) | 1


def build_zip(
    entries: list[tuple[str, bytes, int, bool]], password: bytes, *, descriptor: bool
) -> bytes:
    """A complete ZIP written by hand. ``entries``: (name, data, actual method, encrypted).

    Encrypted entries are method 99, flag bit 0, CRC 0 (AE-2), the 0x9901 extra field in both
    headers; ``descriptor`` puts sizes and CRC in a data descriptor (flag bit 3) instead of the
    local header, as the streaming writer does.
    """
    out = bytearray()
    central = bytearray()
    for name, data, method, encrypted in entries:
        packed = data
        if method == zipfile.ZIP_DEFLATED:
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            packed = compressor.compress(data) + compressor.flush()
        if encrypted:
            payload = encrypt_entry(password, packed, [1000, 7, 65536], salt=os.urandom(16))
            assert len(payload) == len(packed) + OVERHEAD
            crc, header_method, flags, version = 0, METHOD_AES, FLAG_ENCRYPTED, VERSION_NEEDED
            extra = aes_extra_field(method)
        else:
            payload, crc, header_method, flags, version = packed, zlib.crc32(data), method, 0, 20
            extra = b""
        if descriptor:
            flags |= 0x08
        raw_name = name.encode("ascii")
        offset = len(out)
        sizes = (0, 0, 0) if descriptor else (crc, len(payload), len(data))
        out += struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            version,
            flags,
            header_method,
            _DOS_TIME,
            _DOS_DATE,
            *sizes,
            len(raw_name),
            len(extra),
        )
        out += raw_name + extra + payload
        if descriptor:
            out += struct.pack("<IIII", 0x08074B50, crc, len(payload), len(data))
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            (3 << 8) | 63,
            version,
            flags,
            header_method,
            _DOS_TIME,
            _DOS_DATE,
            crc,
            len(payload),
            len(data),
            len(raw_name),
            len(extra),
            0,
            0,
            0,
            0o100644 << 16,
            offset,
        )
        central += raw_name + extra
    cd_offset = len(out)
    out += central
    out += struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), cd_offset, 0
    )
    return bytes(out)


def _entries() -> list[tuple[str, bytes, int, bool]]:
    text = b"".join(b"(0008,0018) UI 1.2.826.0.1.3680043.8.498.%d\n" % i for i in range(8000))
    return [
        ("README.TXT", b"This ZIP is encrypted.\r\n", zipfile.ZIP_STORED, False),
        ("DICOM/EMPTY", b"", zipfile.ZIP_STORED, True),
        ("DICOM/TINY", b"tiny", zipfile.ZIP_STORED, True),
        ("DICOM/STORED", os.urandom((1 << 20) + 300_001), zipfile.ZIP_STORED, True),
        ("DICOM/DEFLATED", text, zipfile.ZIP_DEFLATED, True),
    ]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    return subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=120)


@pytest.fixture(scope="module")
def tools() -> None:
    for tool in ("7zz", "unzip", "bsdtar"):
        assert shutil.which(tool), f"{tool} is required (scripts/setup.sh --test installs it)"


@pytest.mark.usefixtures("tools")
@pytest.mark.parametrize("descriptor", [False, True], ids=["exact-header", "data-descriptor"])
@pytest.mark.parametrize("password", [PASSWORD, "pässwörd-日本"], ids=["ascii", "utf8"])
def test_7zip_tests_and_extracts(tmp_path: Path, descriptor: bool, password: str) -> None:
    entries = _entries()
    path = tmp_path / "aes.zip"
    path.write_bytes(build_zip(entries, check_password(password, 8), descriptor=descriptor))

    proc = _run(["7zz", "t", "-bd", f"-p{password}", str(path)])
    assert proc.returncode == 0 and "Everything is Ok" in proc.stdout, proc.stdout + proc.stderr
    assert "warning" not in (proc.stdout + proc.stderr).lower()

    listing = _run(["7zz", "l", "-slt", f"-p{password}", str(path)]).stdout
    assert "Method = AES-256 Deflate" in listing
    assert "Method = AES-256 Store" in listing

    out = tmp_path / "x"
    proc = _run(["7zz", "x", "-bd", "-y", f"-p{password}", f"-o{out}", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, data, _, _ in entries:
        assert (out / name).read_bytes() == data, name

    proc = _run(["7zz", "t", "-bd", "-pnot-the-password", str(path)])
    assert proc.returncode != 0
    assert "Wrong password" in proc.stdout + proc.stderr


@pytest.mark.usefixtures("tools")
def test_7zip_detects_tampering(tmp_path: Path) -> None:
    """The 10-byte HMAC is checked: one flipped ciphertext bit fails with the right password."""
    data = os.urandom(5000)
    blob = bytearray(build_zip([("DICOM/1", data, 0, True)], PASSWORD.encode(), descriptor=False))
    local_data = 30 + len("DICOM/1") + 11
    blob[local_data + 18 + 2500] ^= 0x01  # inside the ciphertext (after salt and verifier)
    path = tmp_path / "tampered.zip"
    path.write_bytes(bytes(blob))
    proc = _run(["7zz", "t", "-bd", f"-p{PASSWORD}", str(path)])
    assert proc.returncode != 0, proc.stdout


@pytest.mark.usefixtures("tools")
def test_unzip_lists_and_zipfile_reads_the_directory(tmp_path: Path) -> None:
    entries = _entries()
    blob = build_zip(entries, PASSWORD.encode(), descriptor=True)
    path = tmp_path / "aes.zip"
    path.write_bytes(blob)

    proc = _run(["unzip", "-l", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, _, _, _ in entries:
        assert name in proc.stdout
    assert f"{len(entries)} files" in proc.stdout

    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        infos = {info.filename: info for info in zf.infolist()}
        assert zf.read("README.TXT") == entries[0][1]
    for name, data, method, _ in entries[1:]:
        info = infos[name]
        assert info.compress_type == METHOD_AES and info.flag_bits & FLAG_ENCRYPTED
        assert info.CRC == 0 and info.file_size == len(data)
        assert aes_extra_field(method) in info.extra


@pytest.mark.usefixtures("tools")
@pytest.mark.parametrize("descriptor", [False, True], ids=["exact-header", "data-descriptor"])
def test_libarchive_reads_it_front_to_back(tmp_path: Path, descriptor: bool) -> None:
    """bsdtar from a pipe: no central directory, the local headers and descriptors only."""
    entries = _entries()
    blob = build_zip(entries, PASSWORD.encode(), descriptor=descriptor)
    out = tmp_path / "x"
    out.mkdir()
    proc = subprocess.run(
        ["bsdtar", "-x", "-f", "-", "--passphrase", PASSWORD, "-C", str(out)],
        input=blob,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name, data, _, _ in entries:
        assert (out / name).read_bytes() == data, name


def test_key_forge_derives_a_fresh_key_per_entry() -> None:
    """Keys derived ahead are those of their salts, never repeated, and the leftovers are
    dropped when the ZIP ends."""
    from zipproxy.aes import KeyForge, derive

    forge = KeyForge(b"correct horse battery")
    taken = [forge.take() for _ in range(KeyForge.AHEAD + 3)]
    assert len({salt for salt, _ in taken}) == len(taken)
    assert all(material == derive(b"correct horse battery", salt) for salt, material in taken)
    forge.close()
    assert not forge._pending


def test_cryptography_loads_only_when_a_zip_is_encrypted() -> None:
    """A proxy that never encrypts does not carry cryptography (aes docstring): the app and
    this module import without it, and the first key derivation loads it."""
    code = (
        "import sys\n"
        "import zipproxy.app, zipproxy.aes as aes\n"
        "before = 'cryptography' in sys.modules\n"
        "aes.derive(b'password', bytes(16))\n"
        "print(before, 'cryptography' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert proc.stdout.split() == ["False", "True"]
