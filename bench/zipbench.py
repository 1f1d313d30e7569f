"""zipproxy benchmark: the streamed DICOM ZIP against three anchors that relay the same bytes.

    scripts/bench.sh [--quick] [--big] [--rounds 3] [--only A,T20K] [--baseline REV]
    (= .venv/bin/python -m bench.zipbench ...)

Per study, in alternated rounds (see bench/README.md): Orthanc's direct WADO-RS multipart, the
same multipart relayed by nginx, zipproxy's pass-through of it, and the ZIPs (default,
``?manifest=sha256``, ``?manifest=false``, AES-256) of the current tree and, with
``--baseline REV``, of that git revision's zipproxy/ package. Studies A, B, T500, T20K (A4 and
T100K with ``--big``) are generated once and cached under ``--workdir`` with Orthanc's storage.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from bench import extras, report
from bench.baseline import Baseline, head_revision, materialise, zipproxy_state
from bench.common import REPO, exit_on_sigterm, log
from bench.measure import ZIP_NAMES, Server, Servers, StudyResult, bench_study, kinds
from bench.procs import NginxProcess, ProxyProcess, nginx_available
from bench.studies import (
    ALL_NAMES,
    DEFAULT_NAMES,
    CachedStudy,
    ensure_loaded,
    generate,
    study_specs,
)
from zipproxy.demo.orthanc import Orthanc


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.zipbench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per study (default 3)")
    p.add_argument("--quick", action="store_true", help="1/10 sizes: a smoke run")
    p.add_argument("--big", action="store_true",
                   help="also studies A4 (4x A) and T100K (100,000 tiny instances)")
    p.add_argument("--only", default="", help=f"comma list of studies ({','.join(ALL_NAMES)})")
    p.add_argument("--baseline", metavar="REV", default="",
                   help="also measure the ZIPs of this git revision's zipproxy/ (e.g. main~3)")
    p.add_argument("--out", type=Path, default=REPO / "bench/results/latest.md")
    p.add_argument("--workdir", type=Path, default=REPO / "bench/data",
                   help="generated studies, Orthanc storage, logs (default bench/data)")
    p.add_argument("--variants", default=",".join(ZIP_NAMES),
                   help=f"the ZIPs to measure (default {','.join(ZIP_NAMES)}; zip is required)")
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx anchor")
    p.add_argument("--no-media", action="store_true", help="skip Orthanc's slow /media ZIP")
    p.add_argument("--no-concurrency", action="store_true", help="skip the 8-stream runs")
    p.add_argument("--profile", action="store_true",
                   help="py-spy the proxy during extra untimed downloads (results next to --out)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    wanted = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(wanted) - set(ALL_NAMES)
    if unknown:
        p.error(f"unknown studies {sorted(unknown)} (known: {', '.join(ALL_NAMES)})")
    args.names = wanted or DEFAULT_NAMES + (("A4", "T100K") if args.big else ())
    args.variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if "zip" not in args.variants or set(args.variants) - set(ZIP_NAMES):
        p.error(f"--variants: a comma list of {', '.join(ZIP_NAMES)} that includes zip")
    args.workdir = args.workdir.resolve()
    args.out = args.out.resolve()
    return args


def run_study(study: CachedStudy, orthanc: Orthanc, nginx: NginxProcess | None,
              baseline: Baseline | None, args: argparse.Namespace,
              head: str) -> StudyResult:
    """Proxies started for this study (so each peak RSS is its own), then the rounds."""
    name = study.spec.name
    logs = args.workdir / "logs"

    def launch(server: Server, label: str) -> ProxyProcess:
        root = baseline.root if server == "base" and baseline is not None else None
        return ProxyProcess(orthanc.url, 1, logs, label, package_root=root)

    servers = Servers(orthanc.url, nginx)
    try:
        servers.proxies["head"] = launch("head", f"study-{name}")
        if baseline is not None:
            try:
                servers.proxies["base"] = launch("base", f"study-{name}-{baseline.sha}")
            except RuntimeError as exc:  # its rows say n/a; HEAD's are still measured
                log(f"study {name}: the baseline proxy did not start: {exc}")
        all_kinds = kinds(f"HEAD {head}", baseline.label if baseline else None,
                          nginx is not None, args.variants)
        res = bench_study(study, servers, launch, all_kinds, args.rounds, args.workdir / "tmp")
        if args.profile:
            proxy = servers.proxies["head"]
            url = f"{proxy.url}/dicom-web/studies/{study.study_uid}"
            extras.profile_proxy(proxy, url, name, args.out.parent)
        return res
    except Exception as exc:  # record it and go on with the other studies
        log(f"study {name} failed: {exc}")
        return StudyResult(name, study.spec.describe(), study.spec.instances,
                           error=str(exc)[:400])
    finally:
        for proxy in servers.proxies.values():
            proxy.stop()


def side_runs(studies: list[CachedStudy], results: list[StudyResult], orthanc: Orthanc,
              args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """Orthanc's /media ZIP and the concurrent downloads, both of study A."""
    study = next((s for s in studies if s.spec.name == "A"), None)
    res = next((r for r in results if r.name == "A" and not r.error), None)
    if study is None or res is None or not res.results["zip"].transfers:
        return [], {}
    media = None
    conc: list[dict[str, Any]] = []
    mibps = report.metrics(res, "zip")["mibps"]
    if not args.no_media:
        media = extras.orthanc_media(study, orthanc.url, res.data_bytes)
    if not args.no_concurrency:
        for workers in (1, 2):
            conc.append(extras.bench_concurrency(study, orthanc.url, workers, res.data_bytes,
                                                 res.results["zip"].size,
                                                 args.workdir / "logs"))
    media_vs = mibps / media["mibps"] if media and mibps else None
    return report.side_tables(media, media_vs, conc), {"media": media, "concurrency": conc}


def command_line(argv: Sequence[str] | None) -> str:
    """scripts/bench.sh passes its own command line; otherwise the python one."""
    args = list(argv if argv is not None else sys.argv[1:])
    given = os.environ.get("ZIPBENCH_COMMAND")
    if given:
        return shlex.join([given, *args])
    return shlex.join([".venv/bin/python", "-m", "bench.zipbench", *args])


def start_nginx(orthanc: Orthanc, args: argparse.Namespace,
                versions: dict[str, str]) -> NginxProcess | None:
    if args.no_nginx:
        return None
    if not nginx_available():
        log("nginx not installed (scripts/setup.sh --bench): the nginx anchor is left out")
        return None
    nginx = NginxProcess(orthanc.url, args.workdir / "nginx")
    versions["nginx"] = nginx.version
    log(f"nginx {nginx.version} pid {nginx.pid} on {nginx.url}")
    return nginx


def write_report(results: list[StudyResult], side: list[str], side_json: dict[str, Any],
                 meta: dict[str, Any], studies: list[CachedStudy],
                 args: argparse.Namespace) -> None:
    """Print the markdown report and write it to --out, with the raw numbers as JSON."""
    if args.profile:
        meta["hot_spots"] = {s.spec.name: extras.hot_spots(raw) for s in studies
                             if (raw := args.out.parent / f"profile-{s.spec.name}.txt").exists()}
    text = report.render(results, side, meta)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(
        report.as_json(results, {"meta": meta, **side_json}), indent=1, default=str),
        encoding="utf-8")
    log(f"report written to {args.out} (and .json)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    if shutil.which("curl") is None:
        print("zipbench: curl is required", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    load_before = report.loadavg()
    head, state = head_revision(), zipproxy_state()
    try:
        baseline = materialise(args.baseline, args.workdir) if args.baseline else None
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"zipbench: --baseline {args.baseline}: {exc}", file=sys.stderr)
        return 2
    studies = [generate(spec, args.workdir) for spec in study_specs(args.quick, args.names)]
    orthanc = Orthanc(args.workdir / "orthanc").start()
    log(f"Orthanc pid {orthanc.pid} on {orthanc.url}, storage {orthanc.storage_dir}")
    nginx: NginxProcess | None = None
    versions: dict[str, str] = {}
    try:
        versions["orthanc"] = requests.get(orthanc.url + "/system", timeout=10).json().get(
            "Version", "?")
        nginx = start_nginx(orthanc, args, versions)
        for study in studies:
            ensure_loaded(orthanc, study)
        results = [run_study(s, orthanc, nginx, baseline, args, head) for s in studies]
        side, side_json = side_runs(studies, results, orthanc, args)
    finally:
        if nginx is not None:
            nginx.stop()
        orthanc.stop()
    revisions = {"HEAD": head + ("" if state == zipproxy_state() else
                                 f" at start; zipproxy/ changed during the run ({head_revision()}"
                                 " at the end): the proxies started later ran other code")}
    if baseline is not None:
        revisions["baseline"] = f"{baseline.sha} (--baseline {baseline.rev}), from {baseline.root}"
    write_report(results, side, side_json, {
        "mode": "quick (1/10 sizes)" if args.quick else "full",
        "rounds": args.rounds, "head": head, "baseline": baseline.sha if baseline else "",
        "machine": report.machine_info(versions, revisions),
        "load_before": load_before, "load_after": report.loadavg(),
        "command": command_line(argv),
    }, studies, args)
    unverified = [k for r in results for k, v in r.results.items() if v.verified is False]
    return 1 if unverified or any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
