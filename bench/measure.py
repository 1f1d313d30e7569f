"""One study's downloads: the anchors and the ZIPs, measured in alternated rounds.

Per study:

1. Orthanc's multipart once (page cache; its size is the study data), then each kind's first
   download, through a proxy started for that download alone (of the current tree, or of the
   baseline), so its VmHWM is that study's and that kind's own peak RSS. A ZIP goes to a file
   that :mod:`bench.verify` checks, then deletes. A status other than 200 makes the kind n/a
   (400: the revision does not know that parameter). nginx, the run's, has its VmHWM reset by
   ``clear_refs`` first.
2. The timed proxies (one per revision, started for the study): one untimed download of each
   kind whose first download took under WARM_UP_BELOW seconds, then ``rounds`` rounds of every
   kind, in the list's order in odd rounds and reversed in even ones (a drift of the machine
   spreads evenly); ratios pair the kinds of one round.
3. Around each timed download, the relaying process tree's CPU seconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from bench.common import ACCEPT_AES, ACCEPT_MULTIPART, ACCEPT_ZIP, AES_PASSWORD, MiB, log
from bench.procs import Measured, NginxProcess, ProxyProcess
from bench.studies import CachedStudy
from bench.transfer import SIZE_SLACK, Transfer, curl
from bench.verify import Expect, verify_zip

Server = Literal["orthanc", "nginx", "head", "base"]
# The timed proxies get an untimed download of each kind whose first download took less: in a
# longer one, the first request's costs (lazy imports, connection pool) are lost in the noise.
WARM_UP_BELOW = 5.0  # seconds
ANY_STATUS = tuple(range(100, 600))  # the caller judges the status


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    server: Server
    accept: str
    query: str = ""
    zip: bool = False
    manifest: bool = True
    sha256: bool = False
    password: str | None = None


ANCHORS = (
    Kind("direct", "Orthanc WADO-RS multipart, direct", "orthanc", ACCEPT_MULTIPART),
    Kind("nginx", "the same multipart relayed by nginx", "nginx", ACCEPT_MULTIPART),
    Kind("pass", "the same multipart, zipproxy pass-through", "head", ACCEPT_MULTIPART),
)
ZIPS = (  # (key suffix, label, query, accept, manifest, sha256, password)
    ("zip", "ZIP (default)", "", ACCEPT_ZIP, True, False, None),
    ("sha256", "ZIP ?manifest=sha256", "?manifest=sha256", ACCEPT_ZIP, True, True, None),
    ("nomanifest", "ZIP ?manifest=false", "?manifest=false", ACCEPT_ZIP, False, False, None),
    ("aes", "ZIP AES-256", "", ACCEPT_AES, True, False, AES_PASSWORD),
)


ZIP_NAMES = tuple(z[0] for z in ZIPS)


def kinds(head_label: str, base_label: str | None, nginx: bool,
          variants: tuple[str, ...] = ZIP_NAMES) -> list[Kind]:
    """Anchors, then each ZIP variant at HEAD with the same ZIP at the baseline beside it."""
    out = [replace(k, label=f"{k.label} @ {head_label}") if k.server == "head" else k
           for k in ANCHORS if nginx or k.server != "nginx"]
    for suffix, label, query, accept, manifest, sha256, password in ZIPS:
        if suffix not in variants:
            continue
        servers: list[tuple[Server, str, str]] = [("head", "", head_label)]
        if base_label is not None:
            servers.append(("base", "base:", base_label))
        for server, prefix, rev in servers:
            out.append(Kind(prefix + suffix, f"{label} @ {rev}", server, accept, query,
                            zip=True, manifest=manifest, sha256=sha256, password=password))
    return out


@dataclass
class KindResult:
    kind: Kind
    transfers: list[Transfer] = field(default_factory=list)  # the timed rounds
    cpu: list[float] = field(default_factory=list)  # CPU-s of the relaying tree, per round
    peak_mib: float | None = None  # VmHWM over the first download, in a fresh proxy
    na: str = ""  # why the kind was not measured
    verified: bool | None = None
    verify_note: str = ""
    size: int = 0  # bytes of the first download
    first_seconds: float = 0.0


@dataclass
class StudyResult:
    name: str
    description: str
    instances: int
    data_bytes: int = 0  # the direct multipart's size: "study data"
    results: dict[str, KindResult] = field(default_factory=dict)
    rss_mib: dict[str, str] = field(default_factory=dict)  # timed proxies: idle -> after rounds
    error: str = ""


Launch = Callable[[Server, str], ProxyProcess]


@dataclass
class Servers:
    """Where each kind of download goes, and which process tree it costs."""

    orthanc_url: str
    nginx: NginxProcess | None
    proxies: dict[Server, ProxyProcess] = field(default_factory=dict)

    def target(self, kind: Kind, study_uid: str) -> tuple[str, Measured | None]:
        path = f"/dicom-web/studies/{study_uid}{kind.query}"
        if kind.server == "orthanc":
            return self.orthanc_url + path, None
        proc: Measured | None = self.nginx if kind.server == "nginx" else self.proxies.get(
            kind.server)
        assert isinstance(proc, NginxProcess | ProxyProcess)
        return proc.url + path, proc


def one_download(servers: Servers, study: CachedStudy, kind: Kind,
                 out: str = "/dev/null") -> tuple[Transfer, float | None, float | None]:
    """One download: the transfer, the relaying tree's CPU-s and its VmHWM (MiB) after a
    ``clear_refs`` reset just before (None for Orthanc: no relay)."""
    url, proc = servers.target(kind, study.study_uid)
    if proc is None:
        return curl(url, kind.accept, out, allowed=ANY_STATUS), None, None
    proc.reset_peak()
    c0 = proc.cpu()
    t = curl(url, kind.accept, out, allowed=ANY_STATUS)
    return t, proc.cpu() - c0, proc.peak_rss_mib()


def first_download(servers: Servers, launch: Launch, study: CachedStudy, res: KindResult,
                   tmp: Path) -> None:
    """The kind's first download, through a proxy started for it alone (its VmHWM is then that
    download's own peak); a ZIP goes to disk and is verified there. A status other than 200
    makes the kind n/a."""
    kind, spec = res.kind, study.spec
    path = tmp / f"verify-{spec.name}-{kind.key.replace(':', '-')}.zip"
    fresh = None
    try:
        if kind.server in ("head", "base"):
            try:
                fresh = launch(kind.server, f"study-{spec.name}-{kind.key.replace(':', '-')}")
            except RuntimeError as exc:  # e.g. a baseline that lacks one of the options
                res.na = f"the proxy did not start: {str(exc).splitlines()[-1][:120]}"
                return
        one = Servers(servers.orthanc_url, servers.nginx, {kind.server: fresh} if fresh else {})
        t, _, res.peak_mib = one_download(one, study, kind, str(path) if kind.zip else "/dev/null")
        if t.code != 200:
            res.na = f"HTTP {t.code}" + (" (not supported by this revision)"
                                         if t.code == 400 else "")
            return
        res.size, res.first_seconds = t.size, t.total
        if kind.zip:
            verdict = verify_zip(path, Expect(spec.instances, kind.manifest, kind.sha256,
                                              kind.password))
            res.verified, res.verify_note = verdict.ok, verdict.note
            log(f"study {spec.name}: {kind.label}: {t.size / MiB:.1f} MiB, peak RSS "
                f"{res.peak_mib:.0f} MiB, verified={verdict.ok} ({verdict.note})")
    finally:
        if fresh is not None:
            fresh.stop()
        path.unlink(missing_ok=True)


def run_round(servers: Servers, study: CachedStudy, todo: list[KindResult],
              data_bytes: int) -> None:
    for res in todo:
        t, cpu, _ = one_download(servers, study, res.kind)
        if t.code != 200:
            raise RuntimeError(f"{res.kind.label}: HTTP {t.code} after a 200 before")
        if res.kind.zip and abs(t.size - res.size) > SIZE_SLACK * res.size:
            raise RuntimeError(f"{res.kind.label}: size changed: {t.size} != {res.size}")
        res.transfers.append(t)
        if cpu is not None:
            res.cpu.append(cpu)
    log(f"study {study.spec.name}: " + ", ".join(
        f"{r.kind.key} {data_bytes / MiB / r.transfers[-1].total:.0f}" for r in todo)
        + " MiB/s")


def bench_study(study: CachedStudy, servers: Servers, launch: Launch, all_kinds: list[Kind],
                rounds: int, tmp: Path) -> StudyResult:
    """First downloads (fresh proxies), then the timed proxies (``servers.proxies``): the
    untimed warm-up downloads, then the rounds."""
    spec = study.spec
    res = StudyResult(spec.name, spec.describe(), spec.instances)
    tmp.mkdir(parents=True, exist_ok=True)
    res.data_bytes = curl(servers.target(ANCHORS[0], study.study_uid)[0], ACCEPT_MULTIPART).size
    for kind in all_kinds:
        res.results[kind.key] = KindResult(kind)
        first_download(servers, launch, study, res.results[kind.key], tmp)
    for r in res.results.values():
        if not r.na and r.kind.server in ("head", "base") and r.kind.server not in servers.proxies:
            r.na = "the timed proxy did not start"
    todo = [r for r in res.results.values() if not r.na]
    idle = {name: proc.rss_mib() for name, proc in servers.proxies.items()}
    for r in todo:
        if r.first_seconds < WARM_UP_BELOW:
            one_download(servers, study, r.kind)
    t0 = time.monotonic()
    for n in range(rounds):
        run_round(servers, study, todo if n % 2 == 0 else todo[::-1], res.data_bytes)
    log(f"study {spec.name}: {rounds} rounds in {time.monotonic() - t0:.0f} s")
    for name, proc in servers.proxies.items():
        res.rss_mib[name] = f"idle {idle[name]:.0f} MiB, after the rounds {proc.rss_mib():.0f} MiB"
    return res


def ratio(res: StudyResult, other: str, key: str) -> float | None:
    """Median over rounds of other's time / key's time (> 1: ``key`` is faster)."""
    a, b = res.results.get(other), res.results.get(key)
    if a is None or b is None or not a.transfers or not b.transfers or other == key:
        return None
    return statistics.median(x.total / y.total for x, y in zip(a.transfers, b.transfers,
                                                               strict=True))
