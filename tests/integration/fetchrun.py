"""Running ``zipproxy fetch`` in tests: the subprocess, its output, the proxy's access log,
and the faulty relay (:class:`fakeupstream.Relay`) between a zipproxy and the sample Orthanc.

The fixtures ``relay``, ``faulty`` and ``rproxy`` are in conftest.py.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from conftest import Proxy
from fakeupstream import FakeUpstream, Relayed, Seen

from zipproxy.demo.samples import StudyInfo

__all__ = [
    "ANSI", "checksum_columns", "downloads", "fetch_command", "first_time_only", "load_cohort",
    "log_lines",
    "records", "retrieves", "run_fetch", "run_in_pty", "searches", "verified_lines", "wait_for",
]

CHECKSUM_COLUMNS = ("crc32", "sha256")
ANSI = re.compile(r"\x1b\[")


def fetch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "zipproxy", "fetch", *args]


def run_fetch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``zipproxy fetch`` with stdout a pipe (not a terminal): the plain lines."""
    return subprocess.run(fetch_command(*args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def log_lines(proxy: Proxy) -> list[dict[str, object]]:
    lines = []
    for line in proxy.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if "path" in entry:
                lines.append(entry)
    return lines


def downloads(proxy: Proxy, study: StudyInfo) -> list[dict[str, object]]:
    """The proxy's log lines of the ZIP requests for one study."""
    return [e for e in log_lines(proxy) if e["path"] == f"/dicom-web/studies/{study.study_uid}"]


def searches(proxy: Proxy) -> list[dict[str, object]]:
    return [e for e in log_lines(proxy) if e["path"] == "/dicom-web/studies"]


def verified_lines(stdout: str) -> dict[str, str]:
    """``{uid: line}`` of the plain ``verified`` lines."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"verified +\d+/\d+ +(?:study|series) ([0-9.]+) ", line)
        if match:
            found[match.group(1)] = line
    return found


def load_cohort(out: Path) -> pd.DataFrame:
    # The README's loader, as documented.
    return pd.read_csv(out / "cohort.csv", dtype=str, keep_default_na=False)


def checksum_columns(cohort: pd.DataFrame) -> list[str]:
    present = [c for c in CHECKSUM_COLUMNS if c in cohort.columns]
    assert present, f"no checksum column in cohort.csv: {list(cohort.columns)}"
    return present


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[bytes], what: str,
             timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            output = proc.communicate()[0]
            raise AssertionError(f"fetch ended (status {proc.returncode}) before {what}:\n"
                                 f"{output.decode(errors='replace')}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def records(out: Path) -> set[str]:
    folder = out / ".zipproxy" / "verified"
    return {p.stem for p in folder.glob("*.json")} if folder.exists() else set()


def retrieves(fake: FakeUpstream, study: StudyInfo) -> list[Seen]:
    return [s for s in fake.seen("relay")
            if s.path_qs.split("?")[0] == f"/relay/dicom-web/studies/{study.study_uid}"]


def first_time_only(study: StudyInfo, how: Relayed) -> Callable[[Seen], Relayed | None]:
    """Spoil the first retrieve of ``study`` only."""
    spoiled: list[str] = []

    def fault(seen: Seen) -> Relayed | None:
        if seen.path_qs.split("?")[0].endswith(study.study_uid) and not spoiled:
            spoiled.append(seen.path_qs)
            return how
        return None

    return fault


def run_in_pty(args: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; returns (status, what it showed)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "150"}
    proc = subprocess.Popen(args, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
                            env=env)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")
