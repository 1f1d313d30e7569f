"""What ``zipproxy fetch`` prints: a live bar on a terminal, plain lines without one, nothing
with --quiet, one line for a usage error or a missing extra, and never a password or token.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

from conftest import Proxy
from fakeupstream import Plan, Relay, Relayed, Seen
from fetchrun import (
    ANSI,
    fetch_command,
    first_time_only,
    run_fetch,
    run_in_pty,
)

from zipproxy.demo.orthanc import SampleUpstream


def test_credentials_reach_every_request_and_never_the_output(
    proxy_auth: Proxy, orthanc_auth: SampleUpstream, tmp_path: Path
) -> None:
    user, password = orthanc_auth.auth or ("", "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    url = f"{proxy_auth.url}/dicom-web/studies?PatientID=ZP-MR-001"
    ok = run_fetch(url, "--out", str(tmp_path / "a"), "--user", f"{user}:{password}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    header = run_fetch(url, "--out", str(tmp_path / "b"), "--header",
                       f"Authorization: Basic {token}")
    assert header.returncode == 0, header.stdout + header.stderr
    in_url = run_fetch(url.replace("://", f"://{user}:{password}@"), "--out", str(tmp_path / "c"))
    assert in_url.returncode == 0, in_url.stdout + in_url.stderr
    wrong = run_fetch(url, "--out", str(tmp_path / "d"), "--user", f"{user}:not-{password}")
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr, wrong.stdout + wrong.stderr
    for result in (ok, header, in_url, wrong):
        for text in (result.stdout, result.stderr):
            assert password not in text and token not in text


def test_an_echoed_secret_is_redacted(
    faulty: Relay, rproxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    """A server that quotes the credentials back in an error body: the reason printed (plain
    lines, failure table) shows *** instead."""
    secret = "Bearer tok-5e1f9a0c77"

    def echo(seen: Seen) -> Plan | None:
        if seen.path_qs.startswith("/relay/dicom-web/studies/"):
            quoted = f"denied: Authorization {seen.header('Authorization')}".encode()
            return Plan(status=403, content_type="text/plain", segments=[quoted])
        return None

    faulty.fault = echo
    result = run_fetch(f"{rproxy.url}/dicom-web/studies?PatientID=ZP-MR-001", "--out",
                       str(tmp_path / "echo"), "--header", f"Authorization: {secret}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "denied: Authorization ***" in result.stdout
    assert "tok-5e1f9a0c77" not in result.stdout + result.stderr


def test_live_progress_on_a_terminal(
    faulty: Relay, rproxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    """Under a pseudo-terminal: a redrawn bar with studies done/total, instances of the
    search's total, bytes, rate and ETA; none of the plain per-study lines."""
    slow = orthanc.study("ZP-CT-001")
    faulty.fault = first_time_only(slow, Relayed(rate=50_000))  # a few redraws while it runs
    total = sum(len(s.instances) for s in orthanc.studies)
    status, shown = run_in_pty(fetch_command(f"{rproxy.url}/dicom-web/studies", "--out",
                                             str(tmp_path / "live")))
    assert status == 0, shown
    assert ANSI.search(shown) and "\r" in shown  # redrawn in place
    assert f"{len(orthanc.studies)}/{len(orthanc.studies)} studies" in shown
    assert f"{total}/{total} instances" in shown
    assert re.search(r"[0-9.]+ [kM]?B [0-9.]+ [kM]?B/s", shown), shown
    assert "ETA" in shown and "━" in shown
    assert "verified  " not in shown
    assert f"{len(orthanc.studies)} of {len(orthanc.studies)} studies verified" in shown
    quiet = run_fetch(f"{rproxy.url}/dicom-web/studies", "--out", str(tmp_path / "q"), "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_without_the_fetch_extra(proxy: Proxy, tmp_path: Path) -> None:
    """Without rich: one line that says what to install, exit 2, nothing written."""
    code = ("import sys; sys.modules['rich'] = None; from zipproxy.cli import main; "
            f"sys.exit(main(['fetch', '{proxy.url}/dicom-web/studies', '--out', "
            f"'{tmp_path / 'x'}']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "pip install 'zipproxy[fetch]'" in result.stderr
    assert not (tmp_path / "x").exists()


def test_usage_errors_exit_2(proxy: Proxy, tmp_path: Path) -> None:
    url = f"{proxy.url}/dicom-web/studies"
    for args in (["--layout", "{SOPInstanceUID}.dcm"],  # needs --extract
                 ["--extract", "--layout", "../{SOPInstanceUID}"],
                 ["--extract", "--layout", "/abs/{SOPInstanceUID}"],
                 ["--extract", "--layout", "{NotAKeyword}"],
                 ["--transfer-syntax", "jpeg"]):
        result = run_fetch(url, "--out", str(tmp_path / "u"), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("zipproxy fetch: ") and result.stderr.count("\n") == 1
    not_a_search = run_fetch(f"{proxy.url}/dicom-web/instances", "--out", str(tmp_path / "u"))
    assert not_a_search.returncode == 2 and "QIDO-RS search" in not_a_search.stderr
    assert not (tmp_path / "u").exists()
