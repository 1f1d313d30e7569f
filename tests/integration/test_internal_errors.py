"""A bug after the first ZIP byte is never an ``ok``: the connection is cut, the log says
``aborted`` / ``internal``, and ``zipproxy_zip_aborted{reason="internal"}`` counts it.

The app runs in this process (aiohttp's test server on a loopback port) in front of the real
Orthanc, so that a failure can be injected into the assembler; the client is curl.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from zipproxy.app import create_app
from zipproxy.assembler import ZipAssembler
from zipproxy.config import Settings
from zipproxy.demo.orthanc import SampleUpstream
from zipproxy.keys import METRICS


@pytest.fixture
async def server(orthanc: SampleUpstream) -> AsyncIterator[TestServer]:
    app = create_app(Settings(upstream=URL(orthanc.url)))
    async with TestServer(app, host="127.0.0.1") as srv:
        yield srv


async def curl(url: str, out: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "60", "-o", str(out), "-w", "%{http_code}", url,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, stdout.decode()


def inject(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """Make a ZipAssembler method fail like a bug would (not a zipproxy error): ``feed``
    fails before any ZIP byte, ``finish`` (the tail) after every instance was sent."""

    def failing(self: ZipAssembler, *args: object) -> object:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(ZipAssembler, method, failing)


def records(caplog: pytest.LogCaptureFixture, path: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "path", None) == path]


async def test_failure_after_the_first_byte_aborts_as_internal(
    server: TestServer, orthanc: SampleUpstream, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    study = orthanc.studies[0]
    inject(monkeypatch, "finish")
    path = f"/dicom-web/studies/{study.study_uid}"
    out = tmp_path / "cut.zip"
    with caplog.at_level(logging.INFO, logger="zipproxy"):
        rc, status = await curl(f"{server.make_url(path)}?accept=application/zip", out)
    assert status == "200" and rc in (18, 56), (rc, status)  # the transfer failed
    assert out.read_bytes()[:4] == b"PK\x03\x04"  # the ZIP had begun ...
    assert b"PK\x05\x06" not in out.read_bytes()  # ... and has no end of central directory
    (line,) = records(caplog, path)
    assert (line.outcome, line.error, line.status) == ("aborted", "internal", 200)  # type: ignore[attr-defined]
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    metrics = server.app[METRICS]
    assert metrics.zip_aborted.labels("internal")._value.get() == 1
    assert metrics.zip_completed._value.get() == 0


async def test_failure_before_the_first_byte_is_a_500(
    server: TestServer, orthanc: SampleUpstream, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    inject(monkeypatch, "feed")
    path = f"/dicom-web/studies/{orthanc.studies[0].study_uid}"
    out = tmp_path / "refused.txt"
    with caplog.at_level(logging.INFO, logger="zipproxy"):
        rc, status = await curl(f"{server.make_url(path)}?accept=application/zip", out)
    assert (rc, status) == (0, "500")
    assert "internal error" in out.read_text()
    (line,) = records(caplog, path)
    assert (line.outcome, line.error) == ("refused", "internal")  # type: ignore[attr-defined]
    assert server.app[METRICS].zip_refused.labels("500")._value.get() == 1
