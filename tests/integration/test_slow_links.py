"""Slow links keep their download; stalled ones are cut (issue 13, README "Failure behaviour").

``--read-timeout`` means: the client is cut when it has accepted no bytes for that long while
bytes wait for it, however long one write takes to drain. With the timeout scaled down to 1 s:

- a steady reader far slower than the proxy (64 KiB every 0.1 s, a small receive buffer)
  downloads a ZIP of 3 MiB entries, whose 2 MiB send buffer alone takes 3 s to drain: the ZIP
  reads back whole;
- a reader that stops for longer than the timeout is cut, the partial file is no ZIP, and its
  stream slot is free again (``--max-streams 1``: the next download succeeds);
- the same for a proxied (pass-through) multipart answer;
- an upload to an upstream that stops reading is answered 504; a client that stops sending its
  body gets 408.

The upstream is a real Orthanc of this module holding a study of 3 x 3 MiB CT slices; only
the stalled upload uses the fault upstream.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Proxy, StartProxy
from fakeupstream import FakeUpstream
from zipcheck import check_all

from zipproxy.demo.orthanc import Orthanc
from zipproxy.demo.samples import StudyInfo, make_bulk_study

TIMEOUT = "1"
MIB = 1 << 20


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, StudyInfo]]:
    root = tmp_path_factory.mktemp("slow")
    study = make_bulk_study(root / "study", 1, 3, 1024, 1536, key="slow-links")  # 3 x 3 MiB
    with Orthanc(root / "orthanc") as server:
        server.upload(study.files)
        yield server, study


@pytest.fixture(scope="module")
def proxy(big: tuple[Orthanc, StudyInfo], start_proxy: StartProxy) -> Proxy:
    return start_proxy(big[0].url, "--read-timeout", TIMEOUT, "--max-streams", "1")


class Reader:
    """An HTTP client that reads ``step`` bytes, then sleeps ``pause`` seconds, through a
    socket whose receive buffer is small (so the proxy's writes really wait for it)."""

    def __init__(self, port: int, path: str, accept: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", port))
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.sock = sock
        self.conn.request("GET", path, headers={"Accept": accept})
        self.response = self.conn.getresponse()
        self.body = bytearray()

    def read(self, step: int, pause: float, stop_after: int | None = None,
             stop_for: float = 0.0) -> str:
        """Read to the end; returns "complete" or the error that ended the transfer."""
        stopped = False
        try:
            while piece := self.response.read(step):
                self.body += piece
                if stop_after is not None and not stopped and len(self.body) >= stop_after:
                    stopped = True
                    time.sleep(stop_for)
                time.sleep(pause)
        except (http.client.IncompleteRead, ConnectionError, OSError) as exc:
            return type(exc).__name__
        finally:
            self.conn.close()
        return "complete"


def log_lines(proxy: Proxy) -> list[dict[str, object]]:
    return [json.loads(line) for line in proxy.log().splitlines() if line.startswith("{")]


def zip_path(study: StudyInfo) -> str:
    return f"/dicom-web/studies/{study.study_uid}"


def test_steady_slow_reader_gets_the_whole_zip(
    big: tuple[Orthanc, StudyInfo], proxy: Proxy, tmp_path: Path
) -> None:
    _, study = big
    reader = Reader(proxy.port, zip_path(study), "application/zip; transfer-syntax=*")
    assert reader.response.status == 200
    started = time.monotonic()
    assert reader.read(64 * 1024, 0.1) == "complete"
    elapsed = time.monotonic() - started
    assert elapsed > 5 * float(TIMEOUT)  # slow indeed: far longer than the timeout
    out = tmp_path / "slow.zip"
    out.write_bytes(reader.body)
    info = check_all(out)
    assert len(info.records) == 3
    with zipfile.ZipFile(out) as zf:
        assert min(i.file_size for i in zf.infolist() if i.filename.startswith("DICOM/")) > 3 * MIB


def _assert_cut_and_slot_free(proxy: Proxy, study: StudyInfo, outcome: str, body: bytes,
                              tmp_path: Path) -> None:
    assert outcome != "complete"
    assert b"PK\x05\x06" not in body  # no end of central directory: no complete-looking ZIP
    line = [e for e in log_lines(proxy) if e.get("path") == zip_path(study)][-1]
    assert (line["outcome"], line["error"]) == ("aborted", "ClientStalled"), line
    out = tmp_path / "after.zip"  # --max-streams 1: the slot is free again
    run = subprocess.run(["curl", "-sS", "--fail", "--max-time", "60", "-o", str(out), "-H",
                          "Accept: application/zip", f"{proxy.url}{zip_path(study)}"],
                         capture_output=True, text=True, timeout=90, check=False)
    assert run.returncode == 0, run.stderr
    check_all(out)


def test_stalled_reader_is_cut_and_frees_its_slot(
    big: tuple[Orthanc, StudyInfo], proxy: Proxy, tmp_path: Path
) -> None:
    _, study = big
    reader = Reader(proxy.port, zip_path(study), "application/zip; transfer-syntax=*")
    assert reader.response.status == 200
    outcome = reader.read(64 * 1024, 0.0, stop_after=MIB, stop_for=4 * float(TIMEOUT))
    _assert_cut_and_slot_free(proxy, study, outcome, bytes(reader.body), tmp_path)


def test_stalled_reader_of_a_passed_through_answer_is_cut(
    big: tuple[Orthanc, StudyInfo], proxy: Proxy, tmp_path: Path
) -> None:
    _, study = big
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    reader = Reader(proxy.port, zip_path(study), accept)
    assert reader.response.status == 200
    outcome = reader.read(64 * 1024, 0.0, stop_after=MIB, stop_for=4 * float(TIMEOUT))
    assert outcome != "complete"
    line = [e for e in log_lines(proxy) if e.get("path") == zip_path(study)][-1]
    assert (line["outcome"], line["error"]) == ("aborted", "ClientStalled"), line


def test_upload_to_an_upstream_that_stops_reading_is_a_504(
    fake: FakeUpstream, start_proxy: StartProxy, tmp_path: Path
) -> None:
    prefix = fake.add_deaf("deaf-stow")
    proxy = start_proxy(fake.url, "--read-timeout", TIMEOUT)
    body = tmp_path / "upload.bin"
    body.write_bytes(bytes(64 * MIB))  # far more than the kernel buffers hold
    started = time.monotonic()
    run = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "-o", str(tmp_path / "answer"), "-w",
         "%{http_code}", "-H", "Content-Type: application/octet-stream",
         "--data-binary", f"@{body}", f"{proxy.url}{prefix}/studies"],
        capture_output=True, text=True, timeout=90, check=False)
    assert run.stdout == "504", (run.stdout, run.stderr)
    assert time.monotonic() - started < 20  # the timeout, not the fake's 30 s
    assert "took no request body bytes" in (tmp_path / "answer").read_text()


def test_client_that_stops_sending_its_body_gets_408(
    fake: FakeUpstream, start_proxy: StartProxy
) -> None:
    prefix = fake.add_deaf("deaf-client-stall")
    proxy = start_proxy(fake.url, "--read-timeout", TIMEOUT)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(f"POST {prefix}/studies HTTP/1.1\r\nHost: x\r\n".encode()
                     + b"Content-Type: application/dicom\r\nContent-Length: 1000000\r\n\r\n"
                     + bytes(1000))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"sent no request body bytes" in answer
