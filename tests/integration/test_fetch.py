"""``zipproxy fetch``: a real subprocess, through a real zipproxy, against the real Orthanc.

The proxy's JSON access log (one line per request) tells which downloads happened. Checked here
(issue 15, "How it is tested"): the files equal Orthanc's instances byte for byte with
``transfer-syntax=*``, as ZIPs and extracted; series searches; the command's own paging; a run
interrupted while downloading (SIGINT, SIGKILL) leaves no half-written file under a final name,
and the rerun downloads no verified study again. Faults: test_fetch_faults.py; what is printed:
test_fetch_output.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import Proxy
from fakeupstream import FakeUpstream, Relay, Relayed
from fetchrun import (
    ANSI,
    checksum_columns,
    downloads,
    fetch_command,
    first_time_only,
    load_cohort,
    records,
    retrieves,
    run_fetch,
    searches,
    verified_lines,
    wait_for,
)
from zipcheck import expected_instances_match

from zipproxy.demo.orthanc import SampleUpstream


def test_cohort_as_zips_byte_for_byte(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    out = tmp_path / "cohort"
    result = run_fetch(f"{proxy.url}/dicom-web/studies", "--out", str(out), "--jobs", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not ANSI.search(result.stdout), "plain output has no terminal escapes"
    lines = verified_lines(result.stdout)
    assert set(lines) == {s.study_uid for s in orthanc.studies}  # one line per study
    cohort = load_cohort(out)
    assert sorted(cohort.SOPInstanceUID) == sorted(
        sop for s in orthanc.studies for sop in s.sop_uids)
    checked = checksum_columns(cohort)
    for line in lines.values():  # each line names the checksum columns it verified
        assert line.endswith(f"({', '.join(checked)})"), line
    for study in orthanc.studies:
        zip_path = out / f"study-{study.study_uid}.zip"
        assert set(cohort[cohort.StudyInstanceUID == study.study_uid].local_path) == {
            zip_path.name}
        expected_instances_match(zip_path, study, transfer_syntax_star=True)
        assert len(downloads(proxy, study)) >= 1
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".zipproxy", "cohort.csv", *(f"study-{s.study_uid}.zip" for s in orthanc.studies)])
    assert not (out / ".zipproxy" / "partial").exists()
    # Rerun: every study is already verified, none is asked for again.
    before = {s.study_uid: len(downloads(proxy, s)) for s in orthanc.studies}
    again = run_fetch(f"{proxy.url}/dicom-web/studies", "--out", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(orthanc.studies)} already verified in DIR, skipped" in again.stdout
    assert {s.study_uid: len(downloads(proxy, s)) for s in orthanc.studies} == before
    assert load_cohort(out).equals(cohort)
    # The README's loader, as documented, on this cohort.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("Load the cohort index:", 1)[1].split("```python\n", 1)[1]
    snippet = snippet.split("```", 1)[0] + "\nprint(ds.SOPInstanceUID, len(ct))\n"
    run = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    ct = cohort[cohort.Modality == "CT"]
    assert run.stdout.split() == [ct.iloc[0].SOPInstanceUID, str(len(ct))] and len(ct)


def test_extract_lays_out_files_byte_for_byte(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    out = tmp_path / "files"
    result = run_fetch(f"{proxy.url}/dicom-web/studies", "--out", str(out), "--extract")
    assert result.returncode == 0, result.stdout + result.stderr
    cohort = load_cohort(out)
    assert len(cohort) == sum(len(s.instances) for s in orthanc.studies)
    originals = {i.sop_uid: i.path for s in orthanc.studies for i in s.instances}
    for row in cohort.itertuples():
        patient = row.PatientID or "_"  # the sample without a Patient ID
        assert row.local_path == (f"{patient}/{row.StudyInstanceUID}/{row.SeriesInstanceUID}/"
                                  f"{row.SOPInstanceUID}.dcm")
        assert (out / row.local_path).read_bytes() == originals[row.SOPInstanceUID].read_bytes()
    assert not list(out.glob("*.zip")) and not (out / ".zipproxy" / "partial").exists()
    before = [len(downloads(proxy, s)) for s in orthanc.studies]
    custom = run_fetch(f"{proxy.url}/dicom-web/studies?PatientID=ZP-MR-001", "--out", str(out),
                       "--extract", "--layout", "{Modality}/{SOPInstanceUID}.dcm")
    # Another layout is another way of storing: that study is fetched again, laid out anew.
    assert custom.returncode == 0, custom.stdout + custom.stderr
    mr = orthanc.study("ZP-MR-001")
    assert sorted(load_cohort(out).local_path) == sorted(f"MR/{s}.dcm" for s in mr.sop_uids)
    assert [len(downloads(proxy, s)) for s in orthanc.studies] == [
        n + (s is mr) for n, s in zip(before, orthanc.studies, strict=True)]


def test_series_search(proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path) -> None:
    mixed = orthanc.study("ZP-MIX-001")
    out = tmp_path / "series"
    result = run_fetch(f"{proxy.url}/dicom-web/studies/{mixed.study_uid}/series", "--out",
                       str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(verified_lines(result.stdout)) == set(mixed.series_uids)
    for series in mixed.series_uids:
        expected_instances_match(out / f"series-{series}.zip",
                                 [i.path for i in mixed.series_instances(series)])
    assert sorted(load_cohort(out).SOPInstanceUID) == sorted(mixed.sop_uids)


def test_paging_and_slices(proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path) -> None:
    """The command pages itself: with 2 per page, 5 studies take pages of 2, 2 and 1, and an
    empty fourth page ends the listing. limit/offset in SEARCH_URL are a slice."""
    before = len(searches(proxy))
    result = run_fetch(f"{proxy.url}/dicom-web/studies", "--out", str(tmp_path / "paged"),
                       "--page-size", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(verified_lines(result.stdout)) == len(orthanc.studies)
    assert len(searches(proxy)) - before == 4
    order = list(load_cohort(tmp_path / "paged").StudyInstanceUID.drop_duplicates())
    sliced = run_fetch(f"{proxy.url}/dicom-web/studies?limit=2&offset=1", "--out",
                       str(tmp_path / "slice"), "--page-size", "1")
    assert sliced.returncode == 0, sliced.stdout + sliced.stderr
    assert set(verified_lines(sliced.stdout)) == set(order[1:3])


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_run_resumes_without_downloading_verified_studies_again(
    faulty: Relay, rproxy: Proxy, orthanc: SampleUpstream, fake: FakeUpstream, tmp_path: Path,
    how: signal.Signals,
) -> None:
    slow = orthanc.study("ZP-CT-001")  # the largest: about 100 kB, relayed at 8 kB/s
    faulty.fault = first_time_only(slow, Relayed(rate=8_000))
    out = tmp_path / "cohort"
    args = [f"{rproxy.url}/dicom-web/studies", "--out", str(out), "--jobs", "2"]
    before = {s.study_uid: len(downloads(rproxy, s)) for s in orthanc.studies}
    proc = subprocess.Popen(fetch_command(*args), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    part = out / ".zipproxy" / "partial" / f"study-{slow.study_uid}.zip.part"
    others = {f"study-{s.study_uid}" for s in orthanc.studies if s is not slow}
    wait_for(lambda: records(out) == others and part.exists() and part.stat().st_size > 0,
             proc, "the fast studies verified while the slow one downloads")
    proc.send_signal(how)
    output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == (130 if how == signal.SIGINT else -signal.SIGKILL), output
    # No half-written file under a final name: the slow study has none, every ZIP verifies.
    assert not (out / f"study-{slow.study_uid}.zip").exists()
    finals = sorted(p.name for p in out.glob("study-*.zip"))
    assert finals == sorted(f"{name}.zip" for name in others)
    for name in finals:
        with zipfile.ZipFile(out / name) as zf:
            assert zf.testzip() is None
    if how == signal.SIGINT:
        assert "interrupted by Ctrl-C" in output
        assert not part.exists()  # cleaned up on the way out
        assert set(load_cohort(out).StudyInstanceUID) == {
            s.study_uid for s in orthanc.studies if s is not slow}
    # The proxy logs a request when it ends: the slow one's as soon as it sees the client gone.
    def first_run() -> dict[str, int]:
        return {s.study_uid: len(downloads(rproxy, s)) - before[s.study_uid]
                for s in orthanc.studies}

    assert fake.wait_until(lambda: all(n == 1 for n in first_run().values()), 10), first_run()
    # The rerun fetches the slow study only.
    result = run_fetch(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(verified_lines(result.stdout)) == [slow.study_uid]
    assert f"{len(others)} already verified in DIR, skipped" in result.stdout
    for study in orthanc.studies:
        log = downloads(rproxy, study)[before[study.study_uid]:]
        assert len(log) == (2 if study is slow else 1), (study.patient_id, log)
        assert log[-1]["outcome"] == "zip-complete"
        expected_instances_match(out / f"study-{study.study_uid}.zip", study)
    assert not (out / ".zipproxy" / "partial").exists()
    assert len(load_cohort(out)) == sum(len(s.instances) for s in orthanc.studies)
    assert len(retrieves(fake, slow)) >= 2
