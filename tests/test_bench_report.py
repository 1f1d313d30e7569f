"""bench/report.py's memory flatness: T500 -> T20K always, T500 -> T100K when it was measured,
for HEAD and the baseline, in its own table and in the targets table."""

from __future__ import annotations

from bench.common import KiB, MiB
from bench.measure import KindResult, StudyResult, kinds
from bench.report import BASE, flat_table, flatness, goal_summary

KINDS = {k.key: k for k in kinds("HEAD abc", "base def", nginx=False)}


def _study(name: str, instances: int, head: float, base: float | None = None) -> StudyResult:
    res = StudyResult(name, name, instances)
    res.results["zip"] = KindResult(KINDS["zip"], peak_mib=head)
    if base is not None:
        res.results[BASE + "zip"] = KindResult(KINDS[BASE + "zip"], peak_mib=base)
    return res


def _per(small: float, big: float, extra: int) -> float:
    return (big - small) * MiB / KiB / extra


def test_t500_to_t20k_only_when_t100k_was_not_measured() -> None:
    results = [_study("T500", 500, 66.0, 74.0), _study("T20K", 20_000, 75.0, 138.0)]
    flat = flatness(results)
    assert flat["zip"] == {"T500": 66.0, "T20K": 75.0, "T20K/inst": _per(66, 75, 19_500)}
    assert flat[BASE + "zip"]["T20K/inst"] == _per(74, 138, 19_500)
    table = "\n".join(flat_table(flat, {"zip": "HEAD", BASE + "zip": "base"}))
    assert "T100K" not in table
    assert "| HEAD | 66.0 | 75.0 | 0.47 | ≤ 0.5 KiB/instance: T20K ✅ |" in table
    assert "| base | 74.0 | 138.0 | 3.36 | ≤ 0.5 KiB/instance: T20K ❌ |" in table
    targets = "\n".join(goal_summary(results, flat, with_base=True))
    assert "| T500→T20K: ≤ 0.5 KiB/instance | 0.47 | ✅ | 3.36 | ❌ |" in targets
    assert "T100K" not in targets


def test_t500_to_t100k_when_it_was_measured() -> None:
    results = [_study("T500", 500, 67.2), _study("T20K", 20_000, 76.0),
               _study("T100K", 100_000, 84.5)]
    flat = flatness(results)
    assert flat["zip"]["T100K"] == 84.5
    assert flat["zip"]["T100K/inst"] == _per(67.2, 84.5, 99_500)
    table = "\n".join(flat_table(flat, {"zip": "HEAD"}))
    assert ("| HEAD | 67.2 | 76.0 | 0.46 | 84.5 | 0.18 | "
            "≤ 0.5 KiB/instance: T20K ✅, T100K ✅ |") in table
    targets = "\n".join(goal_summary(results, flat, with_base=False))
    assert "| T500→T20K: ≤ 0.5 KiB/instance | 0.46 | ✅ |" in targets
    assert "| T500→T100K: ≤ 0.5 KiB/instance | 0.18 | ✅ |" in targets


def test_a_t100k_growing_too_fast_fails_its_own_row() -> None:
    results = [_study("T500", 500, 60.0), _study("T20K", 20_000, 65.0),
               _study("T100K", 100_000, 120.0)]  # 0.62 KiB per instance from T500
    targets = "\n".join(goal_summary(results, flatness(results), with_base=False))
    assert "| T500→T20K: ≤ 0.5 KiB/instance | 0.26 | ✅ |" in targets
    assert "| T500→T100K: ≤ 0.5 KiB/instance | 0.62 | ❌ |" in targets


def test_no_flatness_without_t20k() -> None:
    results = [_study("T500", 500, 60.0), _study("T100K", 100_000, 70.0)]
    assert flatness(results) == {}
    assert flat_table({}, {}) == ["Memory flatness: n/a (needs T500 and T20K in the same run)",
                                  ""]
