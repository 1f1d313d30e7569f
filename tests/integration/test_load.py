"""Load, the stream limit and backpressure, through a real ``python -m zipproxy``.

1. 32 ZIP downloads (the default ``--max-streams``) and 32 pass-through QIDO searches at the
   same time against the real Orthanc: every request succeeds, every ZIP is valid, and the
   proxy's peak RSS (``VmHWM``) stays far from what unbounded buffering would need.
2. One ZIP more than ``--max-streams`` gets 503 with ``Retry-After`` while the others are held
   open by a stalling fake upstream, and the slot comes back when a client leaves.
3. A client that reads ~1.5 MiB/s from a 208 MiB study: the proxy reads the upstream only as
   fast as the client drains (plus bounded buffers), and its RSS does not grow with the study.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import re
import socket
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pydicom
import pytest
import requests
from conftest import Proxy, StartProxy
from fakeupstream import (
    MIB,
    FakeUpstream,
    GeneratedBody,
    Plan,
    TinySeries,
    generated_frames_instance,
    multipart_segments,
)
from zipcheck import check_all, check_dicomdir, check_python_zipfile

from zipproxy.demo.orthanc import SampleUpstream

ZIP = "application/zip"
DICOM_JSON = "application/dicom+json"
CONCURRENT_ZIPS = 32  # the default --max-streams: all of them must fit
CONCURRENT_QIDO = 32
PEAK_RSS_LIMIT = 400 * MIB


# -- helpers -------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / ... of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.startswith("Vm") and rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/PID/clear_refs``); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def metric(proxy: Proxy, name: str, labels: str = "") -> float:
    text = requests.get(f"{proxy.url}/-/metrics", timeout=10).text
    pattern = rf"(?m)^{re.escape(name)}{re.escape(labels)} (\S+)$"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


# -- 1. 32 ZIPs + 32 QIDO against Orthanc --------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    path: str  # after the proxy's origin
    headers: dict[str, str]
    sop_uids: frozenset[str]


def variants(orthanc: SampleUpstream) -> list[Variant]:
    """Every sample study three ways: as stored, the upstream default, and one series."""
    out = []
    for index, study in enumerate(orthanc.studies):
        base = f"/dicom-web/studies/{study.study_uid}"
        everything = frozenset(study.sop_uids)
        series = study.series_uids[0]
        out += [
            Variant(f"s{index}-stored", base, {"Accept": f"{ZIP}; transfer-syntax=*"}, everything),
            Variant(f"s{index}-default", f"{base}?accept={ZIP}", {}, everything),
            Variant(
                f"s{index}-series",
                f"{base}/series/{series}?accept={ZIP}",
                {},
                frozenset(i.sop_uid for i in study.series_instances(series)),
            ),
        ]
    return out


def qido_requests(orthanc: SampleUpstream) -> list[tuple[str, set[str]]]:
    """(path, study UIDs the answer must hold): all studies, one by PatientID, a study's series."""
    everything = {s.study_uid for s in orthanc.studies}
    out: list[tuple[str, set[str]]] = [("/dicom-web/studies", everything)]
    for study in orthanc.studies:
        if study.patient_id:
            out.append((f"/dicom-web/studies?PatientID={study.patient_id}", {study.study_uid}))
        out.append((f"/dicom-web/studies/{study.study_uid}/series", {study.study_uid}))
    return out


@dataclass
class Outcome:
    label: str
    status: int = 0
    content_type: str = ""
    started: float = 0.0
    headers_at: float = 0.0
    finished: float = 0.0
    size: int = 0
    error: str = ""
    body: bytes = b""
    extra: dict[str, object] = field(default_factory=dict)


async def _download(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], out: Path | None, label: str
) -> Outcome:
    result = Outcome(label, started=time.monotonic())
    try:
        async with session.get(url, headers=headers) as resp:
            result.headers_at = time.monotonic()
            result.status = resp.status
            result.content_type = resp.headers.get("Content-Type", "")
            chunks = []
            async for chunk in resp.content.iter_chunked(1 << 16):
                chunks.append(chunk)
                result.size += len(chunk)
            data = b"".join(chunks)
            if out is not None:
                out.write_bytes(data)
            else:
                result.body = data
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.finished = time.monotonic()
    return result


async def _sample(proxy: Proxy, stop: asyncio.Event, session: aiohttp.ClientSession,
                  peaks: dict[str, float]) -> None:
    """While the load runs: the proxy's RSS every 20 ms, its in-flight ZIP gauge every 50 ms."""
    pid = proxy.proc.pid
    last_scrape = 0.0
    while not stop.is_set():
        peaks["rss"] = max(peaks.get("rss", 0), proc_status(pid)["VmRSS"])
        if time.monotonic() - last_scrape > 0.05:
            last_scrape = time.monotonic()
            try:
                async with session.get(f"{proxy.url}/-/metrics") as resp:
                    text = await resp.text()
                found = re.search(r"(?m)^zipproxy_zip_in_flight (\S+)$", text)
                if found:
                    peaks["in_flight"] = max(peaks.get("in_flight", 0), float(found.group(1)))
            except aiohttp.ClientError:
                pass
        await asyncio.sleep(0.02)


def _dicomdir_references(zf: zipfile.ZipFile) -> tuple[set[str], set[str]]:
    """(SOP Instance UIDs, File IDs as entry names) of the DICOMDIR's leaf records."""
    dicomdir = pydicom.dcmread(io.BytesIO(zf.read("DICOMDIR")))
    uids, files = set(), set()
    for record in dicomdir.DirectoryRecordSequence:
        if "ReferencedSOPInstanceUIDInFile" in record:
            uids.add(str(record.ReferencedSOPInstanceUIDInFile))
            files.add("/".join(record.ReferencedFileID))
    return uids, files


@pytest.fixture(scope="module")
def load_proxy(orthanc: SampleUpstream, start_proxy: StartProxy) -> Proxy:
    """A proxy of its own in front of the sample Orthanc (VmHWM is this test's peak only)."""
    return start_proxy(orthanc.url)


async def test_32_zips_and_32_qido_at_once(
    load_proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    proxy = load_proxy
    pid = proxy.proc.pid
    plan = variants(orthanc)
    zips = [plan[i % len(plan)] for i in range(CONCURRENT_ZIPS)]
    searches = qido_requests(orthanc)
    qidos = [searches[i % len(searches)] for i in range(CONCURRENT_QIDO)]
    baseline = proc_status(pid)
    peaks: dict[str, float] = {}
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=120)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, \
            aiohttp.ClientSession(timeout=timeout) as probe:
        sampler = asyncio.create_task(_sample(proxy, stop, probe, peaks))
        tasks = [
            _download(session, proxy.url + v.path, v.headers, tmp_path / f"zip-{i:02d}.zip",
                      f"zip-{i:02d}-{v.name}")
            for i, v in enumerate(zips)
        ] + [
            _download(session, proxy.url + path, {"Accept": DICOM_JSON}, None, f"qido-{i:02d}")
            for i, (path, _) in enumerate(qidos)
        ]
        # Interleave ZIPs and searches so that both kinds are on the wire at once.
        order = [t for pair in zip(tasks[:CONCURRENT_ZIPS], tasks[CONCURRENT_ZIPS:], strict=True)
                 for t in pair]
        results = await asyncio.gather(*order)
        stop.set()
        await sampler
    elapsed = time.monotonic() - started
    after = proc_status(pid)
    zip_results = [r for r in results if r.label.startswith("zip-")]
    qido_results = [r for r in results if r.label.startswith("qido-")]

    # Client-side overlap: how many ZIP responses had begun and not ended at the same moment.
    events = sorted([(r.headers_at, 1) for r in zip_results]
                    + [(r.finished, -1) for r in zip_results])
    overlap = best = 0
    for _, step in events:
        overlap += step
        best = max(best, overlap)
    print(
        f"\nload: {CONCURRENT_ZIPS} ZIPs + {CONCURRENT_QIDO} QIDO in {elapsed:.2f} s; "
        f"ZIP bytes {sum(r.size for r in zip_results)}; in-flight gauge peak "
        f"{peaks.get('in_flight')}; client-side overlap {best}; proxy RSS before "
        f"{mib(baseline['VmRSS'])}, sampled peak {mib(peaks.get('rss', 0))}, VmHWM "
        f"{mib(after['VmHWM'])} (limit {mib(PEAK_RSS_LIMIT)})"
    )

    failed = [r for r in results if r.error or r.status != 200]
    assert not failed, [(r.label, r.status, r.error, r.body[:200]) for r in failed]
    for r in zip_results:
        assert r.content_type == ZIP, (r.label, r.content_type)
    for r, (path, study_uids) in zip(qido_results, qidos, strict=True):
        assert r.content_type.startswith(DICOM_JSON), (r.label, r.content_type)
        answer = json.loads(r.body)
        found = {item["0020000D"]["Value"][0] for item in answer}
        assert study_uids <= found, (path, found)

    # Every ZIP: all CRCs, README first, DICOMDIR last, the DICOMDIR references exactly the
    # variant's instances, and copies of one variant hold the same instances and MANIFEST.CSV
    # (no stream ever got another stream's bytes).
    entries: dict[str, list[tuple[str, int, int]]] = {}
    for r, v in zip(zip_results, zips, strict=True):
        out = tmp_path / f"{r.label[:6]}.zip"
        infos = check_python_zipfile(out)
        names = [i.filename for i in infos]
        assert names[0] == "README.TXT" and names[-1] == "DICOMDIR", (r.label, names)
        assert "MANIFEST.CSV" in names, r.label
        with zipfile.ZipFile(out) as zf:
            uids, files = _dicomdir_references(zf)
        assert uids == v.sop_uids, r.label
        assert files == {n for n in names if n.startswith("DICOM/")}, r.label
        # README.TXT has the time, DICOMDIR a fresh Media Storage SOP Instance UID: not compared.
        listing = [(i.filename, i.CRC, i.file_size) for i in infos
                   if i.filename not in ("README.TXT", "DICOMDIR")]
        assert entries.setdefault(v.name, listing) == listing, r.label
    # The full set of readers on a few: every sample study once, two of them with every tool.
    checked = collections.Counter[str]()
    for r, v in zip(zip_results, zips, strict=True):
        study = v.name.split("-")[0]
        if checked[study]:
            continue
        checked[study] += 1
        out = tmp_path / f"{r.label[:6]}.zip"
        info = check_all(out) if study in ("s1", "s3") else check_dicomdir(out)
        assert {rec.sop_instance_uid for rec in info.records} == v.sop_uids, r.label
    assert len(checked) == len(orthanc.studies)

    # Memory: 32 streams of small studies; unbounded buffering of whole studies or a leak per
    # stream would show here. Bound: generous (~64 MiB of Python, pydicom, numpy and aiohttp at
    # rest, plus per stream at most --hold-limit + --header-limit in the worst case).
    assert after["VmHWM"] < PEAK_RSS_LIMIT, mib(after["VmHWM"])
    assert proxy.proc.poll() is None


# -- 2. the stream limit -------------------------------------------------------------------


def open_zip_socket(port: int, target: str, timeout: float = 10) -> tuple[socket.socket, int]:
    """A ZIP request on a raw socket, read up to the end of the response headers; the socket is
    returned open (the ZIP is held until it is closed)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {ZIP}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(65536)
        if not data:
            break
        head += data
    first = head.split(b"\r\n", 1)[0].split()
    return sock, int(first[1]) if len(first) > 1 and first[1].isdigit() else 0


def held_plan(series: TinySeries) -> Plan:
    """The first part whole, then nothing until the proxy hangs up (at most 30 s)."""
    return Plan(segments=multipart_segments([series.instance(0)], close=False), ending="stall",
                stall=30)


@pytest.mark.parametrize("limit", [32, 2], ids=["default-32", "max-streams-2"])
def test_zip_beyond_max_streams_gets_503_with_retry_after(
    fake: FakeUpstream, tmp_path: Path, limit: int
) -> None:
    series = TinySeries(f"held-{limit}", 3)
    held_name, whole_name, qido_name = f"held-{limit}", f"whole-{limit}", f"qido-{limit}"
    fake.add(held_name, held_plan(series))
    fake.add(whole_name, Plan(segments=multipart_segments(map(series.instance, range(3)))))
    fake.add(qido_name, Plan(content_type=DICOM_JSON, segments=[b"[]"]))
    args = () if limit == 32 else ("--max-streams", str(limit))
    proxy = Proxy(fake.url, tmp_path, *args)
    held: list[socket.socket] = []
    target = f"/{held_name}/studies/{series.study_uid}"
    try:
        for _ in range(limit):
            sock, status = open_zip_socket(proxy.port, target)
            held.append(sock)
            assert status == 200, (len(held), status, proxy.log()[-2000:])
        assert metric(proxy, "zipproxy_zip_in_flight") == limit

        # One more: 503 with Retry-After and a reason, and the upstream is not asked.
        r = requests.get(proxy.url + target, headers={"Accept": ZIP}, timeout=10)
        assert r.status_code == 503, (r.status_code, r.headers, r.text)
        assert r.headers.get("Retry-After", "").isdigit(), r.headers
        assert int(r.headers["Retry-After"]) >= 1, r.headers
        assert f"{limit} ZIP downloads" in r.text, r.text
        assert not r.content.startswith(b"PK")
        time.sleep(0.1)
        assert len(fake.seen(held_name)) == limit
        assert metric(proxy, "zipproxy_zip_refused_total", '{status="503"}') == 1
        # Pass-through requests do not take a ZIP slot.
        r = requests.get(f"{proxy.url}/{qido_name}/studies", headers={"Accept": DICOM_JSON},
                         timeout=10)
        assert r.status_code == 200 and r.json() == [], (r.status_code, r.text)

        # A client leaves: its upstream request is dropped and its slot comes back.
        held.pop().close()
        assert fake.wait_until(
            lambda: any(s.outcome == "peer-closed" for s in fake.seen(held_name)), 5
        ), fake.seen(held_name)
        deadline = time.monotonic() + 5
        while metric(proxy, "zipproxy_zip_in_flight") != limit - 1:
            assert time.monotonic() < deadline, "the slot was not freed"
            time.sleep(0.05)
        out = tmp_path / "whole.zip"
        r = requests.get(f"{proxy.url}/{whole_name}/studies/{series.study_uid}",
                         headers={"Accept": ZIP}, timeout=20)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        out.write_bytes(r.content)
        check_python_zipfile(out)
        with zipfile.ZipFile(out) as zf:
            uids, _ = _dicomdir_references(zf)
        assert uids == set(series.sop_uids)
    finally:
        for sock in held:
            sock.close()
        proxy.stop()


# -- 3. a slow client ------------------------------------------------------------------------

SLOW_RATE = 1.5 * MIB  # bytes per second the client reads
SLOW_SECONDS = 8.0
#: 12 instances, 208 MiB: 6 MiB ones are held whole (<= --hold-limit 8M), 40 MiB ones stream.
SLOW_FRAMES = [6, 6, 40] * 4  # 1 MiB frames
#: RSS the proxy may gain while serving the slow client. What it may hold for one stream:
#: --hold-limit (8 MiB, an instance held whole) + --header-limit (4 MiB, a header being parsed)
#: + the 2 MiB send buffer (+ the one write in progress, at most a held entry) + aiohttp's read
#: buffer (2 x 1 MiB) + the chunk being framed and its copy (~2 MiB): ~26 MiB. The bound leaves
#: room for the allocator; reading the whole 208 MiB study ahead would exceed it three times.
RSS_GROWTH_LIMIT = 64 * MIB
#: Bytes the upstream may have sent beyond what the client received: the proxy's own buffers
#: above plus the kernel's socket buffers on both hops (autotuned on loopback: the proxy's
#: receive buffer up to net.ipv4.tcp_rmem[2]); the client's receive buffer is pinned to 256 KiB.
READ_AHEAD_LIMIT = 64 * MIB


def test_slow_client_is_backpressured(fake: FakeUpstream, tmp_path: Path) -> None:
    key = "slow-client"
    instances = [generated_frames_instance(key, i + 1, f) for i, f in enumerate(SLOW_FRAMES)]
    total = sum(i.size for i in instances)
    fake.add("slow", Plan(segments=GeneratedBody(len(instances), instances.__getitem__)))
    warm = [generated_frames_instance("slow-warm-up", i + 1, f) for i, f in enumerate([1, 1, 12])]
    fake.add("slow-warm-up", Plan(segments=GeneratedBody(len(warm), warm.__getitem__)))
    proxy = Proxy(fake.url, tmp_path)
    pid = proxy.proc.pid
    try:
        # Warm-up: one whole ZIP with both entry kinds, so one-time allocations are done.
        out = tmp_path / "warm.zip"
        with requests.get(f"{proxy.url}/slow-warm-up/studies/1.2.3?accept={ZIP}", stream=True,
                          timeout=30) as r:
            assert r.status_code == 200
            with out.open("wb") as f:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
        check_python_zipfile(out)
        time.sleep(0.2)
        peak_reset = reset_peak_rss(pid)
        baseline = proc_status(pid)["VmRSS"]

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        sock.settimeout(10)
        received = 0
        head = b""
        samples: list[tuple[float, int, int, int]] = []  # (t, received, upstream sent, rss)
        try:
            sock.connect(("127.0.0.1", proxy.port))
            sock.sendall(f"GET /slow/studies/1.2.3 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Accept: {ZIP}\r\n\r\n".encode())
            started = time.monotonic()
            next_sample = started
            while (now := time.monotonic()) - started < SLOW_SECONDS:
                if received < SLOW_RATE * (now - started):
                    data = sock.recv(64 * 1024)
                    assert data, f"proxy closed after {received} bytes"
                    if len(head) < 4096:
                        head += data[:4096]
                    received += len(data)
                else:
                    time.sleep(0.005)
                if now >= next_sample:
                    so_far = fake.seen("slow")
                    sent = so_far[0].bytes_sent if so_far else 0
                    samples.append((now - started, received, sent, proc_status(pid)["VmRSS"]))
                    next_sample += 0.1
            status = proc_status(pid)
            (seen,) = fake.seen("slow")
            upstream_sent = seen.bytes_sent
        finally:
            sock.close()
        closed_at = time.monotonic()
        gone = fake.wait_until(lambda: seen.finished is not None, 5)
    finally:
        proxy.stop()

    peak_rss = max([s[3] for s in samples] + ([status["VmHWM"]] if peak_reset else []))
    growth = peak_rss - baseline
    mid = next(s for s in samples if s[0] >= SLOW_SECONDS / 2)
    end = samples[-1]
    print(
        f"\nslow client: read {mib(received)} in {SLOW_SECONDS:g} s of a {mib(total)} study; "
        f"upstream sent {mib(upstream_sent)} (ahead by {mib(upstream_sent - received)}, limit "
        f"{mib(READ_AHEAD_LIMIT)}); second half: client +{mib(end[1] - mid[1])}, upstream "
        f"+{mib(end[2] - mid[2])}; proxy RSS baseline {mib(baseline)}, peak {mib(peak_rss)} "
        f"(VmHWM reset: {peak_reset}), growth {mib(growth)} (limit {mib(RSS_GROWTH_LIMIT)})"
    )
    assert head.startswith(b"HTTP/1.1 200"), head[:300]
    assert b"\r\n\r\nPK" in head or b"\r\nPK\x03\x04" in head, head[:600]
    # The client really read slowly and steadily.
    assert 0.7 * SLOW_RATE * SLOW_SECONDS <= received <= 1.1 * SLOW_RATE * SLOW_SECONDS
    # Backpressure: the upstream is read as fast as the client drains, not as fast as it sends.
    assert upstream_sent - received < READ_AHEAD_LIMIT, mib(upstream_sent - received)
    assert upstream_sent < total / 2
    assert (end[2] - mid[2]) <= (end[1] - mid[1]) + 16 * MIB, (mid, end)
    # Memory: bounded by the per-stream buffers, not by the study.
    assert growth < RSS_GROWTH_LIMIT, mib(growth)
    # The client left: the proxy dropped the upstream request at once.
    assert gone and seen.outcome == "peer-closed", seen
    assert seen.peer_closed_at is not None and seen.peer_closed_at - closed_at < 2.0
