"""Collections vs the core path: one ZIP of a QIDO-RS search against the same studies one by one.

    .venv/bin/python -m bench.collectionbench [--rounds 3] [--quick] [--only A,B]

The studies are zipbench's (generated once and cached under ``--workdir``, Orthanc's storage
too). Each round runs, in this order:

1. direct: Orthanc's own WADO-RS multipart of each study, one after another (what a script
   does today, minus its QIDO search);
2. core: zipproxy's ZIP of each study, one after another;
3. collection: one ZIP of ``…/studies?StudyInstanceUID=a,b&accept=application/zip``;
4. collection with ``--max-collection-bytes`` (a second proxy): the sizes are asked of Orthanc
   before the first byte, which shows in the TTFB.

It prints MiB/s of study data, the ratios collection/direct and collection/core, TTFB, the
proxy's CPU-s per GiB and its peak RSS, and verifies the collection ZIP once from disk
(bench/verify.py: every CRC, one DICOMDIR leaf record and one checked manifest row per instance).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import ACCEPT_MULTIPART, ACCEPT_ZIP, REPO, GiB, MiB, exit_on_sigterm, log
from bench.procs import ProxyProcess
from bench.studies import ALL_NAMES, ensure_loaded, generate, study_specs
from bench.transfer import Transfer, curl
from bench.verify import Expect, verify_zip
from zipproxy.demo.orthanc import Orthanc


@dataclass
class Runs:
    """One kind of download over the rounds: total seconds, first-byte seconds, proxy CPU-s."""

    total: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, transfers: Sequence[Transfer], cpu: float = 0.0) -> None:
        self.total.append(sum(t.total for t in transfers))
        self.ttfb.append(transfers[0].ttfb)
        self.cpu.append(cpu)


def ratio(fast: Runs, slow: Runs) -> float:
    """Median over rounds of fast time / slow time (1.0 = as fast)."""
    return statistics.median(f / s for f, s in zip(fast.total, slow.total, strict=True))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.collectionbench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    p.add_argument("--quick", action="store_true", help="1/10 sizes: a smoke run")
    p.add_argument("--only", default="A,B", help="the studies of the cohort (default A,B)")
    p.add_argument("--workdir", type=Path, default=REPO / "bench/data",
                   help="generated studies, Orthanc storage, logs (default bench/data)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    args.workdir = args.workdir.resolve()
    return args


def print_summary(cohort: str, runs: dict[str, Runs], data_bytes: int, peak: float,
                  verified: str) -> None:
    def mibps(kind: str) -> float:
        return data_bytes / MiB / statistics.median(runs[kind].total)

    def cpu(kind: str) -> float:
        return statistics.median(runs[kind].cpu) / (data_bytes / GiB)

    def ttfb(kind: str) -> float:
        return statistics.median(runs[kind].ttfb) * 1000

    print(f"cohort: {cohort}")
    print(f"direct multipart, one by one : {mibps('direct'):6.0f} MiB/s, "
          f"TTFB {ttfb('direct'):.0f} ms")
    print(f"core ZIPs, one by one        : {mibps('core'):6.0f} MiB/s, "
          f"TTFB {ttfb('core'):.0f} ms, {cpu('core'):.2f} CPU-s/GiB")
    print(f"collection ZIP               : {mibps('collection'):6.0f} MiB/s, "
          f"TTFB {ttfb('collection'):.0f} ms, {cpu('collection'):.2f} CPU-s/GiB")
    print(f"collection ZIP, byte limit on: {mibps('sized'):6.0f} MiB/s, "
          f"TTFB {ttfb('sized'):.0f} ms, {cpu('sized'):.2f} CPU-s/GiB")
    print(f"ratio collection/direct      : {ratio(runs['direct'], runs['collection']):.2f}")
    print(f"ratio collection/core        : {ratio(runs['core'], runs['collection']):.2f}")
    print(f"ratio sized/collection       : {ratio(runs['collection'], runs['sized']):.2f}")
    print(f"proxy peak RSS (VmHWM)       : {peak:.0f} MiB")
    print(f"collection ZIP verified      : {verified}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    wanted = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(wanted) - set(ALL_NAMES)
    if unknown:
        print(f"collectionbench: unknown studies {sorted(unknown)}", file=sys.stderr)
        return 2
    specs = study_specs(args.quick, wanted)
    if len(specs) < 2:
        print("collectionbench: a cohort needs two studies or more (--only)", file=sys.stderr)
        return 2
    studies = [generate(spec, args.workdir) for spec in specs]
    instances = sum(s.spec.instances for s in studies)
    orthanc = Orthanc(args.workdir / "orthanc").start()
    logs = args.workdir / "logs"
    runs = {name: Runs() for name in ("direct", "core", "collection", "sized")}
    try:
        for study in studies:
            ensure_loaded(orthanc, study)
        plain = ProxyProcess(orthanc.url, 1, logs, "collection")
        sized = ProxyProcess(orthanc.url, 1, logs, "collection-sized",
                             "--max-collection-bytes", "1024G")
        try:
            uids = ",".join(s.study_uid for s in studies)
            search = f"/dicom-web/studies?StudyInstanceUID={uids}&accept=application/zip"
            direct = [f"{orthanc.dicomweb}/studies/{s.study_uid}" for s in studies]
            core = [f"{plain.url}/dicom-web/studies/{s.study_uid}" for s in studies]
            # Warm-up: page cache and connections; the collection ZIP is verified once.
            for url in direct:
                curl(url, ACCEPT_MULTIPART)
            out = args.workdir / "tmp" / "collection.zip"
            out.parent.mkdir(parents=True, exist_ok=True)
            data_bytes = sum(curl(url, ACCEPT_MULTIPART).size for url in direct)
            curl(plain.url + search, ACCEPT_ZIP, str(out))
            verdict = verify_zip(out, Expect(instances))
            verified, note = verdict.ok, verdict.note
            out.unlink()
            log(f"collection ZIP of {len(studies)} studies: verified={verified} ({note})")
            for r in range(args.rounds):
                runs["direct"].add([curl(url, ACCEPT_MULTIPART) for url in direct])
                c0 = plain.cpu()
                runs["core"].add([curl(url, ACCEPT_ZIP) for url in core], plain.cpu() - c0)
                c0 = plain.cpu()
                runs["collection"].add([curl(plain.url + search, ACCEPT_ZIP)], plain.cpu() - c0)
                c0 = sized.cpu()
                runs["sized"].add([curl(sized.url + search, ACCEPT_ZIP)], sized.cpu() - c0)
                log(f"round {r + 1}: " + ", ".join(
                    f"{k} {data_bytes / MiB / v.total[-1]:.0f} MiB/s" for k, v in runs.items()))
            peak = max(plain.peak_rss_mib(), sized.peak_rss_mib())
        finally:
            plain.stop()
            sized.stop()
    finally:
        orthanc.stop()

    summary = f"{', '.join(s.spec.name for s in studies)} ({len(studies)} studies, " \
        f"{instances} instances, {data_bytes / MiB:.0f} MiB); medians of {args.rounds} rounds"
    print_summary(summary, runs, data_bytes, peak, f"{verified} ({note})")
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
