"""The side measurements: Orthanc's own /media ZIP, concurrent downloads with --workers 1 and
2, and py-spy profiles of the proxy."""

from __future__ import annotations

import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from bench.common import ACCEPT_ZIP, GiB, MiB, log
from bench.procs import ProxyProcess, cpu_seconds, status_kib
from bench.studies import CachedStudy
from bench.transfer import CURL_MAX_TIME, SIZE_SLACK, curl, curl_cmd, parse_curl

CONCURRENT_STREAMS = 8


def orthanc_media(study: CachedStudy, orthanc_url: str, data_bytes: int) -> dict[str, Any]:
    """Orthanc's own ``/studies/{id}/media`` ZIP (deflate, one thread), once."""
    r = requests.post(orthanc_url + "/tools/lookup", data=study.study_uid, timeout=60)
    r.raise_for_status()
    ids = [x["ID"] for x in r.json() if x.get("Type") == "Study"]
    if not ids:
        raise RuntimeError(f"/tools/lookup found no study for {study.study_uid}")
    log(f"Orthanc /studies/{ids[0]}/media for study {study.spec.name} (slow: deflate, 1 thread)")
    t = curl(f"{orthanc_url}/studies/{ids[0]}/media", None)
    return {"orthanc_id": ids[0], "total": t.total, "ttfb": t.ttfb, "size": t.size,
            "mibps": data_bytes / MiB / t.total}


def bench_concurrency(study: CachedStudy, orthanc_url: str, workers: int, data_bytes: int,
                      zip_size: int, logdir: Path) -> dict[str, Any]:
    """8 simultaneous curl ZIP downloads through a fresh proxy with ``--workers N``."""
    out: dict[str, Any] = {"workers": workers, "streams": CONCURRENT_STREAMS}
    try:
        proxy = ProxyProcess(orthanc_url, workers, logdir, f"conc-w{workers}")
    except RuntimeError as exc:
        out["na"] = f"proxy did not start: {str(exc).splitlines()[0]}"
        return out
    try:
        deadline = time.monotonic() + 15  # let a multi-process server spawn its workers
        while len(proxy.pids()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        if workers > 1 and len(proxy.pids()) < 2:
            out["na"] = "--workers accepted but only one process runs (not implemented)"
            return out
        url = f"{proxy.url}/dicom-web/studies/{study.study_uid}"
        c0 = proxy.cpu()
        t0 = time.monotonic()
        running = [subprocess.Popen(curl_cmd(url, ACCEPT_ZIP, "/dev/null"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(CONCURRENT_STREAMS)]
        results = []
        for p in running:
            stdout, stderr = p.communicate(timeout=CURL_MAX_TIME + 30)
            results.append(parse_curl((p.returncode, stdout, stderr), url))
        wall = time.monotonic() - t0
        pids = proxy.pids()
        cpu = cpu_seconds(pids) - c0
        sizes = {t.size for t in results}
        if any(abs(s - zip_size) > SIZE_SLACK * zip_size for s in sizes):
            raise RuntimeError(f"concurrent ZIP sizes {sizes} != {zip_size}")
        total_data = data_bytes * CONCURRENT_STREAMS
        out.update({
            "processes": len(pids), "wall": wall, "aggregate_mibps": total_data / MiB / wall,
            "slowest": max(t.total for t in results), "fastest": min(t.total for t in results),
            "ttfb_median": statistics.median(t.ttfb for t in results),
            "peak_rss_mib": proxy.peak_rss_mib(),
            "rss_each_mib": [round(status_kib(p, "VmHWM") / 1024) for p in pids],
            "cpu_per_gib": cpu / (total_data / GiB),
        })
        log(f"concurrency workers={workers}: {out['aggregate_mibps']:.0f} MiB/s aggregate, "
            f"peak RSS {out['peak_rss_mib']:.0f} MiB over {len(pids)} process(es)")
        return out
    finally:
        proxy.stop()


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def profile_proxy(proxy: ProxyProcess, url: str, name: str, outdir: Path) -> None:
    """Untimed extra downloads under py-spy: a flame graph and collapsed stacks (top functions)."""
    exe = py_spy()
    if exe is None:
        log("py-spy not found: skipping the profile (pip install py-spy)")
        return
    outdir.mkdir(parents=True, exist_ok=True)
    for fmt, path, downloads in (("flamegraph", outdir / f"profile-{name}.svg", 1),
                                 ("raw", outdir / f"profile-{name}.txt", 2)):
        spy = subprocess.Popen(
            [exe, "record", "--pid", str(proxy.pid), "--rate", "250", "--nonblocking",
             "--subprocesses", "--format", fmt, "-o", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        try:
            for _ in range(downloads):
                curl(url, ACCEPT_ZIP)
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                _, err = spy.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
        if spy.returncode not in (0, -signal.SIGINT) and not path.exists():
            log(f"py-spy failed ({spy.returncode}): {err.strip()[-300:]}")
            return
    log(f"profile of study {name}: {outdir / f'profile-{name}.svg'}")


def hot_spots(raw: Path, top: int = 12) -> list[tuple[str, float, float]]:
    """(function, self %, inclusive %) from py-spy collapsed stacks."""
    self_n: Counter[str] = Counter()
    incl_n: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short_frame(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        self_n[frames[-1]] += n
        for f in set(frames):
            incl_n[f] += n
    if not total:
        return []
    return [(f, 100 * n / total, 100 * incl_n[f] / total) for f, n in self_n.most_common(top)]


def _short_frame(frame: str) -> str:
    # "feed (zipproxy/multipart.py:97)" -> "feed (multipart.py:97)"; keep the line number.
    name, sep, where = frame.partition(" (")
    if not sep:
        return frame.strip()
    path, _, line = where.rstrip(")").rpartition(":")
    parts = Path(path).parts
    if not parts:
        return name
    return f"{name} ({'/'.join(parts[-2:])}:{line})"
