"""zipproxy benchmark: streamed DICOM ZIP through the proxy vs Orthanc's own multipart answer.

    .venv/bin/python -m bench.zipbench [--rounds 3] [--quick] [--big] [--profile]
                                       [--out bench/results/latest.md] [--workdir bench/data]

Studies (generated once, cached under ``--workdir``; Orthanc's storage is kept there too):

- A: 4 series x 500 CT slices 512x512 16-bit (2,000 instances, ~1 GiB)
- B: 10 multi-frame instances of 200 frames 512x512 16-bit (~100 MiB each, ~1 GiB)
- A4 (``--big``): 4 series x 2,000 slices (8,000 instances, ~4 GiB): is peak RSS flat?

``--quick`` divides every size by ten (smoke run). See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from zipproxy.demo import samples
from zipproxy.demo.orthanc import Orthanc, free_port
from zipproxy.demo.samples import StudyInfo, make_bulk_study

ACCEPT_MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_ZIP = "application/zip; transfer-syntax=*"
MiB = 1 << 20
GiB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
CURL_MAX_TIME = 1800  # seconds; every transfer is bounded
REPO = Path(__file__).resolve().parent.parent
CONCURRENT_STREAMS = 8
# A ZIP's size may differ a little between downloads: the DICOMDIR's random 2.25 UID varies in
# length, and deflate-0 entries carry one stored-block header per flush (network chunking).
SIZE_SLACK = 0.001

# Targets from the issue.
TARGET_RATIO = 0.9
TARGET_CPU_PER_GIB = 1.0
TARGET_RSS_MIB = 100.0
TARGET_FLAT = 0.10
TARGET_TTFB_EXTRA = 0.010
TARGET_VS_MEDIA = 50.0


# -- studies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudySpec:
    name: str
    n_series: int
    per_series: int
    rows: int
    cols: int
    frames: int
    key: str

    @property
    def instances(self) -> int:
        return self.n_series * self.per_series

    @property
    def nominal_bytes(self) -> int:
        return self.instances * self.rows * self.cols * 2 * self.frames

    def describe(self) -> str:
        each = self.rows * self.cols * 2 * self.frames / MiB
        frames = f"x{self.frames} frames " if self.frames > 1 else ""
        return (f"{self.instances:,} x {each:.3g} MiB ({self.n_series} series, "
                f"{self.rows}x{self.cols} {frames}16-bit)")


def study_specs(quick: bool, big: bool) -> list[StudySpec]:
    div = 10 if quick else 1
    tag = "q" if quick else ""
    specs = [
        StudySpec("A", 4, 500 // div, 512, 512, 1, f"zipbench-ct-A{tag}"),
        StudySpec("B", 1, 10, 512, 512, 200 // div, f"zipbench-ct-B{tag}"),
    ]
    if big:
        # 4 series of 2,000, not 16 of 500: before commit 3292587 make_bulk_study repeated SOP
        # Instance UIDs in studies of 10+ series (("instance", 1, 12) == ("instance", 11, 2)),
        # and zipproxy rightly aborts such a ZIP. 4 series are safe with every checkout.
        specs.append(StudySpec("A4", 4, 2000 // div, 512, 512, 1, f"zipbench-ct-A4{tag}"))
    return specs


def ct_like_pixels(rows: int, cols: int, frames: int, seed: int = 1) -> bytes:
    """16-bit CT-like frames: an elliptic body and a dense core with Gaussian noise.

    ``make_bulk_study``'s own byte ramp deflates about 160:1 at several hundred MiB/s, which makes
    Orthanc's ``/media`` ZIP look 20x faster than with real images; this deflates about 2.4:1 at
    ~10 MiB/s (zlib level 6), like real CT. The proxy stores entries, so it does not care.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    r2 = ((y - rows / 2) / (rows * 0.42)) ** 2 + ((x - cols / 2) / (cols * 0.36)) ** 2
    body = r2 < 1
    base = np.where(body, 1064, 24).astype(np.float32)
    base[r2 < 0.05] = 1324
    out = np.empty((frames, rows, cols), dtype="<u2")
    for f in range(frames):
        noise = rng.normal(0, 12, (rows, cols)).astype(np.float32)
        out[f] = np.clip(base + np.where(body, noise, noise / 4), 0, 4095)
    return out.tobytes()


@contextlib.contextmanager
def realistic_pixels(spec: StudySpec) -> Iterator[None]:
    """Make ``make_bulk_study`` (which calls ``samples.pixel_pattern`` once) use CT-like pixels."""
    try:
        buffer = ct_like_pixels(spec.rows, spec.cols, spec.frames)
    except ImportError:
        log("numpy not installed: using the byte-ramp pixels (Orthanc /media will look fast)")
        yield
        return
    original = samples.pixel_pattern

    def pattern(nbytes: int, offset: int = 0) -> bytes:
        return buffer if nbytes == len(buffer) else original(nbytes, offset)

    samples.pixel_pattern = pattern
    try:
        yield
    finally:
        samples.pixel_pattern = original


@dataclass
class CachedStudy:
    spec: StudySpec
    study_uid: str
    files: list[Path]


def generate(spec: StudySpec, workdir: Path) -> CachedStudy:
    """Write the study once; a manifest marks a complete set of files."""
    root = workdir / "studies" / spec.key
    manifest = workdir / "studies" / f"{spec.key}.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        files = [root / p for p in data["files"]]
        sample = files[:: max(1, len(files) // 50)]
        if len(files) == spec.instances and all(p.exists() for p in sample):
            return CachedStudy(spec, data["study_uid"], files)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    log(f"generating study {spec.name}: {spec.describe()} in {root} ...")
    t0 = time.monotonic()
    with realistic_pixels(spec):
        info: StudyInfo = make_bulk_study(
            root, spec.n_series, spec.per_series, spec.rows, spec.cols, spec.frames,
            patient_id=f"ZP-BENCH-{spec.name}", key=spec.key,
        )
    size = sum(p.stat().st_size for p in info.files)
    log(f"  {len(info.files)} files, {size / MiB:.0f} MiB in {time.monotonic() - t0:.1f} s")
    manifest.write_text(json.dumps({
        "study_uid": info.study_uid,
        "files": [str(p.relative_to(root)) for p in info.files],
    }))
    return CachedStudy(spec, info.study_uid, list(info.files))


def instances_in_orthanc(orthanc: Orthanc, study_uid: str) -> int:
    """NumberOfStudyRelatedInstances from QIDO-RS (0 when the study is not there)."""
    r = requests.get(f"{orthanc.dicomweb}/studies",
                     params={"StudyInstanceUID": study_uid, "includefield": "00201208"},
                     headers={"Accept": "application/dicom+json"}, timeout=60)
    if r.status_code == 204 or not r.content.strip():
        return 0
    r.raise_for_status()
    answer = r.json()
    if not answer:
        return 0
    value = answer[0].get("00201208", {}).get("Value", [0])
    return int(value[0])


def ensure_loaded(orthanc: Orthanc, study: CachedStudy) -> None:
    have = instances_in_orthanc(orthanc, study.study_uid)
    if have == study.spec.instances:
        log(f"study {study.spec.name}: already in Orthanc ({have} instances)")
        return
    log(f"study {study.spec.name}: Orthanc has {have}/{study.spec.instances}; uploading "
        "(4 parallel POST /instances) ...")
    t0 = time.monotonic()
    orthanc.upload(study.files, workers=4)
    size = sum(p.stat().st_size for p in study.files)
    elapsed = time.monotonic() - t0
    log(f"  uploaded {size / MiB:.0f} MiB in {elapsed:.1f} s ({size / MiB / elapsed:.0f} MiB/s)")
    have = instances_in_orthanc(orthanc, study.study_uid)
    if have != study.spec.instances:
        raise RuntimeError(f"study {study.spec.name}: Orthanc has {have} instances after upload")


# -- processes and transfers -------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from #3 (state) on


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (scan of /proc by parent PID)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields_ = _stat_fields(int(entry))
            if fields_ is not None:
                children.setdefault(int(fields_[1]), []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f is not None:
            total += int(f[11]) + int(f[12])  # utime, stime (all threads)
    return total / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ProxyProcess:
    """``python -m zipproxy`` on a free loopback port, in its own process group."""

    def __init__(self, upstream: str, workers: int, logdir: Path, label: str,
                 *extra: str) -> None:
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        logdir.mkdir(parents=True, exist_ok=True)
        self.log_path = logdir / f"zipproxy-{label}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zipproxy", "--upstream", upstream, "--host", "127.0.0.1",
             "--port", str(self.port), "--log-format", "text", "--workers", str(workers),
             *extra],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            cwd=REPO, start_new_session=True,
        )
        self.pid = self.proc.pid
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                r = requests.get(self.url + "/system", timeout=2)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"zipproxy (workers={self.workers}) did not start:\n{tail}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def pids(self) -> list[int]:
        return [self.pid, *descendants(self.pid)]

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def peak_rss_mib(self) -> float:
        """VmHWM summed over the proxy's processes (parent + children)."""
        return sum(status_kib(p, "VmHWM") for p in self.pids()) / 1024

    def reset_peak(self) -> bool:
        """``echo 5 > clear_refs`` resets VmHWM to the current RSS (Linux >= 4.0)."""
        ok = True
        for pid in self.pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # Children left behind in our own process group (the group id is our child's PID).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


@dataclass
class Transfer:
    code: int
    ttfb: float
    total: float
    size: int


def curl_cmd(url: str, accept: str | None, out: str) -> list[str]:
    cmd = ["curl", "-s", "-S", "--max-time", str(CURL_MAX_TIME), "-o", out,
           "-w", "%{http_code} %{time_starttransfer} %{time_total} %{size_download}"]
    if accept is not None:
        cmd += ["-H", f"Accept: {accept}"]
    return [*cmd, url]


def parse_curl(result: tuple[int, str, str], url: str) -> Transfer:
    """``result`` is curl's (exit status, stdout, stderr)."""
    rc, out, err = result
    if rc != 0:
        raise RuntimeError(f"curl {url} failed (exit {rc}): {err.strip()[:300]}")
    code, ttfb, total, size = out.split()
    t = Transfer(int(code), float(ttfb), float(total), int(size))
    if t.code != 200:
        raise RuntimeError(f"curl {url}: HTTP {t.code}")
    return t


def curl(url: str, accept: str | None, out: str = "/dev/null") -> Transfer:
    proc = subprocess.run(curl_cmd(url, accept, out), capture_output=True, text=True,
                          timeout=CURL_MAX_TIME + 30, check=False)
    return parse_curl((proc.returncode, proc.stdout, proc.stderr), url)


# -- ZIP verification --------------------------------------------------------------------------


def verify_zip(path: Path, instances: int) -> tuple[bool, str]:
    """Open with zipfile, count entries, check every CRC, and count DICOMDIR IMAGE records."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            extra = len(names) - instances
            dicom = [n for n in names if n.startswith("DICOM/")]
            problems = []
            if extra not in (2, 3):
                problems.append(f"{len(names)} entries for {instances} instances")
            if len(dicom) != instances:
                problems.append(f"{len(dicom)} DICOM/ entries")
            for required in ("README.TXT", "DICOMDIR"):
                if required not in names:
                    problems.append(f"no {required}")
            bad = zf.testzip()
            if bad is not None:
                problems.append(f"CRC error in {bad}")
            records = "?"
            if "DICOMDIR" in names:
                import pydicom

                ds = pydicom.dcmread(io.BytesIO(zf.read("DICOMDIR")))
                kinds = Counter(str(r.DirectoryRecordType)
                                for r in ds.DirectoryRecordSequence)
                records = str(kinds.get("IMAGE", 0))
                if kinds.get("IMAGE", 0) != instances:
                    problems.append(f"DICOMDIR has {records} IMAGE records")
            zip64 = any(i.file_size >= 0xFFFFFFFF or i.header_offset >= 0xFFFFFFFF
                        for i in zf.infolist())
        summary = (f"{len(names)} entries = {instances} + {extra}, CRCs ok, "
                   f"DICOMDIR IMAGE records {records}" + (", ZIP64" if zip64 else ""))
        if problems:
            return False, "; ".join(problems)
        return True, summary
    except Exception as exc:  # any failure is a verdict, not a crash
        return False, f"{type(exc).__name__}: {exc}"


# -- measurements ------------------------------------------------------------------------------


@dataclass
class StudyResult:
    name: str
    description: str
    instances: int
    direct: list[Transfer] = field(default_factory=list)
    proxy: list[Transfer] = field(default_factory=list)
    proxy_cpu: list[float] = field(default_factory=list)  # CPU-s of each timed proxy run
    plain: list[Transfer] = field(default_factory=list)  # ZIP with ?manifest=false
    plain_cpu: list[float] = field(default_factory=list)
    aes: list[Transfer] = field(default_factory=list)  # AES-256 encrypted ZIP
    aes_cpu: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    baseline_rss_mib: float = 0.0
    verified: bool = False
    verify_note: str = ""
    zip_size: int = 0
    error: str = ""

    @property
    def data_bytes(self) -> int:
        return int(statistics.median(t.size for t in self.direct))

    def mibps(self, transfers: list[Transfer]) -> list[float]:
        return [self.data_bytes / MiB / t.total for t in transfers]

    @property
    def direct_mibps(self) -> float:
        return statistics.median(self.mibps(self.direct))

    @property
    def proxy_mibps(self) -> float:
        return statistics.median(self.mibps(self.proxy))

    @property
    def ratio(self) -> float:
        """Median over rounds of (direct time / proxy time) for each alternated pair."""
        pairs = zip(self.direct, self.proxy, strict=True)
        return statistics.median(d.total / p.total for d, p in pairs)

    @property
    def ttfb_direct(self) -> float:
        return statistics.median(t.ttfb for t in self.direct)

    @property
    def ttfb_proxy(self) -> float:
        return statistics.median(t.ttfb for t in self.proxy)

    @property
    def cpu_per_gib(self) -> float:
        return statistics.median(c / (self.data_bytes / GiB) for c in self.proxy_cpu)


def bench_study(study: CachedStudy, orthanc: Orthanc, args: argparse.Namespace) -> StudyResult:
    spec = study.spec
    res = StudyResult(spec.name, spec.describe(), spec.instances)
    direct_url = f"{orthanc.dicomweb}/studies/{study.study_uid}"
    proxy = ProxyProcess(orthanc.url, 1, args.workdir / "logs", f"study-{spec.name}")
    try:
        res.baseline_rss_mib = status_kib(proxy.pid, "VmRSS") / 1024
        proxy_url = f"{proxy.url}/dicom-web/studies/{study.study_uid}"
        # Warm-up (page cache, connections); the proxy's warm-up ZIP is saved and verified.
        curl(direct_url, ACCEPT_MULTIPART)
        tmp = args.workdir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        zip_path = tmp / f"verify-{spec.name}.zip"
        try:
            try:
                t = curl(proxy_url, ACCEPT_ZIP, str(zip_path))
            except RuntimeError as exc:
                warnings = [ln for ln in proxy.log_tail(200).splitlines() if "WARNING" in ln]
                raise RuntimeError(f"{exc} | proxy log: {warnings[-1:] or proxy.log_path}") from exc
            res.zip_size = t.size
            res.verified, res.verify_note = verify_zip(zip_path, spec.instances)
        finally:
            zip_path.unlink(missing_ok=True)
        log(f"study {spec.name}: warm-up ZIP {res.zip_size / MiB:.0f} MiB, verified="
            f"{res.verified} ({res.verify_note})")
        for r in range(args.rounds):
            d = curl(direct_url, ACCEPT_MULTIPART)
            c0 = proxy.cpu()
            p = curl(proxy_url, ACCEPT_ZIP)
            c1 = proxy.cpu()
            if abs(p.size - res.zip_size) > SIZE_SLACK * res.zip_size:
                raise RuntimeError(f"ZIP size changed: {p.size} != {res.zip_size}")
            res.direct.append(d)
            res.proxy.append(p)
            res.proxy_cpu.append(c1 - c0)
            log(f"study {spec.name} round {r + 1}: direct {d.size / MiB / d.total:.0f} MiB/s "
                f"ttfb {d.ttfb * 1000:.0f} ms | zip {d.size / MiB / p.total:.0f} MiB/s "
                f"ttfb {p.ttfb * 1000:.0f} ms, cpu {c1 - c0:.2f} s")
        res.peak_rss_mib = proxy.peak_rss_mib()  # of the default ZIPs only
        for _ in range(args.rounds):
            # The same ZIP without MANIFEST.CSV (no SHA-256), and encrypted (issue 6).
            c0 = proxy.cpu()
            res.plain.append(curl(proxy_url + "?manifest=false", ACCEPT_ZIP))
            c1 = proxy.cpu()
            res.aes.append(curl(proxy_url, ACCEPT_ZIP + '; password="zipbench-password"'))
            c2 = proxy.cpu()
            res.plain_cpu.append(c1 - c0)
            res.aes_cpu.append(c2 - c1)
        if args.profile:
            profile_proxy(proxy, proxy_url, spec.name, args)
    finally:
        proxy.stop()
    return res


def orthanc_media(study: CachedStudy, orthanc: Orthanc, data_bytes: int) -> dict[str, Any]:
    r = requests.post(orthanc.url + "/tools/lookup", data=study.study_uid, timeout=60)
    r.raise_for_status()
    ids = [x["ID"] for x in r.json() if x.get("Type") == "Study"]
    if not ids:
        raise RuntimeError(f"/tools/lookup found no study for {study.study_uid}")
    log(f"Orthanc /studies/{ids[0]}/media for study {study.spec.name} (slow: deflate, 1 thread)")
    t = curl(f"{orthanc.url}/studies/{ids[0]}/media", None)
    return {"orthanc_id": ids[0], "total": t.total, "ttfb": t.ttfb, "size": t.size,
            "mibps": data_bytes / MiB / t.total}


def bench_concurrency(study: CachedStudy, orthanc: Orthanc, workers: int, data_bytes: int,
                      zip_size: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"workers": workers, "streams": CONCURRENT_STREAMS}
    try:
        proxy = ProxyProcess(orthanc.url, workers, args.workdir / "logs", f"conc-w{workers}")
    except RuntimeError as exc:
        out["na"] = f"proxy did not start: {str(exc).splitlines()[0]}"
        return out
    try:
        deadline = time.monotonic() + 15  # let a multi-process server spawn its workers
        while len(proxy.pids()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        procs = proxy.pids()
        out["processes"] = len(procs)
        if workers > 1 and len(procs) < 2:
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
            "processes": len(pids),
            "wall": wall,
            "aggregate_mibps": total_data / MiB / wall,
            "slowest": max(t.total for t in results),
            "fastest": min(t.total for t in results),
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


# -- profiling ---------------------------------------------------------------------------------


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def profile_proxy(proxy: ProxyProcess, url: str, name: str, args: argparse.Namespace) -> None:
    """Untimed extra downloads under py-spy: a flame graph and collapsed stacks (top functions)."""
    exe = py_spy()
    if exe is None:
        log("py-spy not found: skipping the profile (pip install py-spy)")
        return
    outdir = args.out.parent
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


# -- report ------------------------------------------------------------------------------------


def ok(flag: bool | None) -> str:
    return "n/a" if flag is None else ("✅ pass" if flag else "❌ FAIL")


def zipproxy_revision() -> str:
    """``git HEAD`` plus a mark when zipproxy/ has uncommitted changes (others commit meanwhile)."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "zipproxy"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return (commit or "?") + (" + uncommitted changes in zipproxy/" if dirty else "")


def machine_info(orthanc_version: str, revision_at_start: str) -> list[str]:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    mem = status_line("/proc/meminfo", "MemTotal")
    curl_v = subprocess.run(["curl", "--version"], capture_output=True, text=True,
                            check=False).stdout.split()[1]
    cpu = status_line("/proc/cpuinfo", "model name")
    revision_at_end = zipproxy_revision()
    revision = (revision_at_start if revision_at_start == revision_at_end
                else f"{revision_at_start} at start, {revision_at_end} at end (each proxy "
                "start imports the code of that moment)")
    return [
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {platform.node()}, {os.cpu_count()} CPUs ({cpu}), {mem}, "
        f"Linux {platform.release()}",
        f"- python {platform.python_version()}, aiohttp {version('aiohttp')}, "
        f"zipstream-ng {version('zipstream-ng')}, pydicom {version('pydicom')}, curl {curl_v}",
        f"- upstream: Orthanc {orthanc_version} + DICOMweb plugin (loopback)",
        f"- zipproxy: git {revision}",
    ]


def status_line(path: str, key: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return "?"


def render(results: list[StudyResult], media: dict[str, Any] | None,
           conc: list[dict[str, Any]], meta: dict[str, Any],
           spots: dict[str, list[tuple[str, float, float]]]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    by_name = {r.name: r for r in results}
    for r in results:
        n = r.name
        if r.error or not r.proxy:
            rows.append((f"{n}: benchmark", f"failed: {r.error}", "", "❌ FAIL"))
            continue
        rows.append((f"{n}: direct WADO-RS multipart (Orthanc)",
                     f"{r.direct_mibps:.0f} MiB/s, TTFB {r.ttfb_direct * 1000:.0f} ms, "
                     f"{r.data_bytes / MiB:.0f} MiB", "baseline", ""))
        rows.append((f"{n}: ZIP through zipproxy",
                     f"{r.proxy_mibps:.0f} MiB/s, TTFB {r.ttfb_proxy * 1000:.0f} ms, "
                     f"ZIP {r.zip_size / MiB:.0f} MiB", "", ""))
        rows.append((f"{n}: ratio zip/direct", f"{r.ratio:.2f}", f"≥ {TARGET_RATIO}",
                     ok(r.ratio >= TARGET_RATIO)))
        extra = r.ttfb_proxy - r.ttfb_direct
        rows.append((f"{n}: TTFB zip - direct", f"{extra * 1000:+.0f} ms",
                     f"≤ +{TARGET_TTFB_EXTRA * 1000:.0f} ms", ok(extra <= TARGET_TTFB_EXTRA)))
        rows.append((f"{n}: proxy CPU per GiB", f"{r.cpu_per_gib:.2f} CPU-s/GiB",
                     f"≤ {TARGET_CPU_PER_GIB}", ok(r.cpu_per_gib <= TARGET_CPU_PER_GIB)))
        if r.plain:
            plain = statistics.median(r.mibps(r.plain))
            cpu = statistics.median(c / (r.data_bytes / GiB) for c in r.plain_cpu)
            ratio = statistics.median(d.total / q.total
                                      for d, q in zip(r.direct, r.plain, strict=True))
            rows.append((f"{n}: ZIP without MANIFEST.CSV (?manifest=false)",
                         f"{plain:.0f} MiB/s, ratio {ratio:.2f}, {cpu:.2f} CPU-s/GiB",
                         "(no target)", ""))
        if r.aes:
            enc = statistics.median(r.mibps(r.aes))
            cpu = statistics.median(c / (r.data_bytes / GiB) for c in r.aes_cpu)
            vs = statistics.median(p.total / e.total for p, e in zip(r.proxy, r.aes, strict=True))
            rows.append((f"{n}: encrypted ZIP (AES-256) vs plain ZIP",
                         f"{enc:.0f} MiB/s, {vs:.2f}x of plain, {cpu:.2f} CPU-s/GiB",
                         "≥ 0.5x", ok(vs >= 0.5)))
        rss_target = f"≤ {TARGET_RSS_MIB:.0f} MiB"
        rss_ok = r.peak_rss_mib <= TARGET_RSS_MIB
        rss_val = f"{r.peak_rss_mib:.0f} MiB (idle {r.baseline_rss_mib:.0f} MiB)"
        if n == "A4" and "A" in by_name and by_name["A"].peak_rss_mib:
            growth = r.peak_rss_mib / by_name["A"].peak_rss_mib - 1
            rss_val += f", {growth * 100:+.0f}% vs A"
            rss_target += f" and within {TARGET_FLAT * 100:.0f}% of A"
            rss_ok = rss_ok and abs(growth) <= TARGET_FLAT
        rows.append((f"{n}: proxy peak RSS (VmHWM)", rss_val, rss_target, ok(rss_ok)))
        rows.append((f"{n}: ZIP complete (warm-up round)", r.verify_note, "entries = n + 2/3",
                     ok(r.verified)))
    if media is not None and "A" in by_name and by_name["A"].proxy:
        a = by_name["A"]
        factor = a.proxy_mibps / media["mibps"]
        rows.append(("A: Orthanc /studies/{id}/media ZIP (once)",
                     f"{media['mibps']:.1f} MiB/s ({media['total']:.0f} s)", "reference", ""))
        rows.append(("A: zipproxy ZIP vs Orthanc /media", f"{factor:.0f}x",
                     f"≥ {TARGET_VS_MEDIA:.0f}x", ok(factor >= TARGET_VS_MEDIA)))
    for c in conc:
        label = f"A: {c['streams']} concurrent ZIPs, --workers {c['workers']}"
        if "na" in c:
            rows.append((label, f"n/a — {c['na']}", "", "n/a"))
            continue
        rows.append((label,
                     f"{c['aggregate_mibps']:.0f} MiB/s aggregate ({c['wall']:.1f} s wall, "
                     f"slowest {c['slowest']:.1f} s), peak RSS {c['peak_rss_mib']:.0f} MiB "
                     f"over {c['processes']} process(es) {c['rss_each_mib']}, "
                     f"{c['cpu_per_gib']:.2f} CPU-s/GiB",
                     "(no target)", ""))
    lines = [
        f"# zipproxy benchmark ({meta['mode']})",
        "",
        "| Measurement | Result | Target | Verdict |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        f"Medians of {meta['rounds']} alternated direct/proxy rounds after one warm-up each; "
        "MiB/s are of study data (the direct multipart size); ratio = median of per-round "
        "direct time / ZIP time; CPU = proxy utime+stime per GiB of study data; peak RSS = "
        "VmHWM of a proxy started fresh for that study (warm-up included).",
        "",
        "Studies:",
        *[f"- {r.name}: {r.description}" for r in results],
        "",
        "Machine:",
        *meta["machine"],
        f"- load average before / after: {meta['load_before']} / {meta['load_after']} "
        "(other jobs may share the CPUs: numbers can be noisy)",
        f"- command: `{meta['command']}`",
        "",
        "Per-round detail (MiB/s direct | MiB/s zip | TTFB ms direct | TTFB ms zip | CPU-s):",
    ]
    for r in results:
        if not r.proxy:
            continue
        for i, (d, z, cpu) in enumerate(zip(r.direct, r.proxy, r.proxy_cpu, strict=True), 1):
            lines.append(f"- {r.name} #{i}: {r.data_bytes / MiB / d.total:.0f} | "
                         f"{r.data_bytes / MiB / z.total:.0f} | {d.ttfb * 1000:.0f} | "
                         f"{z.ttfb * 1000:.0f} | {cpu:.2f}")
    for name, top in spots.items():
        lines += ["", f"py-spy hot spots, study {name} (self % / inclusive % of samples):", ""]
        lines += [f"- {s:5.1f}% / {i:5.1f}%  {f}" for f, s, i in top]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.zipbench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per study (default 3)")
    p.add_argument("--quick", action="store_true", help="1/10 sizes: a smoke run")
    p.add_argument("--big", action="store_true", help="also study A4 (4x A) for RSS flatness")
    p.add_argument("--out", type=Path, default=REPO / "bench/results/latest.md")
    p.add_argument("--workdir", type=Path, default=REPO / "bench/data",
                   help="generated studies, Orthanc storage, logs (default bench/data)")
    p.add_argument("--only", default="", help="comma list of studies to run (A,B,A4)")
    p.add_argument("--no-media", action="store_true", help="skip Orthanc's slow /media ZIP")
    p.add_argument("--no-concurrency", action="store_true", help="skip the 8-stream runs")
    p.add_argument("--profile", action="store_true",
                   help="py-spy the proxy during extra untimed downloads (results next to --out)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    args.workdir = args.workdir.resolve()
    args.out = args.out.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("curl") is None:
        print("zipbench: curl is required", file=sys.stderr)
        return 2
    specs = study_specs(args.quick, args.big)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        specs = [s for s in specs if s.name in wanted]
    args.workdir.mkdir(parents=True, exist_ok=True)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    revision_at_start = zipproxy_revision()
    studies = [generate(spec, args.workdir) for spec in specs]

    orthanc = Orthanc(args.workdir / "orthanc")
    orthanc.start()
    log(f"Orthanc pid {orthanc.pid} on {orthanc.url}, storage {orthanc.storage_dir}")
    results: list[StudyResult] = []
    media = None
    conc: list[dict[str, Any]] = []
    spots: dict[str, list[tuple[str, float, float]]] = {}
    try:
        orthanc_version = requests.get(orthanc.url + "/system", timeout=10).json().get(
            "Version", "?")
        for study in studies:
            ensure_loaded(orthanc, study)
        for study in studies:
            try:
                results.append(bench_study(study, orthanc, args))
            except Exception as exc:  # record it and go on with the other studies
                log(f"study {study.spec.name} failed: {exc}")
                results.append(StudyResult(study.spec.name, study.spec.describe(),
                                           study.spec.instances, error=str(exc)[:300]))
            raw = args.out.parent / f"profile-{study.spec.name}.txt"
            if args.profile and raw.exists():
                spots[study.spec.name] = hot_spots(raw)
        by_name = {s.spec.name: s for s in studies}
        res_a = next((r for r in results if r.name == "A" and r.proxy), None)
        if "A" in by_name and res_a is not None:
            if not args.no_media:
                media = orthanc_media(by_name["A"], orthanc, res_a.data_bytes)
            if not args.no_concurrency:
                for workers in (1, 2):
                    conc.append(bench_concurrency(by_name["A"], orthanc, workers,
                                                  res_a.data_bytes, res_a.zip_size, args))
    finally:
        orthanc.stop()
    meta = {
        "mode": "quick (1/10 sizes)" if args.quick else "full" + (" + A4" if args.big else ""),
        "rounds": args.rounds,
        "machine": machine_info(orthanc_version, revision_at_start),
        "load_before": load_before,
        "load_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "command": " ".join([".venv/bin/python -m bench.zipbench",
                             *(argv if argv is not None else sys.argv[1:])]),
    }
    report = render(results, media, conc, meta, spots)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({
        "meta": meta,
        "studies": [asdict(r) for r in results],
        "media": media,
        "concurrency": conc,
    }, indent=1, default=str), encoding="utf-8")
    log(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
