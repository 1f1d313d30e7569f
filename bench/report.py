"""The report: one table per study, the issue's targets, memory flatness, the side runs and the
machine. Markdown (bench/results/latest.md) and the same numbers as JSON next to it."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import GiB, KiB, MiB
from bench.measure import StudyResult, ratio
from bench.procs import CLK_TCK

BASE = "base:"
COARSE_TICKS = 5


@dataclass(frozen=True)
class Goal:
    """One target of issue 11, on one kind of row (``zip`` or ``aes``, at HEAD or baseline)."""

    study: str | None  # None: every study
    kind: str
    metric: str
    limit: float
    higher_is_better: bool
    text: str

    def check(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.limit if self.higher_is_better else value <= self.limit


GOALS = (
    Goal("A", "zip", "x_direct", 0.80, True, "≥ 0.80x direct"),
    Goal("A", "zip", "x_pass", 0.85, True, "≥ 0.85x pass-through"),
    Goal("A", "zip", "cpu_gib", 1.0, False, "≤ 1.0 CPU-s/GiB"),
    Goal("A", "zip", "rss", 100.0, False, "≤ 100 MiB peak RSS"),
    Goal("B", "zip", "x_direct", 0.85, True, "≥ 0.85x direct"),
    Goal("B", "zip", "cpu_gib", 0.8, False, "≤ 0.8 CPU-s/GiB"),
    Goal("T20K", "zip", "us_inst", 120.0, False, "≤ 120 µs/instance"),
    Goal(None, "aes", "x_plain", 0.6, True, "≥ 0.6x plain ZIP"),
)
FLAT = Goal(None, "zip", "flat", 0.5, False, "≤ 0.5 KiB/instance")
FLAT_STUDIES = ("T20K", "T100K")  # each compared with T500


def mark(flag: bool | None) -> str:
    return "n/a" if flag is None else ("✅" if flag else "❌")


def metrics(res: StudyResult, key: str) -> dict[str, float | None]:
    """The numbers of one row; None where they do not apply or were not measured."""
    r = res.results[key]
    out: dict[str, float | None] = dict.fromkeys(
        ("mibps", "ttfb_ms", "cpu_gib", "us_inst", "rss", "x_direct", "x_nginx", "x_pass",
         "x_base", "x_plain"))
    if not r.transfers:
        return out
    out["mibps"] = res.data_bytes / MiB / statistics.median(t.total for t in r.transfers)
    out["ttfb_ms"] = statistics.median(t.ttfb for t in r.transfers) * 1000
    if r.cpu:
        cpu = statistics.median(r.cpu)
        out["cpu_gib"] = cpu / (res.data_bytes / GiB)
        out["us_inst"] = cpu / res.instances * 1e6
    out["rss"] = r.peak_mib
    out["x_direct"] = ratio(res, "direct", key)
    out["x_nginx"] = ratio(res, "nginx", key)
    out["x_pass"] = ratio(res, "pass", key)
    prefix = BASE if key.startswith(BASE) else ""
    suffix = key.removeprefix(BASE)
    if r.kind.zip and not prefix:
        out["x_base"] = ratio(res, BASE + suffix, key)
    if suffix == "aes":
        out["x_plain"] = ratio(res, prefix + "zip", key)
    return out


def goals_of(res: StudyResult, key: str) -> list[Goal]:
    suffix = key.removeprefix(BASE)
    return [g for g in GOALS if g.kind == suffix and g.study in (None, res.name)]


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _rate(value: float | None) -> str:
    """MiB/s with two significant digits below 10 (tiny studies)."""
    return _num(value, ".0f" if value is None or value >= 10 else ".2g")


def study_table(res: StudyResult, with_base: bool) -> list[str]:
    head = ["Download", "MiB/s", "TTFB ms", "x direct", "x nginx", "x pass-through",
            "CPU-s/GiB", "µs/instance", "peak RSS MiB"]
    head += (["x baseline"] if with_base else []) + ["targets"]
    size = res.data_bytes / MiB
    lines = [f"### {res.name}: {res.description}, {size:,.{0 if size >= 10 else 2}f} MiB of "
             "study data",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for key, r in res.results.items():
        if r.na:
            cells = [r.kind.label, f"n/a: {r.na}", *[""] * (len(head) - 2)]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        m = metrics(res, key)
        targets = [f"{g.text} {mark(g.check(m[g.metric]))}" for g in goals_of(res, key)]
        # CPU from fewer than COARSE_TICKS clock ticks (10 ms each) is marked "~": rough.
        rough = "~" if r.cpu and statistics.median(r.cpu) < COARSE_TICKS / CLK_TCK else ""
        cells = [r.kind.label, _rate(m["mibps"]), _num(m["ttfb_ms"], ".0f"),
                 _num(m["x_direct"], ".2f"), _num(m["x_nginx"], ".2f"), _num(m["x_pass"], ".2f"),
                 rough + _num(m["cpu_gib"], ".2f"), rough + _num(m["us_inst"], ".0f"),
                 _num(m["rss"], ".0f")]
        cells += ([_num(m["x_base"], ".2f")] if with_base else []) + ["; ".join(targets)]
        lines.append("| " + " | ".join(cells) + " |")
        if r.kind.zip:
            notes.append(f"- {r.kind.label}: {mark(r.verified)} {r.verify_note}")
    rss = [f"- RSS of the timed proxy {k}: {v}" for k, v in res.rss_mib.items()]
    return [*lines, "", "Verified (the first download of each ZIP, from disk):", *notes, *rss, ""]


def flatness(results: list[StudyResult]) -> dict[str, dict[str, float]]:
    """Peak RSS of the default ZIP of T500, T20K and (when measured) T100K, and the growth per
    extra instance in KiB from T500 to each larger study (``T20K/inst``, ``T100K/inst``), per
    proxy. The issue's target is on T20K; T100K is the largest study a collection holds by
    default (``--max-collection-instances``)."""
    by = {r.name: r for r in results if not r.error}
    small = by.get("T500")
    out: dict[str, dict[str, float]] = {}
    if small is None or by.get("T20K") is None:
        return out
    for key in ("zip", BASE + "zip"):
        a = small.results.get(key)
        if a is None or a.peak_mib is None:
            continue
        row = {"T500": a.peak_mib}
        for name in FLAT_STUDIES:
            big = by.get(name)
            b = big.results.get(key) if big is not None else None
            if big is None or b is None or b.peak_mib is None or big.instances <= small.instances:
                continue
            row[name] = b.peak_mib
            row[f"{name}/inst"] = ((b.peak_mib - a.peak_mib) * MiB / KiB
                                   / (big.instances - small.instances))
        if "T20K" in row:
            out[key] = row
    return out


def flat_table(flat: dict[str, dict[str, float]], labels: dict[str, str]) -> list[str]:
    if not flat:
        return ["Memory flatness: n/a (needs T500 and T20K in the same run)", ""]
    names = [n for n in FLAT_STUDIES if any(n in f for f in flat.values())]
    head = ["Proxy", "peak RSS T500 MiB"]
    for name in names:
        head += [f"peak RSS {name} MiB", f"KiB/instance T500→{name}"]
    lines = ["### Memory flatness (default ZIP): (peak RSS of the larger study - peak RSS T500) "
             "/ extra instances", "", "| " + " | ".join([*head, "target"]) + " |",
             "|" + "---|" * (len(head) + 1)]
    for key, f in flat.items():
        cells = [labels.get(key, key), f"{f['T500']:.1f}"]
        for name in names:
            cells += [_num(f.get(name), ".1f"), _num(f.get(f"{name}/inst"), ".2f")]
        verdicts = [f"{name} {mark(FLAT.check(f.get(f'{name}/inst')))}" for name in names]
        lines.append("| " + " | ".join([*cells, f"{FLAT.text}: {', '.join(verdicts)}"]) + " |")
    return [*lines, ""]


def goal_summary(results: list[StudyResult], flat: dict[str, dict[str, float]],
                 with_base: bool) -> list[str]:
    """Every target once: the value at HEAD (and at the baseline) and the verdict."""
    cols = ["Target", "HEAD", "verdict"] + (["baseline", "verdict"] if with_base else [])
    lines = ["### Issue 11 targets", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    fmt = {"x_direct": ".2f", "x_pass": ".2f", "x_plain": ".2f", "cpu_gib": ".2f",
           "rss": ".0f", "us_inst": ".0f"}
    for res in results:
        for g in (g for g in GOALS if g.study in (None, res.name)):
            cells = [f"{res.name}: {'AES ZIP' if g.kind == 'aes' else 'ZIP'} {g.text}"]
            for prefix in ("", BASE) if with_base else ("",):
                key = prefix + g.kind
                value = (metrics(res, key)[g.metric]
                         if key in res.results and not res.results[key].na else None)
                cells += [_num(value, fmt[g.metric]), mark(g.check(value))]
            lines.append("| " + " | ".join(cells) + " |")
    for name in FLAT_STUDIES:
        if name != "T20K" and not any(name in f for f in flat.values()):
            continue  # T100K only when it was measured (--big)
        cells = [f"T500→{name}: {FLAT.text}"]
        for key in ("zip", BASE + "zip") if with_base else ("zip",):
            value = flat.get(key, {}).get(f"{name}/inst")
            cells += [_num(value, ".2f"), mark(FLAT.check(value))]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["every ZIP complete and its manifest right (bench/verify.py)"]
    for base in (False, True) if with_base else (False,):
        checked = [r.verified for res in results for r in res.results.values()
                   if r.kind.zip and not r.na and r.kind.key.startswith(BASE) == base]
        cells += [f"{sum(bool(v) for v in checked)}/{len(checked)}",
                  mark(all(checked) if checked else None)]
    return [*lines, "| " + " | ".join(cells) + " |", ""]


def side_tables(media: dict[str, Any] | None, media_vs: float | None,
                conc: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    if media is not None:
        lines += ["### Orthanc's own /studies/{id}/media ZIP of A (once; deflate, 1 thread)", "",
                  f"{media['mibps']:.1f} MiB/s of study data ({media['total']:.0f} s); the "
                  f"default ZIP at HEAD is {media_vs:.0f}x faster." if media_vs else
                  f"{media['mibps']:.1f} MiB/s ({media['total']:.0f} s)", ""]
    if conc:
        lines += [f"### A: {conc[0]['streams']} concurrent default ZIPs", "",
                  "| --workers | aggregate MiB/s | wall s | slowest s | peak RSS MiB "
                  "(per process) | CPU-s/GiB |", "|---|---|---|---|---|---|"]
        for c in conc:
            if "na" in c:
                lines.append(f"| {c['workers']} | n/a: {c['na']} | | | | |")
                continue
            lines.append(f"| {c['workers']} | {c['aggregate_mibps']:.0f} | {c['wall']:.1f} | "
                         f"{c['slowest']:.1f} | {c['peak_rss_mib']:.0f} {c['rss_each_mib']} | "
                         f"{c['cpu_per_gib']:.2f} |")
        lines.append("")
    return lines


def version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def status_line(path: str, key: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return "?"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_info(versions: dict[str, str], revisions: dict[str, str]) -> list[str]:
    curl_v = subprocess.run(["curl", "--version"], capture_output=True, text=True,
                            check=False).stdout.split()[1]
    libs = ", ".join(f"{p} {version(p)}" for p in (
        "aiohttp", "zipstream-ng", "pydicom", "numpy", "cryptography", "multidict", "yarl"))
    optional = ", ".join(f"{p} {version(p)}" for p in (
        "isal", "zlib-ng", "uvloop", "blake3", "xxhash", "py-spy"))
    return [
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {platform.node()}, {os.cpu_count()} CPUs "
        f"({status_line('/proc/cpuinfo', 'model name')}), "
        f"{status_line('/proc/meminfo', 'MemTotal')}, Linux {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); {libs}",
        f"- optional: {optional}",
        f"- curl {curl_v}, nginx {versions.get('nginx', 'not used')}, "
        f"Orthanc {versions.get('orthanc', '?')} + DICOMweb plugin (loopback)",
        *[f"- zipproxy {k}: {v}" for k, v in revisions.items()],
    ]


def render(results: list[StudyResult], side: list[str], meta: dict[str, Any]) -> str:
    with_base = bool(meta.get("baseline"))
    flat = flatness(results)
    labels = {"zip": f"HEAD {meta['head']}", BASE + "zip": f"baseline {meta.get('baseline')}"}
    lines = [f"# zipproxy benchmark ({meta['mode']})", "",
             f"Command: `{meta['command']}`", ""]
    for r in results:
        if r.error:
            lines += [f"### {r.name}: failed: {r.error}", ""]
        else:
            lines += study_table(r, with_base)
    lines += flat_table(flat, labels) + goal_summary(
        [r for r in results if not r.error], flat, with_base) + side
    lines += [
        f"Medians of {meta['rounds']} rounds (bench/README.md); every kind runs once per round, "
        "in list order in odd rounds and reversed in even ones. MiB/s are "
        "of study data (the size of Orthanc's direct multipart); x X = median over rounds of "
        "X's time / this row's time in the same round (> 1: this row is faster); CPU = "
        "utime+stime of the relaying process tree (zipproxy; nginx master+worker) per GiB of "
        f"study data and per instance, median of the rounds (~: fewer than {COARSE_TICKS} clock "
        "ticks of 10 ms, rough); peak RSS = VmHWM of a proxy started "
        "for the kind's first download alone (nginx: after clear_refs reset it).",
        "", "Machine:", *meta["machine"],
        f"- load average before / after: {meta['load_before']} / {meta['load_after']} "
        "(other jobs may share the CPUs: numbers can be noisy)", ""]
    for name, top in meta.get("hot_spots", {}).items():
        lines += [f"py-spy hot spots, study {name} (self % / inclusive % of samples):", ""]
        lines += [f"- {s:5.1f}% / {i:5.1f}%  {f}" for f, s, i in top] + [""]
    return "\n".join(lines)


def as_json(results: list[StudyResult], extra: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import asdict

    studies = []
    for r in results:
        d = asdict(r)
        d["metrics"] = {k: metrics(r, k) for k in r.results} if not r.error else {}
        studies.append(d)
    return {**extra, "studies": studies, "flatness": flatness(results)}
