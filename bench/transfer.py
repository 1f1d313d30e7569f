"""curl runs: one download, its status, time to first byte, total time and size.

curl is the client for every measured transfer, so each kind of download pays the same
client cost, and the bench process itself stays idle while it is timed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

CURL_MAX_TIME = 1800  # seconds; every transfer is bounded
# A ZIP's size may differ a little between downloads: the DICOMDIR's random 2.25 UID varies in
# length, and deflate-0 entries carry one stored-block header per flush (network chunking).
SIZE_SLACK = 0.001


@dataclass
class Transfer:
    code: int
    ttfb: float  # curl time_starttransfer
    total: float  # curl time_total
    size: int  # bytes of body received


def curl_cmd(url: str, accept: str | None, out: str) -> list[str]:
    cmd = ["curl", "-s", "-S", "--max-time", str(CURL_MAX_TIME), "-o", out,
           "-w", "%{http_code} %{time_starttransfer} %{time_total} %{size_download}"]
    if accept is not None:
        cmd += ["-H", f"Accept: {accept}"]
    return [*cmd, url]


def parse_curl(result: tuple[int, str, str], url: str,
               allowed: tuple[int, ...] = (200,)) -> Transfer:
    """``result`` is curl's (exit status, stdout, stderr); a status not in ``allowed`` raises."""
    rc, out, err = result
    if rc != 0:
        raise RuntimeError(f"curl {url} failed (exit {rc}): {err.strip()[:300]}")
    code, ttfb, total, size = out.split()
    t = Transfer(int(code), float(ttfb), float(total), int(size))
    if t.code not in allowed:
        raise RuntimeError(f"curl {url}: HTTP {t.code}")
    return t


def curl(url: str, accept: str | None, out: str = "/dev/null",
         allowed: tuple[int, ...] = (200,)) -> Transfer:
    proc = subprocess.run(curl_cmd(url, accept, out), capture_output=True, text=True,
                          timeout=CURL_MAX_TIME + 30, check=False)
    return parse_curl((proc.returncode, proc.stdout, proc.stderr), url, allowed)
