"""``podman stop`` with ZIPs in flight: the drain rules of README "Failure behaviour".

SIGTERM: stop accepting; in-flight ZIPs get ZIPPROXY_SHUTDOWN_GRACE seconds, then are aborted
(never completed falsely); exit 0. Two downloads are running when ``podman stop`` sends the
image's STOPSIGNAL: one the client reads in about 4 s, one it would need about 30 s for. The
first must complete and be a valid ZIP, the second must be cut when the grace ends, and the
container must exit 0 by itself (not be killed by podman after its ``-t``).

The client sets the pace. curl's ``--limit-rate`` is no use for that here (curl 7.88 let an
8 MiB download through at 2 MiB/s in 0.25 s), so a small reader does it: a receive buffer of
64 KiB, then fixed-size reads with a pause in between, so TCP's flow control holds the proxy
back once the kernel buffers are full.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from support import ZIP, check_zip, logs, run, say

from zipproxy.demo.samples import StudyInfo

RECEIVE_BUFFER = 64 * 1024
CHUNK = 64 * 1024


@dataclass
class SlowDownload:
    """One ZIP download read at ``rate`` bytes per second, in a thread."""

    host: str
    port: int
    path: str
    out: Path
    rate: int
    status: int | None = None
    error: str | None = None
    ended: float | None = None
    first_byte: threading.Event = field(default_factory=threading.Event)

    def start(self) -> SlowDownload:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.first_byte.wait(30):
            raise AssertionError(f"{self.path}: no ZIP byte after 30 s ({self.error})")
        return self

    @property
    def in_flight(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        try:
            self._download()
        except (OSError, http.client.HTTPException) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended = time.monotonic()
            self.first_byte.set()

    def _download(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)  # before connect
        sock.settimeout(60)
        sock.connect((self.host, self.port))
        conn = http.client.HTTPConnection(self.host, self.port)
        conn.sock = sock
        conn.request("GET", self.path, headers={"Accept": f"{ZIP}; transfer-syntax=*"})
        response = conn.getresponse()
        self.status = response.status
        with self.out.open("wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                out.flush()
                self.first_byte.set()
                time.sleep(len(chunk) / self.rate)
        conn.close()

    def outcome(self, since: float) -> str:
        took = f"{self.ended - since:.1f} s after SIGTERM" if self.ended else "still running"
        return f"{self.out.name}: HTTP {self.status}, {self.error or 'complete'}, {took}"


def check_sigterm(
    proxy_name: str, port: int, short: StudyInfo, long: StudyInfo, work: Path, grace: int
) -> None:
    say(f"4. podman stop (SIGTERM) with two ZIPs in flight, ZIPPROXY_SHUTDOWN_GRACE={grace}")
    mib = 1 << 20
    downloads = [
        SlowDownload("127.0.0.1", port, f"/dicom-web/studies/{study.study_uid}",
                     work / f"sigterm-{key}.zip", 2 * mib).start()
        for key, study in (("short", short), ("long", long))
    ]
    term_at = time.monotonic()
    in_flight = [d.out.name for d in downloads if d.in_flight]
    run("podman", "stop", "-t", str(grace + 25), proxy_name)  # SIGKILL only after grace + 25
    stopped = time.monotonic() - term_at
    for download in downloads:
        download.thread.join(60)
    code = run("podman", "inspect", "-f", "{{.State.ExitCode}}", proxy_name)
    summary = (f"in flight at SIGTERM: {in_flight}; "
               + "; ".join(d.outcome(term_at) for d in downloads)
               + f"; container exit code {code} after {stopped:.1f} s")
    assert len(in_flight) == 2, f"a download ended before SIGTERM: {summary}"
    check_outcome(downloads[0], downloads[1], short, summary)
    cut_at = (downloads[1].ended or 0) - term_at
    assert grace - 1 <= cut_at <= grace + 5, f"not cut when the grace ended: {summary}"
    assert code == "0", f"{summary}\n{logs(proxy_name)}"
    assert stopped <= grace + 5, f"not drained within the grace period: {summary}"
    say(f"  {summary}")


def check_outcome(short: SlowDownload, long: SlowDownload, study: StudyInfo, summary: str) -> None:
    """The short ZIP completed and is valid; the long one is cut, never completed falsely."""
    assert short.status == 200 and short.error is None, summary
    check_zip(short.out, study, as_stored=True)
    assert long.status == 200 and long.error is not None, f"the long ZIP was not cut: {summary}"
    assert long.out.read_bytes()[:4] == b"PK\x03\x04", summary
    try:
        zipfile.ZipFile(long.out)
    except zipfile.BadZipFile:
        return
    raise AssertionError(f"the cut ZIP opens as a complete ZIP: {summary}")
