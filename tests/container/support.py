"""Helpers shared by the container checks (check.py, sigterm.py)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # zipcheck: the suite's ZIP validators

from zipcheck import check_all, expected_instances_match  # noqa: E402

from zipproxy.demo.samples import StudyInfo  # noqa: E402

ZIP = "application/zip"


def say(message: str) -> None:
    print(f"container: {message}", flush=True)


def run(*cmd: str, check: bool = True, timeout: float = 600) -> str:
    """Run a command; its stdout, or an AssertionError with everything it printed."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"$ {' '.join(cmd)}\n(exit {proc.returncode})\n"
                             f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    return proc.stdout.strip()


def logs(name: str) -> str:
    return f"--- podman logs {name} ---\n" + run("podman", "logs", name, check=False)[-4000:]


def curl(url: str, out: Path, accept: str = ZIP) -> None:
    """A real client's download; fails on an HTTP error or a transfer error."""
    status = run("curl", "-sS", "--fail-with-body", "--max-time", "120", "-o", str(out),
                 "-w", "%{http_code}", "-H", f"Accept: {accept}", url)
    assert status == "200", f"{url}: HTTP {status}"


def wait_ready(url: str, containers: Sequence[str], timeout: float = 60) -> None:
    """Poll ``url`` (a /-/ready) until it answers 200; fail early when a container has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        for name in containers:
            state = run("podman", "inspect", "-f", "{{.State.Status}}", name)
            assert state == "running", f"{name} is {state}:\n{logs(name)}"
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout} s:\n" + "\n".join(map(logs, containers)))


def check_zip(out: Path, expected: StudyInfo | list[StudyInfo], *, as_stored: bool) -> None:
    """Every reader of the suite (:func:`zipcheck.check_all`), and exactly these instances."""
    info = check_all(out)
    expected_instances_match(out, expected, transfer_syntax_star=as_stored)
    say(f"  {out.name}: {len(info.records)} instances; zipfile CRCs, unzip, 7zz, bsdtar, "
        "Java ZipInputStream, dcmdump, dciodvfy and pydicom FileSet pass")
