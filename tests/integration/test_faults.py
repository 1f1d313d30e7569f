"""Faults: what a client sees when the upstream (or the client itself) misbehaves.

A real ``python -m zipproxy`` sits in front of :class:`fakeupstream.FakeUpstream`, which serves
multipart bodies of real Part-10 files and injects one fault per scenario (the first path
segment names it). The client is curl where the outcome is about what a real client sees, a raw
socket where the test needs byte-level control.

The rules under test (zipproxy/errors.py, zipproxy/retrieve.py):

- before the first ZIP byte: an HTTP error with a reason, and no ZIP;
- after it: the connection is aborted, the client gets an error, and what it downloaded never
  opens as a complete ZIP (no end-of-central-directory record);
- bad UIDs never reach the upstream; the incoming Host never chooses the destination;
  credentials reach the upstream but never the log.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from conftest import Proxy, StartProxy
from fakeupstream import (
    BOUNDARY,
    FakeUpstream,
    Plan,
    closing_delimiter,
    dicom_part,
    multipart_segments,
)
from pydicom.filewriter import dcmwrite
from zipcheck import check_dicomdir, check_python_zipfile

from zipproxy.demo.orthanc import free_port
from zipproxy.demo.samples import StudyInfo, make_bulk_study, make_study, pixel_pattern

ZIP = "application/zip"
PATIENT = "Secret^Patient"
USER, PASSWORD = "alice", "Pa55-w0rd-zp-4f1c"
COOKIE_VALUE = "c00kie-7f3a91e2"


# -- fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Samples:
    secret: StudyInfo  # Secret^Patient: 3 small instances in 2 series
    steady: StudyInfo  # 3 instances of about 14 KiB: ~2 s at 1 KiB per 50 ms
    bulk: StudyInfo  # 80 x 256 KiB: bigger than the socket buffers on the way
    big_header: Path  # an instance with a 3 MiB private element before Pixel Data
    small: Path  # an ordinary instance of the same study as big_header


def _with_big_private_element(src: Path, dst: Path) -> Path:
    ds = pydicom.dcmread(src)
    block = ds.private_block(0x0009, "ZIPPROXY FAULT TEST", create=True)
    block.add_new(0x01, "OB", pixel_pattern(3 << 20))  # (0009,1001), before (7FE0,0010)
    dcmwrite(dst, ds, enforce_file_format=True)
    return dst


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    root = tmp_path_factory.mktemp("fault-samples")
    secret = make_study(
        root,
        patient_name=PATIENT,
        patient_id="ZP-FAULT-001",
        series=[("CT", 2, 32, 32, 1), ("MR", 1, 32, 32, 1)],
        key="faults-secret",
    )
    steady = make_study(
        root,
        patient_name="Steady^Sam",
        patient_id="ZP-FAULT-002",
        series=[("CT", 3, 80, 80, 1)],
        key="faults-steady",
    )
    bulk = make_bulk_study(root, 1, 80, 256, 512, key="faults-bulk")
    header = make_study(
        root,
        patient_name="Header^Hank",
        patient_id="ZP-FAULT-003",
        series=[("CT", 2, 32, 32, 1)],
        key="faults-header",
    )
    big = _with_big_private_element(header.files[1], root / "big-header.dcm")
    return Samples(secret, steady, bulk, big, header.files[0])


@pytest.fixture(scope="module")
def decoy() -> Iterator[FakeUpstream]:
    """A second server nobody should ever reach through the proxy."""
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def fproxy(fake: FakeUpstream, start_proxy: StartProxy) -> Proxy:
    """zipproxy in front of the fake, with 1 s idle timeouts."""
    return start_proxy(fake.url, "--read-timeout", "1", "--connect-timeout", "1")


@pytest.fixture(scope="module")
def proxy_1m(fake: FakeUpstream, start_proxy: StartProxy) -> Proxy:
    """zipproxy in front of the fake with ``--header-limit 1M`` and the default (60 s)
    timeouts."""
    return start_proxy(fake.url, "--header-limit", "1M")


# -- helpers -------------------------------------------------------------------------------


@dataclass
class Fetch:
    rc: int
    status: int
    headers: dict[str, str]
    body: bytes
    stderr: str
    elapsed: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def describe(self) -> str:
        return (
            f"curl exit {self.rc}, HTTP {self.status}, {len(self.body)} bytes, "
            f"headers {self.headers}, stderr {self.stderr.strip()!r}, "
            f"body {self.body[:300]!r}"
        )


def fetch(url: str, out: Path, *headers: str, extra: tuple[str, ...] = ()) -> Fetch:
    """GET with curl; the exit code is returned, not asserted."""
    head = out.with_name(out.name + ".headers")
    args = [
        "curl",
        "-sS",
        "--path-as-is",
        "--max-time",
        "30",
        "-o",
        str(out),
        "-D",
        str(head),
        "-w",
        "%{http_code}",
        *extra,
    ]
    for h in headers:
        args += ["-H", h]
    started = time.monotonic()
    proc = subprocess.run([*args, url], capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.monotonic() - started
    found: dict[str, str] = {}
    if head.exists():
        for line in head.read_text(errors="replace").splitlines():
            if line.startswith("HTTP/"):
                found = {}  # keep the last header block only
            name, sep, value = line.partition(":")
            if sep:
                found[name.strip().lower()] = value.strip()
    body = out.read_bytes() if out.exists() else b""
    status = int(proc.stdout.strip() or 0)
    return Fetch(proc.returncode, status, found, body, proc.stderr, elapsed)


def assert_not_a_complete_zip(data: bytes, context: str = "") -> None:
    """No end-of-central-directory record: Python's zipfile refuses the bytes."""
    try:
        zipfile.ZipFile(io.BytesIO(data)).close()
    except zipfile.BadZipFile:
        return
    raise AssertionError(f"{len(data)} bytes open as a complete ZIP {context}")


def assert_error_before_zip(r: Fetch, status: int, reason: str) -> None:
    """A whole HTTP error answer (curl exits 0) with a reason, and no ZIP byte."""
    assert r.rc == 0, r.describe()
    assert r.status == status, r.describe()
    assert r.headers.get("content-type", "").split(";")[0].strip() != ZIP, r.describe()
    assert not r.body.startswith(b"PK"), r.describe()
    assert reason.lower() in r.text.lower(), r.describe()
    assert_not_a_complete_zip(r.body, r.describe())


def assert_aborted(r: Fetch) -> None:
    """The ZIP started (200) and was cut: curl fails, the partial download is no ZIP."""
    assert r.rc != 0, r.describe()
    assert r.status == 200, r.describe()
    assert r.headers.get("content-type") == ZIP, r.describe()
    assert_not_a_complete_zip(r.body, r.describe())


def raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or ``timeout`` of silence)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    first = raw.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) >= 2 and first[1].isdigit() else 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def stable_fd_count(pid: int) -> int:
    """The count once it stops moving (the proxy finishes closing what earlier tests left)."""
    last = fd_count(pid)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = fd_count(pid)
        if now == last:
            return now
        last = now
    return last


def zip_url(proxy: Proxy, prefix: str, study: StudyInfo) -> str:
    return f"{proxy.url}{prefix}/studies/{study.study_uid}"


# -- the upstream cannot be used at all ----------------------------------------------------


def test_upstream_refuses_connection(tmp_path: Path, samples: Samples) -> None:
    closed_port = free_port()  # bound a moment ago and closed: nothing listens there
    p = Proxy(f"http://127.0.0.1:{closed_port}", tmp_path, "--connect-timeout", "2")
    try:
        r = fetch(
            zip_url(p, "/dicom-web", samples.secret), tmp_path / "refused.zip", f"Accept: {ZIP}"
        )
        assert_error_before_zip(r, 502, "unreachable")
        r = fetch(f"{p.url}/dicom-web/studies", tmp_path / "refused.json")  # pass-through too
        assert_error_before_zip(r, 502, "unreachable")
    finally:
        p.stop()


def test_upstream_never_answers_headers(
    fake: FakeUpstream, fproxy: Proxy, samples: Samples, tmp_path: Path
) -> None:
    prefix = fake.add("hang", Plan(hang=True, stall=10))
    r = fetch(zip_url(fproxy, prefix, samples.secret), tmp_path / "hang.zip", f"Accept: {ZIP}")
    assert_error_before_zip(r, 504, "did not answer in time")
    assert r.elapsed < 5, r.describe()  # --read-timeout 1, not the fake's 10 s
    (seen,) = fake.seen("hang")
    assert fake.wait_until(lambda: seen.peer_closed_at is not None, 3), seen
    assert seen.outcome == "peer-closed"


@pytest.mark.parametrize("status", [401, 403, 404, 500, 503])
def test_upstream_error_status_passes_through(
    fake: FakeUpstream, fproxy: Proxy, samples: Samples, tmp_path: Path, status: int
) -> None:
    headers = {"WWW-Authenticate": 'Basic realm="fake-dicomweb"'} if status == 401 else {}
    if status == 503:
        headers["Retry-After"] = "7"
    text = f"fake upstream says {status}\n"
    prefix = fake.add(
        f"status-{status}",
        Plan(status=status, content_type="text/plain", headers=headers, segments=[text.encode()]),
    )
    r = fetch(
        zip_url(fproxy, prefix, samples.secret) + "?accept=application/zip", tmp_path / "status.zip"
    )
    assert_error_before_zip(r, status, text.strip())
    if status == 401:
        assert r.headers.get("www-authenticate") == 'Basic realm="fake-dicomweb"', r.describe()
    if status == 503:
        assert r.headers.get("retry-after") == "7", r.describe()


# -- a wrong body, seen before the first ZIP byte ------------------------------------------


def _text_part_plan(content_type: str) -> Plan:
    text = b"this is not a DICOM file, just some text that an upstream might send instead\n" * 3
    return Plan(
        segments=[dicom_part(text, first=True, content_type=content_type), closing_delimiter()]
    )


BAD_BODIES: dict[str, tuple[Callable[[Samples], Plan], int, str]] = {
    # name: (plan factory, expected status, expected reason text)
    "json-body": (
        lambda s: Plan(content_type="application/json", segments=[b'{"not": "multipart"}']),
        502,
        "not multipart/related",
    ),
    "no-boundary": (
        lambda s: Plan(
            content_type='multipart/related; type="application/dicom"',
            segments=multipart_segments(s.secret.files),
        ),
        502,
        "no valid boundary",
    ),
    "text-part": (lambda s: _text_part_plan("text/plain"), 502, "not application/dicom"),
    "text-labelled-dicom": (
        lambda s: _text_part_plan("application/dicom"),
        502,
        "not a DICOM Part-10 file",
    ),
    "zero-parts": (lambda s: Plan(segments=[f"--{BOUNDARY}--\r\n".encode()]), 404, "no instances"),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_is_an_http_error_before_any_zip_byte(
    fake: FakeUpstream, fproxy: Proxy, samples: Samples, tmp_path: Path, name: str
) -> None:
    make_plan, status, reason = BAD_BODIES[name]
    prefix = fake.add(name, make_plan(samples))
    r = fetch(zip_url(fproxy, prefix, samples.secret), tmp_path / "bad.zip", f"Accept: {ZIP}")
    assert_error_before_zip(r, status, reason)


@pytest.mark.parametrize("ending", ["close", "reset", "stall"])
def test_upstream_fails_before_the_first_part_is_an_http_error(
    fake: FakeUpstream, fproxy: Proxy, samples: Samples, tmp_path: Path, ending: str
) -> None:
    """Status line and headers sent, then no body byte: still nothing of a ZIP."""
    prefix = fake.add(f"early-{ending}", Plan(segments=[], ending=ending, stall=10))
    r = fetch(zip_url(fproxy, prefix, samples.secret), tmp_path / "early.zip", f"Accept: {ZIP}")
    assert r.status in (502, 504), r.describe()
    assert_error_before_zip(r, r.status, "upstream")
    assert r.elapsed < 5, r.describe()


def test_duplicate_sop_instance_aborts(
    fake: FakeUpstream, fproxy: Proxy, samples: Samples, tmp_path: Path
) -> None:
    one = samples.secret.files[0]
    # The pause makes the proxy see (and start the ZIP with) the first part on its own.
    prefix = fake.add("duplicate", Plan(segments=multipart_segments([one, one]), pause=0.3))
    r = fetch(zip_url(fproxy, prefix, samples.secret), tmp_path / "dup.zip", f"Accept: {ZIP}")
    assert_aborted(r)


# -- mid-stream failures -------------------------------------------------------------------


def _mid_stream_plan(kind: str, files: list[Path]) -> Plan:
    whole = multipart_segments(files, close=False)  # every part, no closing delimiter
    half = whole[-1][: len(whole[-1]) // 2]
    if kind == "eof-without-closing-boundary":  # the HTTP body ends properly, the multipart not
        return Plan(segments=whole, pause=0.2, ending="eof")
    if kind == "close-without-closing-boundary":  # chunked body cut by a FIN
        return Plan(segments=whole, pause=0.2, ending="close")
    if kind == "close-short-of-content-length":
        segments = [*whole[:-1], half]
        declared = sum(map(len, whole)) + len(closing_delimiter())
        return Plan(segments=segments, pause=0.2, ending="close", content_length=declared)
    if kind == "reset-mid-part":
        return Plan(segments=[*whole[:-1], half], pause=0.2, ending="reset")
    if kind == "stall-mid-part":
        return Plan(segments=[*whole[:-1], half], pause=0.2, ending="stall", stall=10)
    raise AssertionError(kind)


MID_STREAM = [
    "eof-without-closing-boundary",
    "close-without-closing-boundary",
    "close-short-of-content-length",
    "reset-mid-part",
    "stall-mid-part",
]


@pytest.mark.parametrize("kind", MID_STREAM)
def test_mid_stream_failure_aborts_without_a_complete_zip(
    fake: FakeUpstream, fproxy: Proxy, samples: Samples, tmp_path: Path, kind: str
) -> None:
    prefix = fake.add(kind, _mid_stream_plan(kind, samples.secret.files))
    r = fetch(zip_url(fproxy, prefix, samples.secret), tmp_path / "mid.zip", f"Accept: {ZIP}")
    assert_aborted(r)
    assert r.body.startswith(b"PK\x03\x04"), r.describe()  # the ZIP had started
    if kind == "stall-mid-part":
        assert r.elapsed < 6, r.describe()  # the 1 s idle timeout, not the fake's 10 s stall
        (seen,) = fake.seen(kind)
        assert fake.wait_until(lambda: seen.peer_closed_at is not None, 3), seen


def test_slow_but_steady_upstream_succeeds(
    fake: FakeUpstream, fproxy: Proxy, samples: Samples, tmp_path: Path
) -> None:
    segments = multipart_segments(samples.steady.files)
    total = sum(map(len, segments))
    prefix = fake.add("steady", Plan(segments=segments, trickle=(1024, 0.05)))
    out = tmp_path / "steady.zip"
    r = fetch(zip_url(fproxy, prefix, samples.steady), out, f"Accept: {ZIP}")
    assert r.rc == 0 and r.status == 200, r.describe()
    # Longer in total than the 1 s read timeout, never idle for as long.
    assert r.elapsed > 1.5, (total, r.describe())
    check_python_zipfile(out)
    info = check_dicomdir(out)
    assert {rec.sop_instance_uid for rec in info.records} == set(samples.steady.sop_uids)


def test_client_disconnect_closes_upstream_and_frees_descriptors(
    fake: FakeUpstream, fproxy: Proxy, samples: Samples
) -> None:
    segments = multipart_segments(samples.bulk.files)
    total = sum(map(len, segments))
    prefix = fake.add("disconnect", Plan(segments=segments, trickle=(64 << 10, 0.005)))
    pid = fproxy.proc.pid
    baseline = stable_fd_count(pid)
    request = (
        f"GET {prefix}/studies/{samples.bulk.study_uid} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{fproxy.port}\r\nAccept: {ZIP}\r\n\r\n"
    ).encode()
    received = 0
    with socket.create_connection(("127.0.0.1", fproxy.port), timeout=10) as sock:
        sock.sendall(request)
        while received < (1 << 20):
            data = sock.recv(65536)
            assert data, f"proxy closed after {received} bytes"
            received += len(data)
        during = fd_count(pid)
    closed_at = time.monotonic()
    (seen,) = fake.seen("disconnect")
    assert fake.wait_until(lambda: seen.finished is not None, 5), seen
    assert seen.outcome == "peer-closed", (seen.outcome, seen.bytes_sent, total)
    assert seen.peer_closed_at is not None
    assert seen.peer_closed_at - closed_at < 1.0, seen.peer_closed_at - closed_at
    assert seen.bytes_sent < total
    assert during > baseline  # the two connections were open while downloading
    assert fake.wait_until(lambda: fd_count(pid) <= baseline, 3), (fd_count(pid), baseline)
    assert stable_fd_count(pid) == baseline


@pytest.mark.parametrize("kind", ["zip", "passthrough"])
def test_client_disconnect_before_the_upstream_answers_closes_upstream(
    fake: FakeUpstream, proxy_1m: Proxy, kind: str
) -> None:
    """The client gives up while the upstream is still preparing its answer (a big study can
    take a while): the upstream request is dropped too, not kept for the 60 s read timeout."""
    name = f"client-leaves-early-{kind}"
    prefix = fake.add(name, Plan(hang=True, stall=4))
    target, accept = (
        (f"{prefix}/studies/1.2.3", f"Accept: {ZIP}\r\n")
        if kind == "zip"
        else (f"{prefix}/studies?PatientID=1", "")
    )
    with socket.create_connection(("127.0.0.1", proxy_1m.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n{accept}\r\n".encode())
        assert fake.wait_until(lambda: bool(fake.seen(name)), 5)
    closed_at = time.monotonic()
    (seen,) = fake.seen(name)
    fake.wait_until(lambda: seen.peer_closed_at is not None, 2)
    assert seen.peer_closed_at is not None, (
        f"2 s after the client left, the proxy still holds its upstream request open ({seen})"
    )
    assert seen.peer_closed_at - closed_at < 1.0, seen.peer_closed_at - closed_at


# -- instance headers and the header limit -------------------------------------------------


@pytest.mark.parametrize("order", ["big-first", "big-later"])
def test_big_header_streams_whatever_the_header_limit(
    fake: FakeUpstream, proxy_1m: Proxy, samples: Samples, tmp_path: Path, order: str
) -> None:
    """A 3 MiB private element before Pixel Data, through a proxy whose --header-limit is
    1 MiB: the scanner steps over it, so the instance streams (issue 12: no well-formed object
    of any size fails a download), first in its ZIP or not."""
    files = [samples.small, samples.big_header]
    prefix = fake.add(f"big-header-{order}", Plan(
        segments=multipart_segments(files if order == "big-later" else files[::-1])))
    out = tmp_path / "big.zip"
    r = fetch(f"{proxy_1m.url}{prefix}/studies/1.2.3?accept=application/zip", out)
    assert r.rc == 0 and r.status == 200, r.describe()
    check_python_zipfile(out)
    info = check_dicomdir(out)
    assert len(info.records) == 2
    with zipfile.ZipFile(out) as zf:
        sizes = sorted(i.file_size for i in zf.infolist() if i.filename.startswith("DICOM/"))
    assert sizes[-1] == samples.big_header.stat().st_size


# -- requests that must never reach the upstream (or only the configured one) --------------

BAD_UIDS = ["..%2F..", "1.2.abc", "abc", ("1." * 100)[:199] + "1"]


@pytest.mark.parametrize("level", ["study", "series", "instance"])
@pytest.mark.parametrize("bad", BAD_UIDS, ids=["dotdot", "letters", "alpha", "200chars"])
def test_invalid_uid_is_400_without_upstream_request(
    fake: FakeUpstream, fproxy: Proxy, tmp_path: Path, bad: str, level: str
) -> None:
    assert len(BAD_UIDS[-1]) == 200
    path = {
        "study": f"/studies/{bad}",
        "series": f"/studies/1.2.3/series/{bad}",
        "instance": f"/studies/1.2.3/series/1.2.4/instances/{bad}",
    }[level]
    before = len(fake.requests)
    r = fetch(f"{fproxy.url}/uids{path}", tmp_path / "uid.zip", f"Accept: {ZIP}")
    assert_error_before_zip(r, 400, "not a valid UID")
    r = fetch(f"{fproxy.url}/uids{path}?accept=application/zip", tmp_path / "uid2.zip")
    assert_error_before_zip(r, 400, "not a valid UID")
    time.sleep(0.05)
    assert len(fake.requests) == before, fake.requests[before:]


@pytest.mark.parametrize("target", ["evil", "decoy"])
def test_absolute_form_target_never_chooses_the_destination(
    fake: FakeUpstream, decoy: FakeUpstream, fproxy: Proxy, target: str
) -> None:
    name = f"absform-{target}"
    fake.add(name, Plan(content_type="text/plain", segments=[b"pong from the fake\n"]))
    authority = "evil.example" if target == "evil" else f"127.0.0.1:{decoy.port}"
    raw = raw_exchange(
        fproxy.port,
        (
            f"GET http://{authority}/{name}/x HTTP/1.1\r\nHost: {authority}\r\n"
            "Connection: close\r\n\r\n"
        ).encode(),
    )
    status = status_of(raw)
    assert decoy.requests == []
    seen = fake.seen(name)
    if 400 <= status < 500:  # refused outright
        assert seen == [], raw[:300]
    else:  # or forwarded to the configured upstream, and only there
        assert status == 200 and b"pong from the fake\n" in raw, raw[:500]
        assert [s.path_qs for s in seen] == [f"/{name}/x"]
        assert seen[0].header("Host") == f"127.0.0.1:{fake.port}"


@pytest.mark.parametrize("host", ["evil", "decoy"])
def test_incoming_host_does_not_choose_the_destination(
    fake: FakeUpstream,
    decoy: FakeUpstream,
    fproxy: Proxy,
    samples: Samples,
    tmp_path: Path,
    host: str,
) -> None:
    authority = "evil.example" if host == "evil" else f"127.0.0.1:{decoy.port}"
    plain, zipped = f"host-{host}-plain", f"host-{host}-zip"
    fake.add(plain, Plan(content_type="text/plain", segments=[b"pong from the fake\n"]))
    fake.add(zipped, Plan(segments=multipart_segments(samples.secret.files)))
    raw = raw_exchange(
        fproxy.port,
        (f"GET /{plain}/ping HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").encode(),
    )
    assert status_of(raw) == 200 and b"pong from the fake\n" in raw, raw[:500]
    out = tmp_path / "host.zip"
    r = fetch(
        zip_url(fproxy, f"/{zipped}", samples.secret), out, f"Accept: {ZIP}", f"Host: {authority}"
    )
    assert r.rc == 0 and r.status == 200, r.describe()
    check_python_zipfile(out)
    assert decoy.requests == []
    for name in (plain, zipped):
        (seen,) = fake.seen(name)
        assert seen.header("Host") == f"127.0.0.1:{fake.port}", seen.headers


SMUGGLING = {
    "cl-and-te": "Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n",
    "te-and-cl": "Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n",
    "two-content-lengths": "Content-Length: 5\r\nContent-Length: {n}\r\n",
}


@pytest.mark.parametrize("kind", list(SMUGGLING))
def test_ambiguous_request_framing_is_refused(fake: FakeUpstream, fproxy: Proxy, kind: str) -> None:
    smuggled = f"GET /smuggled-{kind}/y HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    body = "0\r\n\r\n" + smuggled
    framing = SMUGGLING[kind].format(n=len(body))
    raw = raw_exchange(
        fproxy.port,
        (f"POST /smuggle-{kind}/x HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n{body}").encode(),
        timeout=3,
    )
    assert 400 <= status_of(raw) < 500, raw[:500]
    assert len(re.findall(rb"HTTP/1\.[01] \d{3} ", raw)) == 1, raw[:1000]  # no smuggled answer
    assert [s for s in fake.requests if "smuggle" in s.path_qs] == []


# -- credentials and patient data ----------------------------------------------------------


def test_credentials_forwarded_and_never_logged(
    fake: FakeUpstream, fproxy: Proxy, samples: Samples, tmp_path: Path
) -> None:
    qido = json.dumps(
        [
            {
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": PATIENT}]},
                "0020000D": {"vr": "UI", "Value": [samples.secret.study_uid]},
            }
        ]
    ).encode()
    fake.add("creds-qido", Plan(content_type="application/dicom+json", segments=[qido]))
    fake.add("creds-zip", Plan(segments=multipart_segments(samples.secret.files)))
    one = samples.secret.files[0]
    fake.add("creds-abort", Plan(segments=multipart_segments([one, one]), pause=0.3))
    fake.add(
        "creds-401",
        Plan(
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Basic realm="x"'},
            segments=[b"who are you\n"],
        ),
    )
    creds = ("-u", f"{USER}:{PASSWORD}", "-b", f"zpsession={COOKIE_VALUE}")

    r = fetch(
        f"{fproxy.url}/creds-qido/studies?PatientName={PATIENT}",
        tmp_path / "q.json",
        "Accept: application/dicom+json",
        extra=creds,
    )
    assert r.rc == 0 and r.status == 200 and PATIENT in r.text, r.describe()
    out = tmp_path / "creds.zip"
    r = fetch(zip_url(fproxy, "/creds-zip", samples.secret), out, f"Accept: {ZIP}", extra=creds)
    assert r.rc == 0 and r.status == 200, r.describe()
    info = check_dicomdir(out)
    assert {str(p.PatientName) for p in info.patients} == {PATIENT}
    r = fetch(
        zip_url(fproxy, "/creds-abort", samples.secret),
        tmp_path / "a.zip",
        f"Accept: {ZIP}",
        extra=creds,
    )
    assert_aborted(r)
    r = fetch(
        zip_url(fproxy, "/creds-401", samples.secret),
        tmp_path / "401.zip",
        f"Accept: {ZIP}",
        extra=creds,
    )
    assert r.status == 401, r.describe()

    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for name in ("creds-qido", "creds-zip", "creds-abort", "creds-401"):
        (seen,) = fake.seen(name)
        assert seen.header("Authorization") == basic, (name, seen.headers)
        assert seen.header("Cookie") == f"zpsession={COOKIE_VALUE}", (name, seen.headers)
    (seen,) = fake.seen("creds-qido")
    assert seen.path_qs in (
        f"/creds-qido/studies?PatientName={PATIENT}",
        "/creds-qido/studies?PatientName=Secret%5EPatient",
    ), seen.path_qs

    # The last log lines are written after the response: wait for all four requests' lines.
    scenarios = ("creds-qido", "creds-zip", "creds-abort", "creds-401")
    assert fake.wait_until(lambda: all(f"/{n}/" in fproxy.log() for n in scenarios), 10), \
        fproxy.log()
    log = fproxy.log()
    assert "/creds-qido/studies" in log and "/creds-abort/studies" in log  # the log is real
    for secret in (PASSWORD, basic.split()[1], COOKIE_VALUE, PATIENT, "Secret%5EPatient", "Secret"):
        assert secret not in log, f"{secret!r} in the proxy log"
