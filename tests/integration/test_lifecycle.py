"""Lifecycle: SIGTERM with ZIPs in flight (README "Failure behaviour", ``--shutdown-grace``).

A real ``python -m zipproxy --shutdown-grace 3`` sits in front of :class:`FakeUpstream`. Two
curl downloads are running when the proxy gets SIGTERM: one whose upstream finishes about a
second later, one that would need about 20 s. The rules:

- the listening socket closes at once: new connections are refused;
- an in-flight ZIP that finishes within the grace period completes and is a valid ZIP;
- one that does not is aborted when the grace period ends (curl fails, no central directory),
  never completed falsely;
- the process exits with status 0 within the grace period plus a few seconds.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from conftest import Proxy
from fakeupstream import FakeUpstream, Plan, TinySeries, multipart_segments
from zipcheck import check_dicomdir, check_python_zipfile

ZIP = "application/zip"
GRACE = 3.0


def start_curl(url: str, out: Path) -> subprocess.Popen[str]:
    """curl writing each received byte at once (``-N``), so the file shows the ZIP has begun."""
    return subprocess.Popen(
        ["curl", "-sS", "-N", "--max-time", "60", "-o", str(out), "-w", "%{http_code}",
         "-H", f"Accept: {ZIP}", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_zip_bytes(out: Path, curl: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes()[:4] == b"PK\x03\x04":
            return
        assert curl.poll() is None, f"curl ended early: {curl.communicate()}"
        time.sleep(0.01)
    raise AssertionError(f"no ZIP byte in {out} after {timeout} s")


def refused_after(port: int, since: float, timeout: float) -> float | None:
    """Seconds from ``since`` until a new connection to ``port`` is refused (None: never)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except ConnectionRefusedError:
            return time.monotonic() - since
        except OSError:
            pass
        time.sleep(0.02)
    return None


def test_sigterm_finishes_short_zips_aborts_long_ones_and_exits_0(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    short = TinySeries("lifecycle-short", 3)
    long = TinySeries("lifecycle-long", 20)
    # 4 segments (3 parts, closing delimiter) 0.3 s apart: about 1.2 s in all.
    fake.add("sigterm-short", Plan(
        segments=multipart_segments(short.instance(i) for i in range(short.count)), pause=0.3))
    # 21 segments 1 s apart: about 21 s, far beyond the 3 s grace.
    fake.add("sigterm-long", Plan(
        segments=multipart_segments(long.instance(i) for i in range(long.count)), pause=1.0))
    proxy = Proxy(fake.url, tmp_path, "--shutdown-grace", f"{GRACE:g}")
    curls: list[subprocess.Popen[str]] = []
    try:
        long_out, short_out = tmp_path / "long.zip", tmp_path / "short.zip"
        curls.append(long_curl := start_curl(
            f"{proxy.url}/sigterm-long/studies/{long.study_uid}", long_out))
        wait_for_zip_bytes(long_out, long_curl, 5)
        curls.append(short_curl := start_curl(
            f"{proxy.url}/sigterm-short/studies/{short.study_uid}", short_out))
        wait_for_zip_bytes(short_out, short_curl, 5)

        os.kill(proxy.proc.pid, signal.SIGTERM)
        term_at = time.monotonic()
        # Everything is measured first and asserted after, so one failure shows them all.
        refused = refused_after(proxy.port, term_at, 2.0)
        short_stdout, short_stderr = short_curl.communicate(timeout=GRACE + 5)
        short_done = time.monotonic() - term_at
        long_stdout, long_stderr = long_curl.communicate(timeout=2 * GRACE + 10)
        long_done = time.monotonic() - term_at
        try:
            code: int | None = proxy.proc.wait(timeout=GRACE + 10)
        except subprocess.TimeoutExpired:
            code = None
        exited = time.monotonic() - term_at
        summary = (
            f"SIGTERM (grace {GRACE:g} s): new connections refused after {refused} s; short ZIP "
            f"done after {short_done:.2f} s (curl exit {short_curl.returncode}); long ZIP ended "
            f"after {long_done:.2f} s (curl exit {long_curl.returncode}); process exit {code} "
            f"after {exited:.2f} s"
        )
        print("\n" + summary)

        # New connections are refused at once.
        assert refused is not None and refused < 1.0, summary

        # The short download was in flight at SIGTERM and completes: a valid ZIP.
        assert short_curl.returncode == 0 and short_stdout == "200", (
            summary, short_stdout, short_stderr)
        (seen_short,) = fake.seen("sigterm-short")
        assert seen_short.outcome == "complete", seen_short
        assert seen_short.finished is not None and seen_short.finished > term_at, (
            "the short upstream answer ended before SIGTERM: the test proved nothing")
        check_python_zipfile(short_out)
        info = check_dicomdir(short_out)
        assert sorted(r.sop_instance_uid for r in info.records) == sorted(short.sop_uids)

        # The long one is cut, never completed falsely...
        assert long_curl.returncode != 0 and long_stdout == "200", (
            summary, long_stdout, long_stderr)
        data = long_out.read_bytes()
        assert data[:4] == b"PK\x03\x04"
        with pytest.raises(zipfile.BadZipFile):
            zipfile.ZipFile(io.BytesIO(data))
        (seen_long,) = fake.seen("sigterm-long")
        assert fake.wait_until(lambda: seen_long.finished is not None, 5), seen_long
        assert seen_long.outcome == "peer-closed", seen_long
        # ... when the grace period ends: not before, and not a second grace period later.
        assert GRACE - 0.5 <= long_done <= GRACE + 2, summary

        # The process exits 0 within the grace period plus a few seconds.
        assert code == 0, (summary, proxy.log()[-3000:])
        assert exited <= GRACE + 2.5, summary
    finally:
        for curl in curls:
            if curl.poll() is None:
                curl.kill()
                curl.communicate()
        proxy.stop()
